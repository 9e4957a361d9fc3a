//! A zygote: a small single-threaded helper process that clones containers' inits for a
//! multi-threaded caller, such as a test runner with a worker thread per job.
//!
//! Why: the init is cloned without `CLONE_VM`, so the kernel copies the caller's page tables
//! and marks its private pages copy-on-write. In a caller with several threads on several CPUs,
//! every page it writes after the clone then takes a copy-on-write fault whose TLB flush
//! interrupts every CPU running another of its threads; the init exits later and frees the copy.
//! Measured on `cargo cvtest` (2 CPUs, `-j 2`): 22% of the runner's CPU time went to those faults
//! and IPIs. A zygote is a fresh exec of this program (`/proc/self/exe`), alone on its thread,
//! with a small address space; copying that costs little and its faults flush only its own CPU.
//!
//! How: [`Zygote::start`] re-executes this program as `cvtest-zygote` with
//! `CVTEST_ZYGOTE=<fd>:<pid>` and a `SOCK_SEQPACKET` socket on that fd; the program's `main`
//! must call [`serve_if_requested`] first thing, which in the zygote never returns. For each
//! container, [`crate::Container::spawn_via`] sends the init plan (`sandbox/wire.rs`) with the
//! fds it names (`SCM_RIGHTS`: the life and status pipes, stdio sources, the cgroup directory
//! for `CLONE_INTO_CGROUP`). The zygote calls the same `clone3` as a direct spawn, plus
//! `CLONE_PARENT`, closes its copies of the fds and answers with the pid and a pidfd, or the
//! errno. With `CLONE_PARENT` the init is the caller's child, not the zygote's, and inherits the
//! zygote's exit signal, which is none (see `sys::spawn_zygote`): exactly like an init cloned
//! directly, so waiting, killing and reaping are unchanged. The zygote never holds a life pipe's
//! write end, so an init still dies with its owner, even one killed by SIGKILL.
//!
//! The zygote dies with its owner: on EOF of its socket, and by `PR_SET_PDEATHSIG(SIGKILL)` when
//! the thread that started it exits (so a [`Zygote`] stays on its thread: it is not `Send`). It
//! holds no fd but its socket (0, 1 and 2 are `/dev/null`) and keeps every signal blocked, so a
//! Ctrl-C meant for its owner does not end it.
//!
//! If a zygote cannot do its job (it died, it is gone mid-request, it answers nonsense), the
//! spawn is done directly instead and the zygote is stopped for good; [`Zygote::lost`] says why.
//! A container never fails because of its zygote.

use std::ffi::{CString, OsStr};
use std::io::{self, IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use nix::sys::socket::{
    self, recv, recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag,
};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::error::SpawnError;
pub use crate::error::ZygoteError;
use crate::sandbox::init::InitPlan;
use crate::sandbox::wire::{self, Malformed, MAX_FDS, PROTOCOL};
use crate::sys::{self, CStrArray, Errno};

/// Set in a zygote's environment: `<socket fd>:<pid of its owner>`.
pub const ENV_ZYGOTE: &str = "CVTEST_ZYGOTE";

/// The zygote's `argv[0]` and process name (what `ps` shows).
const NAME: &std::ffi::CStr = c"cvtest-zygote";
/// The fd the zygote finds its socket on.
const SOCKET_FD: RawFd = 3;
/// How long a new zygote may take to say hello (an exec of this program, under load).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a clone may take before the zygote is given up (a `clone3` with a new network
/// namespace takes about a millisecond; the kernel's namespace teardown can slow it under load).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request sent (the socket's send buffer is raised to it where allowed). A bigger
/// plan (a huge environment or argument list) is cloned directly.
const MAX_REQUEST: usize = 4 << 20;

/// A helper process that clones containers' inits; see the [module docs](self). Dropping it
/// ends the process.
#[derive(Debug)]
pub struct Zygote {
    pid: i32,
    live: Option<Live>,
    lost: Option<ZygoteError>,
    /// Its CPU affinity before [`Zygote::set_cpu_affinity`] placed it: what a container without
    /// an affinity of its own gets back, instead of the zygote's.
    unplaced: Option<cvtest_spec::CpuList>,
    /// The capabilities its bounding set may still have: all bits, unless started by
    /// [`Zygote::start_bounded`].
    bounding: u64,
    /// The zygote dies when the thread that started it exits (`PR_SET_PDEATHSIG`).
    _same_thread: PhantomData<*const ()>,
}

#[derive(Debug)]
struct Live {
    socket: OwnedFd,
    pidfd: OwnedFd,
}

/// What became of a request to clone an init.
pub(crate) enum Cloned {
    /// The init runs, a child of this process.
    Init { pid: libc::pid_t, pidfd: OwnedFd },
    /// Nothing was cloned (the zygote is gone, or was not asked: the plan does not fit its
    /// socket): clone directly, with the same plan.
    Nothing,
    /// The zygote's `clone3` failed with this errno: nothing was cloned.
    Failed(Errno),
    /// The zygote was lost after it got the request: an init may exist and hold the request's
    /// pipes, so the spawn must start over with fresh ones (directly). Such an init sees its life
    /// pipe close and exits; it stays a zombie child of this process.
    Lost,
}

impl Zygote {
    /// Starts a zygote: this program re-executed, which must call [`serve_if_requested`] first
    /// thing in `main`. Fails (and leaves nothing running) if it does not answer as a zygote.
    pub fn start() -> Result<Zygote, ZygoteError> {
        Zygote::start_with(None)
    }

    /// [`Zygote::start`], for containers that keep no capability outside `keep` (a runner's,
    /// whose tests it knows): the zygote drops every other from its bounding set once, at its
    /// start, so that its inits, which inherit the set, have only the rest to drop (otherwise a
    /// `prctl` per capability, per container). A container it cannot serve so (privileged, or
    /// keeping a capability outside `keep`) is cloned directly. A container with a user
    /// namespace is not concerned (its bounding set is full again there). Fails where the
    /// bounding set cannot be changed (without `CAP_SETPCAP`): then [`Zygote::start`].
    pub fn start_bounded(keep: cvtest_spec::Capabilities) -> Result<Zygote, ZygoteError> {
        // Without CAP_SETPCAP (a rootless runner) the zygote could not: not even started.
        const CAP_SETPCAP: u64 = 1 << 8;
        if sys::permitted_caps().map_or(true, |p| p & CAP_SETPCAP == 0) {
            return Err(ZygoteError::Start(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "without CAP_SETPCAP the bounding set cannot be changed",
            )));
        }
        Zygote::start_with(Some(keep.bits()))
    }

    fn start_with(bounding: Option<u64>) -> Result<Zygote, ZygoteError> {
        if std::env::var_os(ENV_ZYGOTE).is_some() {
            return Err(ZygoteError::Nested);
        }
        let (ours, theirs) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ZygoteError::Start(e.into()))?;
        // Best effort (CAP_NET_ADMIN): room for big plans; without it they are cloned directly.
        let _ = setsockopt(&ours, sockopt::SndBufForce, &MAX_REQUEST);
        let timeout = |d: Duration| TimeVal::milliseconds(d.as_millis() as i64);
        setsockopt(&ours, sockopt::ReceiveTimeout, &timeout(HELLO_TIMEOUT))
            .map_err(|e| ZygoteError::Start(e.into()))?;
        let null = sys::dev_null().map_err(ZygoteError::Start)?;
        let argv = CStrArray::new(vec![NAME.to_owned()]);
        let envp = CStrArray::new(environment(std::process::id(), bounding));
        let (pid, pidfd) =
            sys::spawn_zygote(c"/proc/self/exe", &argv, &envp, theirs.as_fd(), null, SOCKET_FD)
                .map_err(|e| ZygoteError::Start(e.into()))?;
        drop(theirs);
        let mut z = Zygote {
            pid,
            live: Some(Live { socket: ours, pidfd }),
            lost: None,
            unplaced: None,
            // What it may still have: the kept ones, and any the kernel does not know.
            bounding: bounding.map_or(u64::MAX, |keep| keep | !known_caps()),
            _same_thread: PhantomData,
        };
        let hello = match z.receive(0) {
            Ok((Reply::Hello { protocol }, None)) if protocol == PROTOCOL => Ok(()),
            Ok((Reply::Hello { protocol }, _)) => {
                Err(ZygoteError::Protocol { found: protocol, expected: PROTOCOL })
            }
            Ok(_) => Err(ZygoteError::Garbled { pid }),
            Err(Received::Eof | Received::Reset) => Err(ZygoteError::NotServing { status: z.stop(false) }),
            Err(Received::Timeout) => Err(ZygoteError::NoAnswer { pid, waited: HELLO_TIMEOUT }),
            Err(Received::Error(source)) => Err(ZygoteError::Channel { pid, source }),
        };
        if let Err(e) = hello {
            z.stop(true);
            return Err(e);
        }
        if let Some(live) = &z.live {
            setsockopt(&live.socket, sockopt::ReceiveTimeout, &timeout(REPLY_TIMEOUT))
                .map_err(|e| ZygoteError::Start(e.into()))?;
        }
        Ok(z)
    }

    /// The zygote's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Runs the zygote on `cpus` (its CPU affinity): the inits it clones start there, so a
    /// container given the same CPUs ([`crate::Options::set_cpu_affinity`]) does not move
    /// after its clone. This only places the zygote: a container without an affinity of its
    /// own gets the zygote's affinity from before the first call, as if cloned unplaced.
    pub fn set_cpu_affinity(&mut self, cpus: &cvtest_spec::CpuList) -> Result<(), SpawnError> {
        if self.unplaced.is_none() {
            let now = crate::sandbox::spawn::get_affinity(self.pid)
                .map_err(|source| SpawnError::Affinity { cpus: cpus.clone(), source })?;
            self.unplaced = Some(now);
        }
        crate::sandbox::spawn::set_affinity(self.pid, cpus)
    }

    /// The affinity a container without one of its own gets (see [`Zygote::set_cpu_affinity`]).
    pub(crate) fn unplaced(&self) -> Option<&cvtest_spec::CpuList> {
        self.unplaced.as_ref()
    }

    /// Why the zygote stopped serving, once it did: spawns through it are then direct.
    pub fn lost(&self) -> Option<&ZygoteError> {
        self.lost.as_ref()
    }

    /// Asks the zygote to clone an init: `clone3(flags | CLONE_PARENT)` of `plan`, into the
    /// cgroup directory `cgroup` when given.
    pub(crate) fn clone_init(
        &mut self,
        flags: u64,
        cgroup: Option<BorrowedFd<'_>>,
        plan: &InitPlan<'_>,
    ) -> Cloned {
        let Some(live) = &self.live else { return Cloned::Nothing };
        // Without a user namespace the init keeps the zygote's bounding set: it must hold all
        // the container keeps (a privileged one keeps all).
        let new_user = flags & libc::CLONE_NEWUSER as u64 != 0;
        let needs = plan.caps.as_ref().map_or(u64::MAX, |c| c.keep);
        if !new_user && needs & !self.bounding != 0 {
            return Cloned::Nothing;
        }
        let request = wire::encode(flags, cgroup, plan);
        if request.bytes.len() > MAX_REQUEST || request.fds.len() > MAX_FDS {
            return Cloned::Nothing;
        }
        let cmsg = [ControlMessage::ScmRights(&request.fds)];
        let sent = loop {
            match sendmsg::<()>(
                live.socket.as_raw_fd(),
                &[IoSlice::new(&request.bytes)],
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        match sent {
            Ok(_) => {}
            // This plan is too big for the socket: clone it directly, keep the zygote.
            Err(Errno::EMSGSIZE) => return Cloned::Nothing,
            // Not sent, so nothing was cloned. The zygote died since the last request.
            Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN) => {
                let pid = self.pid;
                let status = self.stop(false);
                self.lose(ZygoteError::Died { pid, status });
                return Cloned::Nothing;
            }
            Err(e) => {
                let pid = self.pid;
                self.lose(ZygoteError::Channel { pid, source: e.into() });
                return Cloned::Nothing;
            }
        }
        let pid = self.pid;
        match self.receive(1) {
            Ok((Reply::Cloned { pid: init }, Some(pidfd))) => Cloned::Init { pid: init, pidfd },
            Ok((Reply::CloneFailed { errno }, None)) => Cloned::Failed(Errno::from_raw(errno)),
            Ok((Reply::Refused { reason }, None)) => {
                self.lose(ZygoteError::Refused { pid, reason: reason.describe() });
                Cloned::Nothing
            }
            Ok(_) => {
                self.lose(ZygoteError::Garbled { pid });
                Cloned::Lost
            }
            // A zygote killed while our request sat unread in its socket resets the connection
            // instead of closing it: it died all the same.
            Err(Received::Eof) | Err(Received::Reset) => {
                let status = self.stop(false);
                self.lose(ZygoteError::Died { pid, status });
                Cloned::Lost
            }
            Err(Received::Timeout) => {
                self.lose(ZygoteError::NoAnswer { pid, waited: REPLY_TIMEOUT });
                Cloned::Lost
            }
            Err(Received::Error(source)) => {
                self.lose(ZygoteError::Channel { pid, source });
                Cloned::Lost
            }
        }
    }

    /// Gives the zygote up for good (the caller found it useless): records why and ends it.
    pub(crate) fn give_up(&mut self, why: ZygoteError) {
        self.lose(why);
    }

    /// Gives the zygote up for good: records why and ends it.
    fn lose(&mut self, why: ZygoteError) {
        self.stop(true);
        self.lost.get_or_insert(why);
    }

    /// Ends the zygote and reaps it: closes its socket (it exits on EOF), then, if `kill` or it
    /// is still there after a moment, SIGKILLs it. Returns how it ended.
    fn stop(&mut self, kill: bool) -> String {
        let Some(Live { socket, pidfd }) = self.live.take() else { return "already reaped".to_owned() };
        drop(socket);
        if !kill {
            let mut fds = [libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            let _ = sys::poll(&mut fds, 1000);
        }
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        match sys::waitid_pidfd(pidfd.as_fd(), false) {
            Ok(Some(s)) if libc::WIFEXITED(s) => format!("exit code {}", libc::WEXITSTATUS(s)),
            Ok(Some(s)) if libc::WIFSIGNALED(s) => format!("signal {}", libc::WTERMSIG(s)),
            Ok(other) => format!("wait status {other:?}"),
            Err(e) => format!("not reaped: {e}"),
        }
    }

    /// Receives one reply and up to `max_fds` fds with it.
    fn receive(&self, max_fds: usize) -> Result<(Reply, Option<OwnedFd>), Received> {
        let Some(live) = &self.live else { return Err(Received::Eof) };
        let mut buf = [0u8; REPLY_SIZE];
        let mut cmsg = nix::cmsg_space!([RawFd; 2]);
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                live.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(Received::Timeout),
                Err(Errno::ECONNRESET) => return Err(Received::Reset),
                Err(e) => return Err(Received::Error(e.into())),
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs().map_err(|e| Received::Error(e.into()))? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(sys::adopt_received_fds(raw));
                        }
                    }
                    let n = msg.bytes;
                    let truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                    if n == 0 && fds.is_empty() {
                        return Err(Received::Eof);
                    }
                    let reply = match (n, truncated) {
                        (REPLY_SIZE, false) => Reply::decode(&buf),
                        _ => None,
                    };
                    return match reply {
                        Some(r) if fds.len() <= max_fds => Ok((r, fds.pop())),
                        _ => Err(Received::Error(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "malformed reply",
                        ))),
                    };
                }
            }
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        self.stop(true);
    }
}

enum Received {
    Eof,
    /// ECONNRESET: the zygote died with data still unread in its socket.
    Reset,
    Timeout,
    Error(io::Error),
}

/// The capabilities this kernel knows, bit `n` for capability `n`.
fn known_caps() -> u64 {
    let last = crate::sandbox::spawn::last_cap();
    if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

/// This process's environment for the zygote, with [`ENV_ZYGOTE`] naming its socket, its owner
/// and the capabilities it keeps in its bounding set (all, when not given).
fn environment(owner: u32, bounding: Option<u64>) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != ENV_ZYGOTE)
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            CString::new(kv.into_vec()).ok()
        })
        .collect();
    let value = match bounding {
        Some(keep) => format!("{ENV_ZYGOTE}={SOCKET_FD}:{owner}:{keep:x}"),
        None => format!("{ENV_ZYGOTE}={SOCKET_FD}:{owner}"),
    };
    env.push(CString::new(value).unwrap_or_default());
    env
}

/// What the zygote answers: one fixed-size message per request (and one hello).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// First thing after exec: ready, speaking `protocol`.
    Hello { protocol: u32 },
    /// The init runs; its pidfd comes with this message.
    Cloned { pid: i32 },
    /// `clone3` failed with this errno: nothing was cloned.
    CloneFailed { errno: i32 },
    /// The request could not be decoded: nothing was cloned.
    Refused { reason: Refusal },
}

/// Why the zygote refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Refusal {
    Protocol = 1,
    Fds = 2,
    Content = 3,
    Flags = 4,
}

impl Refusal {
    fn from_u32(v: u32) -> Option<Refusal> {
        Some(match v {
            1 => Refusal::Protocol,
            2 => Refusal::Fds,
            3 => Refusal::Content,
            4 => Refusal::Flags,
            _ => return None,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Refusal::Protocol => "another protocol version",
            Refusal::Fds => "not the file descriptors it announced",
            Refusal::Content => "malformed",
            Refusal::Flags => "clone flags it does not accept",
        }
    }
}

impl From<Malformed> for Refusal {
    fn from(m: Malformed) -> Refusal {
        match m {
            Malformed::Protocol => Refusal::Protocol,
            Malformed::Fds => Refusal::Fds,
            Malformed::Content => Refusal::Content,
        }
    }
}

const REPLY_SIZE: usize = 8;

impl Reply {
    fn encode(self) -> [u8; REPLY_SIZE] {
        let (kind, value): (u32, u32) = match self {
            Reply::Hello { protocol } => (1, protocol),
            Reply::Cloned { pid } => (2, pid as u32),
            Reply::CloneFailed { errno } => (3, errno as u32),
            Reply::Refused { reason } => (4, reason as u32),
        };
        let mut out = [0u8; REPLY_SIZE];
        out[..4].copy_from_slice(&kind.to_ne_bytes());
        out[4..].copy_from_slice(&value.to_ne_bytes());
        out
    }

    fn decode(buf: &[u8; REPLY_SIZE]) -> Option<Reply> {
        let kind = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let value = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        Some(match kind {
            1 => Reply::Hello { protocol: value },
            2 => Reply::Cloned { pid: value as i32 },
            3 => Reply::CloneFailed { errno: value as i32 },
            4 => Reply::Refused { reason: Refusal::from_u32(value)? },
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The zygote's side.
// ---------------------------------------------------------------------------------------------

/// Namespaces a request may ask for; anything else is refused.
const ALLOWED_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP) as u64;

/// Exit code of a zygote started wrongly (a bad [`ENV_ZYGOTE`], no socket).
const EXIT_USAGE: i32 = 2;
/// Exit code of a zygote that could not drop from its bounding set what it was told to.
const EXIT_BOUNDING: i32 = 3;

/// In a process started by [`Zygote::start`], serves as the zygote and exits when its owner is
/// gone: never returns. Anywhere else, returns at once. Call it first thing in `main` of every
/// program that starts zygotes (before threads, before anything with side effects).
pub fn serve_if_requested() {
    if let Some(value) = std::env::var_os(ENV_ZYGOTE) {
        std::process::exit(serve(&value));
    }
}

fn serve(value: &OsStr) -> i32 {
    let Some((fd, owner, keep)) = parse_env(value) else { return EXIT_USAGE };
    // Die with the owner's thread; if it is already gone, the signal was missed: leave now.
    if sys::set_parent_death_signal(libc::SIGKILL).is_err() || nix::unistd::getppid().as_raw() != owner {
        return 0;
    }
    sys::set_process_name(NAME);
    // Started with every signal blocked; keep it so (a Ctrl-C for the owner is not for us).
    let _ = sys::block_all_signals();
    let Ok(socket) = sys::adopt_inherited_socket(fd) else { return EXIT_USAGE };
    // Once for every init it clones (which inherit the set): all but what its containers keep.
    let bounding = match keep {
        Some(keep) => {
            let last = crate::sandbox::spawn::last_cap().min(63);
            if (0..=last).filter(|&cap| keep & (1 << cap) == 0).any(|cap| sys::capbset_drop(cap).is_err()) {
                return EXIT_BOUNDING;
            }
            keep | !known_caps()
        }
        None => u64::MAX,
    };
    // Nothing here changes a disposition after this: each init resets only these (the Rust
    // runtime's ignored SIGPIPE, its stack-overflow handlers), not all 64.
    let changed_signals = sys::non_default_signals();
    if send(&socket, Reply::Hello { protocol: PROTOCOL }, None).is_err() {
        return 0;
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        // The next request's size, without taking it (nor its fds); 0 is EOF: the owner is gone.
        let len = match recv(socket.as_raw_fd(), &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
            Ok(0) => return 0,
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(_) => return 0,
        };
        buf.resize(len, 0);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let (n, fds, truncated) =
            match recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    let mut truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                    match msg.cmsgs() {
                        Ok(cmsgs) => {
                            for c in cmsgs {
                                if let ControlMessageOwned::ScmRights(raw) = c {
                                    fds.extend(sys::adopt_received_fds(raw));
                                }
                            }
                        }
                        Err(_) => truncated = true,
                    }
                    (msg.bytes, fds, truncated)
                }
                Err(Errno::EINTR) => continue,
                Err(_) => return 0,
            };
        let (reply, pidfd) = if truncated {
            (Reply::Refused { reason: Refusal::Fds }, None)
        } else {
            match wire::decode(&buf[..n], fds) {
                Ok(req) if req.flags & !ALLOWED_FLAGS == 0 => clone(&req, changed_signals, bounding),
                Ok(_) => (Reply::Refused { reason: Refusal::Flags }, None),
                Err(m) => (Reply::Refused { reason: m.into() }, None),
            }
        };
        // The request and its fds are dropped here: the zygote keeps none of them.
        if send(&socket, reply, pidfd.as_ref().map(AsFd::as_fd)).is_err() {
            return 0;
        }
    }
}

/// Clones the init the request describes, as the owner's child. `changed_signals`: the signals
/// whose disposition this zygote does not have at the default, the only ones its init resets.
/// `bounding`: what this zygote's bounding set may still have, which its init inherits (unless
/// in a new user namespace, where it is full again).
fn clone(req: &wire::Received, changed_signals: u64, bounding: u64) -> (Reply, Option<OwnedFd>) {
    let flags = req.flags | libc::CLONE_PARENT as u64;
    let mut plan = req.plan();
    plan.reset_signals = changed_signals;
    if req.flags & libc::CLONE_NEWUSER as u64 == 0 {
        if let Some(caps) = plan.caps.as_mut() {
            caps.bounding = bounding;
        }
    }
    match sys::clone_init(flags, req.cgroup.as_ref().map(AsFd::as_fd), &plan, crate::sandbox::init::run) {
        Ok((pid, pidfd)) => (Reply::Cloned { pid }, Some(pidfd)),
        Err(errno) => (Reply::CloneFailed { errno: errno as i32 }, None),
    }
}

fn send(socket: &OwnedFd, reply: Reply, fd: Option<BorrowedFd<'_>>) -> nix::Result<usize> {
    let bytes = reply.encode();
    let raw: Vec<RawFd> = fd.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(socket.as_raw_fd(), &[IoSlice::new(&bytes)], cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// `<fd>:<owner pid>`, then optionally `:<bounding set to keep, hex>`.
fn parse_env(value: &OsStr) -> Option<(RawFd, i32, Option<u64>)> {
    let s = value.to_str()?;
    let (fd, rest) = s.split_once(':')?;
    let (owner, keep) = match rest.split_once(':') {
        Some((owner, keep)) => (owner, Some(u64::from_str_radix(keep, 16).ok()?)),
        None => (rest, None),
    };
    Some((fd.parse().ok().filter(|&fd| fd > 2)?, owner.parse().ok().filter(|&p| p > 0)?, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip() {
        for r in [
            Reply::Hello { protocol: PROTOCOL },
            Reply::Cloned { pid: 4242 },
            Reply::CloneFailed { errno: libc::EINVAL },
            Reply::Refused { reason: Refusal::Content },
        ] {
            assert_eq!(Reply::decode(&r.encode()), Some(r));
        }
        assert_eq!(Reply::decode(&[0; REPLY_SIZE]), None);
        let mut bad = Reply::Refused { reason: Refusal::Fds }.encode();
        bad[4] = 99;
        assert_eq!(Reply::decode(&bad), None);
    }

    #[test]
    fn the_variable_names_a_socket_fd_and_an_owner() {
        assert_eq!(parse_env(OsStr::new("3:1234")), Some((3, 1234, None)));
        assert_eq!(parse_env(OsStr::new("3:1234:a0")), Some((3, 1234, Some(0xa0))));
        for bad in ["", "3", "1:5", "3:0", "x:1", "3:-1", "3:1:x", "3:1:", "3:1:2:4"] {
            assert_eq!(parse_env(OsStr::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn the_environment_names_this_owner_once() {
        let env = environment(77, None);
        let ours: Vec<_> = env.iter().filter(|kv| kv.as_bytes().starts_with(b"CVTEST_ZYGOTE=")).collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].as_bytes(), b"CVTEST_ZYGOTE=3:77");
        let env = environment(77, Some(0x3fff));
        assert!(env.iter().any(|kv| kv.as_bytes() == b"CVTEST_ZYGOTE=3:77:3fff"));
    }
}
