//! Rootless labs: a `#[cv_test]` with a two-node lab (tests/fixtures/lab-fixture), run as
//! nobody (`setpriv --reuid=65534 --regid=65534 --clear-groups`), so that its maker (the
//! `#[cv_test]` parent) is an ordinary user: the test reaches both nodes, a partition drops
//! traffic both ways, a heal restores it, a killed node comes back at its address; and when it
//! has ended nothing of it is left: no process of nobody's (which would be all that could hold a
//! namespace of the run: an unprivileged user can pin a namespace only with a process or an fd of
//! one), no lab socket.
//!
//! The fixture is built as root into `target/fixtures` (with the macro fixture's dependencies),
//! then copied into a directory nobody owns, marked as a cargo target directory
//! (`CACHEDIR.TAG`), where its maker puts its socket. No cgroup is delegated to nobody (none can
//! be on v1), so it runs with `CVTEST_LIMITS=off`, as the rootless trials do.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed, Trial};

const NOBODY: u32 = 65534;

pub fn trials() -> Vec<Trial> {
    // Not `rootless::...`: userns::rootless_suite_as_nobody runs those as nobody.
    vec![Trial::ignorable_test("lab::two_node_rootless_lab_as_nobody_leaves_nothing", || {
        if let Some(why) = crate::support::missing_privileges().or_else(crate::userns::no_user_namespaces) {
            return Ok(Completion::ignored_with(why));
        }
        two_node_lab_as_nobody_leaves_nothing().map(|()| Completion::Completed)
    })]
}

fn fail(what: &str) -> impl Fn(std::io::Error) -> Failed + '_ {
    move |e| format!("{what}: {e}").into()
}

fn two_node_lab_as_nobody_leaves_nothing() -> Result<(), Failed> {
    let binary = build_fixture()?;
    let dir = std::env::temp_dir().join(format!("cvtest-lab-rootless-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(fail("make the run's directory"))?;
    let result = run_in(&dir, &binary);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, binary: &Path) -> Result<(), Failed> {
    let exe = dir.join("lab_fixture");
    std::fs::copy(binary, &exe).map_err(fail("copy the fixture"))?;
    std::fs::write(dir.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n")
        .map_err(fail("write CACHEDIR.TAG"))?;
    for path in [dir, &exe, &dir.join("CACHEDIR.TAG")] {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).map_err(fail("chown to nobody"))?;
    }
    let before = processes_of(NOBODY);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["two_nodes", "--exact", "--nocapture"])
        .current_dir(dir)
        .env("TMPDIR", "/tmp")
        .env("RUST_BACKTRACE", "0")
        .env_remove("CVTEST_CONTAINER")
        .env_remove("CVTEST_UNSANDBOXED")
        .env_remove("CVTEST_ROOTLESS")
        // Nothing delegates a cgroup to nobody (no systemd user manager; none at all on v1):
        // no limits, as the rootless trials.
        .env("CVTEST_LIMITS", "off");
    let out = cmd.output().map_err(fail("run setpriv"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
    if !out.status.success() || !stdout.contains("test two_nodes ... ok") {
        return Err(format!("the rootless lab test failed: {all}").into());
    }
    // It ran rootless (root inside is nobody outside), and went through every step.
    for step in [
        "step: uid_map 0 65534 1",
        "step: reached both",
        "step: partitioned both ways",
        "step: healed",
        "step: restarted at 10.254.0.2",
        "step: closed [\"killed by the lab\", \"stopped at the end of the lab\", \"stopped at the end of the lab\"]",
    ] {
        if !stdout.contains(step) {
            return Err(format!("no {step:?} in {all}").into());
        }
    }
    // Nothing left: no process of nobody's that was not there before, no lab socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = processes_of(NOBODY).difference(&before).copied().collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let described: Vec<String> = left.iter().map(|p| describe(*p)).collect();
            return Err(format!("processes of the rootless run are left: {described:?}\n{all}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let sockets: Vec<PathBuf> = std::fs::read_dir(dir.join("cvtest-lab"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    if !sockets.is_empty() {
        return Err(format!("lab sockets are left: {sockets:?}").into());
    }
    Ok(())
}

/// Pids of the processes whose real uid is `uid`.
fn processes_of(uid: u32) -> BTreeSet<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid))
        .collect()
}

fn describe(pid: i32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!("{pid} ({})", comm.trim())
}

/// The fixture's test binary, built once.
fn build_fixture() -> Result<PathBuf, Failed> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--no-run", "--lib", "--message-format=json", "--manifest-path"])
        .arg(root.join("tests/fixtures/lab-fixture/Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target/fixtures"))
        .output()
        .map_err(fail("run cargo"))?;
    if !out.status.success() {
        return Err(
            format!("building the lab fixture failed:\n{}", String::from_utf8_lossy(&out.stderr)).into()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "lab_fixture")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo named no test binary for the lab fixture:\n{stdout}").into())
}
