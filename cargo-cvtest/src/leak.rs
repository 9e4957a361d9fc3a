//! What a leak means (config's `leak = "pass" | "fail"`): a test whose main process ended while
//! processes it started were still alive in its PID namespace. `cargo cvtest` reports such a
//! test as `LEAK` with the leftover processes' names and pids; by default it still passes.

use std::str::FromStr;

/// Whether a leak fails the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum LeakPolicy {
    /// Reported as `LEAK`, counted as passed.
    #[default]
    Pass,
    /// Reported as `LEAK`, counted as failed.
    Fail,
}

impl LeakPolicy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LeakPolicy::Pass => "pass",
            LeakPolicy::Fail => "fail",
        }
    }
}

/// A value of `leak` that is neither policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid leak {0:?}; expected pass (report leftover processes, the test passes) or fail (the test fails)"
)]
pub(crate) struct InvalidLeak(pub(crate) String);

impl FromStr for LeakPolicy {
    type Err = InvalidLeak;
    fn from_str(s: &str) -> Result<Self, InvalidLeak> {
        match s {
            "pass" => Ok(LeakPolicy::Pass),
            "fail" => Ok(LeakPolicy::Fail),
            _ => Err(InvalidLeak(s.to_owned())),
        }
    }
}

/// `sleep (pid 3), daemon (pid 7)`.
pub(crate) fn describe(leftover: &[cvtest::Leftover]) -> String {
    leftover.iter().map(|l| format!("{} (pid {})", l.name, l.pid)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_describes() {
        assert_eq!("fail".parse::<LeakPolicy>(), Ok(LeakPolicy::Fail));
        assert!("no".parse::<LeakPolicy>().unwrap_err().to_string().contains("pass"));
        let l = [
            cvtest::Leftover { pid: 3, host_pid: 100, name: "sleep".into() },
            cvtest::Leftover { pid: 7, host_pid: 104, name: "d".into() },
        ];
        assert_eq!(describe(&l), "sleep (pid 3), d (pid 7)");
    }
}
