//! What the machine must offer before any container is made: privileges and a recent kernel.
//! Checked once per process; each failure is one message saying what is missing and what to do.
//!
//! Without `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` cvtest runs **rootless**: every container gets
//! a user namespace of its own (see `sandbox::userns`), which needs unprivileged user
//! namespaces; the sysctls that turn them off are named when they do.

use std::sync::OnceLock;

use crate::error::CreateError;

/// The oldest kernel cvtest runs on: clone3 with pidfds, waitid(P_PIDFD), close_range.
pub(crate) const MIN_KERNEL: (u32, u32) = (5, 10);

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// How this process makes containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Privilege {
    /// `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` in the initial user namespace; whether the kernel
    /// lets it make user namespaces (not in a chroot, for one): without, containers keep real
    /// root.
    Root { user_namespaces: bool },
    /// Neither (or one): each container in a user namespace of its own, owned by the caller.
    Rootless,
}

/// Set to `1`, a process with root's capabilities makes containers as if it had none (its
/// containers are rootless: a user namespace mapping root to the caller, uid 0, and a network
/// in the run's namespace). For benchmarks and tests of the rootless path on a root machine.
pub const FORCE_ROOTLESS_ENV: &str = "CVTEST_ROOTLESS";

#[derive(Debug, Clone)]
enum Problem {
    Privileges { missing: String, sysctl: String },
    UserNamespaces(crate::UsernsProblem),
    Kernel { found: String },
}

/// Whether this process can create containers, and how.
pub(crate) fn check() -> Result<Privilege, CreateError> {
    static RESULT: OnceLock<Result<Privilege, Problem>> = OnceLock::new();
    match RESULT.get_or_init(probe) {
        Ok(p) => Ok(*p),
        Err(Problem::Privileges { missing, sysctl }) => Err(CreateError::Privileges {
            missing: format!("{missing}, and unprivileged user namespaces are off ({sysctl})"),
            fix: "allow them (`sudo sysctl -w` the setting named above, and the same line in /etc/sysctl.d/ to keep it), or run as root (for example `sudo -E cargo cvtest`)",
        }),
        Err(Problem::UserNamespaces(p)) => Err(CreateError::UserNamespaces(p.clone())),
        Err(Problem::Kernel { found }) => Err(CreateError::KernelTooOld {
            found: found.clone(),
            need: format!("{}.{}", MIN_KERNEL.0, MIN_KERNEL.1),
        }),
    }
}

fn probe() -> Result<Privilege, Problem> {
    let release =
        nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(v) = parse_release(&release) {
        if v < MIN_KERNEL {
            return Err(Problem::Kernel { found: release });
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let missing = missing_caps(&status);
    let forced = std::env::var_os(FORCE_ROOTLESS_ENV).is_some_and(|v| v == "1");
    if missing.is_empty() && !forced {
        // Root of a user namespace other than the host's (a container's test making containers
        // itself): it is already no one on the host, and ids it maps to would have to exist in
        // its own namespace; its containers stay in it, as its root.
        let user_namespaces = in_initial_user_namespace() && crate::sys::probe_user_namespace().is_ok();
        return Ok(Privilege::Root { user_namespaces });
    }
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    if let Some(sysctl) = userns_off(read) {
        let euid = nix::unistd::geteuid();
        // An ordinary user needs user namespaces (rootless mode): say first if they are off.
        if !euid.is_root() {
            if let Some(problem) = crate::userns_support::diagnose() {
                return Err(Problem::UserNamespaces(problem));
            }
        }
        let who = if euid.is_root() { "root without".to_owned() } else { format!("user {euid} without") };
        return Err(Problem::Privileges { missing: format!("{who} {}", missing.join(" and ")), sysctl });
    }
    if let Err(errno) = crate::sys::probe_user_namespace() {
        let euid = nix::unistd::geteuid();
        return Err(Problem::Privileges {
            missing: format!("user {euid} without CAP_SYS_ADMIN and CAP_NET_ADMIN"),
            sysctl: format!("the kernel refuses this process a user namespace: {errno} (in a chroot? over user.max_user_namespaces?)"),
        });
    }
    Ok(Privilege::Rootless)
}

/// Whether this process is in the host's user namespace (its `uid_map` maps every id to
/// itself). Inside another one (a rootless container's test making containers of its own), the
/// "host" of its containers is that container: no mapping of its own, no host-end filter
/// (loading one needs `CAP_BPF` in the host's namespace; the host end is in the container's
/// network namespace anyway).
pub(crate) fn in_initial_user_namespace() -> bool {
    static INITIAL: OnceLock<bool> = OnceLock::new();
    *INITIAL.get_or_init(|| std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| is_identity_map(&m)))
}

fn is_identity_map(map: &str) -> bool {
    map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

/// The sysctl that keeps this user from making user namespaces, if one does, as `name=value`.
/// (Ubuntu 24.04's AppArmor restriction lets the clone succeed and refuses the maps; its
/// setting is named too.)
fn userns_off(read: impl Fn(&str) -> Option<String>) -> Option<String> {
    [
        ("/proc/sys/user/max_user_namespaces", "user.max_user_namespaces", "0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone", "0"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "kernel.apparmor_restrict_unprivileged_userns",
            "1",
        ),
    ]
    .into_iter()
    .find(|(path, _, off)| read(path).as_deref() == Some(*off))
    .map(|(_, name, off)| format!("{name}={off}"))
}

/// `(major, minor)` of a kernel release such as `6.1.0-18-amd64`.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The capabilities cvtest needs that `CapEff` in /proc/self/status lacks.
fn missing_caps(status: &str) -> Vec<&'static str> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    [(CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")]
        .into_iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, name)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse() {
        assert_eq!(parse_release("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_release("5.10.209"), Some((5, 10)));
        assert_eq!(parse_release("4.19.0"), Some((4, 19)));
        assert_eq!(parse_release("weird"), None);
        assert!(parse_release("5.4.0").unwrap() < MIN_KERNEL);
    }

    #[test]
    fn only_the_identity_map_is_the_initial_user_namespace() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map("         0          0 4294967295\n      1000 1000 1\n"));
    }

    #[test]
    fn the_sysctl_that_turns_user_namespaces_off_is_named() {
        let with = |p: &'static str, v: &'static str| move |q: &str| (q == p).then(|| v.to_owned());
        assert_eq!(userns_off(|_| None), None);
        assert_eq!(userns_off(with("/proc/sys/user/max_user_namespaces", "96363")), None);
        assert_eq!(
            userns_off(with("/proc/sys/user/max_user_namespaces", "0")).as_deref(),
            Some("user.max_user_namespaces=0")
        );
        assert_eq!(
            userns_off(with("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1")).as_deref(),
            Some("kernel.apparmor_restrict_unprivileged_userns=1")
        );
    }

    #[test]
    fn capabilities_are_read_from_cap_eff() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert!(missing_caps(root).is_empty());
        let none = "CapEff:\t0000000000000000\n";
        assert_eq!(missing_caps(none), ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
        let net_only = format!("CapEff:\t{:016x}\n", 1u64 << CAP_NET_ADMIN);
        assert_eq!(missing_caps(&net_only), ["CAP_SYS_ADMIN"]);
    }
}
