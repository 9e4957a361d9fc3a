//! Cgroups: one interface, cgroup v1 and v2 behind it.
//!
//! [`Hierarchy::detect`] reads `/proc/self/mountinfo` and `/proc/self/cgroup` (under an
//! injectable root, so parsers are unit-tested on a tempdir tree) and finds this process's own
//! cgroup in each hierarchy. Every cgroup cvtest creates is a direct child of that own cgroup,
//! named `cvtest.<owner tag>.<seq>` so that a later run can tell whose it is
//! (see [`crate::owner`]). On v2 below the root, a process alone in its cgroup moves itself into
//! the leaf `cvtest.<owner tag>.supervisor` there (see [`Hierarchy::create`]).
//!
//! `detect.rs` parses and decides; `v1.rs` and `v2.rs` implement [`Cgroup`]; `fs.rs` is the
//! cgroupfs I/O (every error names its path) and the bounded waits of teardown.
//!
//! Cost per container: create is one mkdir per hierarchy used (v1 here: 5; v2: 1), plus an
//! open+write+close per limit that differs from a fresh cgroup's default (the swap limit is one
//! more), plus the directory fd on v2. Destroying an empty cgroup is one read of `cgroup.procs`
//! (v2: `cgroup.events`) and an rmdir per hierarchy. Nothing sleeps unless processes are still
//! dying. With the background thread on v1 most cgroups are recycled instead
//! ([`Cgroup::recycle`]): a `rmdir` and a `mkdir` of the pids directory, two counter resets and
//! two reads, and at the next take only the limits that differ.

mod delegation;
mod detect;
pub(crate) mod fs;
mod systemd;
mod usage;
mod v1;
mod v2;

pub(crate) use detect::Made;
pub use detect::{CgroupVersion, Hierarchy};
pub use usage::{Usage, UsageProbe};

use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::options::Limits;
use crate::outcome::Measured;

/// A cgroup of one container, v1 (a directory per controller hierarchy) or v2 (one directory).
pub trait Cgroup: Send + Sync + std::fmt::Debug {
    /// The directories of this cgroup (one on v2, one per hierarchy on v1).
    fn paths(&self) -> Vec<PathBuf>;
    /// Writes the limits (memory + swap held to it, pids, cpu weight, cpu quota).
    fn apply_limits(&self, limits: &Limits) -> Result<(), CgroupError>;
    /// A directory fd for `clone3(CLONE_INTO_CGROUP)`, where the kernel supports it (v2 only).
    fn clone_into_fd(&self) -> Option<BorrowedFd<'_>>;
    /// The files a container's init writes `0` (itself) into to join this cgroup on its own,
    /// first thing: v1's `tasks` files, one per hierarchy (moving the current thread skips the
    /// kernel's global threadgroup lock, see `sandbox::spawn`). Empty when the parent puts the
    /// init in instead (v2: `CLONE_INTO_CGROUP`, else [`Cgroup::add_pid`]).
    fn init_join_files(&self) -> Vec<PathBuf>;
    /// The file that lists every thread of a cgroup, by its id in this process's PID namespace
    /// (v1: `tasks`, v2: `cgroup.threads`), and the directory it is in, under which every
    /// cgroup has one too.
    fn thread_list(&self) -> Option<(PathBuf, &'static str)>;
    /// Moves a process in (the spawn does on v2 without `CLONE_INTO_CGROUP`).
    fn add_pid(&self, pid: i32) -> Result<(), CgroupError>;
    /// Whether `stats` gives kernel peaks; if not, the caller samples [`Cgroup::sample`].
    fn has_peak_counters(&self) -> PeakSupport;
    /// Current memory and pids, for sampling peaks on kernels without peak files.
    fn sample(&self) -> Result<Sample, CgroupError>;
    /// Opens this cgroup's current-usage counters (memory, pids, CPU time) for repeated cheap
    /// reads (timelines); see [`UsageProbe`].
    fn usage_probe(&self) -> Result<UsageProbe, CgroupError>;
    /// Peaks and counters. Call before [`Cgroup::kill_all`] / [`Cgroup::destroy`].
    fn stats(&self) -> Result<CgroupStats, CgroupError>;
    /// Kills every process in the cgroup (`cgroup.kill`, or freeze + SIGKILL each pid + thaw)
    /// and waits until it is empty, at most `timeout`.
    fn kill_all(&self, timeout: Duration) -> Result<(), CgroupError>;
    /// Kills what is left, waits until empty, and removes the directories (rmdir with a bounded
    /// retry). Idempotent.
    fn destroy(&mut self) -> Result<(), CgroupError>;
    /// Makes an emptied cgroup ([`Cgroup::kill_all`] returned) as good as a new one for the next
    /// container of this process, where the kernel allows it; whether it did. `false` (the
    /// default): remove it and make a new one. See [`crate::Options::set_background`].
    #[doc(hidden)]
    fn recycle(&mut self) -> Result<bool, CgroupError> {
        Ok(false)
    }
}

/// Which peaks the kernel keeps for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeakSupport {
    pub memory: bool,
    pub pids: bool,
}

/// A sample of current usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

/// What a cgroup tells after the run. `None` when the kernel cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupStats {
    pub memory_peak: Option<Measured<u64>>,
    pub pids_peak: Option<Measured<u64>>,
    pub cpu_user: Option<Duration>,
    pub cpu_system: Option<Duration>,
    /// Processes killed by the OOM killer in this cgroup.
    pub oom_kills: Option<u64>,
    /// Times a fork was refused at the pids limit (`pids.events` max).
    pub pids_max_events: Option<u64>,
}

/// A cgroupfs or procfs operation failed; every variant names its path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy found in {mountinfo}: mount cgroup2 (or the v1 memory, pids and cpu controllers) first")]
    NoHierarchy { mountinfo: PathBuf },
    #[error("the {controller} controller is not available{where_}: {fix}")]
    ControllerMissing { controller: &'static str, where_: String, fix: String },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to create cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} still has processes after {waited:?}")]
    NotEmpty { path: PathBuf, waited: Duration },
    #[error(
        "cannot enable the {controllers} controllers in {path}: cgroup v2 lets a cgroup that holds processes \
         pass no controllers to its children, and besides this process (pid {me}) it holds {others:?}; \
         run cvtest as the only process of a cgroup delegated to it \
         (e.g. `systemd-run --scope -p Delegate=yes <program>`), or from the root cgroup{systemd}"
    )]
    SharedCgroup {
        path: PathBuf,
        controllers: String,
        me: i32,
        others: Vec<i32>,
        /// Why systemd could not delegate a scope, when it was asked; empty otherwise.
        systemd: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "this user (uid {uid}) may not create cgroups in {path}: {why}; so cvtest cannot enforce limits. \
         Fix: {fix}; or run without limits, on purpose: `cargo cvtest --no-limits`, or CVTEST_LIMITS=off \
         (every test is then reported with its limits not enforced)"
    )]
    NotDelegated {
        uid: u32,
        path: PathBuf,
        why: String,
        fix: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the cgroup {path} delegated to this user lacks the {missing:?} controller(s) (its cgroup.controllers is \
         {available:?}): {fix}; or run without limits, on purpose: `cargo cvtest --no-limits`, or CVTEST_LIMITS=off"
    )]
    ControllersNotDelegated { path: PathBuf, missing: Vec<&'static str>, available: String, fix: String },
    #[error("cannot parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}
