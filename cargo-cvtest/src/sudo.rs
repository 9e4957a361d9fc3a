//! Under `sudo`, the build and the files the runner writes belong to the user who ran it.
//!
//! `sudo cargo build` leaves root-owned files in `target/` and the next plain `cargo build`
//! fails on them. So when `cargo cvtest` runs as root with `SUDO_UID` set, cargo (`metadata` and
//! `test --no-run`) runs as that user, with their `HOME`, and what the runner itself creates
//! (`CARGO_TARGET_TMPDIR`, the JUnit file, the nextest peaks log) is handed to them. The tests
//! still run in containers made by root (with their root mapped to the same user: see the
//! library's `Options::map_root_to`). `CVTEST_BUILD_AS_ROOT=1` keeps the old behaviour.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The variable that keeps the build as root under `sudo`.
pub(crate) const BUILD_AS_ROOT_ENV: &str = "CVTEST_BUILD_AS_ROOT";

/// The user who ran `sudo`, as the build runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvokingUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) name: String,
    pub(crate) home: PathBuf,
}

/// Why the build cannot run as the user who ran `sudo`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SudoError {
    #[error(
        "{} belongs to uid {owner}, but under sudo the build runs as {name} (uid {uid}) so that \
         target/ stays theirs; give it back with `sudo chown -R {name} {}`, or build as root as \
         before with {BUILD_AS_ROOT_ENV}=1",
        path.display(),
        path.display()
    )]
    TargetNotOwned { path: PathBuf, owner: u32, name: String, uid: u32 },
    #[error(
        "SUDO_UID={uid} names no user in the password database; unset SUDO_UID, or set \
         {BUILD_AS_ROOT_ENV}=1 to build as root"
    )]
    UnknownUser { uid: u32 },
    #[error(
        "under sudo the build runs as {name} (uid {uid}), who cannot run {}: use {name}'s own \
         toolchain (`sudo -E env \"PATH=$PATH\" cargo cvtest`), or build as root with \
         {BUILD_AS_ROOT_ENV}=1",
        program.display()
    )]
    CargoNotRunnable {
        program: PathBuf,
        name: String,
        uid: u32,
        #[source]
        source: std::io::Error,
    },
}

/// The user to build as: `Some` only as root with a non-root `SUDO_UID`, and not
/// `CVTEST_BUILD_AS_ROOT=1`. Read once per process.
pub(crate) fn invoking_user() -> Result<Option<&'static InvokingUser>, SudoError> {
    static USER: OnceLock<Result<Option<InvokingUser>, u32>> = OnceLock::new();
    let found = USER.get_or_init(|| {
        let env = |k: &str| std::env::var(k).ok();
        match decide(
            nix::unistd::geteuid().as_raw(),
            env("SUDO_UID"),
            env("SUDO_GID"),
            env(BUILD_AS_ROOT_ENV),
        ) {
            None => Ok(None),
            Some((uid, gid)) => match nix::unistd::User::from_uid(uid.into()) {
                Ok(Some(u)) => Ok(Some(InvokingUser {
                    uid,
                    gid: gid.unwrap_or(u.gid.as_raw()),
                    name: u.name,
                    home: u.dir,
                })),
                _ => Err(uid),
            },
        }
    });
    match found {
        Ok(u) => Ok(u.as_ref()),
        Err(uid) => Err(SudoError::UnknownUser { uid: *uid }),
    }
}

/// Whether to build as another user, from the effective uid and the variables: `(uid, gid)`.
fn decide(
    euid: u32,
    sudo_uid: Option<String>,
    sudo_gid: Option<String>,
    as_root: Option<String>,
) -> Option<(u32, Option<u32>)> {
    if euid != 0 || as_root.as_deref() == Some("1") {
        return None;
    }
    let uid: u32 = sudo_uid?.trim().parse().ok().filter(|&u| u != 0)?;
    let gid = sudo_gid.and_then(|g| g.trim().parse().ok());
    Some((uid, gid))
}

impl InvokingUser {
    /// Makes `cmd` run as this user: their uid and primary gid (the standard library drops root's
    /// supplementary groups), `HOME`, `USER` and `LOGNAME`. `CARGO_HOME`, `RUSTUP_HOME` and
    /// `PATH` are left as they are, so `sudo -E` keeps the user's toolchain.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
        cmd.env("HOME", &self.home).env("USER", &self.name).env("LOGNAME", &self.name);
    }

    /// The error for a `program` this user could not start (the toolchain is root's, under a
    /// directory the user may not enter); `None` for any other failure to start it.
    pub(crate) fn cannot_run(
        &self,
        program: &Path,
        source: std::io::Error,
    ) -> Result<SudoError, std::io::Error> {
        match source.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound => {
                Ok(SudoError::CargoNotRunnable {
                    program: program.to_owned(),
                    name: self.name.clone(),
                    uid: self.uid,
                    source,
                })
            }
            _ => Err(source),
        }
    }

    /// Refuses a target dir that exists and is not this user's (a root-owned one from an
    /// earlier `sudo cargo`): cargo would fail on it with "Permission denied" and no advice.
    pub(crate) fn check_target_dir(&self, dir: &Path) -> Result<(), SudoError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.uid() != self.uid => Err(SudoError::TargetNotOwned {
                path: dir.to_owned(),
                owner: m.uid(),
                name: self.name.clone(),
                uid: self.uid,
            }),
            _ => Ok(()),
        }
    }

    /// Hands a file or directory the runner created to this user (best effort: a report that
    /// stays root's is still a report).
    pub(crate) fn give(&self, path: &Path) {
        let _ = std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid));
    }
}

/// Creates `dir` and its missing parents, handing each one it made to the user who ran `sudo`.
pub(crate) fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    let user = invoking_user().ok().flatten();
    let missing: Vec<PathBuf> = dir.ancestors().take_while(|d| !d.exists()).map(Path::to_path_buf).collect();
    std::fs::create_dir_all(dir)?;
    if let Some(u) = user {
        missing.iter().for_each(|d| u.give(d));
    }
    Ok(())
}

/// Hands a file the runner wrote to the user who ran `sudo`, if any.
pub(crate) fn give_file(path: &Path) {
    if let Ok(Some(u)) = invoking_user() {
        u.give(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn only_root_with_a_non_root_sudo_uid_builds_as_another_user() {
        assert_eq!(decide(0, s("1000"), s("1001"), None), Some((1000, Some(1001))));
        assert_eq!(decide(0, s("1000"), None, None), Some((1000, None)));
        assert_eq!(decide(1000, s("1000"), s("1000"), None), None, "not root: nothing to change");
        assert_eq!(decide(0, None, None, None), None, "root without sudo");
        assert_eq!(decide(0, s("0"), s("0"), None), None, "sudo from root");
        assert_eq!(decide(0, s("x"), None, None), None);
        assert_eq!(decide(0, s("1000"), s("1000"), s("1")), None, "CVTEST_BUILD_AS_ROOT=1");
        assert_eq!(decide(0, s("1000"), s("1000"), s("0")), Some((1000, Some(1000))));
    }

    #[test]
    fn a_target_dir_of_another_owner_is_refused_with_the_chown_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        let user = InvokingUser { uid: me + 1, gid: 0, name: "alice".into(), home: "/home/alice".into() };
        let err = user.check_target_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("sudo chown -R alice {}", dir.path().display())), "{err}");
        assert!(err.contains("CVTEST_BUILD_AS_ROOT=1"), "{err}");
        let owner = InvokingUser { uid: me, ..user };
        owner.check_target_dir(dir.path()).unwrap();
        owner.check_target_dir(&dir.path().join("not-yet")).unwrap();
    }
}
