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
