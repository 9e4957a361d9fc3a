//! The container lifecycle: create → spawn → wait → destroy (also on Drop).
//!
//! `create` validates, sweeps what dead runners left, and makes the cgroup with its limits.
//! `spawn` clones the container's PID 1 into new namespaces and into the cgroup (before it runs
//! anything), links its network namespace with a veth, then lets it exec the command as PID 2.
//! `wait` reads the output, enforces the timeout, samples usage where the kernel keeps no peaks,
//! and when the main process ends reads the peaks before anything is torn down. `destroy` kills
//! the whole cgroup, waits until it is empty, removes it, and lets the network namespace (and with
//! it the veth) go.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use cvtest_spec::NetworkSpec;

use crate::capture::Capture;
use crate::cgroup::{Cgroup, Hierarchy, Sample};
use crate::command::Command;
use crate::error::{CreateError, DestroyError, SpawnError, WaitError};
use crate::net::VethName;
use crate::options::{Isolation, Options, Rootfs, Stdio};
use crate::outcome::{Leftover, Measured, Outcome, Peaks, Termination};
use crate::sandbox::channel::{Message, MESSAGE_SIZE};
use crate::sandbox::spawn::{self, Spawned};
use crate::sandbox::userns::UserNs;
use crate::sys::{self, Errno};
use crate::zygote::Zygote;

/// One container. Dropping it destroys it.
#[derive(Debug)]
pub struct Container {
    id: String,
    isolation: Isolation,
    /// The capabilities the main process keeps; `None` when privileged.
    confine: Option<cvtest_spec::Capabilities>,
    hostname: String,
    rootfs: Rootfs,
    /// [`Options::overlay_dirs`], canonical.
    overlay_dirs: Vec<PathBuf>,
    /// Why the kernel refused the overlay of [`Options::overlay_dirs`] at the last spawn.
    overlay_refused: Option<Errno>,
    network: Option<NetworkSpec>,
    host_access: cvtest_spec::HostAccess,
    veth_name: Option<VethName>,
    /// The machine-wide lease of the subnet: released once the kernel has removed the veth.
    lease: Option<crate::lease::Lease>,
    cgroup: Option<Box<dyn Cgroup>>,
    /// The process's background thread does its housekeeping ([`Options::set_background`]):
    /// its cgroup was made ahead; destroy empties the cgroup and leaves the rmdir, and a pooled
    /// network namespace's check, to the thread.
    background: bool,
    /// Its user namespace: rootless always; as root unless privileged or no owner was found.
    userns: Option<crate::sandbox::userns::UserNs>,
    rootless: bool,
    /// It gets a network namespace of the process's pool (see [`Options::set_reuse_netns`]).
    pooled_netns: bool,
    /// With a veth and the background thread: the pair made ahead for it, until spawn.
    ready_veth: Option<crate::net::pool::ReadyVeth>,
    running: Option<Running>,
    outcome: Option<Outcome>,
    shared: Arc<Shared>,
    /// A lab node's link to its switch (see [`crate::lab`]).
    lab_port: Option<crate::net::LabPort>,
    /// Something outside the container changed its network namespace (a lab linked the test
    /// to its switch): a pooled one is not given back.
    netns_changed: bool,
    /// Open the init's namespaces at spawn ([`Container::keep_namespaces`]).
    keep_namespaces: bool,
    /// Spawned paused ([`Container::spawn_paused_via`]): the init waits for [`Container::resume`].
    paused: Option<PausedRun>,
    /// The init's CPU affinity ([`Options::set_cpu_affinity`]).
    cpus: Option<cvtest_spec::CpuList>,
}

/// A container spawned up to the go: its init set up and waiting.
#[derive(Debug)]
struct PausedRun {
    paused: spawn::Paused,
    /// The pooled network namespace its init joined.
    pooled: Option<crate::net::pool::PooledNetns>,
    /// The capture limits of stdout and stderr.
    limits: (usize, usize),
}

/// The parent's side of a spawned container (the pidfd lives in [`Shared`]).
#[derive(Debug)]
struct Running {
    pid: i32,
    life: OwnedFd,
    status: OwnedFd,
    stdout: Option<(OwnedFd, usize)>,
    stderr: Option<(OwnedFd, usize)>,
    netns: Option<OwnedFd>,
    /// Its init's user namespace (if its own) and network namespace, when kept.
    namespaces: Option<(Option<OwnedFd>, OwnedFd)>,
    /// With the background thread: the init's mount namespace, held so that the init's exit
    /// does not tear the container's mounts down (an expedited RCU grace period and every
    /// superblock's teardown); at destroy the thread lets it go.
    mount_ns: Option<OwnedFd>,
    /// The pooled network namespace its init joined, given back at destroy.
    pooled: Option<crate::net::pool::PooledNetns>,
    veth: Option<crate::net::Veth>,
    started: Instant,
    /// The init was reaped (by `wait`): nothing of the container runs any more.
    reaped: bool,
}

/// What a [`KillHandle`] shares with its container.
#[derive(Debug, Default)]
struct Shared {
    /// The init's pidfd, once spawned. Kept open until the last handle goes, so a late kill hits
    /// the (reaped) process it was made for and never a reused pid.
    pidfd: OnceLock<OwnedFd>,
    /// Set by [`KillHandle::kill`], so that `wait` reports the kill as a signal.
    killed: AtomicBool,
    /// `cgroup.kill` of the container's cgroup (cgroup v2, Linux 5.14+).
    cgroup_kill: Option<PathBuf>,
    /// A pidfd of the main process, when there is no PID namespace to end everything with the
    /// init: its process group is signalled through it, never through a number that could be
    /// reused once the container ended.
    main: OnceLock<(OwnedFd, i32)>,
}

impl Shared {
    /// SIGKILL to the init, which ends its whole PID namespace. Without a PID namespace, also to
    /// the main process's group and the cgroup. Non-blocking; `wait`/`destroy` reap. Nothing
    /// before spawn: (on Linux 6.1 a `cgroup.kill` of the still empty cgroup kills the init
    /// cloned into it later).
    fn kill_tree(&self) {
        let Some(pidfd) = self.pidfd.get() else { return };
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        if let Some((main, pid)) = self.main.get() {
            kill_group_of(main, *pid);
            if let Some(path) = &self.cgroup_kill {
                let _ = std::fs::write(path, "1");
            }
        }
    }
}

/// SIGKILL to the process group of the main process `pid` (its own group leader), named through
/// its pidfd `main` (Linux 6.9+). Before 6.9, `kill(-pid)` only while the main process has not exited:
/// a live leader holds its number, so the group is still the container's. Once it is gone (and
/// reaped) nothing is sent: its number may be a stranger's by then.
fn kill_group_of(main: &OwnedFd, pid: i32) {
    match sys::pidfd_signal_group(main.as_fd(), libc::SIGKILL) {
        Err(Errno::EINVAL) if !sys::pidfd_exited(main.as_fd()) => {
            let _ = sys::kill(-pid, libc::SIGKILL);
        }
        Ok(()) | Err(_) => {}
    }
}

/// A pidfd of the main process `main_pid` (a child of the init `init_pid`, both as this process
/// numbers them: there is no PID namespace), if it still runs. Opened, then checked: while the
/// process of the pidfd lives, `main_pid` is its number, so a parent of `init_pid` read in
/// between proves it is the main process and not a stranger that got the number after it ended.
fn main_pidfd(main_pid: i32, init_pid: i32) -> Option<OwnedFd> {
    let fd = sys::pidfd_open(main_pid).ok()?;
    let parent = crate::owner::parent_of(main_pid);
    (parent == Some(init_pid) && !sys::pidfd_exited(fd.as_fd())).then_some(fd)
}

/// Kills a container's whole process tree from another thread (Ctrl-C handling, timeouts).
/// Cheap to clone; killing a container that has ended (or was destroyed) does nothing.
#[derive(Debug, Clone)]
pub struct KillHandle(Arc<Shared>);

/// How long `destroy` waits for a SIGKILLed init to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of `memory.current` / `pids.current` sampling on kernels without peak files.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// Stale state of dead runners is swept at the first create of a process, then at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

impl Container {
    /// Validates the options, sweeps what dead runners left, takes the lease of the network's
    /// subnet (waiting up to [`crate::lease::DEFAULT_WAIT`] while another cvtest container holds
    /// an overlapping one), and creates the cgroup with its limits. On error nothing is left
    /// behind.
    pub fn create(options: &Options) -> Result<Container, CreateError> {
        Self::create_waiting(options, &crate::lease::WaitPolicy::default())
    }

    /// [`Container::create`], waiting for a held subnet as `policy` says (how long, who asks,
    /// and an observer told who holds it while this waits).
    pub fn create_waiting(
        options: &Options,
        policy: &crate::lease::WaitPolicy<'_>,
    ) -> Result<Container, CreateError> {
        let privilege = crate::preflight::check()?;
        let rootless = privilege == crate::preflight::Privilege::Rootless;
        let user_namespaces =
            matches!(privilege, crate::preflight::Privilege::Root { user_namespaces: true });
        let rootfs = validate_rootfs(options.rootfs())?;
        let overlay_dirs = validate_overlay_dirs(options.overlay_dirs())?;
        let networked = options.isolation().contains(Isolation::NETWORK);
        let (network, lease) = match (networked, options.network().copied(), options.network_auto()) {
            (false, _, _) | (true, None, None) => (None, None),
            // Rootless, the host end lives in a namespace of the run's own: no host route, so
            // nothing to lease or check. (`auto` still picks from the pool, for the addresses.)
            (true, Some(net), _) if rootless => (Some(net), None),
            (true, Some(net), _) => {
                // The lease first: a subnet held by another cvtest container is waited for,
                // never reported as a route clash.
                let lease = crate::lease::take_subnet(&net, policy)?;
                check_routes(&net)?;
                (Some(net), Some(lease))
            }
            (true, None, Some(pool)) => {
                let (net, lease) = crate::lease::take_from_pool(&pool, policy)?;
                (Some(net), Some(lease))
            }
        };
        let userns = if rootless {
            Some(UserNs::rootless())
        } else if options.privileged() || !user_namespaces {
            None
        } else {
            crate::sandbox::userns::root_owner(options.mapped_root_owner()).and_then(UserNs::mapped_root)
        };
        if let (Some(ns), false, Rootfs::Host { writable }) = (&userns, rootless, &rootfs) {
            for dir in writable {
                crate::sandbox::userns::check_writable(dir, ns.owner)?;
            }
        }
        let mut overlay_dirs = overlay_dirs;
        if let (Some(ns), false) = (&userns, rootless) {
            // A directory the mapped root cannot even search (root's 0700 home under `sudo`) is
            // out of its reach as it is: a layer over it would show nothing it could use.
            overlay_dirs.retain(|d| crate::sandbox::userns::searchable(d, ns.owner));
        }
        sweep_if_due();
        let background = options.background() && crate::background::enabled();
        let cgroup = if options.isolation().contains(Isolation::CGROUPS) {
            // With PROCESS_CONTROL the container has its own PID namespace (see `spawn`).
            let pid_ns = options.isolation().contains(Isolation::PROCESS_CONTROL);
            let h = Hierarchy::detect()?;
            Some(if background {
                h.take_made(options.limits(), pid_ns)?
            } else {
                h.create_for(options.limits(), pid_ns)?
            })
        } else {
            None
        };
        let cgroup_kill = cgroup.as_ref().and_then(|cg| match cg.paths().as_slice() {
            [one] => Some(one.join("cgroup.kill")).filter(|p| p.exists()),
            _ => None,
        });
        let confine = (!options.privileged()).then_some(options.capabilities());
        // Without a network: one that may go back; with a veth: a fresh one, used up.
        let pooled_netns = options.reuse_netns()
            && !rootless
            && match network {
                None => crate::net::pool::eligible(
                    confine,
                    userns.is_some(),
                    options.isolation().contains(Isolation::PROCESS_CONTROL),
                ),
                Some(_) => crate::net::pool::eligible_with_veth(userns.is_some()),
            };
        // With the background thread, a container with a veth takes the pair made ahead for it
        // (in a new namespace) and has the next one made.
        let ready_veth = if pooled_netns && network.is_some() && background {
            let ready = crate::net::pool::take_ready_veth();
            crate::background::ahead(crate::net::pool::top_up_ready_veth);
            ready
        } else {
            None
        };
        // One namer for every container of the process: the id is also the veth's `{id}`. Only
        // a veth's name is checked against the host's links.
        let name = match (&network, &ready_veth) {
            (Some(_), Some(ready)) => ready.pair.name().clone(),
            (Some(_), None) => VethName::next(),
            (None, _) => VethName::next_id(),
        };
        let id = name.id().to_owned();
        let hostname = options.hostname().map_or_else(|| format!("cvtest-{id}"), str::to_owned);
        Ok(Container {
            veth_name: network.map(|_| name),
            lease,
            id,
            isolation: options.isolation(),
            confine,
            hostname,
            rootfs,
            overlay_dirs,
            overlay_refused: None,
            network,
            host_access: options.host_access(),
            cgroup,
            background,
            userns,
            rootless,
            pooled_netns,
            ready_veth,
            running: None,
            outcome: None,
            shared: Arc::new(Shared { cgroup_kill, ..Shared::default() }),
            lab_port: None,
            netns_changed: false,
            keep_namespaces: false,
            cpus: options.cpu_affinity().cloned(),
            paused: None,
        })
    }

    /// A short unique id (`[0-9a-z]{1,11}`), also the veth's `{id}`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Why the kernel refused the throw-away layer of [`Options::overlay_dirs`] at the last
    /// spawn (those directories were then read-only, as the rest of the host's root); `None`
    /// when it was made, or none was asked for.
    pub fn overlay_refused(&self) -> Option<io::Error> {
        self.overlay_refused.map(|e| io::Error::from_raw_os_error(e as i32))
    }

    /// The container's cgroup directories (one on v2, one per controller on v1); empty without
    /// cgroups or after destroy.
    pub fn cgroup_paths(&self) -> Vec<PathBuf> {
        self.cgroup.as_ref().map(|c| c.paths()).unwrap_or_default()
    }

    /// When the command was started (the instant `Outcome::duration` counts from); `None`
    /// before spawn.
    pub fn started_at(&self) -> Option<Instant> {
        self.running.as_ref().map(|r| r.started)
    }

    /// Open counters of the container's current memory, pids and CPU time, for a sampler on
    /// another thread ([`crate::UsageProbe::read`]); `None` without a cgroup. Once the container
    /// is destroyed its reads fail.
    pub fn usage_probe(&self) -> Result<Option<crate::UsageProbe>, crate::CgroupError> {
        self.cgroup.as_ref().map(|c| c.usage_probe()).transpose()
    }

    /// The container's network: the one asked for, or the subnet `network = "auto"` got.
    pub fn network(&self) -> Option<NetworkSpec> {
        self.network
    }

    /// The host end of the container's veth, when it has a network.
    pub fn veth_host_name(&self) -> Option<&str> {
        self.veth_name.as_ref().map(VethName::host)
    }

    /// Who the container's root is on the host, when it has a user namespace: the caller
    /// (rootless), or the mapped owner (as root, see [`Options::map_root_to`]). `None`: real
    /// root.
    pub fn mapped_owner(&self) -> Option<crate::MappedOwner> {
        self.userns.map(|u| u.owner)
    }

    /// Whether the container is rootless (its user namespace owned by an unprivileged caller;
    /// a veth's host end in the run's network namespace).
    pub fn is_rootless(&self) -> bool {
        self.rootless
    }

    /// Makes this container a lab node: at spawn, before its command starts, its network
    /// namespace is linked to the lab's switch.
    pub(crate) fn set_lab_port(&mut self, port: crate::net::LabPort) {
        self.lab_port = Some(port);
    }

    /// Makes [`Container::spawn`] open the init's user and network namespaces while it may (a
    /// rootless caller may not once the init runs its command: it is no longer dumpable), for
    /// [`Container::namespaces`]. A rootless lab's maker needs them ([`crate::lab`]).
    pub fn keep_namespaces(&mut self) {
        self.keep_namespaces = true;
    }

    /// Copies of the init's user namespace (`None` without one of its own) and network
    /// namespace, once spawned with [`Container::keep_namespaces`].
    pub fn namespaces(&self) -> Option<(Option<OwnedFd>, OwnedFd)> {
        let (user, net) = self.running.as_ref()?.namespaces.as_ref()?;
        let user = match user {
            Some(fd) => Some(fd.try_clone().ok()?),
            None => None,
        };
        Some((user, net.try_clone().ok()?))
    }

    /// A new fd to the pooled network namespace the init joined (the container's network
    /// namespace), if it joined one: what its lab maker needs, without opening
    /// `/proc/<init>/ns/net`.
    pub(crate) fn pooled_netns(&self) -> Option<OwnedFd> {
        self.running.as_ref()?.pooled.as_ref()?.fd().try_clone_to_owned().ok()
    }

    /// The host pid of the container's init, once spawned.
    pub fn init_pid(&self) -> Option<i32> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// Starts `command` as the container's main process (PID 2 under the container's PID 1).
    /// One per container.
    pub fn spawn(&mut self, command: &Command) -> Result<(), SpawnError> {
        self.spawn_with(command, None)
    }

    /// Like [`Container::spawn`], but the container's init is cloned by `zygote`, which saves a
    /// multi-threaded caller the cost of copying its own address space (see [`crate::zygote`]).
    /// The init is this process's child all the same. If the zygote cannot do it (it is gone,
    /// or goes during the call), the init is cloned directly, [`Zygote::lost`] says why, and
    /// later calls with it clone directly too: the spawn never fails because of the zygote.
    pub fn spawn_via(&mut self, zygote: &mut Zygote, command: &Command) -> Result<(), SpawnError> {
        self.spawn_with(command, Some(zygote))
    }

    /// Like [`Container::spawn_via`], up to the moment the command would start: the init is
    /// cloned, in its cgroup, on its network, and sets itself up (mounts, capabilities) while
    /// the caller does something else; [`Container::resume`] then starts the command, and the
    /// container's clock (its [`Outcome::duration`]) with it. A runner prepares a test's
    /// container this way while the previous test runs. Destroyed (or dropped) paused, the init
    /// is killed and nothing of it is left. A setup that fails is reported by `resume`.
    pub fn spawn_paused_via(&mut self, zygote: &mut Zygote, command: &Command) -> Result<(), SpawnError> {
        self.spawn_inner(command, Some(zygote), true)
    }

    /// Changes the CPU affinity the container's init gets at its next spawn
    /// ([`Options::set_cpu_affinity`]): after a spawn failed with [`SpawnError::Affinity`], a
    /// caller to whom the placement was only a preference spawns again without it.
    pub fn set_cpu_affinity(&mut self, cpus: Option<cvtest_spec::CpuList>) {
        self.cpus = cpus;
    }

    /// A handle that gives the container's threads more CPUs while it runs, from any thread
    /// ([`crate::AffinityHandle::widen`]); `None` unless it is placed on some CPUs
    /// ([`Options::set_cpu_affinity`]) and has a cgroup to list its threads.
    pub fn affinity_handle(&self) -> Option<crate::AffinityHandle> {
        let placed = self.cpus.clone()?;
        let (dir, list) = self.cgroup.as_ref()?.thread_list()?;
        Some(crate::AffinityHandle::new(dir, list, placed))
    }

    /// Starts the command of a container spawned with [`Container::spawn_paused_via`].
    pub fn resume(&mut self) -> Result<(), SpawnError> {
        let run = self.paused.take().ok_or(SpawnError::NotPaused)?;
        self.go(run, true)
    }

    fn spawn_with(&mut self, command: &Command, zygote: Option<&mut Zygote>) -> Result<(), SpawnError> {
        self.spawn_inner(command, zygote, false)
    }

    fn spawn_inner(
        &mut self,
        command: &Command,
        zygote: Option<&mut Zygote>,
        pause: bool,
    ) -> Result<(), SpawnError> {
        if self.running.is_some() || self.outcome.is_some() || self.paused.is_some() {
            return Err(SpawnError::AlreadySpawned);
        }
        let with_net_env;
        let command = match &self.network {
            Some(net) => {
                let mut c = command.clone();
                c.env(crate::ENV_NET_ADDRESS, net.container().to_string())
                    .env(crate::ENV_NET_HOST, net.host().to_string())
                    .env(crate::ENV_NET_PREFIX, net.prefix_len().to_string());
                with_net_env = c;
                &with_net_env
            }
            None => command,
        };
        // A pool that cannot make a namespace leaves the init to make its own, as without it.
        let (pooled, ready_pair) = match (self.ready_veth.take(), self.pooled_netns, &self.network) {
            (Some(ready), _, _) => (Some(ready.netns), Some(ready.pair)),
            (None, false, _) => (None, None),
            (None, true, None) => (crate::net::pool::take().ok(), None),
            (None, true, Some(_)) => (crate::net::pool::take_fresh().ok(), None),
        };
        // Taken by the spawn that configures it; dropped unused (a failed spawn), it is deleted.
        let ready_pair = std::cell::Cell::new(ready_pair);
        if pooled.is_some() && self.background {
            // The next take finds one made, whoever takes it.
            crate::background::ahead(crate::net::pool::top_up);
        }
        let request = spawn::Request {
            command,
            id: &self.id,
            hostname: &self.hostname,
            rootfs: &self.rootfs,
            overlay_dirs: &self.overlay_dirs,
            isolation: self.isolation,
            confine: self.confine,
            cgroup: self.cgroup.as_deref(),
            network: self.network.as_ref().zip(self.veth_name.as_ref()),
            host_access: self.host_access,
            userns: self.userns,
            rootless: self.rootless,
            join_netns: pooled.as_ref().map(|ns| ns.fd()),
            ready_pair: &ready_pair,
            lab_port: self.lab_port.as_ref(),
            keep_namespaces: self.keep_namespaces,
            hold_mount_ns: self.background,
            cpus: self.cpus.as_ref(),
        };
        let paused = match spawn::spawn_paused(&request, zygote) {
            Ok(p) => p,
            Err(e) => {
                if let Some(ns) = pooled {
                    crate::net::pool::discard(ns);
                }
                return Err(e);
            }
        };
        let limit = |s: Stdio| match s {
            Stdio::Capture { limit } => limit,
            Stdio::Inherit | Stdio::Null => 0,
        };
        let run =
            PausedRun { paused, pooled, limits: (limit(command.get_stdout()), limit(command.get_stderr())) };
        if pause {
            self.paused = Some(run);
            return Ok(());
        }
        self.go(run, false)
    }

    /// Starts the command of a paused spawn and makes the container running.
    fn go(&mut self, run: PausedRun, restart_clock: bool) -> Result<(), SpawnError> {
        let PausedRun { paused, pooled, limits } = run;
        let Spawned {
            pid,
            pidfd,
            life,
            status,
            stdout,
            stderr,
            netns,
            veth,
            namespaces,
            mount_ns,
            main_pid,
            started,
            overlay_refused,
        } = match paused.go(self.cgroup.as_deref(), restart_clock) {
            Ok(s) => s,
            Err(e) => {
                if let Some(ns) = pooled {
                    crate::net::pool::discard(ns);
                }
                return Err(e);
            }
        };
        if !self.isolation.contains(Isolation::PROCESS_CONTROL) {
            if let Some(fd) = main_pidfd(main_pid, pid) {
                let _ = self.shared.main.set((fd, main_pid));
            }
        }
        let _ = self.shared.pidfd.set(pidfd);
        self.overlay_refused = overlay_refused;
        self.running = Some(Running {
            pid,
            life,
            status,
            stdout: stdout.map(|fd| (fd, limits.0)),
            stderr: stderr.map(|fd| (fd, limits.1)),
            netns,
            namespaces,
            mount_ns,
            pooled,
            veth,
            started,
            reaped: false,
        });
        Ok(())
    }

    /// Waits for the main process to end (or `timeout` to pass, which kills the whole
    /// container), then reads the peaks. Calling it again returns the same outcome.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Outcome, WaitError> {
        if let Some(outcome) = &self.outcome {
            return Ok(outcome.clone());
        }
        let run = self.running.as_mut().ok_or(WaitError::NotSpawned)?;
        let pidfd = self.shared.pidfd.get().ok_or(WaitError::NotSpawned)?;
        let mut watch = Watch::new(run, self.cgroup.as_deref(), timeout);
        let (init_status, init_usage) = watch.until_init_exits(pidfd, &self.shared)?;
        let ended = watch.finish();
        run.reaped = true;
        let (peaks, pids_limit_hit) =
            read_peaks(self.cgroup.as_deref(), run.veth.as_ref(), &ended.sampled, &init_usage)?;
        let oom = peaks.oom_kills.is_some_and(|n| n > 0);
        let termination = if ended.timed_out {
            Termination::TimedOut
        } else {
            classify(ended.main_status, init_status, oom, self.shared.killed.load(Ordering::Relaxed))
        };
        let outcome = Outcome {
            termination,
            pids_limit_hit,
            peaks,
            limits_enforced: self.cgroup.is_some(),
            duration: ended.end.saturating_duration_since(run.started),
            stdout: ended.stdout.unwrap_or_default(),
            stderr: ended.stderr.unwrap_or_default(),
            leftover: ended.leftover,
        };
        self.outcome = Some(outcome.clone());
        Ok(outcome)
    }

    /// Says that the container's network namespace was changed from outside (e.g. a lab's
    /// link was added to it): if it came from the pool, it is discarded, never reused.
    pub fn mark_netns_changed(&mut self) {
        self.netns_changed = true;
    }

    pub fn kill_handle(&self) -> KillHandle {
        KillHandle(Arc::clone(&self.shared))
    }

    /// Kills everything left, removes the cgroup, releases the network namespace. Also on Drop.
    pub fn destroy(mut self) -> Result<(), DestroyError> {
        self.teardown()
    }

    /// Ordered and idempotent: kill the init (and with it the PID namespace) and reap it; kill
    /// whatever is left in the cgroup, wait until it is empty, remove it; let the network
    /// namespace go (the kernel then deletes the veth); close the pipes.
    fn teardown(&mut self) -> Result<(), DestroyError> {
        let mut first: Option<DestroyError> = None;
        // Paused: its guard kills and reaps the init (and its veth goes); the namespace it
        // joined is not given back.
        if let Some(PausedRun { paused, pooled, .. }) = self.paused.take() {
            drop(paused);
            if let Some(ns) = pooled {
                crate::net::pool::discard(ns);
            }
        }
        if let Some(run) = self.running.as_mut() {
            if !run.reaped {
                self.shared.kill_tree();
                match self.shared.pidfd.get().map(|fd| reap_within(fd, KILL_TIMEOUT)) {
                    Some(false) => {
                        first.get_or_insert(DestroyError::InitStuck { pid: run.pid });
                    }
                    Some(true) | None => run.reaped = true,
                }
            }
        }
        // Nothing runs in the mount namespace any more: its mounts go with the last reference,
        // on the background thread, before the cgroup's removal (their tmpfs pages are charged
        // to it).
        if let Some(ns) = self.running.as_mut().filter(|r| r.reaped).and_then(|r| r.mount_ns.take()) {
            crate::background::defer(move || drop(ns));
        }
        let mut cgroup_failed = false;
        if self.background {
            if let (Some(cgroup), Some(h)) = (self.cgroup.take(), Hierarchy::detected()) {
                let pid_ns = self.isolation.contains(Isolation::PROCESS_CONTROL);
                // A confined container's processes could not write to its cgroup's files (no
                // CAP_SYS_ADMIN to mount cgroupfs, no write access to the host's).
                let recycle =
                    self.confine.is_some_and(|caps| cvtest_spec::Capabilities::DEFAULT.contains(caps));
                if let Err(e) = h.retire(cgroup, pid_ns, recycle) {
                    cgroup_failed = true;
                    first.get_or_insert(e.into());
                }
            }
        } else if let Some(cgroup) = self.cgroup.as_mut() {
            match cgroup.destroy() {
                Ok(()) => self.cgroup = None,
                Err(e) => {
                    first.get_or_insert(e.into());
                }
            }
        }
        if let Some(run) = self.running.take_if(|r| r.reaped) {
            let Running { life, status, stdout, stderr, netns, pooled, veth, .. } = run;
            if let Some(veth) = veth {
                crate::net::release_veth(veth);
            }
            drop((netns, life, status, stdout, stderr));
            // The init is reaped, so its PID namespace is empty: nothing of the container runs
            // in the namespace any more. Back to the pool if it is as fresh; with a cgroup that
            // could not be removed, something odd happened: never reused.
            if let Some(ns) = pooled {
                if self.network.is_some() {
                    crate::net::pool::used_up(ns);
                } else if self.cgroup.is_none() && !cgroup_failed && !self.netns_changed {
                    if self.background {
                        crate::background::defer(move || crate::net::pool::give_back(ns));
                    } else {
                        crate::net::pool::give_back(ns);
                    }
                } else {
                    crate::net::pool::discard(ns);
                }
            }
        }
        if self.running.is_none() {
            // The kernel removes the veth after the network namespace goes, asynchronously. The
            // lease goes now: the next container on this subnet, in this process or another,
            // meets the route of a cvtest veth under its own lease and waits it out
            // (`check_routes`), so no destroy waits for its own link.
            self.lease = None;
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

impl KillHandle {
    /// Kills every process of the container now; `wait` then reports how it ended.
    pub fn kill(&self) {
        self.0.killed.store(true, Ordering::Relaxed);
        self.0.kill_tree();
    }
}

/// The state of [`Container::wait`]'s poll loop: the status pipe, the captured output, the
/// usage sampled where the kernel keeps no peaks, and the deadline.
struct Watch<'a> {
    status: &'a OwnedFd,
    /// A pipe at EOF leaves the poll set: it would report POLLHUP on every poll, and the init
    /// closes its ends before it tears its namespaces down.
    status_open: bool,
    stdout: Option<Output<'a>>,
    stderr: Option<Output<'a>>,
    /// The main process's wait status, when it ended, whether the init was alone then.
    main_ended: Option<(i32, Instant, bool)>,
    sampler: Option<&'a dyn Cgroup>,
    sampled: Sample,
    last_sample: Instant,
    deadline: Option<Instant>,
    timed_out: bool,
    /// Output that trickles in (a line at a time) is left to gather in its pipes until then:
    /// see [`OUTPUT_GATHER`].
    outputs_wait_until: Option<Instant>,
    /// The container's cgroup, the init's host pid and the life pipe: when the main process
    /// ends, what is left in the cgroup is listed, then the init is let go (see [`leftovers`]).
    cgroup: Option<&'a dyn Cgroup>,
    init_pid: i32,
    life: &'a OwnedFd,
    leftover: Vec<Leftover>,
}

/// A captured output pipe.
struct Output<'a> {
    fd: &'a OwnedFd,
    capture: Capture,
    open: bool,
}

impl<'a> Output<'a> {
    fn new((fd, limit): &'a (OwnedFd, usize)) -> Output<'a> {
        Output { fd, capture: Capture::new(*limit), open: true }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.open {
            let _ = drain(self.fd, &mut self.capture);
        }
        self.capture.finish()
    }
}

/// What the poll loop saw, once the init is gone.
struct Ended {
    main_status: Option<i32>,
    /// When the main process ended (as the parent learnt it), else when the init did.
    end: Instant,
    stdout: Option<Vec<u8>>,
    stderr: Option<Vec<u8>>,
    sampled: Sample,
    timed_out: bool,
    leftover: Vec<Leftover>,
}

impl<'a> Watch<'a> {
    fn new(run: &'a Running, cgroup: Option<&'a dyn Cgroup>, timeout: Option<Duration>) -> Watch<'a> {
        let sampler = cgroup.filter(|cg| {
            let support = cg.has_peak_counters();
            !support.memory || !support.pids
        });
        Watch {
            status: &run.status,
            status_open: true,
            stdout: run.stdout.as_ref().map(Output::new),
            stderr: run.stderr.as_ref().map(Output::new),
            main_ended: None,
            sampler,
            sampled: Sample::default(),
            last_sample: Instant::now(),
            deadline: timeout.map(|t| Instant::now() + t),
            timed_out: false,
            outputs_wait_until: None,
            cgroup,
            init_pid: run.pid,
            life: &run.life,
            leftover: Vec::new(),
        }
    }

    /// Polls until the init exits, reaps it and returns its status and resource usage. Kills the
    /// container at the deadline (unless the main process already ended).
    fn until_init_exits(&mut self, pidfd: &OwnedFd, shared: &Shared) -> Result<(i32, sys::Usage), WaitError> {
        loop {
            // One reading of the clock for both: leaving the outputs out of the poll set with no
            // timeout to bring them back would wait for the init while it waits for a pipe.
            let now = Instant::now();
            let mut fds = self.poll_set(pidfd, now);
            match sys::poll(&mut fds, self.poll_timeout_ms(now)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(WaitError::Wait(e.into())),
            }
            self.read_ready(&fds);
            self.sample_if_due();
            if fds[0].revents != 0 {
                if let Some(reaped) =
                    sys::waitid_pidfd_usage(pidfd.as_fd(), true).map_err(|e| WaitError::Wait(e.into()))?
                {
                    return Ok(reaped);
                }
            }
            if !self.timed_out
                && self.main_ended.is_none()
                && self.deadline.is_some_and(|d| Instant::now() >= d)
            {
                shared.kill_tree();
                self.timed_out = true;
            }
        }
    }

    /// The init's pidfd, the status pipe and the output pipes still open (unless their output
    /// is left to gather for now).
    fn poll_set(&self, pidfd: &OwnedFd, now: Instant) -> [libc::pollfd; 4] {
        let mut fds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; 4];
        fds[0].fd = pidfd.as_raw_fd();
        if self.status_open {
            fds[1].fd = self.status.as_raw_fd();
        }
        if self.outputs_waiting(now).is_some() {
            return fds;
        }
        for (slot, out) in fds[2..].iter_mut().zip([&self.stdout, &self.stderr]) {
            if let Some(Output { fd, open: true, .. }) = out {
                slot.fd = fd.as_raw_fd();
            }
        }
        fds
    }

    /// Until the deadline, the next sample or the end of the outputs' wait, whichever is first;
    /// -1 (no timeout) for none.
    fn poll_timeout_ms(&self, now: Instant) -> i32 {
        let mut wake = self.deadline.filter(|_| !self.timed_out).map(|d| d.saturating_duration_since(now));
        if self.sampler.is_some() {
            wake = Some(wake.map_or(SAMPLE_INTERVAL, |w| w.min(SAMPLE_INTERVAL)));
        }
        if let Some(left) = self.outputs_waiting(now) {
            wake = Some(wake.map_or(left, |w| w.min(left)));
        }
        wake.map_or(-1, |w| w.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32)
    }

    /// How much longer the outputs are left to gather at `now`, if they are.
    fn outputs_waiting(&self, now: Instant) -> Option<Duration> {
        self.outputs_wait_until.filter(|until| now < *until).map(|until| until - now)
    }

    fn read_ready(&mut self, fds: &[libc::pollfd; 4]) {
        if fds[1].revents != 0 {
            let ended_before = self.main_ended.is_some();
            self.status_open = read_status(self.status, &mut self.main_ended);
            if let (false, Some((_, _, false))) = (ended_before, self.main_ended) {
                // Something is left: the init waits for this byte before it ends the container
                // (and with it what is left), so list first. Alone, it ended at once.
                self.leftover = leftovers(self.cgroup, self.init_pid);
                let _ = sys::write(self.life.as_raw_fd(), b"a");
            }
        }
        let mut read = 0;
        for (pfd, out) in fds[2..].iter().zip([&mut self.stdout, &mut self.stderr]) {
            if let (true, Some(out)) = (pfd.revents != 0, out) {
                let (open, n) = drain(out.fd, &mut out.capture);
                out.open = open;
                read += n;
            }
        }
        // A trickle (say a line at a time): let the next lines gather in the pipes instead of
        // being woken for each (a pipe wakes a reader that polls it at every write). Plenty
        // arriving at once is read as fast as it comes.
        self.outputs_wait_until =
            (read > 0 && read < OUTPUT_GATHER_BELOW).then(|| Instant::now() + OUTPUT_GATHER);
    }

    fn sample_if_due(&mut self) {
        if let Some(cg) = self.sampler {
            if self.last_sample.elapsed() >= SAMPLE_INTERVAL {
                sample_into(cg, &mut self.sampled);
                self.last_sample = Instant::now();
            }
        }
    }

    /// The init is gone, and with it every process of the PID namespace: collect the rest.
    fn finish(mut self) -> Ended {
        if self.status_open {
            read_status(self.status, &mut self.main_ended);
        }
        Ended {
            main_status: self.main_ended.map(|(status, _, _)| status),
            end: self.main_ended.map_or_else(Instant::now, |(_, at, _)| at),
            stdout: self.stdout.map(Output::finish),
            stderr: self.stderr.map(Output::finish),
            sampled: self.sampled,
            timed_out: self.timed_out,
            leftover: self.leftover,
        }
    }
}

/// The peaks (the kernel's, else the sampled ones) and whether the pids limit was hit; read
/// before anything is torn down.
fn read_peaks(
    cgroup: Option<&dyn Cgroup>,
    veth: Option<&crate::net::Veth>,
    sampled: &Sample,
    init_usage: &sys::Usage,
) -> Result<(Peaks, bool), WaitError> {
    let mut peaks = Peaks { max_rss_bytes: Some(init_usage.max_rss_bytes), ..Peaks::default() };
    let mut pids_limit_hit = false;
    if cgroup.is_none() {
        // No cgroup, no limits: what rusage tells is all there is.
        peaks.cpu_user = Some(init_usage.user);
        peaks.cpu_system = Some(init_usage.system);
    }
    if let Some(cg) = cgroup {
        let stats = cg.stats()?;
        let sampled_value = |v: Option<u64>| v.map(|value| Measured { value, sampled: true });
        peaks.memory_bytes = stats.memory_peak.or(sampled_value(sampled.memory_bytes));
        peaks.pids = stats.pids_peak.or(sampled_value(sampled.pids));
        peaks.cpu_user = stats.cpu_user;
        peaks.cpu_system = stats.cpu_system;
        peaks.oom_kills = stats.oom_kills;
        pids_limit_hit = stats.pids_max_events.is_some_and(|n| n > 0);
    }
    if let Some(veth) = veth {
        peaks.net = Some(veth.stats()?);
    }
    Ok((peaks, pids_limit_hit))
}

/// How the main process ended, from its status (reported by the init) or, when the init died
/// before it could report, from the init's own status.
fn classify(main_status: Option<i32>, init_status: i32, oom: bool, killed: bool) -> Termination {
    match main_status {
        Some(s) if libc::WIFEXITED(s) => Termination::Exited(libc::WEXITSTATUS(s)),
        Some(s) if libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGKILL && oom && !killed => {
            Termination::OomKilled
        }
        Some(s) if libc::WIFSIGNALED(s) => Termination::Signaled(libc::WTERMSIG(s)),
        Some(_) => Termination::Signaled(libc::SIGKILL),
        None if killed => Termination::Signaled(libc::SIGKILL),
        None if oom => Termination::OomKilled,
        None if libc::WIFSIGNALED(init_status) => Termination::Signaled(libc::WTERMSIG(init_status)),
        None => Termination::Signaled(libc::SIGKILL),
    }
}

/// Reads every message waiting on the (non-blocking) status pipe; `false` at EOF.
/// `ended` gets the main process's end: its wait status, when, and whether the init was alone.
fn read_status(fd: &OwnedFd, ended: &mut Option<(i32, Instant, bool)>) -> bool {
    let mut buf = [0u8; MESSAGE_SIZE];
    loop {
        match sys::read(fd.as_raw_fd(), &mut buf) {
            Ok(MESSAGE_SIZE) => {
                if let Some(Message::Exited { status, alone }) = Message::decode(&buf) {
                    ended.get_or_insert((status, Instant::now(), alone));
                }
            }
            Ok(0) => return false,
            Err(Errno::EINTR) => {}
            // EAGAIN: nothing more for now. A short read cannot happen (one write per message).
            Ok(_) | Err(_) => return true,
        }
    }
}

/// The processes in the container's cgroup other than its init, with their pid in the
/// container's PID namespace and their name; empty when the cgroup cannot be read.
fn leftovers(cgroup: Option<&dyn Cgroup>, init: i32) -> Vec<Leftover> {
    let Some(dir) = cgroup.and_then(|cg| cg.paths().into_iter().next()) else { return Vec::new() };
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    let mut found: Vec<Leftover> = procs
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|&pid| pid != init)
        .filter_map(|host_pid| {
            let proc_dir = Path::new("/proc").join(host_pid.to_string());
            let name = std::fs::read_to_string(proc_dir.join("comm")).ok()?.trim_end().to_owned();
            let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
            // `NSpid:\t<host>\t...\t<innermost>`: the last is the pid the container sees.
            let pid = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last()?.parse().ok())
                .unwrap_or(host_pid);
            Some(Leftover { pid, host_pid, name })
        })
        .collect();
    found.sort_by_key(|l| l.pid);
    found
}

/// Reads what a (non-blocking) output pipe has; `false` at EOF.
/// How long output that trickles in is left to gather in its pipes before it is read: the
/// reader is then woken once per this period instead of once per write (a test that logs a
/// line at a time writes millions). The pipes hold 64 KiB each, and the writer only blocks on a
/// full one; the end of the main process is seen at once all the same (the status pipe and the
/// pidfd are always polled).
const OUTPUT_GATHER: Duration = Duration::from_millis(1);
/// A read of less than this is a trickle.
const OUTPUT_GATHER_BELOW: usize = 16 * 1024;

/// Reads what `fd` has into `cap`: whether it is still open, and how much was read.
fn drain(fd: &OwnedFd, cap: &mut Capture) -> (bool, usize) {
    // One buffer per thread, zeroed once (not at every call: this runs at every wake-up).
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|buf| {
        if buf.len() < 64 * 1024 {
            buf.resize(64 * 1024, 0);
        }
        let mut read = 0;
        loop {
            match sys::read(fd.as_raw_fd(), buf) {
                Ok(0) => return (false, read),
                Ok(n) => {
                    cap.push(&buf[..n]);
                    read += n;
                }
                Err(Errno::EINTR) => {}
                Err(_) => return (true, read),
            }
        }
    })
}

fn sample_into(cg: &dyn Cgroup, max: &mut Sample) {
    if let Ok(s) = cg.sample() {
        max.memory_bytes = max.memory_bytes.max(s.memory_bytes);
        max.pids = max.pids.max(s.pids);
    }
}

/// Waits up to `timeout` for the process of `pidfd` to exit and reaps it; `false` if it did not.
fn reap_within(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match sys::waitid_pidfd(pidfd.as_fd(), true) {
            Ok(Some(_)) | Err(Errno::ECHILD) => return true,
            Ok(None) | Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        let _ = sys::poll(&mut fds, left.as_millis().clamp(1, i32::MAX as u128) as i32);
    }
}

/// Overlay directories made absolute and canonical, each an existing directory other than `/`.
fn validate_overlay_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, CreateError> {
    dirs.iter()
        .map(|dir| canonical_dir(dir).map_err(|source| CreateError::Overlay { path: dir.clone(), source }))
        .collect()
}

/// `dir` absolute and canonical, if it is an existing directory other than `/` whose path a C
/// string can hold.
fn canonical_dir(dir: &Path) -> io::Result<PathBuf> {
    let canon = dir.canonicalize()?;
    if !canon.is_dir() || canon == Path::new("/") {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory other than /"));
    }
    crate::sandbox::mounts::check_path(&canon)?;
    Ok(canon)
}

/// Writable directories made absolute and canonical; an explicit root checked.
fn validate_rootfs(rootfs: &Rootfs) -> Result<Rootfs, CreateError> {
    match rootfs {
        Rootfs::Host { writable } => {
            let writable = writable
                .iter()
                .map(|dir| {
                    canonical_dir(dir).map_err(|source| CreateError::Writable { path: dir.clone(), source })
                })
                .collect::<Result<_, _>>()?;
            Ok(Rootfs::Host { writable })
        }
        Rootfs::Dir(root) => {
            let err = |source| CreateError::Rootfs { path: root.clone(), source };
            let canon = root.canonicalize().map_err(err)?;
            if !canon.is_dir() {
                return Err(err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory")));
            }
            crate::sandbox::mounts::check_path(&canon).map_err(err)?;
            Ok(Rootfs::Dir(canon))
        }
    }
}

/// How long `create` waits for the kernel to remove a veth this process released when it
/// still holds the subnet the new container wants.
const RELEASED_VETH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `interface` is the host end of a cvtest veth (its alias says so), e.g. one whose
/// holder died (the kernel released its lease before it removed the veth) or one of a cvtest
/// that predates leases.
///
/// A link whose alias cannot be read is being unregistered (its sysfs entry goes first, or
/// answers an error for a device that is not alive): seen in the v2 VM for a veth of a process
/// that had just exited. Counted as going; a foreign route stays a clash once the wait is over.
fn is_cvtest_link(interface: &str) -> bool {
    !interface.contains('/')
        && std::fs::read_to_string(Path::new("/sys/class/net").join(interface).join("ifalias"))
            .map_or(true, |alias| alias.starts_with(crate::net::ALIAS_PREFIX))
}

/// The route check, under the subnet's lease. A clash with a cvtest veth (released by this
/// process, or of a holder that died and whose lease the kernel dropped) is not refused but
/// waited out: the kernel deletes that pair with its network namespace, asynchronously (tens
/// of ms; up to a second under load), and a new pair on the same subnet must not share the host
/// with its routes. Only this case waits; a foreign route is the error it is.
fn check_routes(net: &NetworkSpec) -> Result<(), CreateError> {
    let deadline = Instant::now() + RELEASED_VETH_TIMEOUT;
    loop {
        match crate::net::check_host_routes(net) {
            // No name: the link went between the route dump and the name lookup, it is being
            // deleted (its routes go with it). A cvtest veth (released by this process, or of a
            // holder that died, whose lease the kernel dropped at once) is being deleted too.
            Err(crate::net::NetError::RouteClash { ifindex: Some(_), interface, ours, .. })
                if Instant::now() < deadline
                    && (ours || interface.as_deref().map_or(true, is_cvtest_link)) =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => {
                crate::net::forget_removed_veths();
                return other.map_err(CreateError::from);
            }
        }
    }
}

/// Sweeps stale cgroups and veths of dead runners, at the first create of this process and
/// then at most every [`SWEEP_INTERVAL`]. Best effort: what cannot be swept now is tried again
/// later, and never stops a new container.
fn sweep_if_due() {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < SWEEP_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
    }
    let _ = crate::sweep::sweep_stale_cgroups_now();
    let _ = crate::net::sweep_stale_links(crate::owner::may_be_alive);
    crate::lease::sweep_stale_records();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_cross_threads() {
        fn send<T: Send>() {}
        fn send_sync_clone<T: Send + Sync + Clone>() {}
        send::<Container>();
        send_sync_clone::<KillHandle>();
    }

    #[test]
    fn classification() {
        let exited = |c: i32| c << 8;
        let killed = libc::SIGKILL;
        assert_eq!(classify(Some(exited(0)), 0, false, false), Termination::Exited(0));
        assert_eq!(classify(Some(exited(3)), 0, true, false), Termination::Exited(3));
        assert_eq!(classify(Some(killed), 0, true, false), Termination::OomKilled);
        assert_eq!(classify(Some(killed), 0, false, false), Termination::Signaled(9));
        assert_eq!(classify(Some(killed), 0, true, true), Termination::Signaled(9));
        assert_eq!(classify(Some(libc::SIGSEGV), 0, true, false), Termination::Signaled(libc::SIGSEGV));
        assert_eq!(classify(None, killed, false, true), Termination::Signaled(9));
        assert_eq!(classify(None, killed, true, false), Termination::OomKilled);
    }
}
