//! Typed events: the only thing the runner produces and the only thing reporters consume.

use std::time::{Duration, Instant};

use cvtest::Peaks;

use crate::cli::Isolation;
use crate::settings::{Effective, Expect};
use crate::testlist::TestCase;

/// How a test ended. Closed: every consumer decides what a new status means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
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
    /// Its container could not be created or started.
    SetupError { message: String },
}

impl Status {
    /// The upper-case name used in the terminal and the summary.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail { .. } => "FAIL",
            Status::Signal { .. } => "SIGNAL",
            Status::Oom => "OOM",
            Status::Timeout => "TIMEOUT",
            Status::Ignored => "IGNORED",
            Status::Cancelled => "CANCELLED",
            Status::SetupError { .. } => "ERROR",
        }
    }

    /// The lower-case name used in JSON.
    pub fn json_name(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail { .. } => "fail",
            Status::Signal { .. } => "signal",
            Status::Oom => "oom",
            Status::Timeout => "timeout",
            Status::Ignored => "ignored",
            Status::Cancelled => "cancelled",
            Status::SetupError { .. } => "error",
        }
    }

    /// Whether the test ended as `expect` says it should.
    pub fn meets(&self, expect: Expect) -> Verdict {
        match (self, expect) {
            (Status::Ignored, _) => Verdict::NotRun,
            (Status::Cancelled, _) => Verdict::Failure,
            (Status::SetupError { .. }, _) => Verdict::Failure,
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
pub enum Verdict {
    Success,
    Failure,
    NotRun,
}

/// Whose peaks these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakScope {
    /// The test had its own container.
    Test,
    /// The test shared its binary's container (`--isolation binary`): see [`BinaryFinished`].
    Binary,
}

/// The result of one test.
#[derive(Debug, Clone)]
pub struct TestFinished {
    pub binary_id: String,
    pub name: String,
    pub status: Status,
    pub expect: Expect,
    /// When the runner took it up (before its container was created).
    pub started_at: Instant,
    pub duration: Duration,
    /// `None` when not measured: not run, setup failed, or shared with the binary.
    pub peaks: Option<Peaks>,
    pub pids_limit_hit: bool,
    pub scope: PeakScope,
    pub settings: Effective,
    /// The container's network: the test's fixed one, or what `network = "auto"` got.
    pub network: Option<cvtest_spec::NetworkSpec>,
    /// Captured output (bounded by the runner's capture limit, truncation marked).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl TestFinished {
    /// `t` of binary `binary_id` ended as `status` with nothing measured yet: no peaks, no
    /// output, zero duration. Callers fill in what they learn.
    pub fn unmeasured(
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
            network: t.settings.network.and_then(|n| n.fixed()),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.status.meets(self.expect)
    }

    /// `OOM`, `OOM (expected)`, `PASS (expected oom)`.
    pub fn label(&self) -> String {
        match (self.expect, self.verdict()) {
            (Expect::Pass, _) | (_, Verdict::NotRun) => self.status.name().to_owned(),
            (_, Verdict::Success) => format!("{} (expected)", self.status.name()),
            (e, Verdict::Failure) => format!("{} (expected {})", self.status.name(), e.as_str()),
        }
    }
}

/// One binary run whole in one container (`--isolation binary`, or a custom harness).
#[derive(Debug, Clone)]
pub struct BinaryFinished {
    pub binary_id: String,
    pub status: Status,
    pub duration: Duration,
    pub peaks: Option<Peaks>,
    pub pids_limit_hit: bool,
    pub tests: usize,
}

#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        to_run: usize,
        ignored: usize,
        filtered_out: usize,
        jobs: usize,
        isolation: Isolation,
        memory_budget: u64,
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
    },
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
}
