//! Running a few lines of the calling thread inside another network namespace.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling thread only. The guard returns the
//! thread to the namespace it came from when dropped, on every path, so code after it never runs
//! in a container's namespace by accident.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sched::{setns, CloneFlags};

use super::NetError;

/// The calling thread's own network namespace, as `/proc/thread-self/ns/net` names it.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// While alive, the calling thread is in another network namespace.
pub(crate) struct NetnsGuard {
    original: OwnedFd,
}

impl NetnsGuard {
    /// Moves the calling thread into `netns`, remembering where it was.
    pub(crate) fn enter(netns: BorrowedFd<'_>) -> Result<NetnsGuard, NetError> {
        let original = open_own()?;
        setns(netns, CloneFlags::CLONE_NEWNET).map_err(|errno| NetError::Netns {
            action: "enter",
            netns: describe(netns),
            source: errno.into(),
        })?;
        Ok(NetnsGuard { original })
    }

    /// Moves the calling thread into a new network namespace (`unshare(CLONE_NEWNET)`),
    /// remembering where it was.
    pub(crate) fn unshare() -> Result<NetnsGuard, NetError> {
        let original = open_own()?;
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| NetError::Netns {
            action: "make (unshare)",
            netns: "a new network namespace".to_owned(),
            source: errno.into(),
        })?;
        Ok(NetnsGuard { original })
    }
}

fn open_own() -> Result<OwnedFd, NetError> {
    Ok(File::open(THREAD_NETNS)
        .map_err(|source| NetError::Netns {
            action: "open the calling thread's network namespace",
            netns: THREAD_NETNS.to_owned(),
            source,
        })?
        .into())
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Going back to a namespace we hold an fd to, with the privilege we just used to leave
        // it, cannot fail short of a kernel bug. If it did, this thread would go on creating
        // sockets and links in a container's namespace: stop loudly rather than do that.
        if let Err(errno) = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET) {
            let msg = format!("cvtest: cannot return this thread to its network namespace: {errno}");
            if std::thread::panicking() {
                eprintln!("{msg}");
                std::process::abort();
            }
            panic!("{msg}");
        }
    }
}

/// `network namespace net:[4026532012]` (the name `/proc/*/ns/net` links use), or what the fd
/// is when it is not a network namespace.
pub(crate) fn describe(netns: BorrowedFd<'_>) -> String {
    let fd = netns.as_raw_fd();
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(target) => match target.to_str() {
            Some(t) if t.starts_with("net:[") => format!("network namespace {t}"),
            _ => format!("fd {fd} ({}, not a network namespace)", target.display()),
        },
        Err(_) => format!("network namespace fd {fd}"),
    }
}
