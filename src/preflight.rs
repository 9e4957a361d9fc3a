//! What the machine must offer before any container is made: privileges and a recent kernel.
//! Checked once per process; each failure is one message saying what is missing and what to do.

use std::sync::OnceLock;

use crate::error::CreateError;

/// The oldest kernel cvtest runs on: clone3 with pidfds, waitid(P_PIDFD), close_range.
pub(crate) const MIN_KERNEL: (u32, u32) = (5, 10);

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

#[derive(Debug, Clone)]
enum Problem {
    Privileges { missing: String },
    UserNamespaces(crate::UsernsProblem),
    Kernel { found: String },
}

/// Whether this process can create containers.
pub(crate) fn check() -> Result<(), CreateError> {
    static RESULT: OnceLock<Result<(), Problem>> = OnceLock::new();
    match RESULT.get_or_init(probe) {
        Ok(()) => Ok(()),
        Err(Problem::Privileges { missing }) => Err(CreateError::Privileges {
            missing: missing.clone(),
            fix: "run as root (for example `sudo -E cargo cvtest`), or give the process CAP_SYS_ADMIN and CAP_NET_ADMIN",
        }),
        Err(Problem::UserNamespaces(p)) => Err(CreateError::UserNamespaces(p.clone())),
        Err(Problem::Kernel { found }) => Err(CreateError::KernelTooOld {
            found: found.clone(),
            need: format!("{}.{}", MIN_KERNEL.0, MIN_KERNEL.1),
        }),
    }
}

fn probe() -> Result<(), Problem> {
    let release =
        nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(v) = parse_release(&release) {
        if v < MIN_KERNEL {
            return Err(Problem::Kernel { found: release });
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let missing = missing_caps(&status);
    if !missing.is_empty() {
        let euid = nix::unistd::geteuid();
        // An ordinary user needs user namespaces (rootless mode): say first if they are off.
        if !euid.is_root() {
            if let Some(problem) = crate::userns_support::diagnose() {
                return Err(Problem::UserNamespaces(problem));
            }
        }
        let who = if euid.is_root() { "root without".to_owned() } else { format!("user {euid} without") };
        return Err(Problem::Privileges { missing: format!("{who} {}", missing.join(" and ")) });
    }
    Ok(())
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
    fn capabilities_are_read_from_cap_eff() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert!(missing_caps(root).is_empty());
        let none = "CapEff:\t0000000000000000\n";
        assert_eq!(missing_caps(none), ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
        let net_only = format!("CapEff:\t{:016x}\n", 1u64 << CAP_NET_ADMIN);
        assert_eq!(missing_caps(&net_only), ["CAP_SYS_ADMIN"]);
    }
}
