//! What a test is expected to end as (config's `expect = "oom"`). A test that ends as expected
//! counts as a success.

use std::str::FromStr;

/// What a test is expected to end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Expect {
    #[default]
    Pass,
    /// Exit non-zero or die by a signal (not OOM, not timeout).
    Fail,
    Oom,
    Timeout,
}

impl Expect {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Expect::Pass => "pass",
            Expect::Fail => "fail",
            Expect::Oom => "oom",
            Expect::Timeout => "timeout",
        }
    }
}

/// A value of `expect` that is none of the outcomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid expect {0:?}; expected one of pass, fail, oom, timeout")]
pub(crate) struct InvalidExpect(pub(crate) String);

impl FromStr for Expect {
    type Err = InvalidExpect;
    fn from_str(s: &str) -> Result<Self, InvalidExpect> {
        match s {
            "pass" => Ok(Expect::Pass),
            "fail" => Ok(Expect::Fail),
            "oom" => Ok(Expect::Oom),
            "timeout" => Ok(Expect::Timeout),
            _ => Err(InvalidExpect(s.to_owned())),
        }
    }
}
