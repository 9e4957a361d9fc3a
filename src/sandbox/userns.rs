//! The container's user namespace: who the test's root is outside, and the parent's half of
//! setting it up.
//!
//! The init is cloned with `CLONE_NEWUSER` together with its other namespaces, so the kernel
//! makes the user namespace first and the others owned by it. The parent then writes the maps
//! (one line each: container uid/gid 0 to the owner's uid/gid, no helper), tells the init on the
//! life pipe, and the init becomes uid and gid 0 of its namespace (see `init::become_root`).
//!
//! - **Rootless** (the caller lacks `CAP_SYS_ADMIN`): the owner is the caller itself, and
//!   `setgroups` is `deny` first, which the kernel requires before an unprivileged `gid_map`.
//!   The caller's supplementary groups stay (they cannot be dropped without `setgroups`).
//! - **Root**: the owner is an unprivileged user ([`root_owner`]); `setgroups` stays allowed so
//!   that the init drops root's supplementary groups. A privileged container keeps real root
//!   (no user namespace).
//!
//! Only one id is mapped each way: `newuidmap` and `/etc/subuid` ranges are not used, so a test
//! cannot `chown` a file to any id but its own 0 (EINVAL), and files of other owners show as
//! `nobody` (65534).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{CreateError, SpawnError};

/// The host user and group that the container's root (uid 0, gid 0) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MappedOwner {
    pub uid: u32,
    pub gid: u32,
}

/// The environment variable that names the owner in root mode: `uid` or `uid:gid` (the gid
/// defaults to the uid). `0` turns the user namespace off.
pub const OWNER_ENV: &str = "CVTEST_MAP_ROOT_TO";

/// A container's user namespace, as planned in the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserNs {
    pub(crate) owner: MappedOwner,
    /// Write `deny` to `setgroups` (rootless: the kernel requires it); then the init keeps the
    /// caller's supplementary groups, since it may not change them.
    pub(crate) deny_setgroups: bool,
}

impl UserNs {
    /// The rootless user namespace: root is the caller.
    pub(crate) fn rootless() -> UserNs {
        let owner =
            MappedOwner { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw() };
        UserNs { owner, deny_setgroups: true }
    }

    /// Root mode: root is `owner`, unless `owner` is root itself (then no user namespace).
    pub(crate) fn mapped_root(owner: MappedOwner) -> Option<UserNs> {
        (owner.uid != 0).then_some(UserNs { owner, deny_setgroups: false })
    }

    /// Writes `/proc/<pid>/{setgroups,uid_map,gid_map}` for the init `pid`, which waits for them.
    pub(crate) fn write_maps(&self, pid: libc::pid_t) -> Result<(), SpawnError> {
        let write = |file: &str, text: String| {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&path, text).map_err(|source| SpawnError::IdMap { path, source })
        };
        if self.deny_setgroups {
            write("setgroups", "deny".to_owned())?;
        }
        write("uid_map", format!("0 {} 1\n", self.owner.uid))?;
        write("gid_map", format!("0 {} 1\n", self.owner.gid))
    }
}

/// The owner of a root-mode container's root, first found of:
/// 1. `configured` ([`crate::Options::map_root_to`]);
/// 2. [`OWNER_ENV`] (`uid` or `uid:gid`);
/// 3. `SUDO_UID` and `SUDO_GID` (the user who ran `sudo`);
/// 4. the owner of the working directory (the workspace, under `cargo test`) when not root.
///
/// `None`: nothing names a user other than root (a root-owned checkout run as root without
/// `sudo`): then the container keeps real root, as before, and the README says how to name one.
pub(crate) fn root_owner(configured: Option<MappedOwner>) -> Option<MappedOwner> {
    configured
        .or_else(|| std::env::var(OWNER_ENV).ok().and_then(|v| parse_owner(&v)))
        .or_else(|| {
            let id = |k: &str| std::env::var(k).ok()?.parse::<u32>().ok();
            Some(MappedOwner { uid: id("SUDO_UID")?, gid: id("SUDO_GID")? })
        })
        .or_else(|| std::env::current_dir().ok().and_then(|d| owner_of(&d)))
        .filter(|o| o.uid != 0)
}

/// A root-mode container's writable directory must be writable by the mapped owner (by its
/// owner, group or other bits): otherwise every write there fails inside, with no word why.
pub(crate) fn check_writable(dir: &Path, owner: MappedOwner) -> Result<(), CreateError> {
    let meta =
        std::fs::metadata(dir).map_err(|source| CreateError::Writable { path: dir.to_owned(), source })?;
    let mode = meta.mode();
    let writable = (meta.uid() == owner.uid && mode & 0o200 != 0)
        || (meta.gid() == owner.gid && mode & 0o020 != 0)
        || mode & 0o002 != 0;
    if writable {
        return Ok(());
    }
    Err(CreateError::NotWritableByMappedRoot {
        path: dir.to_owned(),
        dir_uid: meta.uid(),
        dir_gid: meta.gid(),
        uid: owner.uid,
        gid: owner.gid,
    })
}

/// Whether `owner` (without supplementary groups, as a mapped root is) may search `dir` and
/// every directory above it: else nothing below `dir` is within its reach.
pub(crate) fn searchable(dir: &Path, owner: MappedOwner) -> bool {
    dir.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|meta| {
            let mode = meta.mode();
            (meta.uid() == owner.uid && mode & 0o100 != 0)
                || (meta.gid() == owner.gid && mode & 0o010 != 0)
                || mode & 0o001 != 0
        })
    })
}

/// `uid` or `uid:gid`.
fn parse_owner(s: &str) -> Option<MappedOwner> {
    let (uid, gid) = match s.trim().split_once(':') {
        Some((u, g)) => (u.parse().ok()?, g.parse().ok()?),
        None => {
            let uid = s.trim().parse().ok()?;
            (uid, uid)
        }
    };
    Some(MappedOwner { uid, gid })
}

fn owner_of(path: &Path) -> Option<MappedOwner> {
    let meta = std::fs::metadata(path).ok()?;
    Some(MappedOwner { uid: meta.uid(), gid: meta.gid() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_parse() {
        assert_eq!(parse_owner("1000"), Some(MappedOwner { uid: 1000, gid: 1000 }));
        assert_eq!(parse_owner("1000:100"), Some(MappedOwner { uid: 1000, gid: 100 }));
        assert_eq!(parse_owner("x"), None);
        assert_eq!(parse_owner("1:"), None);
    }

    #[test]
    fn a_configured_owner_wins_and_root_means_none() {
        let o = MappedOwner { uid: 4242, gid: 4343 };
        assert_eq!(root_owner(Some(o)), Some(o));
        assert_eq!(root_owner(Some(MappedOwner { uid: 0, gid: 0 })), None);
        assert_eq!(UserNs::mapped_root(MappedOwner { uid: 0, gid: 5 }), None);
        assert!(!UserNs::mapped_root(o).expect("a user namespace").deny_setgroups);
    }
}
