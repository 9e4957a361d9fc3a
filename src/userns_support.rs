//! Whether this kernel lets an ordinary user create user namespaces, read from the sysctls that
//! switch them off (under an injectable root, so the reading is unit-tested on a tempdir), with
//! one message per cause saying what to do.
//!
//! - `kernel.unprivileged_userns_clone = 0` (Debian's and Ubuntu's switch, and some hardened
//!   kernels'): no user namespace for an ordinary user at all.
//! - `user.max_user_namespaces = 0`: none for anyone.
//! - `kernel.apparmor_restrict_unprivileged_userns = 1` (Ubuntu 23.10 and later, 24.04 LTS):
//!   an unconfined process gets its user namespace, but without capabilities inside, unless an
//!   AppArmor profile with the `userns` rule covers it. cvtest ships one
//!   (`contrib/apparmor/cvtest`).

use std::path::{Path, PathBuf};

/// Where the shipped AppArmor profile is installed.
pub const APPARMOR_PROFILE: &str = "/etc/apparmor.d/cvtest";

/// Why an ordinary user cannot use user namespaces here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernsProblem {
    #[error(
        "unprivileged user namespaces are disabled ({path} is 0): as root, `sysctl -w \
         kernel.unprivileged_userns_clone=1` (and in /etc/sysctl.d/ to keep it), or run as root"
    )]
    Disabled { path: PathBuf },
    #[error(
        "user namespaces are disabled ({path} is 0): as root, `sysctl -w user.max_user_namespaces=15000` \
         (and in /etc/sysctl.d/ to keep it), or run as root"
    )]
    NoneAllowed { path: PathBuf },
    #[error(
        "AppArmor restricts unprivileged user namespaces ({path} is 1, as on Ubuntu 24.04) and this process \
         ({label}) has no profile that allows them: install cvtest's profile (`sudo install -m 644 \
         contrib/apparmor/cvtest {APPARMOR_PROFILE} && sudo apparmor_parser -r {APPARMOR_PROFILE}`), or lift \
         the restriction (`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), or run as root"
    )]
    AppArmor { path: PathBuf, label: String },
}

/// The first reason, if any, why an ordinary user's user namespaces do not work here.
pub(crate) fn diagnose() -> Option<UsernsProblem> {
    diagnose_at(Path::new("/"))
}

/// [`diagnose`] with `/proc` below `root`.
pub(crate) fn diagnose_at(root: &Path) -> Option<UsernsProblem> {
    let read = |p: &Path| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let sys = root.join("proc/sys");
    let clone = sys.join("kernel/unprivileged_userns_clone");
    if read(&clone).as_deref() == Some("0") {
        return Some(UsernsProblem::Disabled { path: clone });
    }
    let max = sys.join("user/max_user_namespaces");
    if read(&max).as_deref() == Some("0") {
        return Some(UsernsProblem::NoneAllowed { path: max });
    }
    let restrict = sys.join("kernel/apparmor_restrict_unprivileged_userns");
    if read(&restrict).as_deref() == Some("1") {
        // The newer per-LSM file first; the older one is shared with other LSMs.
        let label = read(&root.join("proc/self/attr/apparmor/current"))
            .or_else(|| read(&root.join("proc/self/attr/current")))
            .unwrap_or_default();
        // A profile in complain mode or with flags=(unconfined) shows "name (mode)"; plain
        // "unconfined" is no profile at all, and that is what the restriction applies to.
        if label.is_empty() || label == "unconfined" {
            let label = if label.is_empty() { "no AppArmor label".to_owned() } else { label };
            return Some(UsernsProblem::AppArmor { path: restrict, label });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn each_switch_is_named_with_its_fix() {
        let dir = root_with(&[("proc/sys/kernel/unprivileged_userns_clone", "0\n")]);
        let e = diagnose_at(dir.path()).unwrap();
        assert!(matches!(e, UsernsProblem::Disabled { .. }));
        assert!(e.to_string().contains("sysctl -w kernel.unprivileged_userns_clone=1"), "{e}");

        let dir = root_with(&[
            ("proc/sys/kernel/unprivileged_userns_clone", "1\n"),
            ("proc/sys/user/max_user_namespaces", "0\n"),
        ]);
        let e = diagnose_at(dir.path()).unwrap();
        assert!(e.to_string().contains("user.max_user_namespaces=15000"), "{e}");

        let dir = root_with(&[
            ("proc/sys/user/max_user_namespaces", "63704\n"),
            ("proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1\n"),
            ("proc/self/attr/apparmor/current", "unconfined\n"),
        ]);
        let e = diagnose_at(dir.path()).unwrap();
        assert!(matches!(e, UsernsProblem::AppArmor { .. }));
        let text = e.to_string();
        assert!(
            text.contains("contrib/apparmor/cvtest")
                && text.contains("apparmor_restrict_unprivileged_userns=0"),
            "{text}"
        );
    }

    #[test]
    fn a_profile_or_no_switch_is_no_problem() {
        let dir = root_with(&[
            ("proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1\n"),
            ("proc/self/attr/apparmor/current", "cvtest-test-binaries (unconfined)\n"),
        ]);
        assert_eq!(diagnose_at(dir.path()), None);
        let dir = root_with(&[("proc/sys/kernel/apparmor_restrict_unprivileged_userns", "0\n")]);
        assert_eq!(diagnose_at(dir.path()), None);
        assert_eq!(diagnose_at(root_with(&[]).path()), None);
    }
}
