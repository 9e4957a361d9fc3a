//! How the runner treats a test beyond its container: retries, slow periods and the escalation
//! to a timeout, and what the terminal shows (status levels). Set per run by profiles
//! (`[profile.NAME]` in `.config/cvtest.toml`) and the CLI, per test by config overrides.
//!
//! Precedence, lowest first: built-in < top-level keys of the workspace's config < `[profile.default]`
//! < `[profile.NAME]` (`--profile NAME` or `CVTEST_PROFILE`) < config overrides matching the test
//! (`retries`, `slow_timeout`, `terminate_after` only) < the CLI's flags.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The slow-test policy: a `SLOW` event each time the test runs past another `period`; after
/// `terminate_after` periods the test is ended as a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlowTimeout {
    pub(crate) period: Duration,
    pub(crate) terminate_after: Option<NonZeroU32>,
}

impl SlowTimeout {
    /// The time limit this policy puts on a test, if it terminates it.
    pub(crate) fn limit(&self) -> Option<Duration> {
        self.terminate_after.map(|n| self.period.saturating_mul(n.get()))
    }
}

/// The runner keys one table sets (a profile, the top-level table, an override). `None`: not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PolicyKeys {
    pub(crate) retries: Option<u32>,
    pub(crate) slow_timeout: Option<Duration>,
    pub(crate) terminate_after: Option<NonZeroU32>,
    /// Run-wide only (profiles, the CLI).
    pub(crate) fail_fast: Option<bool>,
    pub(crate) junit: Option<PathBuf>,
    pub(crate) status_level: Option<StatusLevel>,
    pub(crate) final_status_level: Option<StatusLevel>,
}

impl PolicyKeys {
    /// `self`'s keys over `lower`'s.
    pub(crate) fn over(&self, lower: &PolicyKeys) -> PolicyKeys {
        PolicyKeys {
            retries: self.retries.or(lower.retries),
            slow_timeout: self.slow_timeout.or(lower.slow_timeout),
            terminate_after: self.terminate_after.or(lower.terminate_after),
            fail_fast: self.fail_fast.or(lower.fail_fast),
            junit: self.junit.clone().or_else(|| lower.junit.clone()),
            status_level: self.status_level.or(lower.status_level),
            final_status_level: self.final_status_level.or(lower.final_status_level),
        }
    }

    /// The slow policy these keys give; `terminate_after` without `slow_timeout` does nothing.
    pub(crate) fn slow(&self) -> Option<SlowTimeout> {
        self.slow_timeout.map(|period| SlowTimeout { period, terminate_after: self.terminate_after })
    }
}

/// What a test's line (live) or the summary's list (at the end) shows, lowest first: each
/// level shows what the levels below it show. Adapted from nextest's levels to cvtest's statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum StatusLevel {
    /// Nothing.
    None,
    /// FAIL, SIGNAL, OOM, TIMEOUT, ERROR, CANCELLED, an unmet expectation, a failing LEAK.
    Fail,
    /// Failed attempts that are retried (`TRY n ...`), and FLAKY tests.
    Retry,
    /// `SLOW` lines, and (in the summary) tests that were slow.
    Slow,
    /// Tests that passed but left processes running (LEAK).
    Leak,
    /// PASS, and expected outcomes (`OOM (expected)`).
    Pass,
    /// IGNORED.
    Skip,
    /// Everything.
    All,
}

/// The accepted names, for help and errors.
pub(crate) const STATUS_LEVELS: &str = "none, fail, retry, slow, leak, pass, skip, all";

/// A status level that is none of [`STATUS_LEVELS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid status level {0:?}; expected one of {STATUS_LEVELS}")]
pub(crate) struct InvalidStatusLevel(pub(crate) String);

impl FromStr for StatusLevel {
    type Err = InvalidStatusLevel;
    fn from_str(s: &str) -> Result<Self, InvalidStatusLevel> {
        Ok(match s {
            "none" => StatusLevel::None,
            "fail" => StatusLevel::Fail,
            "retry" => StatusLevel::Retry,
            "slow" => StatusLevel::Slow,
            "leak" => StatusLevel::Leak,
            "pass" => StatusLevel::Pass,
            "skip" => StatusLevel::Skip,
            "all" => StatusLevel::All,
            _ => return Err(InvalidStatusLevel(s.to_owned())),
        })
    }
}

/// What the terminal shows live and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusLevels {
    pub(crate) live: StatusLevel,
    pub(crate) final_: StatusLevel,
}

impl Default for StatusLevels {
    /// Every test's line live (as before levels existed); failures and flaky tests at the end.
    fn default() -> Self {
        StatusLevels { live: StatusLevel::All, final_: StatusLevel::Retry }
    }
}

/// The run's policy, resolved from the profiles and the CLI (per-test keys of overrides come on
/// top of it, test by test, but below the CLI's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunPolicy {
    /// The selected profile's keys over the default profile's and the top-level ones.
    pub(crate) profile: PolicyKeys,
    /// The CLI's flags (and nothing else).
    pub(crate) cli: PolicyKeys,
}

impl RunPolicy {
    /// The run-wide keys: CLI over profile.
    pub(crate) fn run_keys(&self) -> PolicyKeys {
        self.cli.over(&self.profile)
    }

    /// A test's retries and slow policy, given the keys of the overrides matching it.
    pub(crate) fn for_test(&self, overrides: &PolicyKeys) -> (u32, Option<SlowTimeout>) {
        let k = self.cli.over(&overrides.over(&self.profile));
        (k.retries.unwrap_or(0), k.slow())
    }

    pub(crate) fn levels(&self) -> StatusLevels {
        let k = self.run_keys();
        let d = StatusLevels::default();
        StatusLevels {
            live: k.status_level.unwrap_or(d.live),
            final_: k.final_status_level.unwrap_or(d.final_),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        let all: Vec<StatusLevel> = STATUS_LEVELS.split(", ").map(|n| n.parse().unwrap()).collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "listed lowest first: {all:?}");
        assert_eq!((all[0], all[7]), (StatusLevel::None, StatusLevel::All));
        assert!(StatusLevel::Fail < StatusLevel::Retry && StatusLevel::Pass < StatusLevel::Skip);
        let e = "flaky".parse::<StatusLevel>().unwrap_err().to_string();
        assert!(e.contains("\"flaky\"") && e.contains("none, fail, retry"), "{e}");
    }

    #[test]
    fn cli_beats_overrides_beat_profile() {
        let profile = PolicyKeys {
            retries: Some(2),
            slow_timeout: Some(Duration::from_secs(5)),
            terminate_after: NonZeroU32::new(3),
            ..PolicyKeys::default()
        };
        let over = PolicyKeys { retries: Some(4), ..PolicyKeys::default() };
        let p = RunPolicy { profile: profile.clone(), cli: PolicyKeys::default() };
        let (r, slow) = p.for_test(&over);
        assert_eq!(r, 4);
        assert_eq!(slow.unwrap().limit(), Some(Duration::from_secs(15)));
        assert_eq!(p.for_test(&PolicyKeys::default()).0, 2);
        let p = RunPolicy { profile, cli: PolicyKeys { retries: Some(0), ..PolicyKeys::default() } };
        assert_eq!(p.for_test(&over).0, 0, "the CLI wins");
        assert_eq!(RunPolicy::default().for_test(&PolicyKeys::default()), (0, None));
    }
}
