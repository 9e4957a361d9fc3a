//! What libtest says about a run: its summary line, and the one rule for "did it run exactly
//! the one test it was asked for".
//!
//! A test binary run for one test (`NAME --exact`) that matches no test still exits 0 with
//! `test result: ok. 0 passed; ...`: a silent pass both `#[cv_test]` and `cargo cvtest` refuse.

/// libtest's summary: the last `test result: ` line of its stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// `ok` rather than `FAILED`.
    pub ok: bool,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub measured: u64,
    pub filtered_out: u64,
}

impl Summary {
    /// The last summary line in `stdout` (libtest prints one per test binary run), `None` if
    /// there is none or it does not read as libtest's.
    pub fn parse(stdout: &[u8]) -> Option<Summary> {
        let text = String::from_utf8_lossy(stdout);
        let line = text.lines().rev().find_map(|l| l.strip_prefix("test result: "))?;
        let (verdict, counts) = line.split_once(". ")?;
        let ok = match verdict {
            "ok" => true,
            "FAILED" => false,
            _ => return None,
        };
        let mut summary = Summary { ok, passed: 0, failed: 0, ignored: 0, measured: 0, filtered_out: 0 };
        for part in counts.split("; ") {
            let Some((n, what)) = part.split_once(' ') else { continue };
            let Ok(n) = n.parse() else { continue };
            match what {
                "passed" => summary.passed = n,
                "failed" => summary.failed = n,
                "ignored" => summary.ignored = n,
                "measured" => summary.measured = n,
                "filtered out" => summary.filtered_out = n,
                // "finished in 0.00s" and whatever a later libtest adds.
                _ => {}
            }
        }
        Some(summary)
    }

    /// The one rule: libtest ran exactly one test (passed, failed or benchmarked it); an
    /// ignored test was not run.
    pub fn ran_exactly_one(&self) -> bool {
        self.passed + self.failed + self.measured == 1
    }

    /// libtest ran exactly one test and passed it.
    pub fn passed_exactly_one(&self) -> bool {
        self.ok && self.ran_exactly_one() && self.passed == 1
    }
}

/// Whether the test binary's `stdout` says libtest ran exactly one test and passed it.
pub fn passed_exactly_one(stdout: &[u8]) -> bool {
    Summary::parse(stdout).is_some_and(|s| s.passed_exactly_one())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "running 1 test\ntest x ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 9 filtered out; finished in 0.00s\n\n";
    const NONE: &str = "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 9 filtered out; finished in 0.00s\n";

    #[test]
    fn reads_the_summary() {
        let s = Summary::parse(ONE.as_bytes()).unwrap();
        assert_eq!(s, Summary { ok: true, passed: 1, failed: 0, ignored: 0, measured: 0, filtered_out: 9 });
        let failed = "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(Summary::parse(failed.as_bytes()).map(|s| (s.ok, s.failed)), Some((false, 1)));
        assert_eq!(Summary::parse(b"running 1 test\n"), None);
        assert_eq!(Summary::parse(b"test result: maybe. 1 passed"), None);
    }

    #[test]
    fn one_rule_for_one_test() {
        assert!(passed_exactly_one(ONE.as_bytes()));
        assert!(!passed_exactly_one(NONE.as_bytes()));
        assert!(!passed_exactly_one(b""));
        // The last summary counts: a test that prints a fake one first changes nothing.
        let fake = format!("test result: ok. 1 passed; 0 failed;\n{NONE}");
        assert!(!passed_exactly_one(fake.as_bytes()));
        let two = ONE.replace("1 passed", "2 passed");
        assert!(!passed_exactly_one(two.as_bytes()));
        let ignored = NONE.replace("0 ignored", "1 ignored");
        assert!(!Summary::parse(ignored.as_bytes()).unwrap().ran_exactly_one());
    }
}
