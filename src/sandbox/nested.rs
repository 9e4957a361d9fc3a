//! Work done inside a rootless container's user namespace, for a lab whose maker is rootless.
//!
//! A rootless maker holds every capability in the user namespaces it owns (the kernel's rule
//! for a namespace's owner in its parent namespace), so the netlink requests it *sends* are
//! allowed over any namespace of the test's container. But a request is also checked against
//! the credentials of whoever *opened* the socket, and the socket lives in its opener's network
//! namespace: the maker may neither enter nor make a network namespace itself (that needs
//! `CAP_SYS_ADMIN` in its own user namespace). So a short-lived helper does it: a fork of this
//! process that joins the test's user namespace (`setns`, allowed to its owner, and only to a
//! single-threaded process), where it has every capability, and then
//!
//! - [`netlink_socket_in`]: joins a network namespace owned there (the test's, a node's), or
//!   makes one (the lab's switch), and opens a route-netlink socket in it, which this process
//!   copies (`pidfd_getfd`: the helper is its child, same user, dumpable) before killing it;
//! - [`clone_init_in`]: clones a lab node's init (`CLONE_PARENT`: it is this process's child, as
//!   any init) into a new user namespace that is a *child* of the test's, and writes its maps
//!   (`0 0 1`: root there is root of the test's namespace, the maker outside), which only a
//!   process in the parent namespace may. The test's namespace then owns, directly or through
//!   its children, every namespace of the lab, and a socket opened there is allowed over all of
//!   them: the switch's, the test's, each node's.
//!
//! The helpers run between fork and exit in a copy of a multi-threaded process: like the init,
//! they make raw syscalls only ([`crate::sys`]), allocate nothing and report through a pipe.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use crate::sys::{self, Errno};

/// What a helper could not do, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed {
    pub(crate) step: &'static str,
    pub(crate) errno: Errno,
}

impl Failed {
    fn new(step: &'static str, errno: Errno) -> Failed {
        Failed { step, errno }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (in a helper joining the test's user namespace): {}", self.step, self.errno.desc())
    }
}

impl std::error::Error for Failed {}

/// The steps a helper reports by number (0: done).
const STEPS: [&str; 8] = [
    "done",
    "joining the test's user namespace",
    "joining the network namespace",
    "making the lab switch's network namespace",
    "opening a route-netlink socket",
    "opening the new network namespace",
    "cloning the node's init",
    "writing the node's uid and gid maps",
];

/// A helper's report: step, errno, value (an fd number or a pid).
type Report = [i32; 3];

fn encode(r: Report) -> [u8; 12] {
    let mut b = [0u8; 12];
    for (i, v) in r.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    b
}

fn decode(b: &[u8; 12]) -> Report {
    let at = |i: usize| i32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    [at(0), at(1), at(2)]
}

/// Reads a report: `None` if the helper died first.
fn read_report(fd: &OwnedFd) -> Option<[u8; 12]> {
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        match sys::read(fd.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    Some(buf)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Failed> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Failed::new("making a pipe", e))
}

/// Kills (a no-op once it exited) and reaps a helper.
struct Helper(OwnedFd);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = sys::pidfd_send_signal(self.0.as_fd(), libc::SIGKILL);
        let _ = sys::waitid_pidfd(self.0.as_fd(), false);
    }
}

struct SocketJob {
    userns: RawFd,
    /// `None`: make a new network namespace.
    netns: Option<RawFd>,
    report: RawFd,
    /// Read end of the hold pipe: the helper waits on it (EOF: this process is gone).
    hold: RawFd,
    /// The write end, this process's: closed in the helper.
    hold_w: RawFd,
    /// This process's pid: the helper's parent, unless it died before the death signal was set.
    parent: libc::pid_t,
}

/// A route-netlink socket in the network namespace `netns`, or in a new one (then also returned)
/// owned by the user namespace `userns`, opened by a helper in `userns` (see the module docs).
pub(crate) fn netlink_socket_in(
    userns: BorrowedFd<'_>,
    netns: Option<BorrowedFd<'_>>,
) -> Result<(OwnedFd, Option<OwnedFd>), Failed> {
    let (report_r, report_w) = pipe()?;
    let (hold_r, hold_w) = pipe()?;
    let job = SocketJob {
        userns: userns.as_raw_fd(),
        netns: netns.map(|fd| fd.as_raw_fd()),
        report: report_w.as_raw_fd(),
        hold: hold_r.as_raw_fd(),
        hold_w: hold_w.as_raw_fd(),
        parent: nix::unistd::getpid().as_raw(),
    };
    let (_, pidfd) =
        sys::clone_init(0, None, &job, socket_job).map_err(|e| Failed::new("forking a helper", e))?;
    let helper = Helper(pidfd);
    drop((report_w, hold_r));
    let Some(bytes) = read_report(&report_r) else {
        return Err(Failed::new("the helper died", Errno::ECHILD));
    };
    let [step, errno, _] = decode(&bytes);
    if step != 0 {
        let step = STEPS.get(step as usize).copied().unwrap_or("an unknown step");
        return Err(Failed::new(step, Errno::from_raw(errno)));
    }
    let [_, socket, ns] = decode(&bytes);
    let copy = |fd: RawFd| {
        sys::pidfd_getfd(helper.0.as_fd(), fd).map_err(|e| Failed::new("copying the helper's socket", e))
    };
    let socket = copy(socket)?;
    let ns = if netns.is_none() { Some(copy(ns)?) } else { None };
    drop(helper);
    drop(hold_w);
    Ok((socket, ns))
}

/// The socket helper's life (async-signal-safe). Never returns.
fn socket_job(job: &SocketJob) -> ! {
    let _ = sys::close_range(job.hold_w as libc::c_uint, job.hold_w as libc::c_uint);
    let done = (|| -> Result<Report, Report> {
        let fail = |step: i32| move |e: Errno| [step, e as i32, 0];
        sys::setns(job.userns, libc::CLONE_NEWUSER).map_err(fail(1))?;
        // Dies with the thread that forked it, even when a sibling helper (forked by another
        // thread meanwhile) holds a copy of its hold pipe's write end.
        // (Set after the setns: a change of credentials clears it. A parent already gone missed
        // it: then leave now.)
        let _ = sys::set_parent_death_signal(libc::SIGKILL);
        if nix::unistd::getppid().as_raw() != job.parent {
            sys::exit(0);
        }
        match job.netns {
            Some(fd) => sys::setns(fd, libc::CLONE_NEWNET).map_err(fail(2))?,
            None => sys::unshare(libc::CLONE_NEWNET).map_err(fail(3))?,
        }
        let socket = sys::netlink_route_socket().map_err(fail(4))?.into_raw_fd();
        let ns = match job.netns {
            Some(_) => -1,
            None => sys::open_read_only(c"/proc/thread-self/ns/net").map_err(fail(5))?.into_raw_fd(),
        };
        Ok([0, socket, ns])
    })();
    let report = match done {
        Ok(r) | Err(r) => r,
    };
    let _ = sys::write(job.report, &encode(report));
    // Until this process copied the fds and kills it, or is gone (EOF).
    let mut byte = [0u8; 1];
    while let Err(Errno::EINTR) = sys::read(job.hold, &mut byte) {}
    sys::exit(0)
}

struct LaunchJob<'a, P> {
    userns: RawFd,
    flags: u64,
    /// The cgroup to clone into (`CLONE_INTO_CGROUP`), if any.
    into: Option<BorrowedFd<'a>>,
    plan: &'a P,
    child: fn(&P) -> !,
    report: RawFd,
}

/// Clones an init with `flags` (which include `CLONE_NEWUSER`) from inside the user namespace
/// `userns`, as this process's child (`CLONE_PARENT`), into the cgroup `into` when given and the
/// kernel takes it (`CLONE_INTO_CGROUP`), and writes its maps (`0 0 1`: its root is `userns`'s
/// root). The init runs `child(plan)`. Returns its pid, a pidfd, and whether it was cloned into
/// `into`.
pub(crate) fn clone_init_in<'a, P>(
    userns: BorrowedFd<'_>,
    flags: u64,
    into: Option<BorrowedFd<'a>>,
    plan: &'a P,
    child: fn(&P) -> !,
) -> Result<(libc::pid_t, OwnedFd, bool), Failed> {
    let (report_r, report_w) = pipe()?;
    let job =
        LaunchJob { userns: userns.as_raw_fd(), flags, into, plan, child, report: report_w.as_raw_fd() };
    let (_, pidfd) =
        sys::clone_init(0, None, &job, launch::<P>).map_err(|e| Failed::new("forking a helper", e))?;
    let helper = Helper(pidfd);
    drop(report_w);
    let report = read_report(&report_r);
    // Reaped before anything else: its copies of the init's pipes are closed.
    drop(helper);
    let Some(bytes) = report else {
        return Err(Failed::new("the helper died", Errno::ECHILD));
    };
    let [step, errno, pid] = decode(&bytes);
    // Done: the errno slot says whether it went into the cgroup.
    let in_cgroup = step == 0 && errno == 1;
    // The init is this process's child from the clone on, reported even when its maps failed.
    let init = (pid > 0).then(|| sys::pidfd_open(pid));
    if step != 0 {
        if let Some(Ok(fd)) = init {
            let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            let _ = sys::waitid_pidfd(fd.as_fd(), false);
        }
        let step = STEPS.get(step as usize).copied().unwrap_or("an unknown step");
        return Err(Failed::new(step, Errno::from_raw(errno)));
    }
    // Not reaped (it waits for its maps' byte), so the pid is still the init's.
    let pidfd = match init {
        Some(Ok(fd)) => fd,
        Some(Err(e)) => return Err(Failed::new("opening the node init's pidfd", e)),
        None => return Err(Failed::new("the helper reported no pid", Errno::EINVAL)),
    };
    Ok((pid, pidfd, in_cgroup))
}

/// `/proc/<pid>/<name>` in `buf`, NUL-terminated, without allocating.
fn proc_file<'b>(buf: &'b mut [u8; 64], pid: i32, name: &[u8]) -> Option<&'b CStr> {
    let mut digits = [0u8; 12];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        *digits.get_mut(len)? = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    let mut put = |bytes: &[u8], buf: &mut [u8; 64]| -> Option<()> {
        for &b in bytes {
            *buf.get_mut(at)? = b;
            at += 1;
        }
        Some(())
    };
    put(b"/proc/", buf)?;
    for i in (0..len).rev() {
        put(&[*digits.get(i)?], buf)?;
    }
    put(b"/", buf)?;
    put(name, buf)?;
    put(&[0], buf)?;
    CStr::from_bytes_until_nul(&buf[..]).ok()
}

/// The launching helper's life (async-signal-safe). Never returns.
fn launch<P>(job: &LaunchJob<'_, P>) -> ! {
    let report = (|| -> Result<Report, Report> {
        sys::setns(job.userns, libc::CLONE_NEWUSER).map_err(|e| [1, e as i32, 0])?;
        let flags = job.flags | libc::CLONE_PARENT as u64;
        // The parent's fd, inherited (same number), open for this call.
        let into = job.into;
        let (pid, pidfd, in_cgroup) = match sys::clone_init(flags, into, job.plan, job.child) {
            Ok((pid, pidfd)) => (pid, pidfd, into.is_some()),
            // A kernel that refuses CLONE_INTO_CGROUP (before 5.7): the parent moves the init.
            Err(Errno::E2BIG | Errno::EINVAL | Errno::EOPNOTSUPP) if into.is_some() => {
                let (pid, pidfd) =
                    sys::clone_init(flags, None, job.plan, job.child).map_err(|e| [6, e as i32, 0])?;
                (pid, pidfd, false)
            }
            Err(e) => return Err([6, e as i32, 0]),
        };
        let mut buf = [0u8; 64];
        let maps = (|| -> Result<(), Errno> {
            // Denied already (a rootless namespace's children inherit it); said again.
            if let Some(path) = proc_file(&mut buf, pid, b"setgroups") {
                let _ = sys::write_file(path, b"deny");
            }
            let path = proc_file(&mut buf, pid, b"uid_map").ok_or(Errno::ENAMETOOLONG)?;
            sys::write_file(path, b"0 0 1\n")?;
            let path = proc_file(&mut buf, pid, b"gid_map").ok_or(Errno::ENAMETOOLONG)?;
            sys::write_file(path, b"0 0 1\n")
        })();
        match maps {
            Ok(()) => Ok([0, i32::from(in_cgroup), pid]),
            Err(e) => {
                let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                Err([7, e as i32, pid])
            }
        }
    })();
    let report = match report {
        Ok(r) | Err(r) => r,
    };
    let _ = sys::write(job.report, &encode(report));
    sys::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_formatted_without_allocating() {
        let mut buf = [0u8; 64];
        assert_eq!(proc_file(&mut buf, 4021, b"uid_map"), Some(c"/proc/4021/uid_map"));
        assert_eq!(proc_file(&mut buf, 7, b"gid_map"), Some(c"/proc/7/gid_map"));
        assert_eq!(decode(&encode([3, -1, 99])), [3, -1, 99]);
    }
}
