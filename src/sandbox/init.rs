//! The only code that runs in the child between clone and exec: async-signal-safe.
//!
//! The parent may have many threads, so after clone this process may only make raw syscalls
//! (through [`crate::sys`]): no allocation, no locks, no panics (every slice access is checked
//! with `get`), nothing that formats. Everything it needs was prepared by the parent in
//! [`InitPlan`]; it reports to the parent only through [`Message`]s.
//!
//! The init (PID 1 of the container's PID namespace):
//! 1. keeps every signal blocked (they are read later through a signalfd), starts a session of
//!    its own (no controlling terminal), joins a new empty session keyring, joins its cgroups
//!    itself on v1 (and then makes its cgroup namespace), closes every inherited fd it does not
//!    need (other containers' pipes included), resets signal dispositions, sets the hostname,
//!    runs the mount plan, brings `lo` up, and (unless privileged) drops from its bounding set
//!    every capability the main process may not keep;
//! 2. waits on the life pipe for the parent's go (the parent has meanwhile put it in its cgroup
//!    and made its veth), and exits quietly on EOF; unless privileged, makes itself not dumpable
//!    (so the test, the same user, cannot trace it or open its memory);
//! 3. starts the main process with `clone(CLONE_VM | CLONE_VFORK)`, which runs [`exec_main`]:
//!    its own process group, stdio, working directory, its capabilities cut to the kept set
//!    (ambient cleared, inheritable empty), an empty signal mask, `execve`;
//! 4. reports `Started`, keeps only `CAP_KILL` itself (unless privileged), then reaps every
//!    child, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to the main process, and when the main
//!    process ends reports its raw wait status and exits, which makes the kernel kill everything
//!    left in the PID namespace (when something is left, only once the parent has listed it;
//!    when it is alone in its PID namespace, at once);
//! 5. exits the same way on EOF of the life pipe: the parent died (even by SIGKILL), so the
//!    container dies with its runner.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use libc::{c_int, c_uint, pid_t};

use super::channel::{Message, Stage};
use super::mounts::{MountPlan, Step};
use crate::sys::{self, CStrArray, Errno};

/// Everything the init needs, prepared by the parent.
pub(crate) struct InitPlan<'a> {
    /// cgroup v1: the `tasks` files of the container's cgroups, which the init joins first.
    pub(crate) join_cgroups: &'a [CString],
    /// Make a cgroup namespace after joining (rooted at the container's cgroup).
    pub(crate) new_cgroup_ns: bool,
    /// Fds to keep open besides 0, 1 and 2: sorted, deduplicated, each at least 3.
    pub(crate) keep_fds: &'a [RawFd],
    /// Read end of the life pipe; the parent alone holds the write end.
    pub(crate) life: RawFd,
    /// Write end of the status pipe.
    pub(crate) status: RawFd,
    pub(crate) hostname: &'a [u8],
    pub(crate) mounts: &'a MountPlan,
    /// Whether the init is PID 1 of a new PID namespace (then its exit kills everything left).
    pub(crate) pid_ns: bool,
    /// The capabilities to keep; `None` when privileged (keep all).
    pub(crate) caps: Option<CapPlan>,
    /// Cloned into a new user namespace: wait for the parent's maps, then become its root.
    pub(crate) userns: Option<UserNsPlan>,
    /// Rootless with a network: make the run's network namespace for the host end of the veth
    /// and report it ([`Message::Netns`]).
    pub(crate) run_netns: bool,
    /// A pooled network namespace to join (cloned without `CLONE_NEWNET`; `lo` is up in it).
    pub(crate) join_netns: Option<RawFd>,
    /// The signals whose disposition the init resets to the default (`sys::ALL_SIGNALS`, or
    /// what a zygote knows it changed: see `sys::non_default_signals`).
    pub(crate) reset_signals: u64,
    /// Make the init unkillable by the OOM killer (`oom_score_adj` -1000): only where it can be
    /// (the caller holds `CAP_SYS_RESOURCE`, and the init is in no user namespace of its own).
    pub(crate) oom_adjust: bool,
    pub(crate) main: MainPlan<'a>,
}

/// What the init does in its new user namespace once the parent wrote the maps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserNsPlan {
    /// Drop the supplementary groups (root mode; rootless may not: `setgroups` is denied).
    pub(crate) clear_groups: bool,
}

/// Which capabilities the container's processes keep, computed in the parent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CapPlan {
    /// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub(crate) last_cap: u32,
    /// What the main process keeps, bit `n` for capability `n`: the bounding set of the init
    /// (which the main process inherits) and the main process's permitted and effective sets.
    /// Within the caller's own permitted set.
    pub(crate) keep: u64,
    /// What the init itself keeps once the main process runs (`CAP_KILL`, to forward signals to
    /// a main process that changed its user, if the caller has it).
    pub(crate) init_keeps: u64,
    /// The bounding set the init starts with, as far as its cloner knows (all bits when it does
    /// not): a zygote that dropped from its own what none of its containers keeps
    /// ([`crate::Zygote::start_bounded`]) leaves its inits only the rest to drop.
    pub(crate) bounding: u64,
}

/// What the main process needs between its clone and its exec.
pub(crate) struct MainPlan<'a> {
    pub(crate) program: &'a CStr,
    pub(crate) argv: &'a CStrArray,
    pub(crate) envp: &'a CStrArray,
    pub(crate) cwd: Option<&'a CStr>,
    /// Sources for fds 0, 1 and 2.
    pub(crate) stdio: [RawFd; 3],
    /// The capabilities the main process keeps (`CapPlan::keep`); `None` when privileged.
    pub(crate) keep_caps: Option<u64>,
}

/// Why the main process could not exec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MainFailure {
    pub(crate) stage: Stage,
    pub(crate) errno: Errno,
}

struct Failure {
    stage: Stage,
    step: u32,
    errno: Errno,
}

fn at(stage: Stage) -> impl Fn(Errno) -> Failure {
    move |errno| Failure { stage, step: 0, errno }
}

/// Signals forwarded to the main process.
const FORWARDED: [c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// Exit code of the init after a setup failure it reported.
const EXIT_SETUP_FAILED: c_int = 125;
/// Exit code of the init when the parent went away before releasing it.
const EXIT_ABANDONED: c_int = 126;

/// The init's whole life. Never returns.
pub(crate) fn run(plan: &InitPlan<'_>) -> ! {
    sys::set_process_name(c"cvtest-init");
    let (signals, overlay_errno) = match setup(plan) {
        Ok(set) => set,
        Err(f) => fail(plan.status, f),
    };
    match wait_release(plan.life) {
        Ok(true) => {}
        Ok(false) => sys::exit(EXIT_ABANDONED),
        Err(errno) => fail(plan.status, Failure { stage: Stage::Release, step: 0, errno }),
    }
    // Only now: the parent may have needed /proc/<pid>/ns/net (without CAP_SYS_PTRACE it may
    // open it only while the init is dumpable).
    if plan.caps.is_some() {
        if let Err(errno) = sys::set_not_dumpable() {
            fail(plan.status, Failure { stage: Stage::Capabilities, step: 0, errno });
        }
    }
    let main = match sys::vfork_main(&plan.main, exec_main) {
        Ok((pid, None)) => pid,
        Ok((pid, Some(f))) => {
            let _ = sys::reap(pid);
            fail(plan.status, Failure { stage: f.stage, step: 0, errno: f.errno })
        }
        Err(errno) => fail(plan.status, Failure { stage: Stage::ForkMain, step: 0, errno }),
    };
    send(plan.status, Message::Started { pid: main, overlay_errno });
    // The OOM killer must pick the test, never the init (which would lose the exit status).
    // Done after the fork so that the main process keeps the runner's own score.
    if plan.oom_adjust {
        let _ = sys::write_file(c"/proc/self/oom_score_adj", b"-1000");
    }
    if let Some(caps) = &plan.caps {
        // Supervising needs no capability but CAP_KILL (to signal a main process that changed
        // its user): a test allowed to trace the init finds nothing more to take there. Best
        // effort: the init is not dumpable and its bounding set is the test's anyway.
        let _ = sys::capset(caps.init_keeps, caps.init_keeps, 0);
    }
    supervise(plan, signals.as_raw_fd(), main)
}

/// Sets the container up; its signalfd and the errno of the first throw-away layer the kernel
/// refused (0: none).
fn setup(plan: &InitPlan<'_>) -> Result<(OwnedFd, i32), Failure> {
    // The parent cloned us with every signal blocked; keep it so, so that no handler inherited
    // from the parent ever runs here. Signals are read from a signalfd instead.
    sys::block_all_signals().map_err(at(Stage::Signals))?;
    // First, before anything that may block (the wait for the maps below): this process holds a
    // copy of every fd its parent had open at the clone, other containers' life pipes among
    // them. An init that blocked with them open kept those containers alive, and they it, after
    // their maker was SIGKILLed: found by the rootless runner's kill trial.
    close_others(plan.keep_fds).map_err(at(Stage::CloseFds))?;
    // A session of its own, without a controlling terminal: nothing in the container can open
    // the runner's terminal as `/dev/tty` (ENXIO), inject input into it with TIOCSTI (which
    // needs it as the controlling terminal), or reach its job control (CVE-2017-5226).
    sys::setsid().map_err(at(Stage::Session))?;
    // A fresh, empty session keyring (as runc and crun give): the caller's keys stay out of
    // reach. A kernel without keys (ENOSYS), or a seccomp filter that refuses keyctl (EPERM,
    // which the test inherits too), leaves nothing to reach.
    match sys::join_new_session_keyring() {
        Ok(()) | Err(Errno::ENOSYS | Errno::EPERM) => {}
        Err(errno) => return Err(at(Stage::Keyring)(errno)),
    }
    for (i, tasks) in plan.join_cgroups.iter().enumerate() {
        sys::write_file(tasks, b"0").map_err(|errno| Failure {
            stage: Stage::JoinCgroup,
            step: i as u32,
            errno,
        })?;
    }
    if let Some(userns) = &plan.userns {
        // The parent writes the maps, then one byte: until then this process has no ids in
        // its namespace (no file could be created). EOF: the parent gave up.
        match wait_release(plan.life) {
            Ok(true) => {}
            Ok(false) => sys::exit(EXIT_ABANDONED),
            Err(errno) => return Err(at(Stage::UserNamespace)(errno)),
        }
        become_root(userns).map_err(at(Stage::UserNamespace))?;
    }
    if plan.new_cgroup_ns {
        sys::unshare(libc::CLONE_NEWCGROUP).map_err(at(Stage::CgroupNamespace))?;
    }
    // Before the mounts: the fresh /sys shows the namespace of the process that mounts it.
    if let Some(netns) = plan.join_netns {
        sys::setns(netns, libc::CLONE_NEWNET).map_err(at(Stage::JoinNetns))?;
    }
    sys::reset_signal_dispositions(plan.reset_signals);
    let mut wanted = [libc::SIGCHLD; FORWARDED.len() + 1];
    for (slot, sig) in wanted.iter_mut().zip(FORWARDED) {
        *slot = sig;
    }
    let signals = sys::signalfd(&wanted).map_err(at(Stage::Signals))?;
    sys::sethostname(plan.hostname).map_err(at(Stage::Hostname))?;
    let old_umask = sys::umask(0);
    let mut overlay_errno = 0;
    for (i, step) in plan.mounts.steps.iter().enumerate() {
        match (step, run_step(step, &plan.mounts.slots)) {
            (_, Ok(())) => {}
            // Soft: refused, the directory stays the host's, read-only, as the rest of the root.
            (Step::Overlay { .. }, Err(errno)) => {
                if overlay_errno == 0 {
                    overlay_errno = errno as i32;
                }
            }
            (_, Err(errno)) => return Err(Failure { stage: Stage::Mount, step: i as u32, errno }),
        }
    }
    sys::umask(old_umask);
    if plan.join_netns.is_none() {
        sys::loopback_up().map_err(at(Stage::Loopback))?;
    }
    if plan.run_netns {
        let (host, container) = run_netns().map_err(at(Stage::RunNetns))?;
        send(
            plan.status,
            Message::Netns { host_socket: host.as_raw_fd(), container_socket: container.as_raw_fd() },
        );
        // Held until the init exits (close-on-exec: the main process never has them); the
        // parent copies them before its go.
        std::mem::forget((host, container));
    }
    if let Some(caps) = &plan.caps {
        drop_bounding_set(caps).map_err(at(Stage::Capabilities))?;
    }
    Ok((signals, overlay_errno))
}

/// [`Step::Overlay`]: the host's directory `target` as the lower layer of an overlay whose
/// upper layer is a fresh tmpfs mounted on `target` first (and then hidden under the overlay).
/// Both layers are named through `/proc/self/fd`, so no path needs escaping in the options.
/// On failure the tmpfs is detached again: `target` is the host's, as before.
fn overlay(target: &CStr, userxattr: bool) -> Result<(), Errno> {
    let lower = sys::open_dir_path(target)?;
    let (uid, gid, mode) = sys::owner_and_mode(lower.as_fd())?;
    sys::mount(Some(c"tmpfs"), target, Some(c"tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some(c"mode=755"))?;
    let layered = (|| {
        let layer = sys::open_dir_path(target)?;
        // The overlay's root shows its upper directory's owner and mode: the host's own.
        sys::mkdir_at(layer.as_fd(), c"u", mode)?;
        sys::mkdir_at(layer.as_fd(), c"w", 0o700)?;
        if uid != 0 || gid != 0 {
            // An owner this user namespace does not map cannot be given: root's then.
            let _ = sys::chown_at(layer.as_fd(), c"u", uid, gid);
        }
        let mut data = StackStr::<160>::new();
        data.push(b"lowerdir=/proc/self/fd/");
        data.number(lower.as_raw_fd());
        data.push(b",upperdir=/proc/self/fd/");
        data.number(layer.as_raw_fd());
        data.push(b"/u,workdir=/proc/self/fd/");
        data.number(layer.as_raw_fd());
        data.push(b"/w");
        if userxattr {
            data.push(b",userxattr");
        }
        let data = data.as_cstr().ok_or(Errno::ENAMETOOLONG)?;
        sys::mount(Some(c"overlay"), target, Some(c"overlay"), libc::MS_NOSUID | libc::MS_NODEV, Some(data))
    })();
    if layered.is_err() {
        let _ = sys::umount_detach(target);
    }
    layered
}

/// A NUL-terminated string built on the stack (the init allocates nothing).
struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> StackStr<N> {
    fn new() -> Self {
        StackStr { buf: [0; N], len: 0, overflow: false }
    }

    fn push(&mut self, bytes: &[u8]) {
        // One byte stays for the NUL.
        if self.len + bytes.len() >= N {
            self.overflow = true;
            return;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn number(&mut self, n: RawFd) {
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        let mut n = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }

    /// `None` when something did not fit.
    fn as_cstr(&mut self) -> Option<&CStr> {
        if self.overflow {
            return None;
        }
        self.buf[self.len] = 0;
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).ok()
    }
}

/// uid and gid 0 of the new user namespace (the owner outside), without root's supplementary
/// groups when allowed. The capabilities the clone gave in the namespace stay: the effective
/// uid was not 0 of this namespace before.
fn become_root(userns: &UserNsPlan) -> Result<(), Errno> {
    sys::set_all_gids(0)?;
    if userns.clear_groups {
        sys::clear_groups()?;
    }
    sys::set_all_uids(0)
}

/// The run's network namespace: a new one owned by the container's user namespace, for the
/// host end of the veth (the real host's needs `CAP_NET_ADMIN` there). Returns a
/// route-netlink socket in it and one in the container's own; this thread is back in the
/// container's namespace. A socket keeps its namespace alive and carries its opener's
/// credentials: the parent, which may not enter either namespace, configures both through them.
fn run_netns() -> Result<(OwnedFd, OwnedFd), Errno> {
    let own = sys::open_read_only(c"/proc/thread-self/ns/net")?;
    sys::unshare(libc::CLONE_NEWNET)?;
    let host = sys::netlink_route_socket()?;
    sys::setns(own.as_raw_fd(), libc::CLONE_NEWNET)?;
    let container = sys::netlink_route_socket()?;
    Ok((host, container))
}

/// Drops from the bounding set every capability the main process may not keep (of those still
/// in it: see [`CapPlan::bounding`]). The main process
/// inherits the set; after its exec, a root process gets exactly its bounding set, so nothing
/// outside it can come back (not through setuid or file capabilities either).
fn drop_bounding_set(caps: &CapPlan) -> Result<(), Errno> {
    for cap in 0..=caps.last_cap.min(63) {
        if caps.keep & (1 << cap) == 0 && caps.bounding & (1 << cap) != 0 {
            sys::capbset_drop(cap)?;
        }
    }
    Ok(())
}

/// Closes every fd from 3 up except `keep` (sorted, each at least 3).
fn close_others(keep: &[RawFd]) -> Result<(), Errno> {
    let mut next: c_uint = 3;
    for &fd in keep {
        let fd = fd as c_uint;
        if fd > next {
            sys::close_range(next, fd - 1)?;
        }
        if fd >= next {
            next = fd + 1;
        }
    }
    sys::close_range(next, c_uint::MAX)
}

fn run_step(step: &Step, slots: &[Cell<Option<OwnedFd>>]) -> Result<(), Errno> {
    match step {
        Step::MakePrivate => sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None),
        Step::ReadOnlyTree { target } => sys::mount_setattr_recursive(target, sys::MOUNT_ATTR_RDONLY, 0),
        Step::RemountReadOnly { target, flags } => sys::mount(None, target, None, *flags, None),
        Step::CloneTree { source, slot } => {
            let tree = sys::open_tree_clone(source)?;
            slots.get(*slot).ok_or(Errno::EINVAL)?.set(Some(tree));
            Ok(())
        }
        Step::AttachTree { slot, target } => {
            let tree = slots.get(*slot).and_then(Cell::take).ok_or(Errno::EBADF)?;
            sys::move_mount_to(tree.as_fd(), target)
        }
        Step::BindSelf { path } => sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None),
        Step::Mount { source, target, fstype, flags, data } => {
            sys::mount(Some(source), target, Some(fstype), *flags, *data)
        }
        Step::Mkdir { path, mode, exist_ok } => match sys::mkdir(path, *mode) {
            Err(Errno::EEXIST) if *exist_ok => Ok(()),
            other => other,
        },
        Step::Mknod { path, major, minor } => sys::mknod_char(path, 0o666, *major, *minor),
        Step::Touch { path } => sys::create_file(path, 0o644),
        Step::Symlink { target, link } => sys::symlink(target, link),
        Step::Chdir { path } => sys::chdir(path),
        Step::PivotRoot => sys::pivot_root_here(),
        Step::Mask { target, dir: true } => sys::mount(
            Some(c"tmpfs"),
            target,
            Some(c"tmpfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(c"mode=555"),
        ),
        Step::Mask { target, dir: false } => {
            sys::mount(Some(c"/dev/null"), target, None, libc::MS_BIND, None)
        }
        Step::MaskAs { first, target } => sys::mount(Some(first), target, None, libc::MS_BIND, None),
        Step::Overlay { target, userxattr } => overlay(target, *userxattr),
    }
}

/// Blocks until the parent's go byte (`true`) or EOF (`false`: the parent is gone or gave up).
fn wait_release(life: RawFd) -> Result<bool, Errno> {
    let mut byte = [0u8; 1];
    loop {
        match sys::read(life, &mut byte) {
            Ok(1) => return Ok(true),
            Ok(_) => return Ok(false),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn send(status: RawFd, msg: Message) {
    // A failed write means the parent is gone; the life pipe tells the rest.
    let _ = sys::write(status, &msg.encode());
}

fn fail(status: RawFd, f: Failure) -> ! {
    send(status, Message::Failed { stage: f.stage, step: f.step, errno: f.errno as i32 });
    sys::exit(EXIT_SETUP_FAILED)
}

/// Reaps, forwards signals, and ends the container when the main process ends or the parent
/// goes away.
fn supervise(plan: &InitPlan<'_>, signals: RawFd, main: pid_t) -> ! {
    loop {
        let mut fds = [
            libc::pollfd { fd: signals, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: plan.life, events: libc::POLLIN, revents: 0 },
        ];
        match sys::poll(&mut fds, -1) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => end(plan, main),
        }
        if fds[1].revents != 0 {
            // The parent never writes again after the go byte: this is EOF, it is gone.
            end(plan, main);
        }
        if fds[0].revents == 0 {
            continue;
        }
        while let Ok(Some(sig)) = sys::read_signal(signals) {
            if sig != libc::SIGCHLD {
                let _ = sys::kill(main, sig);
            }
        }
        let mut main_status = None;
        let alone = loop {
            match sys::reap_any() {
                Ok(Some((pid, status))) => {
                    if pid == main {
                        main_status = Some(status);
                    }
                }
                // Children, none of them ended.
                Ok(None) => break false,
                // No child at all: as PID 1 of the namespace, every process in it (orphans
                // included) would be a descendant, so nothing else is left.
                Err(Errno::ECHILD) => break plan.pid_ns,
                Err(_) => break false,
            }
        };
        if let Some(status) = main_status {
            send(plan.status, Message::Exited { status, alone });
            if !alone {
                await_parent(plan);
            }
            end(plan, main);
        }
    }
}

/// How long the init waits, after the main process ended, for the parent to list the processes
/// left in the container.
const PARENT_ACK_TIMEOUT_MS: i32 = 2000;

/// Keeps the container as it is until the parent has listed what is left in it: it writes a byte
/// on the life pipe when done (or closes it, going away). Bounded, for a parent that is not
/// waiting.
fn await_parent(plan: &InitPlan<'_>) {
    let mut fds = [libc::pollfd { fd: plan.life, events: libc::POLLIN, revents: 0 }];
    let _ = sys::poll(&mut fds, PARENT_ACK_TIMEOUT_MS);
}

/// Ends the container. In a PID namespace the kernel kills everything left when the init exits;
/// without one, the main process's group is killed.
fn end(plan: &InitPlan<'_>, main: pid_t) -> ! {
    if !plan.pid_ns {
        let _ = sys::kill(-main, libc::SIGKILL);
    }
    sys::exit(0)
}

/// Runs in the main process, between `clone(CLONE_VM | CLONE_VFORK)` and exec, on its own stack
/// and sharing the init's memory (which is suspended meanwhile). Returns only on failure.
pub(crate) fn exec_main(plan: &MainPlan<'_>) -> MainFailure {
    let fail = |stage: Stage| move |errno: Errno| MainFailure { stage, errno };
    if let Err(f) = sys::setpgid_self().map_err(fail(Stage::ProcessGroup)) {
        return f;
    }
    if let Err(f) = redirect_stdio(plan.stdio).map_err(fail(Stage::Stdio)) {
        return f;
    }
    if let Some(cwd) = plan.cwd {
        if let Err(f) = sys::chdir(cwd).map_err(fail(Stage::Chdir)) {
            return f;
        }
    }
    // The bounding set was cut by the init; now the sets of this process: the kept ones
    // effective and permitted, none inheritable (so no file's inheritable capabilities can give
    // a non-root user of the test anything: CVE-2022-24769), no ambient.
    if let Some(keep) = plan.keep_caps {
        let confined = sys::clear_ambient_caps().and_then(|()| sys::capset(keep, keep, 0));
        if let Err(f) = confined.map_err(fail(Stage::Capabilities)) {
            return f;
        }
    }
    // The init reset every disposition to the default; the command starts with none blocked.
    if let Err(f) = sys::unblock_all_signals().map_err(fail(Stage::Signals)) {
        return f;
    }
    MainFailure { stage: Stage::Exec, errno: sys::execve(plan.program, plan.argv, plan.envp) }
}

/// Puts `src[i]` on fd `i` for 0, 1, 2. The sources keep `FD_CLOEXEC` (they close at exec).
fn redirect_stdio(mut src: [RawFd; 3]) -> Result<(), Errno> {
    // A source sitting on another stdio number would be overwritten by an earlier dup2.
    for (i, fd) in src.iter_mut().enumerate() {
        if *fd < 3 && *fd != i as RawFd {
            *fd = sys::dup_at_least(*fd, 3)?;
        }
    }
    for (i, fd) in src.into_iter().enumerate() {
        let target = i as RawFd;
        if fd == target {
            sys::set_cloexec(target, false)?;
        } else {
            sys::dup2(fd, target)?;
        }
    }
    Ok(())
}
