//! Pure cgroup v2 under systemd: a process started from a login session or a service shares its
//! cgroup with other processes, and cgroup v2 lets such a cgroup pass no controllers down (the
//! no-internal-processes rule). The sanctioned way out is to ask systemd for a transient scope
//! with `Delegate=yes` holding this process alone: systemd moves it, and the scope's subtree is
//! then ours to manage (podman and systemd-run do the same). This moves only this process, and
//! only through systemd; no other process or cgroup is touched.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::fs;

/// Whether systemd is the init system (its documented check).
pub(crate) fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether `base` holds processes other than this one and its children, and lacks some of
/// `controllers` in its `cgroup.subtree_control` (so cvtest could not enable them there).
pub(crate) fn needs_delegation(base: &Path, controllers: &[&str]) -> bool {
    let Ok(enabled) = fs::read(&base.join("cgroup.subtree_control")) else { return false };
    if controllers.iter().all(|c| enabled.split_ascii_whitespace().any(|e| e == *c)) {
        return false;
    }
    let me = std::process::id() as i32;
    let Ok(pids) = fs::procs(base) else { return false };
    pids.iter().any(|&p| p != me && crate::owner::parent_of(p).is_some_and(|pp| pp != me))
}

/// Asks systemd (over D-Bus, with `busctl`) to move this process into a new transient scope
/// `cvtest-<owner tag>.scope` with `Delegate=yes`, and waits until `/proc/self/cgroup` shows
/// the move. Returns a reason on failure; the caller then reports the shared-cgroup error.
pub(crate) fn move_into_delegated_scope() -> Result<(), String> {
    let before = fs::read_io(Path::new("/proc/self/cgroup")).map_err(|e| e.to_string())?;
    let pid = std::process::id().to_string();
    let unit = format!("cvtest-{}.scope", crate::owner::tag());
    let out = Command::new("busctl")
        .args([
            "call",
            "--quiet",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            &unit,
            "fail",
            "3",
            "PIDs",
            "au",
            "1",
            &pid,
            "Delegate",
            "b",
            "true",
            "Description",
            "s",
            "cvtest: containers of a test run",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("could not run busctl to ask systemd for a delegated scope: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "systemd refused the delegated scope {unit}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match fs::read_io(Path::new("/proc/self/cgroup")) {
            Ok(now) if now != before => return Ok(()),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    Err(format!("systemd accepted the scope {unit} but did not move this process into it within 2 s"))
}
