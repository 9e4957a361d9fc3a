//! How a container's process ended, and what it used.

use std::time::Duration;

/// How the container's main process ended. Closed: match it without a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Termination {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (not the OOM killer, not our timeout).
    Signaled(i32),
    /// The kernel's OOM killer killed it (the cgroup's oom_kill count rose and it died by SIGKILL).
    OomKilled,
    /// It was still running when the timeout passed; the whole container was killed.
    TimedOut,
}

impl Termination {
    pub fn is_success(self) -> bool {
        match self {
            Termination::Exited(code) => code == 0,
            Termination::Signaled(_) | Termination::OomKilled | Termination::TimedOut => false,
        }
    }
}

/// A value the kernel reported, and whether it was the kernel's own peak counter or our sampling
/// of the current value (kernels without `memory.peak` / `pids.peak`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measured<T> {
    pub value: T,
    /// `true` when sampled while the process ran: a lower bound of the true peak.
    pub sampled: bool,
}

/// Traffic through the container's veth, counted on the host end (rx = received from the
/// container).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NetStats {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Resource peaks. Each is `None` only when the kernel cannot tell (never a made-up 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Peaks {
    pub memory_bytes: Option<Measured<u64>>,
    pub pids: Option<Measured<u64>>,
    pub cpu_user: Option<Duration>,
    pub cpu_system: Option<Duration>,
    pub oom_kills: Option<u64>,
    /// The largest resident set of any one process of the container, from the rusage of its
    /// reaped init (`wait4`'s `ru_maxrss`, which covers the descendants it reaped). Without a
    /// cgroup this is the only memory figure, and a lower bound of the container's total.
    pub max_rss_bytes: Option<u64>,
    /// `None` without a veth.
    pub net: Option<NetStats>,
}

impl Peaks {
    /// User plus system CPU time, when both are known.
    pub fn cpu_total(&self) -> Option<Duration> {
        Some(self.cpu_user? + self.cpu_system?)
    }
}

/// Everything [`crate::Container::wait`] learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub termination: Termination,
    /// Whether a fork or clone was refused because the pids limit was reached.
    pub pids_limit_hit: bool,
    pub peaks: Peaks,
    /// Whether the limits were enforced: `false` for a container without a cgroup (an isolation
    /// without [`crate::Isolation::CGROUPS`], as the explicit no-limits mode makes), whose peaks are
    /// then only what rusage tells (`max_rss_bytes`, CPU times).
    pub limits_enforced: bool,
    /// Wall time from spawn to the end of the main process.
    pub duration: Duration,
    /// Captured output ([`crate::Stdio::Capture`]); empty otherwise.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Processes still alive in the container when its main process ended (started by it and
    /// left running: daemons, forgotten children), in pid order; they were killed with the
    /// container. Empty when none were left, or when the end was not watched by `wait`.
    pub leftover: Vec<Leftover>,
}

/// A process left running in a container after its main process ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Leftover {
    /// Its pid in the container's PID namespace (as the test saw it).
    pub pid: i32,
    /// Its pid on the host.
    pub host_pid: i32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
}
