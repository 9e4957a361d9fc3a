//! cgroup v1: one directory per controller hierarchy (memory, pids, cpu, cpuacct, freezer).
//!
//! Limits: `memory.limit_in_bytes` with `memory.memsw.limit_in_bytes` held to the same value
//! (memory + swap <= limit, so swap is no way out), `pids.max`, `cpu.shares` (from the weight),
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us`. Peaks: `memory.max_usage_in_bytes`, `pids.peak`
//! (where the kernel has it), `cpuacct.usage_user` / `usage_sys`, `memory.oom_control`
//! `oom_kill`, `pids.events` `max`. Whole-cgroup kill: freeze, SIGKILL every pid, thaw.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cvtest_spec::{CpuQuota, CpuWeight, MemoryLimit, PidsLimit};
use nix::errno::Errno;

use super::fs::{self, Backoff, DESTROY_TIMEOUT};
use super::usage::Format;
use super::{Cgroup, CgroupError, CgroupStats, CgroupVersion, PeakSupport, Sample, UsageProbe};
use crate::options::Limits;
use crate::outcome::Measured;

/// cgroup v1: the own cgroup directory in each hierarchy used (co-mounted controllers such as
/// "cpu,cpuacct" share one), and which of them holds which controller.
#[derive(Debug)]
pub(crate) struct V1Layout {
    pub(crate) bases: Vec<PathBuf>,
    pub(crate) memory: usize,
    pub(crate) pids: usize,
    pub(crate) cpu: usize,
    pub(crate) cpuacct: Option<usize>,
    pub(crate) freezer: Option<usize>,
    /// Probed on the first cgroup created.
    pub(crate) features: OnceLock<Features>,
}

/// What this kernel's v1 controllers offer, probed once on the first cgroup made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Features {
    /// `memory.memsw.*` (swap accounting on).
    pub(crate) memsw: bool,
    /// `pids.peak` (Linux 6.1+ for v1 too).
    pub(crate) pids_peak: bool,
    /// `cpuacct.usage_user` / `usage_sys` in ns (else `cpuacct.stat` in clock ticks).
    pub(crate) cpuacct_usage: bool,
}

/// One container's cgroup: a directory of the same name in each hierarchy used.
#[derive(Debug)]
pub(crate) struct V1Cgroup {
    dirs: Vec<PathBuf>,
    memory: usize,
    pids: usize,
    cpu: usize,
    cpuacct: Option<usize>,
    freezer: Option<usize>,
    features: Features,
    removed: bool,
    /// The memory and CPU counters, kept open: those directories outlive a recycling.
    kept: fs::KeptFiles,
    /// The limits the kernel holds, when known: a new cgroup's ([`KERNEL_DEFAULTS`]), then the
    /// last written; `None` after a failed write, or for an adopted cgroup.
    held: std::sync::Mutex<Option<Limits>>,
    /// `oom_kill` of `memory.oom_control` when the cgroup was last recycled: the kernel never
    /// resets it, so the stats count from there.
    oom_kills_before: u64,
}

/// What a new v1 cgroup holds: no memory limit, no pids limit, 1024 shares, no quota.
const KERNEL_DEFAULTS: Limits =
    Limits { memory: MemoryLimit::Max, cpu_weight: CpuWeight::DEFAULT, pids: PidsLimit::Max, cpus: None };

/// A recycled cgroup may start with at most this much still charged to it (kernel objects of
/// the earlier container, the per-CPU charge batches of 64 pages); more, and it is removed.
const RECYCLE_MAX_CHARGED: u64 = 1 << 20;

impl V1Cgroup {
    /// The cgroup `name` in every hierarchy of `l`; without the freezer one when `freezer` is
    /// false and the freezer hierarchy holds no other controller used here.
    fn at(l: &V1Layout, name: &str, features: Features, freezer: bool) -> Self {
        let others = [Some(l.memory), Some(l.pids), Some(l.cpu), l.cpuacct];
        let skip = l.freezer.filter(|f| !freezer && !others.contains(&Some(*f)));
        let mut dirs = Vec::with_capacity(l.bases.len());
        let mut index = vec![usize::MAX; l.bases.len()];
        for (i, base) in l.bases.iter().enumerate() {
            if Some(i) != skip {
                index[i] = dirs.len();
                dirs.push(base.join(name));
            }
        }
        V1Cgroup {
            dirs,
            memory: index[l.memory],
            pids: index[l.pids],
            cpu: index[l.cpu],
            cpuacct: l.cpuacct.map(|i| index[i]),
            freezer: l.freezer.filter(|_| skip.is_none()).map(|i| index[i]),
            features,
            removed: false,
            oom_kills_before: 0,
            held: std::sync::Mutex::new(Some(KERNEL_DEFAULTS)),
            kept: fs::KeptFiles::default(),
        }
    }

    /// An existing cgroup (the sweep's), with the freezer directory when it was made with one.
    pub(crate) fn adopt(l: &V1Layout, name: &str) -> Self {
        let freezer = l.freezer.is_some_and(|f| l.bases[f].join(name).is_dir());
        let cg = V1Cgroup::at(l, name, l.features.get().copied().unwrap_or_default(), freezer);
        *cg.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        cg
    }

    /// Makes the cgroup in each hierarchy, without limits ([`V1Cgroup::configure`] writes them;
    /// see also [`crate::background`]). `freezer`: also in the freezer hierarchy, which
    /// [`Cgroup::kill_all`] needs to stop forks racing the kill. A container with its own PID
    /// namespace goes without: the death of its init kills everything in it.
    pub(crate) fn make(l: &V1Layout, name: &str, freezer: bool) -> Result<Self, CgroupError> {
        let mut cg = V1Cgroup::at(l, name, Features::default(), freezer);
        for (i, dir) in cg.dirs.iter().enumerate() {
            if let Err(source) = std::fs::create_dir(dir) {
                for made in cg.dirs[..i].iter().rev() {
                    let _ = std::fs::remove_dir(made);
                }
                cg.removed = true;
                if super::v2::denied(&source) {
                    let base = dir.parent().unwrap_or(dir);
                    return Err(super::delegation::not_delegated(CgroupVersion::V1, base, None, source));
                }
                return Err(CgroupError::Create { path: dir.clone(), source });
            }
        }
        cg.features = *l.features.get_or_init(|| cg.probe());
        Ok(cg)
    }

    /// Writes the limits of a cgroup [`V1Cgroup::make`] made; on error the cgroup is removed.
    pub(crate) fn configure(&mut self, limits: &Limits) -> Result<(), CgroupError> {
        if let Err(e) = self.write_and_hold(limits) {
            let _ = self.destroy();
            return Err(e);
        }
        Ok(())
    }

    fn probe(&self) -> Features {
        Features {
            memsw: self.dir(self.memory).join("memory.memsw.limit_in_bytes").exists(),
            pids_peak: self.dir(self.pids).join("pids.peak").exists(),
            cpuacct_usage: self.cpuacct.is_some_and(|i| self.dir(i).join("cpuacct.usage_user").exists()),
        }
    }

    fn dir(&self, i: usize) -> &Path {
        &self.dirs[i]
    }

    /// Writes the limits that differ from `held`, what the kernel holds now (see `held`);
    /// every limit when that is not known.
    fn write_limits(&self, limits: &Limits, held: Option<&Limits>) -> Result<(), CgroupError> {
        let same = |f: &dyn Fn(&Limits) -> bool| held.is_some_and(f);
        let mem = self.dir(self.memory);
        let limit = mem.join("memory.limit_in_bytes");
        let memsw = self.features.memsw.then(|| mem.join("memory.memsw.limit_in_bytes"));
        match limits.memory {
            _ if same(&|h| h.memory == limits.memory) => {}
            MemoryLimit::Bytes(b) => {
                let v = b.to_string();
                match &memsw {
                    // memsw may never be below the limit: lowering writes the limit first,
                    // raising (the limit write fails with EINVAL) writes memsw first.
                    Some(memsw) => match fs::write_io(&limit, &v) {
                        Ok(()) => fs::write(memsw, &v)?,
                        Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => {
                            fs::write(memsw, &v)?;
                            fs::write(&limit, &v)?;
                        }
                        Err(e) => return Err(fs::write_error(&limit, &v, e)),
                    },
                    None => fs::write(&limit, &v)?,
                }
            }
            MemoryLimit::Max => {
                if let Some(memsw) = &memsw {
                    fs::write(memsw, "-1")?;
                }
                fs::write(&limit, "-1")?;
            }
        }

        let pids_max = self.dir(self.pids).join("pids.max");
        match limits.pids {
            _ if same(&|h| h.pids == limits.pids) => {}
            PidsLimit::Count(n) => fs::write(&pids_max, &n.to_string())?,
            PidsLimit::Max => fs::write(&pids_max, "max")?,
        }

        let cpu = self.dir(self.cpu);
        let shares = limits.cpu_weight.to_v1_shares();
        if !same(&|h| h.cpu_weight.to_v1_shares() == shares) {
            fs::write(&cpu.join("cpu.shares"), &shares.to_string())?;
        }
        match limits.cpus {
            _ if same(&|h| h.cpus == limits.cpus) => {}
            Some(q) => {
                fs::write(&cpu.join("cpu.cfs_period_us"), &CpuQuota::PERIOD_US.to_string())?;
                fs::write(&cpu.join("cpu.cfs_quota_us"), &q.quota_us().to_string())?;
            }
            None => fs::write(&cpu.join("cpu.cfs_quota_us"), "-1")?,
        }
        Ok(())
    }

    /// Writes `limits` and remembers them as held; after an error what the kernel holds is not
    /// known, and the next call writes every limit.
    fn write_and_hold(&self, limits: &Limits) -> Result<(), CgroupError> {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let written = self.write_limits(limits, held.as_ref());
        *held = written.is_ok().then_some(*limits);
        written
    }

    /// Writes `FROZEN` and waits (bounded, at most 1 s) until the freezer says so. Not reaching
    /// it is no error: the kill that follows works on frozen and running tasks alike.
    fn freeze(&self, freezer: &Path, deadline: Instant) -> Result<(), CgroupError> {
        let state = freezer.join("freezer.state");
        fs::write(&state, "FROZEN")?;
        let mut backoff = Backoff::new(deadline.min(Instant::now() + Duration::from_secs(1)));
        loop {
            match fs::read_if_exists(&state)? {
                Some(s) if s.trim() != "FROZEN" => {}
                _ => return Ok(()),
            }
            if !backoff.wait() {
                return Ok(());
            }
        }
    }

    fn cpu_times(&self) -> Result<(Option<Duration>, Option<Duration>), CgroupError> {
        let Some(i) = self.cpuacct else { return Ok((None, None)) };
        let dir = self.dir(i);
        if self.features.cpuacct_usage {
            let ns = |f: &str| {
                let path = dir.join(f);
                fs::parse_u64(&path, &self.kept.read(&path)?).map(|v| Some(Duration::from_nanos(v)))
            };
            return Ok((ns("cpuacct.usage_user")?, ns("cpuacct.usage_sys")?));
        }
        let path = dir.join("cpuacct.stat");
        let text = fs::read(&path)?;
        let ticks = |t: u64| Duration::from_nanos(t.saturating_mul(clock_tick_ns()));
        Ok((fs::keyed(&path, &text, "user")?.map(ticks), fs::keyed(&path, &text, "system")?.map(ticks)))
    }
}

/// The length of a clock tick (USER_HZ) in ns, the unit of `cpuacct.stat`.
fn clock_tick_ns() -> u64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .unwrap_or(100);
    1_000_000_000 / hz as u64
}

impl Cgroup for V1Cgroup {
    fn paths(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    fn apply_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.write_and_hold(limits)
    }

    fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn init_join_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("tasks")).collect()
    }

    fn thread_list(&self) -> Option<(PathBuf, &'static str)> {
        // Any hierarchy: each lists every thread of the container.
        Some((self.dirs.first()?.clone(), "tasks"))
    }

    fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for dir in &self.dirs {
            fs::write(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn has_peak_counters(&self) -> PeakSupport {
        PeakSupport { memory: true, pids: self.features.pids_peak }
    }

    fn sample(&self) -> Result<Sample, CgroupError> {
        Ok(Sample {
            memory_bytes: Some(fs::read_u64(&self.dir(self.memory).join("memory.usage_in_bytes"))?),
            pids: Some(fs::read_u64(&self.dir(self.pids).join("pids.current"))?),
        })
    }

    fn usage_probe(&self) -> Result<UsageProbe, CgroupError> {
        let cpu = self.cpuacct.map(|i| {
            if self.features.cpuacct_usage {
                (self.dir(i).join("cpuacct.usage"), Format::Nanos)
            } else {
                (self.dir(i).join("cpuacct.stat"), Format::Ticks(clock_tick_ns()))
            }
        });
        UsageProbe::open(
            Some(self.dir(self.memory).join("memory.usage_in_bytes")),
            Some(self.dir(self.pids).join("pids.current")),
            cpu,
        )
    }

    /// Files every supported kernel has are read strictly (a vanished cgroup is an error, not
    /// a `None`); the others were probed when the first cgroup was made.
    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let mem = self.dir(self.memory);
        let pids = self.dir(self.pids);
        let kernel = |value| Measured { value, sampled: false };
        let max_usage = mem.join("memory.max_usage_in_bytes");
        let memory_peak = Some(kernel(fs::parse_u64(&max_usage, &self.kept.read(&max_usage)?)?));
        let pids_peak =
            if self.features.pids_peak { Some(kernel(fs::read_u64(&pids.join("pids.peak"))?)) } else { None };
        let (cpu_user, cpu_system) = self.cpu_times()?;
        let oom_path = mem.join("memory.oom_control");
        // The oom_kill line came with Linux 4.13.
        let oom_kills = fs::keyed(&oom_path, &self.kept.read(&oom_path)?, "oom_kill")?
            .map(|n| n.saturating_sub(self.oom_kills_before));
        let events_path = pids.join("pids.events");
        let pids_max_events = fs::keyed(&events_path, &fs::read(&events_path)?, "max")?;
        Ok(CgroupStats { memory_peak, pids_peak, cpu_user, cpu_system, oom_kills, pids_max_events })
    }

    /// Freeze (so nothing can fork between reading `cgroup.procs` and the kill), SIGKILL every
    /// listed pid, thaw (frozen tasks die only once thawed), then wait until `cgroup.procs` is
    /// empty. Without a freezer: SIGKILL what is listed until nothing is.
    fn kill_all(&self, timeout: Duration) -> Result<(), CgroupError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let primary = self.dir(self.freezer.unwrap_or(self.memory));
        if fs::procs(primary)?.is_empty() {
            return Ok(());
        }
        if let Some(f) = self.freezer {
            let freezer = self.dir(f);
            self.freeze(freezer, deadline)?;
            let killed = fs::procs(freezer).and_then(|pids| fs::kill_pids(freezer, &pids));
            // Thaw even when listing failed, so that nothing stays frozen.
            let thawed = fs::write(&freezer.join("freezer.state"), "THAWED");
            killed?;
            thawed?;
        }
        fs::kill_listed(primary, deadline).map_err(|e| match e {
            CgroupError::NotEmpty { path, .. } => CgroupError::NotEmpty { path, waited: started.elapsed() },
            e => e,
        })
    }

    fn destroy(&mut self) -> Result<(), CgroupError> {
        if self.removed {
            return Ok(());
        }
        self.kill_all(DESTROY_TIMEOUT)?;
        self.kept.close();
        let deadline = Instant::now() + DESTROY_TIMEOUT;
        for dir in &self.dirs {
            // A process that sits in this hierarchy only (moved by someone), or in a child
            // cgroup, is killed when rmdir says EBUSY.
            fs::remove_dir(dir, deadline, &fs::kill_listed)?;
        }
        self.removed = true;
        Ok(())
    }

    /// The memory and CPU directories stay (their controllers' state is the costly part of a
    /// cgroup to make and to remove): the memory high-water mark is reset to what is charged
    /// now (at most [`RECYCLE_MAX_CHARGED`]), the CPU time to 0, and OOM kills count from here.
    /// `pids.peak` cannot be reset, so the pids directory is made anew under the same name (the
    /// pids controller's state is a few counters). Not on kernels without `cpuacct.usage_user`
    /// (their `cpuacct.stat` cannot be reset), nor when pids shares a hierarchy with another
    /// controller used here. The limits are the caller's to write again.
    fn recycle(&mut self) -> Result<bool, CgroupError> {
        let Some(cpuacct) = self.cpuacct else { return Ok(false) };
        let shared =
            [Some(self.memory), Some(self.cpu), Some(cpuacct), self.freezer].contains(&Some(self.pids));
        if self.removed || shared || !self.features.cpuacct_usage {
            return Ok(false);
        }
        let mem = self.dir(self.memory).to_owned();
        let usage = mem.join("memory.usage_in_bytes");
        let charged = fs::parse_u64(&usage, &self.kept.read(&usage)?)?;
        if charged > RECYCLE_MAX_CHARGED {
            return Ok(false);
        }
        let pids = self.dir(self.pids).to_owned();
        std::fs::remove_dir(&pids).map_err(|source| CgroupError::Remove { path: pids.to_owned(), source })?;
        std::fs::create_dir(&pids).map_err(|source| CgroupError::Create { path: pids.to_owned(), source })?;
        // The new pids directory has no limit.
        let held = self.held.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        *held = held.map(|h| Limits { pids: PidsLimit::Max, ..h });
        self.kept.write(&mem.join("memory.max_usage_in_bytes"), "0")?;
        self.kept.write(&self.dir(cpuacct).join("cpuacct.usage"), "0")?;
        let oom_path = mem.join("memory.oom_control");
        self.oom_kills_before = fs::keyed(&oom_path, &self.kept.read(&oom_path)?, "oom_kill")?.unwrap_or(0);
        Ok(true)
    }
}

impl Drop for V1Cgroup {
    fn drop(&mut self) {
        // Best effort: the owner should have called destroy and seen its error.
        let _ = self.destroy();
    }
}
