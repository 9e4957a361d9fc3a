//! Shared helpers for privileged tests.

use libtest_mimic::{Completion, Failed, Trial};

/// Why privileged tests cannot run here, or `None` when they can.
pub fn missing_privileges() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!(
            "needs root (euid is {euid}): cgroups, namespaces and veths need CAP_SYS_ADMIN and CAP_NET_ADMIN; run as root or with sudo -E"
        ));
    }
    None
}

/// A trial that runs `f` as root and reports itself ignored, with the reason, otherwise.
pub fn privileged(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || match missing_privileges() {
        Some(reason) => Ok(Completion::ignored_with(reason)),
        None => f().map(|()| Completion::Completed),
    })
}

/// Like [`privileged`], for a test that may find this machine's set-up unable to run it:
/// `Ok(Some(reason))` reports it ignored with the reason.
pub fn privileged_unless(name: &str, f: fn() -> Result<Option<String>, Failed>) -> Trial {
    Trial::ignorable_test(name, move || match missing_privileges() {
        Some(reason) => Ok(Completion::ignored_with(reason)),
        None => f().map(|skip| skip.map_or(Completion::Completed, Completion::ignored_with)),
    })
}

/// Why cgroup tests cannot run here, or `None` when they can: as root always; as an ordinary
/// user when this process gets a cgroup delegated to it (its own, or a scope from the user's
/// systemd manager), found by creating and removing one.
pub fn missing_cgroup_delegation() -> Option<String> {
    // Root can: nothing is missing.
    missing_privileges()?;
    let made = cvtest::test_support::Hierarchy::detect().and_then(|h| h.create(&cvtest::Limits::default()));
    match made {
        Ok(mut cg) => cg.destroy().err().map(|e| format!("removing a probe cgroup failed: {}", chain(&e))),
        Err(e) => Some(format!("no cgroup delegated to this user: {}", chain(&e))),
    }
}

/// A trial that runs `f` where cgroups can be made (root, or a user with a delegated cgroup)
/// and reports itself ignored, with the reason, otherwise.
pub fn cgroups(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || match missing_cgroup_delegation() {
        Some(reason) => Ok(Completion::ignored_with(reason)),
        None => f().map(|()| Completion::Completed),
    })
}

/// An error and its sources, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}
