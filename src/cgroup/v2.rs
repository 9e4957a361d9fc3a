//! cgroup v2: one unified directory.
//!
//! Limits: `memory.max` with `memory.swap.max` 0 (no way out through swap), `pids.max`,
//! `cpu.weight`, `cpu.max`. Peaks: `memory.peak` (5.19+), `pids.peak` (6.1+), `cpu.stat`
//! `user_usec` / `system_usec`, `memory.events` `oom_kill`, `pids.events` `max`. Whole-cgroup
//! kill: `cgroup.kill` (5.14+; else freeze + SIGKILL each pid), then wait for `cgroup.events`
//! `populated 0` with poll(2) on that file, which the kernel notifies.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cvtest_spec::{CpuQuota, CpuWeight, MemoryLimit, PidsLimit};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::delegation;
use super::fs::{self, DESTROY_TIMEOUT};
use super::systemd::Manager;
use super::usage::Format;
use super::{Cgroup, CgroupError, CgroupStats, CgroupVersion, PeakSupport, Sample, UsageProbe};
use crate::options::Limits;
use crate::outcome::Measured;

/// cgroup v2: the own cgroup directory, below which every cvtest cgroup is made.
#[derive(Debug)]
pub(crate) struct V2Layout {
    pub(crate) base: PathBuf,
    /// Probed on the first cgroup created.
    pub(crate) features: OnceLock<Features>,
    /// Set once memory, pids and cpu are enabled in `base/cgroup.subtree_control`.
    pub(crate) controllers_ready: AtomicBool,
    /// Serialises enabling them (which may move this process into a leaf).
    pub(crate) enabling: Mutex<()>,
    /// Why systemd could not give this process a delegated scope, when it was asked.
    pub(crate) delegation_failed: OnceLock<String>,
    /// The transient scope systemd made for this process, and whose manager it is.
    pub(crate) scope: OnceLock<(Manager, String)>,
    /// The supervisor leaf this process moved into, and the `+controller` list it enabled then.
    pub(crate) supervisor: Mutex<Option<(PathBuf, String)>>,
}

/// The controllers cvtest enables for its cgroups.
pub(crate) const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// What this kernel's cgroup v2 offers, probed once on the first cgroup made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Features {
    /// `memory.peak` (5.19+).
    pub(crate) memory_peak: bool,
    /// `pids.peak` (6.1+).
    pub(crate) pids_peak: bool,
    /// `memory.swap.max` (swap accounting on).
    pub(crate) swap_max: bool,
    /// `cgroup.kill` (5.14+).
    pub(crate) kill: bool,
}

/// One container's cgroup.
#[derive(Debug)]
pub(crate) struct V2Cgroup {
    dir: PathBuf,
    /// The open directory, for `clone3(CLONE_INTO_CGROUP)`.
    fd: Option<OwnedFd>,
    features: Features,
    removed: bool,
}

impl V2Cgroup {
    pub(crate) fn adopt(l: &V2Layout, name: &str) -> Self {
        V2Cgroup {
            dir: l.base.join(name),
            fd: None,
            features: l.features.get().copied().unwrap_or_default(),
            removed: false,
        }
    }

    /// The directory, without limits (see [`crate::background`]).
    pub(crate) fn make(l: &V2Layout, name: &str) -> Result<Self, CgroupError> {
        enable_controllers(l)?;
        let dir = l.base.join(name);
        std::fs::create_dir(&dir).map_err(|source| {
            if denied(&source) {
                delegation::not_delegated(CgroupVersion::V2, &l.base, l.delegation_failed.get(), source)
            } else {
                CgroupError::Create { path: dir.clone(), source }
            }
        })?;
        let mut cg = V2Cgroup { dir, fd: None, features: Features::default(), removed: false };
        cg.features = *l.features.get_or_init(|| cg.probe());
        Ok(cg)
    }

    /// Writes the limits of a cgroup [`V2Cgroup::make`] made and opens its directory; on error
    /// the cgroup is removed (nothing runs in it yet: one rmdir).
    pub(crate) fn configure(&mut self, limits: &Limits) -> Result<(), CgroupError> {
        let ready = self.write_limits(limits, true).and_then(|()| {
            let file = File::open(&self.dir)
                .map_err(|source| CgroupError::Create { path: self.dir.clone(), source })?;
            self.fd = Some(OwnedFd::from(file));
            Ok(())
        });
        if let Err(e) = ready {
            let _ = self.destroy();
            return Err(e);
        }
        Ok(())
    }

    fn probe(&self) -> Features {
        let has = |f: &str| self.dir.join(f).exists();
        Features {
            memory_peak: has("memory.peak"),
            pids_peak: has("pids.peak"),
            swap_max: has("memory.swap.max"),
            kill: has("cgroup.kill"),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read_u64(&self, name: &str) -> Result<u64, CgroupError> {
        fs::read_u64(&self.file(name))
    }

    /// Writes the limits. On a `fresh` cgroup, values equal to the kernel's defaults for a new
    /// cgroup ("max" memory and pids, weight 100, no quota) are not written.
    fn write_limits(&self, limits: &Limits, fresh: bool) -> Result<(), CgroupError> {
        match limits.memory {
            MemoryLimit::Bytes(b) => {
                fs::write(&self.file("memory.max"), &b.to_string())?;
                if self.features.swap_max {
                    fs::write(&self.file("memory.swap.max"), "0")?;
                }
            }
            MemoryLimit::Max if !fresh => {
                fs::write(&self.file("memory.max"), "max")?;
                if self.features.swap_max {
                    fs::write(&self.file("memory.swap.max"), "max")?;
                }
            }
            MemoryLimit::Max => {}
        }
        match limits.pids {
            PidsLimit::Count(n) => fs::write(&self.file("pids.max"), &n.to_string())?,
            PidsLimit::Max if !fresh => fs::write(&self.file("pids.max"), "max")?,
            PidsLimit::Max => {}
        }
        if !fresh || limits.cpu_weight != CpuWeight::DEFAULT {
            fs::write(&self.file("cpu.weight"), &limits.cpu_weight.to_string())?;
        }
        match limits.cpus {
            Some(q) => {
                fs::write(&self.file("cpu.max"), &format!("{} {}", q.quota_us(), CpuQuota::PERIOD_US))?
            }
            None if !fresh => fs::write(&self.file("cpu.max"), "max")?,
            None => {}
        }
        Ok(())
    }

    /// Without `cgroup.kill` (before 5.14): freeze, SIGKILL every listed pid, thaw.
    fn freeze_and_kill(&self, events: &File, deadline: Instant) -> Result<(), CgroupError> {
        let freeze = self.file("cgroup.freeze");
        fs::write(&freeze, "1")?;
        let frozen_by = deadline.min(Instant::now() + Duration::from_secs(1));
        // Not reaching "frozen 1" is no error: SIGKILL works on running tasks too.
        let _ = wait_events(events, &self.file("cgroup.events"), "frozen", 1, frozen_by);
        let killed = fs::procs(&self.dir).and_then(|pids| fs::kill_pids(&self.dir, &pids));
        let thawed = fs::write(&freeze, "0");
        killed?;
        thawed
    }
}

/// EACCES or EPERM: the cgroup is not ours (an ordinary user's, not delegated).
pub(crate) fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) && !nix::unistd::geteuid().is_root()
}

/// Enables memory, pids and cpu in the own cgroup's `cgroup.subtree_control`, once per process.
/// See [`super::Hierarchy::create`] for the no-internal-processes rule and the supervisor leaf.
fn enable_controllers(l: &V2Layout) -> Result<(), CgroupError> {
    if l.controllers_ready.load(Ordering::Acquire) {
        return Ok(());
    }
    let _guard = l.enabling.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if l.controllers_ready.load(Ordering::Acquire) {
        return Ok(());
    }
    let base = &l.base;
    let available = fs::read(&base.join("cgroup.controllers"))?;
    let missing: Vec<&'static str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !available.split_ascii_whitespace().any(|a| a == *c))
        .collect();
    if !missing.is_empty() && l.scope.get().is_some_and(|(m, _)| *m == Manager::User) {
        return Err(delegation::controllers_not_delegated(base, missing, &available));
    }
    if let Some(&missing) = missing.first() {
        let parent = base.parent().unwrap_or(base);
        return Err(CgroupError::ControllerMissing {
            controller: missing,
            where_: format!(" in {} (its cgroup.controllers is {:?})", base.display(), available.trim()),
            fix: format!(
                "enable it from the parent: echo +{missing} > {}/cgroup.subtree_control (under systemd, run cvtest \
                 with Delegate=yes, e.g. systemd-run --scope -p Delegate=yes ...); if the root's cgroup.controllers \
                 lacks it, the kernel does not offer it on cgroup v2 (CONFIG, cgroup_disable=, or bound to v1)",
                parent.display()
            ),
        });
    }
    let subtree = base.join("cgroup.subtree_control");
    let enabled = fs::read(&subtree)?;
    let value = CONTROLLERS
        .iter()
        .filter(|c| !enabled.split_ascii_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if !value.is_empty() {
        match fs::write_io(&subtree, &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => {
                let leaf = move_into_leaf_and_enable(base, &subtree, &value, e, l.delegation_failed.get())?;
                *l.supervisor.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((leaf, value));
            }
            Err(e) if denied(&e) => {
                return Err(delegation::not_delegated(CgroupVersion::V2, base, l.delegation_failed.get(), e))
            }
            Err(e) => return Err(fs::write_error(&subtree, &value, e)),
        }
    }
    l.controllers_ready.store(true, Ordering::Release);
    Ok(())
}

/// The own cgroup holds processes, so it may not pass controllers down. If they are this
/// process and its own children only, move them into the leaf `cvtest.<owner tag>.supervisor`
/// and enable; otherwise say what to do. On failure this process goes back where it was.
fn move_into_leaf_and_enable(
    base: &Path,
    subtree: &Path,
    value: &str,
    busy: io::Error,
    delegation_failed: Option<&String>,
) -> Result<PathBuf, CgroupError> {
    let me = std::process::id() as i32;
    let procs_path = base.join("cgroup.procs");
    let foreign = |pids: &[i32]| -> Vec<i32> {
        pids.iter()
            .copied()
            .filter(|&p| p != me && crate::owner::parent_of(p).is_some_and(|pp| pp != me))
            .collect()
    };
    let shared = |others: Vec<i32>, source: io::Error| CgroupError::SharedCgroup {
        path: subtree.to_owned(),
        controllers: value.to_owned(),
        me,
        others,
        systemd: delegation_failed
            .map_or_else(String::new, |why| format!(" (asking systemd for one failed: {why})")),
        source,
    };
    let pids = fs::procs(base)?;
    let others = foreign(&pids);
    if !others.is_empty() {
        return Err(shared(others, busy));
    }

    let leaf = base.join(format!("cvtest.{}.supervisor", crate::owner::tag()));
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(CgroupError::Create { path: leaf, source }),
    }
    let leaf_procs = leaf.join("cgroup.procs");
    let undo = || {
        // Back to where we were, so nothing of ours is left in a state we made.
        for pid in fs::procs(&leaf).unwrap_or_default() {
            let _ = fs::write_io(&procs_path, &pid.to_string());
        }
        let _ = std::fs::remove_dir(&leaf);
    };
    // A child forked by another thread just before this process moved stays behind: move our
    // children too (they would have been in the leaf had we moved a moment earlier), then retry.
    let mut last = busy;
    for _ in 0..3 {
        for pid in fs::procs(base)? {
            if pid != me && !foreign(&[pid]).is_empty() {
                undo();
                return Err(shared(vec![pid], last));
            }
            match fs::write_io(&leaf_procs, &pid.to_string()) {
                Ok(()) => {}
                // It exited meanwhile.
                Err(e) if e.raw_os_error() == Some(Errno::ESRCH as i32) => {}
                Err(e) => {
                    undo();
                    return Err(fs::write_error(&leaf_procs, &pid.to_string(), e));
                }
            }
        }
        match fs::write_io(subtree, value) {
            Ok(()) => return Ok(leaf),
            Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => last = e,
            Err(e) => {
                undo();
                return Err(fs::write_error(subtree, value, e));
            }
        }
    }
    undo();
    Err(fs::write_error(subtree, value, last))
}

/// See [`super::Hierarchy::release`].
pub(crate) fn release_supervisor(l: &V2Layout) -> Result<(), CgroupError> {
    let _guard = l.enabling.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some((leaf, enabled)) = l.supervisor.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    else {
        return Ok(());
    };
    l.controllers_ready.store(false, Ordering::Release);
    let subtree = l.base.join("cgroup.subtree_control");
    let disable = enabled.replace('+', "-");
    fs::write(&subtree, &disable)?;
    let procs = l.base.join("cgroup.procs");
    for pid in fs::procs(&leaf)? {
        match fs::write_io(&procs, &pid.to_string()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::ESRCH as i32) => {}
            Err(e) => return Err(fs::write_error(&procs, &pid.to_string(), e)),
        }
    }
    std::fs::remove_dir(&leaf).map_err(|source| CgroupError::Remove { path: leaf, source })
}

/// Reads `cgroup.events` from offset 0 and returns the value of `key`.
fn read_events(events: &File, path: &Path, key: &str) -> Result<u64, CgroupError> {
    let mut buf = [0u8; 256];
    let n = loop {
        match events.read_at(&mut buf, 0) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(CgroupError::Read { path: path.to_owned(), source }),
        }
    };
    let text = String::from_utf8_lossy(&buf[..n]);
    fs::keyed(path, &text, key)?.ok_or_else(|| CgroupError::Parse {
        path: path.to_owned(),
        reason: format!("no {key:?} line in {text:?}"),
    })
}

/// Waits until `cgroup.events` says `key value`: poll(2) for the kernel's change notification
/// (POLLPRI), re-read, until `deadline`.
fn wait_events(
    events: &File,
    path: &Path,
    key: &str,
    value: u64,
    deadline: Instant,
) -> Result<bool, CgroupError> {
    loop {
        if read_events(events, path, key)? == value {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        // Round up so that the last wait is not a busy loop of 0 ms polls.
        let left = deadline - now + Duration::from_micros(999);
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(CgroupError::Read { path: path.to_owned(), source: e.into() }),
        }
    }
}

impl Cgroup for V2Cgroup {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn apply_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.write_limits(limits, false)
    }

    fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    fn init_join_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn thread_list(&self) -> Option<(PathBuf, &'static str)> {
        Some((self.dir.clone(), "cgroup.threads"))
    }

    fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        fs::write(&self.file("cgroup.procs"), &pid.to_string())
    }

    fn has_peak_counters(&self) -> PeakSupport {
        PeakSupport { memory: self.features.memory_peak, pids: self.features.pids_peak }
    }

    fn sample(&self) -> Result<Sample, CgroupError> {
        Ok(Sample {
            memory_bytes: Some(self.read_u64("memory.current")?),
            pids: Some(self.read_u64("pids.current")?),
        })
    }

    fn usage_probe(&self) -> Result<UsageProbe, CgroupError> {
        UsageProbe::open(
            Some(self.file("memory.current")),
            Some(self.file("pids.current")),
            Some((self.file("cpu.stat"), Format::UsageUsec)),
        )
    }

    /// Files every supported kernel has are read strictly (a vanished cgroup is an error, not
    /// a `None`); the peak files were probed when the first cgroup was made.
    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let peak = |on: bool, f: &str| -> Result<Option<Measured<u64>>, CgroupError> {
            Ok(if on { Some(Measured { value: self.read_u64(f)?, sampled: false }) } else { None })
        };
        let keyed = |f: &str, keys: &[&str]| -> Result<Vec<Option<u64>>, CgroupError> {
            let path = self.file(f);
            let text = fs::read(&path)?;
            keys.iter().map(|k| fs::keyed(&path, &text, k)).collect()
        };
        let cpu = keyed("cpu.stat", &["user_usec", "system_usec"])?;
        Ok(CgroupStats {
            memory_peak: peak(self.features.memory_peak, "memory.peak")?,
            pids_peak: peak(self.features.pids_peak, "pids.peak")?,
            cpu_user: cpu[0].map(Duration::from_micros),
            cpu_system: cpu[1].map(Duration::from_micros),
            oom_kills: keyed("memory.events", &["oom_kill"])?[0],
            pids_max_events: keyed("pids.events", &["max"])?[0],
        })
    }

    fn kill_all(&self, timeout: Duration) -> Result<(), CgroupError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let path = self.file("cgroup.events");
        let events = match File::open(&path) {
            Ok(f) => f,
            // The cgroup is gone, and with it everything that was in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(CgroupError::Read { path, source }),
        };
        if read_events(&events, &path, "populated")? == 0 {
            return Ok(());
        }
        if self.features.kill {
            fs::write(&self.file("cgroup.kill"), "1")?;
        } else {
            self.freeze_and_kill(&events, deadline)?;
        }
        if wait_events(&events, &path, "populated", 0, deadline)? {
            Ok(())
        } else {
            Err(CgroupError::NotEmpty { path: self.dir.clone(), waited: started.elapsed() })
        }
    }

    fn destroy(&mut self) -> Result<(), CgroupError> {
        if self.removed {
            return Ok(());
        }
        self.kill_all(DESTROY_TIMEOUT)?;
        self.fd = None;
        // cgroup.kill and populated cover child cgroups too; these are empty by now.
        fs::remove_dir(&self.dir, Instant::now() + DESTROY_TIMEOUT, &fs::kill_listed)?;
        self.removed = true;
        Ok(())
    }
}

impl Drop for V2Cgroup {
    fn drop(&mut self) {
        // Best effort: the owner should have called destroy and seen its error.
        let _ = self.destroy();
    }
}
