//! Running the real `cargo-cvtest` binary on fixture crates, and checking what it leaves behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use libtest_mimic::{Completion, Failed, Trial};

/// Why privileged tests cannot run here, or `None` when they can.
pub fn missing_privileges() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    (euid != 0).then(|| {
        format!(
            "needs root (euid is {euid}): cargo cvtest creates cgroups, namespaces and veths; run as root or with sudo -E"
        )
    })
}

/// A trial that needs root: reported ignored, with the reason, otherwise.
pub fn privileged(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || match missing_privileges() {
        Some(reason) => Ok(Completion::ignored_with(reason)),
        None => f().map(|()| Completion::Completed),
    })
}

/// A trial that runs anywhere.
pub fn plain(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::test(name, f)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Fixtures build here, away from the target dir of the `cargo test` running us.
pub fn fixture_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // <target>/debug/deps/cli-HASH -> <target>/cvtest-fixtures
    exe.ancestors().nth(3).expect("target dir").join("cvtest-fixtures")
}

/// `cargo cvtest --manifest-path <fixture> --target-dir <...> ARGS` with a plain environment.
pub fn cvtest_command(fixture_name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-cvtest"));
    cmd.arg("cvtest");
    cmd.arg("--manifest-path").arg(fixture(fixture_name).join("Cargo.toml"));
    cmd.arg("--target-dir").arg(fixture_target_dir());
    cmd.args(args);
    cmd.env("CARGO_NET_OFFLINE", "true").env("NO_COLOR", "1").env_remove("CARGO_TERM_COLOR");
    cmd.env_remove("CVTEST_CONTAINER").env_remove("CVTEST_LIST_SETTINGS").env_remove("CVTEST_PROFILE");
    // Each run starts in listed order: a history of its own, empty (the trials share the
    // fixtures' target dir, and what one recorded would reorder another's tests). The trial of
    // the order sets its own.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let history = fixture_target_dir().join("histories").join(format!("{}-{n}.json", std::process::id()));
    cmd.env("CVTEST_HISTORY", history);
    // Under `sudo ./scripts/test.sh` the fixtures still build as root, in root's target dir
    // (the trials of the sudo build set these themselves).
    cmd.env_remove("SUDO_UID").env_remove("SUDO_GID").env_remove("SUDO_USER");
    cmd.stdin(Stdio::null());
    cmd
}

pub fn cvtest(fixture_name: &str, args: &[&str]) -> Output {
    cvtest_command(fixture_name, args).output().expect("run cargo-cvtest")
}

/// `cargo-cvtest cvtest ARGS` without a fixture (usage errors, help).
pub fn cvtest_bare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-cvtest"))
        .arg("cvtest")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CARGO_TERM_COLOR")
        .env_remove("COLUMNS")
        .env_remove("CVTEST_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("run cargo-cvtest")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fails with both outputs shown.
pub fn check(cond: bool, what: &str, out: &Output) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(format!(
            "{what}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        )
        .into())
    }
}

pub fn exit_code(out: &Output, want: i32) -> Result<(), Failed> {
    check(out.status.code() == Some(want), &format!("expected exit code {want}"), out)
}

/// The JSON lines of stdout.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The `type == "test"` events, by test name.
pub fn tests_by_name(lines: &[serde_json::Value]) -> std::collections::BTreeMap<String, serde_json::Value> {
    lines
        .iter()
        .filter(|v| v["type"] == "test" || v["type"] == "test-listed")
        .map(|v| (v["name"].as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

/// Every cgroup directory named for `pid` (`cvtest.<pid>.*`) in every cgroup hierarchy of this
/// process, and every link whose alias names `pid` as owner.
pub fn leftovers_of(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    let prefix = format!("cvtest.{pid}.");
    for dir in own_cgroup_dirs() {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(e.path().display().to_string());
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            let alias = std::fs::read_to_string(e.path().join("ifalias")).unwrap_or_default();
            if alias.contains(&format!("owner={pid}.")) {
                found.push(format!("link {}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Processes whose executable is under `dir` (the fixture's target dir).
pub fn processes_running_from(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Ok(exe) = std::fs::read_link(e.path().join("exe")) {
                if exe.starts_with(dir) {
                    v.push(format!("{} {}", e.file_name().to_string_lossy(), exe.display()));
                }
            }
        }
    }
    v
}

/// This process's cgroup directory in each mounted hierarchy (v1 and v2).
fn own_cgroup_dirs() -> Vec<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut dirs = Vec::new();
    for line in mountinfo.lines() {
        let (pre, post) = match line.split_once(" - ") {
            Some(x) => x,
            None => continue,
        };
        let fields: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(mount_point), Some(root), Some(fstype)) = (fields.get(4), fields.get(3), post.first())
        else {
            continue;
        };
        let opts = post.get(2).copied().unwrap_or("");
        for cg in cgroups.lines() {
            let parts: Vec<&str> = cg.splitn(3, ':').collect();
            if parts.len() != 3 {
                continue;
            }
            let matches = match *fstype {
                "cgroup2" => parts[0] == "0",
                "cgroup" => {
                    !parts[1].is_empty() && parts[1].split(',').all(|c| opts.split(',').any(|o| o == c))
                }
                _ => false,
            };
            if matches {
                let rel = parts[2].strip_prefix(root).unwrap_or(parts[2]);
                dirs.push(Path::new(mount_point).join(rel.trim_start_matches('/')));
            }
        }
    }
    dirs
}

/// Every container cgroup (`cvtest.*`) below this process's cgroups, in every hierarchy.
pub fn cvtest_cgroups() -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    for dir in own_cgroup_dirs() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("cvtest.") {
                found.insert(e.path().display().to_string());
            }
        }
    }
    found
}

/// Processes whose command line contains `needle` (a fixture's distinctive argument).
pub fn processes_with_arg(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && cmdline.split(|&b| b == 0).any(|a| a == needle.as_bytes()) {
            v.push(pid);
        }
    }
    v
}
