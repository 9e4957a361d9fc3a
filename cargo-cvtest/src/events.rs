//! Typed events: the only thing the runner produces and the only thing reporters consume.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cvtest::Peaks;

pub(crate) use crate::errors::UnitError;
use crate::exit_codes;
use crate::expect::Expect;
use crate::leak::LeakPolicy;
use crate::selection::TestCase;
use crate::settings::Effective;
use crate::timeline::Timeline;
use crate::units::ContainerScope;

/// How a test ended. Closed: every consumer decides what a new status means.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    /// Exited 0.
    Pass,
    /// Exited non-zero (a panic is exit code 101).
    Fail { exit_code: i32 },
    /// Killed by a signal that was neither the OOM killer nor cvtest (a crash, an abort).
    Signal { signal: i32 },
    /// Killed by the kernel's OOM killer at the memory limit.
    Oom,
    /// Still running when its timeout passed; the whole container was killed.
    Timeout,
    /// `#[ignore]`d and not selected by `--ignored`/`--include-ignored`: not run.
    Ignored,
    /// Killed because the run was interrupted (Ctrl-C, SIGTERM) or stopped by `--fail-fast`.
    Cancelled,
    /// Its container gave it no outcome of its own: see [`UnitError`].
    Error(Arc<UnitError>),
}

impl Status {
    /// The upper-case name used in the terminal and the summary.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail { .. } => "FAIL",
            Status::Signal { .. } => "SIGNAL",
            Status::Oom => "OOM",
            Status::Timeout => "TIMEOUT",
            Status::Ignored => "IGNORED",
            Status::Cancelled => "CANCELLED",
            Status::Error(_) => "ERROR",
        }
    }

    /// The lower-case name used in JSON.
    pub(crate) fn json_name(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail { .. } => "fail",
            Status::Signal { .. } => "signal",
            Status::Oom => "oom",
            Status::Timeout => "timeout",
            Status::Ignored => "ignored",
            Status::Cancelled => "cancelled",
            Status::Error(_) => "error",
        }
    }

    /// Whether the test ran to an outcome of its own (its duration says how long it takes).
    pub(crate) fn ran(&self) -> bool {
        match self {
            Status::Pass | Status::Fail { .. } | Status::Signal { .. } | Status::Oom | Status::Timeout => {
                true
            }
            Status::Ignored | Status::Cancelled | Status::Error(_) => false,
        }
    }

    /// Why it has no outcome of its own, for [`Status::Error`].
    pub(crate) fn error(&self) -> Option<&UnitError> {
        match self {
            Status::Error(e) => Some(e),
            Status::Pass
            | Status::Fail { .. }
            | Status::Signal { .. }
            | Status::Oom
            | Status::Timeout
            | Status::Ignored
            | Status::Cancelled => None,
        }
    }

    /// Whether the test ended as `expect` says it should.
    pub(crate) fn meets(&self, expect: Expect) -> Verdict {
        match (self, expect) {
            (Status::Ignored, _) => Verdict::NotRun,
            (Status::Cancelled, _) => Verdict::Failure,
            (Status::Error(_), _) => Verdict::Failure,
            (Status::Pass, Expect::Pass) => Verdict::Success,
            (Status::Pass, Expect::Fail | Expect::Oom | Expect::Timeout) => Verdict::Failure,
            (Status::Fail { .. } | Status::Signal { .. }, Expect::Fail) => Verdict::Success,
            (Status::Fail { .. } | Status::Signal { .. }, Expect::Pass | Expect::Oom | Expect::Timeout) => {
                Verdict::Failure
            }
            (Status::Oom, Expect::Oom) => Verdict::Success,
            (Status::Oom, Expect::Pass | Expect::Fail | Expect::Timeout) => Verdict::Failure,
            (Status::Timeout, Expect::Timeout) => Verdict::Success,
            (Status::Timeout, Expect::Pass | Expect::Fail | Expect::Oom) => Verdict::Failure,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    NotRun,
}

/// Whose peaks these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeakScope {
    /// The test had its own container.
    Test,
    /// The test shared its binary's container (`--isolation binary`): see [`BinaryFinished`].
    Binary,
}

/// The result of one test.
#[derive(Debug, Clone)]
pub(crate) struct TestFinished {
    pub(crate) binary_id: String,
    pub(crate) name: String,
    pub(crate) status: Status,
    pub(crate) expect: Expect,
    /// When the runner took it up (before its container was created).
    pub(crate) started_at: Instant,
    pub(crate) duration: Duration,
    /// `None` when not measured: not run, setup failed, or shared with the binary.
    pub(crate) peaks: Option<Peaks>,
    pub(crate) pids_limit_hit: bool,
    pub(crate) scope: PeakScope,
    pub(crate) settings: Effective,
    /// The container's network: the test's fixed one, or what `network = "auto"` got.
    pub(crate) network: Option<cvtest_spec::NetworkSpec>,
    /// Captured output (bounded by the runner's capture limit, truncation marked).
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Processes still alive in its container when its main process ended (a `LEAK`).
    pub(crate) leftover: Vec<cvtest::Leftover>,
    /// Whether those fail it.
    pub(crate) leak: LeakPolicy,
    /// Its attempts before this one (retries), and the limits the runner put on it.
    pub(crate) tries: Tries,
    /// Its container's usage over time (`--timeline`): with [`PeakScope::Binary`] the binary's
    /// container's, the same `Arc` for each of its tests.
    pub(crate) timeline: Option<Arc<Timeline>>,
    /// Its lab's nodes (`cvtest::lab`), each with its runs: outcome and peaks.
    pub(crate) lab: Vec<cvtest::lab::NodeReport>,
}

/// A test's attempts: this one's number, the earlier ones (each failed and was retried).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tries {
    /// The earlier attempts, oldest first; empty when it ran once.
    pub(crate) earlier: Vec<Attempt>,
    /// Attempts it was allowed in all (1 + retries).
    pub(crate) allowed: u32,
    /// The time limit of `terminate_after` slow periods, when it is shorter than the timeout
    /// (a TIMEOUT then says it).
    pub(crate) slow_limit: Option<Duration>,
}

/// One finished attempt of a test that was retried.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) status: Status,
    pub(crate) duration: Duration,
    pub(crate) peaks: Option<Peaks>,
    pub(crate) pids_limit_hit: bool,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Its container's usage over time (`--timeline`).
    pub(crate) timeline: Option<Arc<Timeline>>,
}

impl Attempt {
    /// What is kept of a finished attempt.
    pub(crate) fn of(t: &TestFinished) -> Attempt {
        Attempt {
            status: t.status.clone(),
            duration: t.duration,
            peaks: t.peaks,
            pids_limit_hit: t.pids_limit_hit,
            stdout: t.stdout.clone(),
            stderr: t.stderr.clone(),
            timeline: t.timeline.clone(),
        }
    }
}

impl TestFinished {
    /// `t` of binary `binary_id` ended as `status` with nothing measured yet: no peaks, no
    /// output, zero duration. Callers fill in what they learn.
    pub(crate) fn unmeasured(
        binary_id: &str,
        t: &TestCase,
        status: Status,
        started_at: Instant,
        scope: PeakScope,
    ) -> Self {
        TestFinished {
            binary_id: binary_id.to_owned(),
            name: t.name.clone(),
            status,
            expect: t.expect,
            started_at,
            duration: Duration::ZERO,
            peaks: None,
            pids_limit_hit: false,
            scope,
            settings: t.settings.clone(),
            network: t.settings.network().and_then(|n| n.fixed()),
            stdout: Vec::new(),
            stderr: Vec::new(),
            leftover: Vec::new(),
            leak: t.leak,
            tries: Tries { earlier: Vec::new(), allowed: 1 + t.retries, slow_limit: None },
            timeline: None,
            lab: Vec::new(),
        }
    }

    /// A test `p t` of binary `p` with default settings that ended as `status` (for reporters' tests).
    #[cfg(test)]
    pub(crate) fn sample(status: Status) -> Self {
        let resolver = crate::settings::Resolver {
            config: crate::config::Config::default(),
            cli: cvtest_spec::TestSettings::default(),
            force: false,
            enforced: true,
        };
        let (settings, expect) = resolver.resolve("p", "p", "t", None).expect("the defaults make options");
        TestFinished {
            binary_id: "p".into(),
            name: "t".into(),
            status,
            expect,
            started_at: Instant::now(),
            duration: Duration::ZERO,
            peaks: None,
            pids_limit_hit: false,
            scope: PeakScope::Test,
            settings,
            network: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            leftover: Vec::new(),
            leak: LeakPolicy::Pass,
            tries: Tries::default(),
            timeline: None,
            lab: Vec::new(),
        }
    }

    /// Whether it ended as expected; with `leak = "fail"`, leftover processes fail it.
    pub(crate) fn verdict(&self) -> Verdict {
        match self.status.meets(self.expect) {
            Verdict::Success if self.leaked() && self.leak == LeakPolicy::Fail => Verdict::Failure,
            v => v,
        }
    }

    /// Processes it started were still alive in its container when it ended.
    pub(crate) fn leaked(&self) -> bool {
        !self.leftover.is_empty()
    }

    /// Its attempt number, 1 for the first.
    pub(crate) fn attempt(&self) -> usize {
        self.tries.earlier.len() + 1
    }

    /// It failed before and then succeeded on a retry.
    pub(crate) fn flaky(&self) -> bool {
        !self.tries.earlier.is_empty() && self.verdict() == Verdict::Success
    }

    /// Whether a failed attempt is worth another: the test's own failures are (FAIL, SIGNAL, OOM,
    /// TIMEOUT, an unmet expectation, a failing LEAK); the harness's are not (ERROR: the
    /// container could not be set up, which a retry would only hide), nor a cancelled run.
    pub(crate) fn retryable(&self) -> bool {
        let own = match self.status {
            Status::Pass | Status::Fail { .. } | Status::Signal { .. } | Status::Oom | Status::Timeout => {
                true
            }
            Status::Ignored | Status::Cancelled | Status::Error(_) => false,
        };
        own && self.verdict() == Verdict::Failure
    }

    /// `OOM`, `OOM (expected)`, `PASS (expected oom)`, and `LEAK` for a pass that left
    /// processes running.
    pub(crate) fn label(&self) -> String {
        let name = match self.status {
            _ if self.flaky() => "FLAKY",
            Status::Pass if self.leaked() => "LEAK",
            _ => self.status.name(),
        };
        match (self.expect, self.verdict()) {
            (Expect::Pass, _) | (_, Verdict::NotRun) => name.to_owned(),
            (_, Verdict::Success) => format!("{name} (expected)"),
            (e, Verdict::Failure) => format!("{name} (expected {})", e.as_str()),
        }
    }
}

/// One binary run whole in one container (`--isolation binary`, or a custom harness).
#[derive(Debug, Clone)]
pub(crate) struct BinaryFinished {
    pub(crate) binary_id: String,
    pub(crate) status: Status,
    pub(crate) duration: Duration,
    pub(crate) peaks: Option<Peaks>,
    pub(crate) pids_limit_hit: bool,
    pub(crate) tests: usize,
    /// The container's usage over time (`--timeline`): one curve for all its tests.
    pub(crate) timeline: Option<Arc<Timeline>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Event {
    RunStarted {
        to_run: usize,
        ignored: usize,
        filtered_out: usize,
        jobs: usize,
        scope: ContainerScope,
        memory_budget: u64,
        /// Each worker's share of the CPUs (`crate::placement`), as taskset writes a list;
        /// empty when containers are not placed.
        cpu_shares: Vec<String>,
    },
    TestStarted {
        binary_id: String,
        name: String,
    },
    /// The test waits for a machine-wide lease (its subnet, or its share of the memory budget)
    /// held by another cvtest container; sent again when the holder changes.
    TestWaiting {
        binary_id: String,
        name: String,
        /// What it waits for: `10.0.0.0/24`, `512 MiB of the 20000 MiB memory budget`.
        what: String,
        /// Who holds it, when that can be told.
        holder: Option<cvtest::lease::Holder>,
    },
    /// A test has been running past another multiple of its slow timeout.
    TestSlow {
        binary_id: String,
        name: String,
        /// How long it has run (a multiple of the slow timeout).
        elapsed: Duration,
        /// Whether it will be ended at the next multiple (its `terminate_after` periods are up then).
        terminating: bool,
    },
    /// An attempt of a test failed and it runs again, in a fresh container (`--retries`); the
    /// test's `TestFinished` comes after its last attempt.
    AttemptFailed(Box<TestFinished>),
    TestFinished(Box<TestFinished>),
    BinaryFinished(Box<BinaryFinished>),
    /// A signal arrived: no new tests start, running ones are killed.
    Interrupted {
        signal: i32,
    },
    /// `--fail-fast`: a test failed; no new tests start.
    Stopping,
    /// Something to know that changes no result (a worker's zygote could not start or was lost,
    /// so its containers are cloned directly).
    Warning {
        message: String,
    },
    RunFinished {
        elapsed: Duration,
        stats: RunStats,
    },
}

/// What a run counted, kept beside the events as they go by (not by a reporter): it decides the
/// run's exit code, and reaches the reporters in [`Event::RunFinished`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RunStats {
    /// Tests selected to run (ignored ones not included).
    pub(crate) to_run: usize,
    /// Ended as expected (PASS, or an expected OOM/TIMEOUT/FAIL).
    pub(crate) succeeded: usize,
    pub(crate) failed: usize,
    pub(crate) ignored: usize,
    /// Of `succeeded`: passed on a retry after failing.
    pub(crate) flaky: usize,
    /// The signal that interrupted the run.
    pub(crate) interrupted: Option<i32>,
}

impl RunStats {
    pub(crate) fn add(&mut self, ev: &Event) {
        match ev {
            Event::RunStarted { to_run, .. } => self.to_run = *to_run,
            Event::TestFinished(t) => match t.verdict() {
                Verdict::Success => {
                    self.succeeded += 1;
                    self.flaky += usize::from(t.flaky());
                }
                Verdict::Failure => self.failed += 1,
                Verdict::NotRun => self.ignored += 1,
            },
            Event::Interrupted { signal } => self.interrupted = Some(*signal),
            Event::TestStarted { .. }
            | Event::TestWaiting { .. }
            | Event::TestSlow { .. }
            | Event::AttemptFailed(_)
            | Event::BinaryFinished(_)
            | Event::Stopping
            | Event::Warning { .. }
            | Event::RunFinished { .. } => {}
        }
    }

    /// Tests that were to run but never ended (interrupt, `--fail-fast`).
    pub(crate) fn not_run(&self) -> usize {
        self.to_run.saturating_sub(self.succeeded + self.failed)
    }

    /// Whether the run as a whole succeeded.
    pub(crate) fn success(&self) -> bool {
        self.failed == 0 && self.interrupted.is_none() && self.not_run() == 0
    }

    /// The run's exit code (see [`exit_codes`]).
    pub(crate) fn exit_code(&self) -> i32 {
        match self.interrupted {
            Some(sig) => exit_codes::INTERRUPTED_BASE + sig,
            None if self.success() => exit_codes::OK,
            None => exit_codes::TEST_FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_outcomes_count_as_success() {
        assert_eq!(Status::Oom.meets(Expect::Oom), Verdict::Success);
        assert_eq!(Status::Pass.meets(Expect::Oom), Verdict::Failure);
        assert_eq!(Status::Fail { exit_code: 101 }.meets(Expect::Fail), Verdict::Success);
        assert_eq!(Status::Timeout.meets(Expect::Pass), Verdict::Failure);
        assert_eq!(Status::Ignored.meets(Expect::Pass), Verdict::NotRun);
        assert_eq!(Status::Cancelled.meets(Expect::Timeout), Verdict::Failure);
    }

    #[test]
    fn stats_decide_the_exit_code() {
        let mut s = RunStats::default();
        let started = Event::RunStarted {
            to_run: 2,
            ignored: 1,
            filtered_out: 0,
            jobs: 1,
            scope: ContainerScope::Test,
            memory_budget: 1 << 30,
            cpu_shares: Vec::new(),
        };
        s.add(&started);
        s.add(&Event::TestFinished(Box::new(TestFinished::sample(Status::Ignored))));
        s.add(&Event::TestFinished(Box::new(TestFinished::sample(Status::Pass))));
        assert_eq!((s.not_run(), s.exit_code()), (1, exit_codes::TEST_FAILED), "one never ended");
        s.add(&Event::TestFinished(Box::new(TestFinished::sample(Status::Pass))));
        assert_eq!((s.ignored, s.exit_code()), (1, exit_codes::OK));
        let mut failed = s;
        failed.add(&Event::TestFinished(Box::new(TestFinished::sample(Status::Oom))));
        assert_eq!(failed.exit_code(), exit_codes::TEST_FAILED);
        s.add(&Event::Interrupted { signal: 15 });
        assert_eq!(s.exit_code(), 143);
    }

    #[test]
    fn the_tests_own_failures_are_retried_the_harness_errors_not() {
        assert!(TestFinished::sample(Status::Oom).retryable());
        assert!(TestFinished::sample(Status::Timeout).retryable());
        assert!(!TestFinished::sample(Status::Pass).retryable());
        assert!(!TestFinished::sample(Status::Cancelled).retryable());
        let e = UnitError::NoSuchTest { name: "t".into() };
        assert!(!TestFinished::sample(Status::Error(Arc::new(e))).retryable());
        let mut t = TestFinished::sample(Status::Pass);
        t.tries.earlier.push(Attempt::of(&TestFinished::sample(Status::Fail { exit_code: 101 })));
        assert!(t.flaky() && t.label() == "FLAKY" && t.attempt() == 2);
        let mut s = RunStats::default();
        s.add(&Event::TestFinished(Box::new(t)));
        assert_eq!((s.succeeded, s.flaky, s.failed), (1, 1, 0));
    }
}
