//! Whose cgroup this is: whether this process may divide its own cgroup v2 among containers
//! (root anywhere it is alone; an ordinary user only in a subtree delegated to it), which systemd
//! manager to ask for a delegated scope otherwise, and the messages for when neither works.

use std::io;
use std::path::Path;

use nix::unistd::{access, geteuid, AccessFlags};

use super::systemd::Manager;
use super::{fs, v2, CgroupError, CgroupVersion};

/// The `user@.service` drop-in that delegates the controllers cvtest needs to every user's
/// manager (systemd 252 and later delegate memory, pids and cpu already).
pub const USER_DELEGATE_DROP_IN: &str = "/etc/systemd/system/user@.service.d/delegate.conf";

/// Which systemd manager to ask for a delegated scope, or `None` when the own cgroup `base`
/// is usable as it is: for root, unless it is shared with other processes and lacks the
/// controllers; for an ordinary user, only if it is delegated (see [`delegated`]) and not shared.
pub(crate) fn wanted_scope(base: &Path) -> Option<Manager> {
    let shared = super::systemd::shared_without(base, &v2::CONTROLLERS);
    if geteuid().is_root() {
        shared.then_some(Manager::System)
    } else {
        (shared || !delegated(base)).then_some(Manager::User)
    }
}

/// Whether this process may create child cgroups in `base`, enable controllers for them and
/// move processes about: the directory, `cgroup.subtree_control` and `cgroup.procs` writable
/// (what systemd's `Delegate=` chowns to the user), and memory, pids and cpu available.
pub(crate) fn delegated(base: &Path) -> bool {
    let writable = |p: &Path| access(p, AccessFlags::W_OK).is_ok();
    let available = fs::read(&base.join("cgroup.controllers")).unwrap_or_default();
    writable(base)
        && writable(&base.join("cgroup.subtree_control"))
        && writable(&base.join("cgroup.procs"))
        && v2::CONTROLLERS.iter().all(|c| available.split_ascii_whitespace().any(|a| a == *c))
}

/// The error for an ordinary user who may not create a cgroup at `path`.
pub(crate) fn not_delegated(
    version: CgroupVersion,
    path: &Path,
    systemd: Option<&String>,
    source: io::Error,
) -> CgroupError {
    let why = match version {
        CgroupVersion::V1 => "cgroup v1 has no delegation to ordinary users (the memory controller is on a \
                              cgroup v1 hierarchy here)"
            .to_owned(),
        CgroupVersion::V2 => format!(
            "it is not delegated to this user{}",
            systemd.map_or_else(String::new, |why| format!(
                ", and asking systemd for a delegated scope failed: {why}"
            ))
        ),
    };
    let fix = match version {
        CgroupVersion::V1 => "run as root (sudo -E), or on a machine with cgroup v2 and systemd (the default of \
                              Ubuntu 22.04+, Fedora, Debian 12; or boot with systemd.unified_cgroup_hierarchy=1), \
                              where the user's systemd manager delegates memory, pids and cpu"
            .to_owned(),
        CgroupVersion::V2 => "run from a login session of this user, whose systemd user manager \
                              (user@UID.service) and user bus cvtest asks for a scope with Delegate=yes \
                              (`systemd-run --user --scope -p Delegate=yes true` shows whether that works), \
                              or as root"
            .to_owned(),
    };
    CgroupError::NotDelegated { uid: geteuid().as_raw(), path: path.to_owned(), why, fix, source }
}

/// The error for controllers an ordinary user's delegated cgroup lacks.
pub(crate) fn controllers_not_delegated(
    base: &Path,
    missing: Vec<&'static str>,
    available: &str,
) -> CgroupError {
    CgroupError::ControllersNotDelegated {
        path: base.to_owned(),
        available: available.trim().to_owned(),
        fix: format!(
            "have systemd delegate them to user managers: create {USER_DELEGATE_DROP_IN} with the two lines \
             `[Service]` and `Delegate=cpu cpuset io memory pids`, run `sudo systemctl daemon-reload`, \
             and log out and in again (or restart user@$(id -u).service)"
        ),
        missing,
    }
}

/// An error and its sources, on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
