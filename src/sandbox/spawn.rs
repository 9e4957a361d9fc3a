//! Cloning the init process, in the parent.
//!
//! Everything the child needs is prepared here first (the program resolved to a path, C strings
//! for argv and envp, the mount plan, pipes), because the child may not allocate. Then:
//! `clone3` into new namespaces (into the cgroup with `CLONE_INTO_CGROUP` where the kernel can),
//! while the init sets itself up the parent moves it into its cgroup (v1, or v2 without
//! `CLONE_INTO_CGROUP`) and creates the veth with its peer directly in the init's network
//! namespace; then it writes the go byte on the life pipe and reads the init's first message:
//! `Started` (the command is exec'd) or `Failed` (stage + errno, turned into a [`SpawnError`]).
//! Any error after the clone kills and reaps the init before returning.
//!
//! With a [`Zygote`], the zygote does the clone (same flags, same plan, plus `CLONE_PARENT`, so
//! the init is still this process's child); when it cannot, the clone is done here instead.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use cvtest_spec::{Capabilities, HostAccess, NetworkSpec};
use nix::fcntl::OFlag;

use super::channel::{Message, Stage, MESSAGE_SIZE};
use super::init::{CapPlan, InitPlan, MainPlan, UserNsPlan};
use super::mounts::{check_path, MountPlan};
use super::userns::UserNs;
use crate::cgroup::{Cgroup, CgroupError};
use crate::command::Command;
use crate::error::SpawnError;
use crate::net::{NetError, Netlink, Veth, VethName};
use crate::options::{Isolation, Rootfs, Stdio};
use crate::sys::{self, CStrArray, CStrArrayBuilder, Errno};
use crate::zygote::{Cloned, Zygote};

/// What to start, and in what.
pub(crate) struct Request<'a> {
    pub(crate) command: &'a Command,
    pub(crate) id: &'a str,
    pub(crate) hostname: &'a str,
    pub(crate) rootfs: &'a Rootfs,
    /// Canonical directories to show through a throw-away layer (`Options::overlay_dirs`).
    pub(crate) overlay_dirs: &'a [PathBuf],
    pub(crate) isolation: Isolation,
    /// The capabilities the main process keeps; `None`: privileged (all, and /proc as is).
    pub(crate) confine: Option<Capabilities>,
    pub(crate) cgroup: Option<&'a dyn Cgroup>,
    pub(crate) network: Option<(&'a NetworkSpec, &'a VethName)>,
    /// With a network: whether the host end lets through only what is addressed to it.
    pub(crate) host_access: HostAccess,
    /// The container's user namespace; `None`: real root (privileged, or no owner found).
    pub(crate) userns: Option<UserNs>,
    /// Rootless: the host end of a veth goes in the run's network namespace, not the host's.
    pub(crate) rootless: bool,
    /// A pooled network namespace for the init to join (`setns`) instead of making one.
    pub(crate) join_netns: Option<std::os::fd::BorrowedFd<'a>>,
    /// With a network: a veth pair made ahead, its peer in `join_netns`, for the spawn that
    /// links the container to take and configure (else it makes one).
    pub(crate) ready_pair: &'a std::cell::Cell<Option<crate::net::ReadyPair>>,
    /// A lab node: its link to the lab's switch, made before the go. With a rootless lab the
    /// init is cloned inside the test's user namespace (see `sandbox::nested`).
    pub(crate) lab_port: Option<&'a crate::net::LabPort>,
    /// Open the init's user and network namespaces before its go (a rootless lab's maker needs
    /// them, and may not open them once the init is not dumpable).
    pub(crate) keep_namespaces: bool,
    /// Open the init's mount namespace and hand it back ([`Spawned::mount_ns`]): while this
    /// process holds it, the init's exit does not tear the container's mounts down (the caller
    /// lets it go later, off its path).
    pub(crate) hold_mount_ns: bool,
    /// The init's CPU affinity, set before the go (the main process inherits it).
    pub(crate) cpus: Option<&'a cvtest_spec::CpuList>,
}

/// A started container: its init, and the parent's ends of everything.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) pid: libc::pid_t,
    pub(crate) pidfd: OwnedFd,
    /// Write end of the life pipe: closing it ends the init.
    pub(crate) life: OwnedFd,
    /// Read end of the status pipe (non-blocking).
    pub(crate) status: OwnedFd,
    /// Read ends of captured stdout / stderr (non-blocking).
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
    /// The init's network namespace, held while a veth lives in it.
    pub(crate) netns: Option<OwnedFd>,
    pub(crate) veth: Option<Veth>,
    /// With [`Request::keep_namespaces`]: the init's user namespace (if it has one of its own)
    /// and network namespace.
    pub(crate) namespaces: Option<(Option<OwnedFd>, OwnedFd)>,
    /// With [`Request::hold_mount_ns`]: the init's mount namespace.
    pub(crate) mount_ns: Option<OwnedFd>,
    /// The main process's pid as the init sees it.
    pub(crate) main_pid: i32,
    pub(crate) started: Instant,
    /// Why the kernel refused the overlay of the request's `overlay_dirs`.
    pub(crate) overlay_refused: Option<Errno>,
}

/// Set once clone3 refused `CLONE_INTO_CGROUP` (kernels before 5.7): move the pid instead.
static NO_CLONE_INTO_CGROUP: AtomicBool = AtomicBool::new(false);

/// Starts `req.command` in a new container, its init cloned by `zygote` when given (and able),
/// up to the go: the init is cloned, in its cgroup, linked to its network and set up (or
/// setting itself up), and waits for [`Paused::go`] to start the command. Dropped instead, the
/// init is killed and reaped, and its veth goes. On error nothing of the process is left.
pub(crate) fn spawn_paused(req: &Request<'_>, mut zygote: Option<&mut Zygote>) -> Result<Paused, SpawnError> {
    loop {
        match spawn_once(req, zygote.as_deref_mut()) {
            Ok(paused) => return Ok(paused),
            Err(Attempt::Failed(e)) => return Err(e),
            // The zygote was lost mid-request; an init it may have cloned holds this attempt's
            // pipes (and exits when they close). Start over with fresh ones, cloning directly.
            Err(Attempt::Restart) => zygote = None,
        }
    }
}

/// A container whose init waits for the go: everything of [`Spawned`], still guarded.
pub(crate) struct Paused {
    pid: libc::pid_t,
    init: InitGuard,
    life: OwnedFd,
    status: OwnedFd,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    netns: Option<OwnedFd>,
    veth: VethGuard,
    namespaces: Option<(Option<OwnedFd>, OwnedFd)>,
    mount_ns: Option<OwnedFd>,
    started: Instant,
    /// What describes a failed setup (the init's copy of the plan is its own: no `CLONE_VM`).
    mounts: MountPlan,
    join: Vec<CString>,
    cwd: PathBuf,
    program: PathBuf,
}

impl std::fmt::Debug for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paused")
            .field("pid", &self.pid)
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl Paused {
    /// Releases the init and reads whether the command started. With `restart_clock` the
    /// container's clock starts now (it waited, paused), else when the spawn began.
    pub(crate) fn go(
        mut self,
        cgroup: Option<&dyn Cgroup>,
        restart_clock: bool,
    ) -> Result<Spawned, SpawnError> {
        release(&self.life)?;
        let started = if restart_clock { Instant::now() } else { self.started };
        match read_message(&self.status).map_err(SpawnError::Channel)? {
            Some(Message::Started { pid: main_pid, overlay_errno }) => {
                nix::fcntl::fcntl(&self.status, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                    .map_err(|e| SpawnError::Channel(e.into()))?;
                Ok(Spawned {
                    pid: self.pid,
                    pidfd: self.init.disarm(),
                    life: self.life,
                    status: self.status,
                    stdout: self.stdout,
                    stderr: self.stderr,
                    netns: self.netns,
                    veth: self.veth.0.take(),
                    namespaces: self.namespaces,
                    mount_ns: self.mount_ns,
                    main_pid,
                    started,
                    overlay_refused: (overlay_errno != 0).then(|| Errno::from_raw(overlay_errno)),
                })
            }
            Some(Message::Failed { stage, step, errno }) => {
                drop(self.init);
                Err(failure(
                    stage,
                    step,
                    Errno::from_raw(errno),
                    &self.mounts,
                    &self.join,
                    &self.program,
                    &self.cwd,
                ))
            }
            Some(Message::Exited { .. } | Message::Netns { .. }) | None => {
                Err(init_died(cgroup, &mut self.init))
            }
        }
    }
}

/// Why one attempt at a spawn did not start the container.
enum Attempt {
    Failed(SpawnError),
    Restart,
}

impl From<SpawnError> for Attempt {
    fn from(e: SpawnError) -> Attempt {
        Attempt::Failed(e)
    }
}

impl From<CgroupError> for Attempt {
    fn from(e: CgroupError) -> Attempt {
        Attempt::Failed(e.into())
    }
}

impl From<NetError> for Attempt {
    fn from(e: NetError) -> Attempt {
        Attempt::Failed(e.into())
    }
}

/// One attempt: prepare everything the init needs, clone it, put it in its cgroup and give it
/// its veth, release it, and read whether its command started.
fn spawn_once(req: &Request<'_>, zygote: Option<&mut Zygote>) -> Result<Paused, Attempt> {
    let prepared = Prepared::new(req)?;
    let pipes = Pipes::new(req.command, req.join_netns.map(|fd| fd.as_raw_fd()))?;
    let plan = prepared.init_plan(req, &pipes);
    let flags = clone_flags(req, &plan);
    let run_netns = plan.run_netns;

    // A container without an affinity of its own, cloned by a placed zygote, gets the zygote's
    // from before it was placed.
    let cpus = req.cpus.cloned().or_else(|| zygote.as_ref().and_then(|z| z.unplaced().cloned()));
    let started = Instant::now();
    let lab_userns = req.lab_port.and_then(|p| p.userns.as_deref());
    let (pid, pidfd, in_cgroup) = match lab_userns {
        // A rootless lab's node: cloned inside the test's user namespace, maps written there.
        Some(userns) => {
            let into = match req.cgroup {
                Some(cg) if !prepared.joins_itself() && !NO_CLONE_INTO_CGROUP.load(Ordering::Relaxed) => {
                    cg.clone_into_fd()
                }
                _ => None,
            };
            let (pid, pidfd, into_cgroup) =
                super::nested::clone_init_in(userns.as_fd(), flags, into, &plan, super::init::run)
                    .map_err(|e| SpawnError::Clone(io::Error::other(e)))?;
            if into.is_some() && !into_cgroup {
                // The kernel refused CLONE_INTO_CGROUP, as `clone_directly` learns it.
                NO_CLONE_INTO_CGROUP.store(true, Ordering::Relaxed);
            }
            (pid, pidfd, into_cgroup || req.cgroup.is_none() || prepared.joins_itself())
        }
        None => clone(flags, req.cgroup, prepared.joins_itself(), &plan, zygote)?,
    };
    let Pipes { life_r, life_w, status_r, status_w, out_r, out_w, err_r, err_w, .. } = pipes;
    drop((life_r, status_w, out_w, err_w));
    let mut init = InitGuard { pidfd: Some(pidfd) };
    if let Some(cpus) = &cpus {
        set_affinity(pid, cpus)?;
    }
    let namespaces =
        if req.keep_namespaces { Some(open_namespaces(pid, req.userns.is_some())?) } else { None };
    // Before the go: once the init is not dumpable, a parent without CAP_SYS_PTRACE may not.
    // Best effort: without it the init's exit tears the mounts down, as it always did.
    let mount_ns = req
        .hold_mount_ns
        .then(|| File::open(format!("/proc/{pid}/ns/mnt")).ok().map(OwnedFd::from))
        .flatten();

    if let Some(userns) = &req.userns {
        if lab_userns.is_none() {
            userns.write_maps(pid)?;
        }
        // The init waits for this byte before it does anything that needs an id. EPIPE: it
        // died (the status pipe says why).
        release(&life_w)?;
    }
    if let (Some(cgroup), false) = (req.cgroup, in_cgroup) {
        cgroup.add_pid(pid)?;
    }
    let (netns, veth) = link_network(req, pid, run_netns, &status_r, &mut init, &prepared)?;
    let Prepared { mounts, join, cwd, .. } = prepared;
    Ok(Paused {
        pid,
        init,
        life: life_w,
        status: status_r,
        stdout: out_r,
        stderr: err_r,
        netns,
        veth,
        namespaces,
        mount_ns,
        started,
        mounts,
        join,
        cwd,
        program: req.command.get_program().to_path_buf(),
    })
}

/// What the init gets, prepared before the clone because the child may not allocate.
struct Prepared {
    cwd: PathBuf,
    exec_path: CString,
    argv: CStrArray,
    envp: CStrArray,
    cwd_c: CString,
    mounts: MountPlan,
    caps: Option<CapPlan>,
    /// The files the init writes itself into, when it joins its cgroup itself (v1).
    join: Vec<CString>,
}

impl Prepared {
    fn new(req: &Request<'_>) -> Result<Prepared, SpawnError> {
        let command = req.command;
        let cwd = working_dir(command, req.rootfs)?;
        let program_path = resolve_program(command, req.rootfs, &cwd)?;
        let program = cstr_arg("program", command.get_program().as_os_str())?;
        let exec_path = cstr_arg("program", program_path.as_os_str())?;
        let argv = argv(command, program)?;
        let envp = envp(command, req.id)?;
        let cwd_c = cstr_arg("working directory", cwd.as_os_str())?;
        let program_dir = program_path.parent().unwrap_or(Path::new("/"));
        let mounts = MountPlan::build(
            req.rootfs,
            req.isolation.contains(Isolation::FILESYSTEM),
            req.confine.is_some(),
            &[&cwd, program_dir],
            // In a user namespace, new or ours (a container's test making containers): no mknod,
            // and the kernel's other rules for mounts there.
            req.userns.is_some() || !crate::preflight::in_initial_user_namespace(),
            req.isolation.contains(Isolation::PROCESS_CONTROL),
            req.overlay_dirs,
        );
        // cgroup v1: the init joins its cgroups itself, first thing, by writing `0` (itself) into
        // each `tasks` file. Moving the current thread skips the kernel's global threadgroup lock,
        // whose first writer after a quiet spell waits a whole RCU grace period (about 15 ms
        // measured on 6.18), which is what the parent writing the pid into `cgroup.procs` costs.
        // Its cgroup namespace is made after that, rooted at its own cgroup.
        let join = req
            .cgroup
            .map(|cg| cg.init_join_files().iter().map(|f| super::mounts::cstring(f)).collect())
            .unwrap_or_default();
        Ok(Prepared {
            cwd,
            exec_path,
            argv,
            envp,
            cwd_c,
            mounts,
            caps: req.confine.map(|keep| cap_plan(keep, req.userns.is_some())),
            join,
        })
    }

    fn joins_itself(&self) -> bool {
        !self.join.is_empty()
    }

    fn init_plan<'a>(&'a self, req: &'a Request<'_>, pipes: &'a Pipes) -> InitPlan<'a> {
        InitPlan {
            join_cgroups: &self.join,
            new_cgroup_ns: self.joins_itself(),
            keep_fds: &pipes.keep,
            life: pipes.life_r.as_raw_fd(),
            status: pipes.status_w.as_raw_fd(),
            hostname: req.hostname.as_bytes(),
            mounts: &self.mounts,
            pid_ns: req.isolation.contains(Isolation::PROCESS_CONTROL),
            caps: self.caps,
            userns: req.userns.map(|u| UserNsPlan { clear_groups: !u.deny_setgroups }),
            run_netns: req.rootless && req.network.is_some(),
            join_netns: req.join_netns.map(|fd| fd.as_raw_fd()),
            reset_signals: sys::ALL_SIGNALS,
            oom_adjust: req.userns.is_none() && own_permitted_caps() & CAP_SYS_RESOURCE != 0,
            main: MainPlan {
                program: &self.exec_path,
                argv: &self.argv,
                envp: &self.envp,
                cwd: Some(&self.cwd_c),
                stdio: pipes.stdio,
                keep_caps: self.caps.map(|c| c.keep),
            },
        }
    }

    /// The [`SpawnError`] for the init's `Failed` report.
    fn failure(&self, stage: Stage, step: u32, errno: Errno, program: &Path) -> SpawnError {
        failure(stage, step, errno, &self.mounts, &self.join, program, &self.cwd)
    }
}

/// The pipes between parent and init: life (the parent's go, and its death), status (the
/// init's messages), captured output; and the fds the init keeps.
struct Pipes {
    life_r: OwnedFd,
    life_w: OwnedFd,
    status_r: OwnedFd,
    status_w: OwnedFd,
    out_r: Option<OwnedFd>,
    out_w: Option<OwnedFd>,
    err_r: Option<OwnedFd>,
    err_w: Option<OwnedFd>,
    /// What becomes the main process's fds 0, 1 and 2.
    stdio: [RawFd; 3],
    /// Fds the init keeps besides 0-2: sorted, deduplicated, each at least 3.
    keep: Vec<RawFd>,
}

impl Pipes {
    /// `netns`: a pooled network namespace the init joins (kept, so the zygote gets it too).
    fn new(command: &Command, netns: Option<RawFd>) -> Result<Pipes, SpawnError> {
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipe(e.into()));
        let (life_r, life_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let null = sys::dev_null().map_err(SpawnError::Pipe)?;
        let (out_r, out_w) = output_pipe(command.get_stdout(), &pipe)?;
        let (err_r, err_w) = output_pipe(command.get_stderr(), &pipe)?;
        let stdio = [
            null.as_raw_fd(),
            stdio_source(command.get_stdout(), 1, null, out_w.as_ref()),
            stdio_source(command.get_stderr(), 2, null, err_w.as_ref()),
        ];
        let mut keep: Vec<RawFd> = [life_r.as_raw_fd(), status_w.as_raw_fd()]
            .into_iter()
            .chain(stdio)
            .chain(netns)
            .filter(|&fd| fd >= 3)
            .collect();
        keep.sort_unstable();
        keep.dedup();
        Ok(Pipes { life_r, life_w, status_r, status_w, out_r, out_w, err_r, err_w, stdio, keep })
    }
}

/// The namespaces to clone the init into.
fn clone_flags(req: &Request<'_>, plan: &InitPlan<'_>) -> u64 {
    let mut flags = (libc::CLONE_NEWNS | libc::CLONE_NEWUTS) as u64;
    if plan.join_netns.is_none() {
        flags |= libc::CLONE_NEWNET as u64;
    }
    if req.userns.is_some() {
        // The kernel makes the user namespace first; it owns the others.
        flags |= libc::CLONE_NEWUSER as u64;
    }
    if plan.pid_ns {
        flags |= libc::CLONE_NEWPID as u64;
    }
    if req.isolation.contains(Isolation::IPC) {
        flags |= libc::CLONE_NEWIPC as u64;
    }
    // An init that joins its cgroup itself makes its cgroup namespace after joining.
    if req.cgroup.is_some() && !plan.new_cgroup_ns {
        flags |= libc::CLONE_NEWCGROUP as u64;
    }
    flags
}

/// The veth of a container with a network, its peer made directly in the init's network
/// namespace (held open while the veth lives). Rootless, the host end goes in the run's
/// network namespace, through the sockets the init reports (see `init::run_netns`).
fn link_network(
    req: &Request<'_>,
    pid: libc::pid_t,
    run_netns: bool,
    status_r: &OwnedFd,
    init: &mut InitGuard,
    prepared: &Prepared,
) -> Result<(Option<OwnedFd>, VethGuard), Attempt> {
    // The init's namespace: the pooled one it joins (it may not have joined it yet: its
    // `/proc/PID/ns/net` may still name where it was cloned), else the one it was cloned with.
    let open_netns = || -> Result<OwnedFd, SpawnError> {
        if let Some(ns) = req.join_netns {
            return ns
                .try_clone_to_owned()
                .map_err(|source| SpawnError::Netns { path: "the pooled network namespace".into(), source });
        }
        let path = format!("/proc/{pid}/ns/net");
        Ok(File::open(&path).map_err(|source| SpawnError::Netns { path: path.into(), source })?.into())
    };
    if let Some(port) = req.lab_port {
        // Not held: the node's link goes with its namespace (and its maker deletes it first).
        port.attach(open_netns()?.as_fd())?;
    }
    let Some((spec, name)) = req.network else { return Ok((None, VethGuard(None))) };
    let netns = open_netns()?;
    if !run_netns {
        let veth = match req.ready_pair.take() {
            Some(ready) if ready.name() == name => {
                Veth::configure_ready(ready, netns.as_fd(), spec, req.host_access, crate::owner::tag())?
            }
            _ => Veth::create_with_access(netns.as_fd(), spec, name, req.host_access, crate::owner::tag())?,
        };
        return Ok((Some(netns), VethGuard(Some(veth))));
    }
    let (host, inside) = match read_message(status_r).map_err(SpawnError::Channel)? {
        Some(Message::Netns { host_socket, container_socket }) => (host_socket, container_socket),
        Some(Message::Failed { stage, step, errno }) => {
            init.reap();
            return Err(prepared
                .failure(stage, step, Errno::from_raw(errno), req.command.get_program())
                .into());
        }
        Some(Message::Started { .. } | Message::Exited { .. }) | None => {
            return Err(init_died(req.cgroup, init).into())
        }
    };
    let pidfd = init.pidfd.as_ref().expect("the guard holds the pidfd until disarmed").as_fd();
    // While the init is dumpable (until its go) its owner may copy its fds.
    let copy = |fd: RawFd, netns: &str| -> Result<Netlink, Attempt> {
        let socket = sys::pidfd_getfd(pidfd, fd).map_err(|e| SpawnError::RunNetns(e.into()))?;
        Ok(Netlink::from_socket(socket, netns.to_owned())?)
    };
    let run = copy(host, "the run's network namespace")?;
    let inside = copy(inside, "the container's network namespace")?;
    let veth = Veth::create_in_run(run, inside, netns.as_fd(), spec, name, crate::owner::tag())?;
    Ok((Some(netns), VethGuard(Some(veth))))
}

/// The init's user namespace (when it has its own) and network namespace, opened while it is
/// still dumpable.
fn open_namespaces(pid: libc::pid_t, userns: bool) -> Result<(Option<OwnedFd>, OwnedFd), SpawnError> {
    let open = |kind: &str| -> Result<OwnedFd, SpawnError> {
        let path = format!("/proc/{pid}/ns/{kind}");
        File::open(&path).map(OwnedFd::from).map_err(|source| SpawnError::Netns { path: path.into(), source })
    };
    let user = if userns { Some(open("user")?) } else { None };
    Ok((user, open("net")?))
}

/// Writes the go byte on the life pipe. EPIPE: the init already failed (its report is waiting
/// on the status pipe) or died.
fn release(life_w: &OwnedFd) -> Result<(), SpawnError> {
    match sys::write(life_w.as_raw_fd(), b"x") {
        Ok(_) | Err(Errno::EPIPE) => Ok(()),
        Err(e) => Err(SpawnError::Channel(e.into())),
    }
}

/// The init ended before reporting `Started`: reap it, and say whether the setup ran out of
/// memory or how the init died.
fn init_died(cgroup: Option<&dyn Cgroup>, init: &mut InitGuard) -> SpawnError {
    let status = init.reap();
    let oom_kills = cgroup.and_then(|cg| cg.stats().ok()).and_then(|s| s.oom_kills);
    if oom_kills.is_some_and(|n| n > 0) {
        return SpawnError::SetupOutOfMemory;
    }
    SpawnError::InitDied { status: describe_status(status) }
}

/// The capabilities the container's processes keep: `keep`, within what the kernel knows and
/// what the init may hold (the child can only shrink its sets): what this thread holds, or in
/// a new user namespace every one (in that namespace).
fn cap_plan(keep: Capabilities, userns: bool) -> CapPlan {
    let last_cap = last_cap();
    let known = if last_cap >= 63 { u64::MAX } else { (1u64 << (last_cap + 1)) - 1 };
    let permitted = if userns { u64::MAX } else { own_permitted_caps() };
    let kill = Capabilities::named("KILL").map_or(0, Capabilities::bits);
    CapPlan {
        last_cap,
        keep: keep.bits() & known & permitted,
        init_keeps: kill & permitted,
        bounding: u64::MAX,
    }
}

/// `CAP_SYS_RESOURCE`'s bit (capability 24).
const CAP_SYS_RESOURCE: u64 = 1 << 24;

/// This process's permitted capabilities (all bits if they cannot be read). Once per process:
/// nothing here changes them.
fn own_permitted_caps() -> u64 {
    static PERMITTED: OnceLock<u64> = OnceLock::new();
    *PERMITTED.get_or_init(|| sys::permitted_caps().unwrap_or(u64::MAX))
}

/// The highest capability number this kernel knows: `/proc/sys/kernel/cap_last_cap`, else
/// probed with `PR_CAPBSET_READ`. Once per process.
pub(crate) fn last_cap() -> u32 {
    static LAST: OnceLock<u32> = OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| (0..64).take_while(|&c| sys::capability_known(c)).last().unwrap_or(0))
    })
}

/// clone3, into the cgroup with `CLONE_INTO_CGROUP` where the kernel allows it (v2; falling
/// back, once per process, on kernels that refuse it), by the zygote when given and able.
/// Returns whether the child is in its cgroup (or joins it itself, see [`Request::cgroup`] on
/// v1).
fn clone(
    flags: u64,
    cgroup: Option<&dyn Cgroup>,
    joins_itself: bool,
    plan: &InitPlan<'_>,
    zygote: Option<&mut Zygote>,
) -> Result<(libc::pid_t, OwnedFd, bool), Attempt> {
    let into = match cgroup {
        Some(cg) if !joins_itself && !NO_CLONE_INTO_CGROUP.load(Ordering::Relaxed) => cg.clone_into_fd(),
        _ => None,
    };
    if let Some(z) = zygote {
        match z.clone_init(flags, into, plan) {
            Cloned::Init { pid, pidfd } => {
                return Ok((pid, pidfd, into.is_some() || cgroup.is_none() || joins_itself))
            }
            // Nothing was cloned (it is gone, or the plan does not fit its socket): clone here.
            Cloned::Nothing => {}
            Cloned::Lost => return Err(Attempt::Restart),
            // Its clone3 failed: clone here, which also tells a kernel's refusal of
            // CLONE_INTO_CGROUP from other errors. If that works with the same flags, the zygote
            // cannot do what this process can (it lacks its capabilities, say): give it up.
            Cloned::Failed(errno) => {
                let cloned = clone_directly(flags, cgroup, joins_itself, into, plan)?;
                if into.is_none() || !NO_CLONE_INTO_CGROUP.load(Ordering::Relaxed) {
                    let pid = z.pid();
                    z.give_up(crate::error::ZygoteError::CannotClone { pid, source: errno.into() });
                }
                return Ok(cloned);
            }
        }
    }
    Ok(clone_directly(flags, cgroup, joins_itself, into, plan)?)
}

/// clone3 here, into `into` when given, without it after a refusal.
fn clone_directly(
    flags: u64,
    cgroup: Option<&dyn Cgroup>,
    joins_itself: bool,
    into: Option<std::os::fd::BorrowedFd<'_>>,
    plan: &InitPlan<'_>,
) -> Result<(libc::pid_t, OwnedFd, bool), SpawnError> {
    if let Some(fd) = into {
        match sys::clone_init(flags, Some(fd), plan, super::init::run) {
            Ok((pid, pidfd)) => return Ok((pid, pidfd, true)),
            Err(Errno::E2BIG | Errno::EINVAL | Errno::EOPNOTSUPP) => {
                NO_CLONE_INTO_CGROUP.store(true, Ordering::Relaxed)
            }
            Err(e) => return Err(SpawnError::Clone(e.into())),
        }
    }
    let (pid, pidfd) =
        sys::clone_init(flags, None, plan, super::init::run).map_err(|e| SpawnError::Clone(e.into()))?;
    Ok((pid, pidfd, cgroup.is_none() || joins_itself))
}

/// A veth made for a spawn that then failed: released like any other (so a new container on
/// its subnet waits for the kernel to remove it).
struct VethGuard(Option<Veth>);

impl Drop for VethGuard {
    fn drop(&mut self) {
        if let Some(veth) = self.0.take() {
            crate::net::release_veth(veth);
        }
    }
}

/// Kills and reaps the init unless disarmed.
struct InitGuard {
    pidfd: Option<OwnedFd>,
}

impl InitGuard {
    fn disarm(&mut self) -> OwnedFd {
        self.pidfd.take().expect("guard holds the pidfd until disarmed")
    }

    fn reap(&mut self) -> Option<i32> {
        let pidfd = self.pidfd.take()?;
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        sys::waitid_pidfd(pidfd.as_fd(), false).ok().flatten()
    }
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Reads one message; `None` on EOF (the init died first).
pub(crate) fn read_message(fd: &OwnedFd) -> io::Result<Option<Message>> {
    let mut buf = [0u8; MESSAGE_SIZE];
    let mut got = 0;
    while got < MESSAGE_SIZE {
        match sys::read(fd.as_raw_fd(), &mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated message from the init"))
            }
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Message::decode(&buf)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed message from the init"))
}

fn failure(
    stage: Stage,
    step: u32,
    errno: Errno,
    mounts: &MountPlan,
    join: &[CString],
    program: &Path,
    cwd: &Path,
) -> SpawnError {
    let source = io::Error::from(errno);
    let stage = match stage {
        Stage::Exec if errno == Errno::ENOENT => {
            return SpawnError::NotFound { program: program.to_owned(), source }
        }
        Stage::Exec => return SpawnError::Exec { program: program.to_owned(), source },
        Stage::Mount => {
            mounts.steps.get(step as usize).map_or_else(|| format!("mount step {step}"), |s| s.describe())
        }
        Stage::JoinCgroup => join.get(step as usize).map_or_else(
            || format!("joining cgroup {step}"),
            |t| format!("joining its cgroup ({})", t.to_string_lossy()),
        ),
        Stage::CgroupNamespace => "creating its cgroup namespace".to_owned(),
        Stage::CloseFds => "closing inherited file descriptors".to_owned(),
        Stage::Signals => "setting up signal handling".to_owned(),
        Stage::Hostname => "setting the hostname".to_owned(),
        Stage::Loopback => "bringing up lo".to_owned(),
        Stage::Release => "waiting for the parent's go".to_owned(),
        Stage::ForkMain => "forking the main process".to_owned(),
        Stage::ProcessGroup => "giving the main process its own process group".to_owned(),
        Stage::Stdio => "redirecting stdin, stdout and stderr".to_owned(),
        Stage::Chdir => format!("changing to the working directory {}", cwd.display()),
        Stage::Capabilities => "dropping capabilities".to_owned(),
        Stage::Session => "starting a new session (no controlling terminal)".to_owned(),
        Stage::Keyring => "joining a new session keyring".to_owned(),
        Stage::UserNamespace => "becoming root of its user namespace".to_owned(),
        Stage::RunNetns => "making the run's network namespace for the veth's host end".to_owned(),
        Stage::JoinNetns => "joining its pooled network namespace".to_owned(),
    };
    SpawnError::Setup { stage, source }
}

fn describe_status(status: Option<i32>) -> String {
    match status {
        Some(s) if libc::WIFEXITED(s) => format!("exit code {}", libc::WEXITSTATUS(s)),
        Some(s) if libc::WIFSIGNALED(s) => format!("signal {}", libc::WTERMSIG(s)),
        Some(s) => format!("wait status {s:#x}"),
        None => "unknown status".to_owned(),
    }
}

type PipePair = (Option<OwnedFd>, Option<OwnedFd>);

fn output_pipe(
    stdio: Stdio,
    pipe: &dyn Fn() -> Result<(OwnedFd, OwnedFd), SpawnError>,
) -> Result<PipePair, SpawnError> {
    match stdio {
        Stdio::Capture { .. } => {
            let (r, w) = pipe()?;
            nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(|e| SpawnError::Pipe(e.into()))?;
            Ok((Some(r), Some(w)))
        }
        Stdio::Inherit | Stdio::Null => Ok((None, None)),
    }
}

fn stdio_source(
    stdio: Stdio,
    own: RawFd,
    null: std::os::fd::BorrowedFd<'_>,
    pipe: Option<&OwnedFd>,
) -> RawFd {
    match (stdio, pipe) {
        (Stdio::Capture { .. }, Some(w)) => w.as_raw_fd(),
        (Stdio::Inherit, _) => own,
        (Stdio::Null | Stdio::Capture { .. }, _) => null.as_raw_fd(),
    }
}

fn cstr_arg(what: &'static str, s: &OsStr) -> Result<CString, SpawnError> {
    CString::new(s.as_bytes()).map_err(|_| SpawnError::Nul { what, value: s.to_owned() })
}

fn argv(command: &Command, program: CString) -> Result<CStrArray, SpawnError> {
    let args = command.get_args();
    let len = program.as_bytes_with_nul().len() + args.iter().map(|a| a.len() + 1).sum::<usize>();
    let mut v = CStrArrayBuilder::with_capacity(args.len() + 1, len);
    let _ = v.push(&[program.as_bytes()]);
    for a in args {
        v.push(&[a.as_bytes()]).map_err(|()| SpawnError::Nul { what: "argument", value: a.clone() })?;
    }
    Ok(v.finish())
}

fn envp(command: &Command, id: &str) -> Result<CStrArray, SpawnError> {
    let envs = command.get_envs();
    let container = format!("{}={id}", crate::ENV_CONTAINER);
    let len = container.len() + 1 + envs.map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
    let mut v = CStrArrayBuilder::with_capacity(command.get_envs().len() + 1, len);
    for (k, val) in command.get_envs() {
        if k == crate::ENV_CONTAINER {
            continue;
        }
        if k.is_empty() || k.as_bytes().contains(&b'=') {
            return Err(SpawnError::Nul { what: "environment variable name", value: k.to_owned() });
        }
        v.push(&[k.as_bytes(), b"=", val.as_bytes()]).map_err(|()| {
            let mut kv = k.to_owned();
            kv.push("=");
            kv.push(val);
            SpawnError::Nul { what: "environment variable", value: kv }
        })?;
    }
    let _ = v.push(&[container.as_bytes()]);
    Ok(v.finish())
}

/// The working directory inside the container: the command's, else the caller's (host root) or
/// `/` (an explicit root). Always explicit: the init must `chdir` after its mounts so that the
/// main process sees the writable mounts stacked over the read-only root.
fn working_dir(command: &Command, rootfs: &Rootfs) -> Result<PathBuf, SpawnError> {
    match (command.get_current_dir(), rootfs) {
        (Some(d), _) => {
            check_path(d).map_err(|_| SpawnError::Nul {
                what: "working directory",
                value: d.as_os_str().to_owned(),
            })?;
            Ok(d.to_owned())
        }
        (None, Rootfs::Host { .. }) => std::env::current_dir().map_err(SpawnError::CurrentDir),
        (None, Rootfs::Dir(_)) => Ok(PathBuf::from("/")),
    }
}

/// The path to exec: `program` itself when it has a `/` (relative to `cwd`), else the first
/// executable match in the command's `PATH`. Checked in the parent, on the host's view of the
/// container's root, so that a missing program fails before any clone.
fn resolve_program(command: &Command, rootfs: &Rootfs, cwd: &Path) -> Result<PathBuf, SpawnError> {
    let program = command.get_program();
    let not_found = |source: io::Error| SpawnError::NotFound { program: program.to_owned(), source };
    let on_host = |inside: &Path| -> PathBuf {
        match rootfs {
            Rootfs::Host { .. } => inside.to_owned(),
            Rootfs::Dir(root) => root.join(inside.strip_prefix("/").unwrap_or(inside)),
        }
    };
    if program.as_os_str().is_empty() {
        return Err(not_found(io::Error::from(io::ErrorKind::NotFound)));
    }
    if program.as_os_str().as_bytes().contains(&b'/') {
        let inside = cwd.join(program);
        return match executable(&on_host(&inside)) {
            Ok(()) => Ok(inside),
            // Inside an explicit root a symlink may resolve differently: let exec decide.
            Err(_) if matches!(rootfs, Rootfs::Dir(_)) => Ok(inside),
            Err(e) => Err(not_found(e)),
        };
    }
    let path_var = command.get_env("PATH").unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for dir in std::env::split_paths(path_var) {
        let dir = if dir.as_os_str().is_empty() { cwd.to_owned() } else { cwd.join(dir) };
        let inside = dir.join(program);
        match executable(&on_host(&inside)) {
            Ok(()) => return Ok(inside),
            Err(e) if e.kind() != io::ErrorKind::NotFound => last = e,
            Err(_) => {}
        }
    }
    Err(not_found(last))
}

fn executable(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "is a directory"));
    }
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).map_err(io::Error::from)
}

/// Gives the process `pid` (a container's init, a zygote) the CPU affinity `cpus`; what it
/// clones or forks later inherits it.
pub(crate) fn set_affinity(pid: libc::pid_t, cpus: &cvtest_spec::CpuList) -> Result<(), SpawnError> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus.cpus() {
        // A `CpuList` names only CPUs below CPU_SETSIZE, which a `CpuSet` holds.
        set.set(cpu).map_err(|e| SpawnError::Affinity { cpus: cpus.clone(), source: e.into() })?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set)
        .map_err(|e| SpawnError::Affinity { cpus: cpus.clone(), source: e.into() })
}

/// The CPU affinity of the process `pid`.
pub(crate) fn get_affinity(pid: libc::pid_t) -> io::Result<cvtest_spec::CpuList> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(pid))?;
    let limit = nix::sched::CpuSet::count().min(cvtest_spec::CpuList::LIMIT);
    cvtest_spec::CpuList::new((0..limit).filter(|&c| set.is_set(c).unwrap_or(false)))
        .map_err(io::Error::other)
}
