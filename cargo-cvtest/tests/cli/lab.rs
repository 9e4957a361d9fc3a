//! Labs (`cvtest::lab`) under `cargo cvtest`: twenty labs of three nodes at `-j 4`, a lab whose
//! test panics and one whose test times out, then nothing of them left: no process of the
//! fixture, no cgroup of the runner, no lab socket. And a runner SIGKILLed while its tests have
//! labs open leaves no process behind either (its nodes die with it; its switches' namespaces
//! were held only by its fds). The same twenty labs with a rootless runner (run as nobody).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

use crate::support::{cvtest_command, fixture, fixture_target_dir, privileged};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("lab::twenty_labs_at_j4_leave_nothing_behind", twenty_labs_at_j4_leave_nothing_behind),
        privileged("lab::killed_runner_leaves_no_node_behind", killed_runner_leaves_no_node_behind),
        privileged("lab::a_sabotaged_socket_is_not_served_again", a_sabotaged_socket_is_not_served_again),
        privileged("lab::rootless_runner_as_nobody_leaves_nothing", rootless_runner_as_nobody_leaves_nothing),
    ]
}

const NOBODY: u32 = 65534;

/// The lab fixture under a rootless `cargo cvtest --no-limits -j 4`, run as nobody
/// (`setpriv`): its worker threads are the makers, as an ordinary user. Nobody can run neither
/// root's cargo nor root's rustc, so the fixture is built here (as root) and `cargo cvtest` is
/// given a `cargo` that replays that build's messages (`CARGO`) and a `rustc` that names no
/// toolchain (`RUSTC`), with the test binary copied into a target directory nobody owns (where
/// its lab sockets go). Then: every lab passed with its three nodes, the timing-out one timed
/// out, and nothing is left: no process of nobody's (all that could pin a namespace of the run),
/// no lab socket.
fn rootless_runner_as_nobody_leaves_nothing() -> Result<(), Failed> {
    if !std::process::Command::new("unshare").args(["-U", "true"]).status().is_ok_and(|s| s.success()) {
        return Err("the kernel refuses user namespaces here (unshare -U true failed)".into());
    }
    let dir = std::env::temp_dir().join(format!("cvtest-lab-rootless-runner-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = rootless_runner_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn rootless_runner_in(dir: &Path) -> Result<(), Failed> {
    let io = |what: &'static str| move |e: std::io::Error| -> Failed { format!("{what}: {e}").into() };
    let manifest = fixture("lab").join("Cargo.toml");
    let built_in = fixture_target_dir();
    let target = dir.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let run_cargo = |args: &[&str]| -> Result<String, Failed> {
        let out = std::process::Command::new(&cargo)
            .args(args)
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &built_in)
            .env("CARGO_NET_OFFLINE", "true")
            .stderr(Stdio::inherit())
            .output()
            .map_err(io("run cargo"))?;
        if !out.status.success() {
            return Err(format!("cargo {args:?} failed").into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let relocate = |text: &str| text.replace(&*built_in.to_string_lossy(), &target.to_string_lossy());
    let metadata = relocate(&run_cargo(&["metadata", "--no-deps", "--format-version", "1"])?);
    let build = run_cargo(&["test", "--no-run", "--message-format=json-render-diagnostics"])?;
    std::fs::create_dir_all(target.join("debug/deps")).map_err(io("make the target dir"))?;
    std::fs::write(target.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n")
        .map_err(io("write CACHEDIR.TAG"))?;
    let mut executables = 0;
    for line in build.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let Some(exe) = v["executable"].as_str() {
            let copy = relocate(exe);
            std::fs::copy(exe, &copy).map_err(io("copy a test binary"))?;
            executables += 1;
        }
    }
    if executables == 0 {
        return Err(format!("cargo named no test binary for the lab fixture:\n{build}").into());
    }
    std::fs::write(dir.join("metadata.json"), metadata).map_err(io("write metadata.json"))?;
    std::fs::write(dir.join("build.json"), relocate(&build)).map_err(io("write build.json"))?;
    let script = |name: &str, body: String| -> Result<(), Failed> {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).map_err(io("write a script"))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io("chmod a script"))
    };
    let d = dir.display();
    script(
        "cargo",
        format!("case \"$1\" in\n metadata) cat {d}/metadata.json ;;\n test) cat {d}/build.json ;;\n *) exit 1 ;;\nesac\n"),
    )?;
    script("rustc", "echo /nonexistent\necho /nonexistent/lib\n".to_owned())?;
    chown_tree(dir)?;

    let before = processes_of(NOBODY);
    let as_nobody = |args: &[&str]| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_cargo-cvtest"))
            .arg("cvtest")
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .args(["--no-limits", "--message-format", "json"])
            .args(args)
            .current_dir(dir)
            .env("HOME", dir)
            .env("CARGO", dir.join("cargo"))
            .env("RUSTC", dir.join("rustc"))
            .env("NO_COLOR", "1")
            .env_remove("CVTEST_CONTAINER")
            .env_remove("CVTEST_LIST_SETTINGS")
            .env_remove("CVTEST_PROFILE")
            .env_remove("CVTEST_ROOTLESS")
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .env_remove("SUDO_USER")
            .stdin(Stdio::null());
        cmd
    };
    let out = as_nobody(&["-j", "4"]).output().map_err(io("run setpriv"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check_fixture_statuses(&stdout, &stderr, "rootless ")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = processes_of(NOBODY).difference(&before).copied().collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("processes of the rootless run are left: {left:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let sockets: Vec<_> = std::fs::read_dir(target.join("cvtest-lab"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    if !sockets.is_empty() {
        return Err(format!("lab sockets are left: {sockets:?}").into());
    }

    // A rootless runner SIGKILLed with labs open leaves no process either (nodes die by their
    // life pipes, helpers with the thread that forked them): killed once its lab is whole (the
    // runner, its zygote, the test's init and main, three nodes' inits and mains: 10 processes),
    // and killed mid-spawn, as soon as a first init is there (3), repeatedly: an init that blocked
    // before closing its maker's fds outlived such a kill forever (seen in CI).
    for (i, whole) in [10, 3, 3, 4, 5].into_iter().enumerate() {
        let log = dir.join(format!("killed-runner-{i}.log"));
        let mut child = as_nobody(&["times_out_with_a_lab_open"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(io("create the runner's log"))?)
            .spawn()
            .map_err(io("run setpriv"))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while processes_of(NOBODY).difference(&before).count() < whole {
            if Instant::now() > deadline || child.try_wait().map_err(io("wait for the runner"))?.is_some() {
                let _ = child.kill();
                let _ = child.wait();
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("the rootless run never had {whole} processes\n{said}").into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // setpriv execs the runner: the child is the runner.
        child.kill().map_err(io("kill the runner"))?;
        child.wait().map_err(io("reap the runner"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<i32> = processes_of(NOBODY).difference(&before).copied().collect();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "processes of the rootless runner killed at {whole} processes are left: {left:?}"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// The lab fixture's whole run, from its JSON lines: twenty passing labs of three nodes, the
/// timing-out and the panicking lab tests as expected, each with its three nodes reported.
fn check_fixture_statuses(stdout: &str, stderr: &str, what: &str) -> Result<(), Failed> {
    let mut statuses = std::collections::BTreeMap::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["type"] == "test" {
            let nodes = v["lab_nodes"].as_array().map_or(0, Vec::len);
            statuses.insert(v["name"].as_str().unwrap_or("").to_owned(), (v["status"].clone(), nodes));
        }
    }
    let many: Vec<_> = statuses.iter().filter(|(n, _)| n.starts_with("many::")).collect();
    if many.len() != 20 || many.iter().any(|(_, (s, nodes))| s != "pass" || *nodes != 3) {
        return Err(format!("expected 20 passing {what}labs of 3 nodes: {statuses:?}\n{stderr}").into());
    }
    let timed_out = statuses.get("times_out_with_a_lab_open").map(|(s, n)| (s.clone(), *n));
    if timed_out != Some(("timeout".into(), 3)) {
        return Err(format!("the timing-out {what}lab test: {timed_out:?}\n{stderr}").into());
    }
    let panicked = statuses.get("panics_with_a_lab_open").map(|(s, n)| (s.clone(), *n));
    if panicked != Some(("pass".into(), 3)) {
        return Err(format!("the panicking {what}lab test: {panicked:?}\n{stderr}").into());
    }
    Ok(())
}

/// `dir` and everything in it, given to nobody.
fn chown_tree(dir: &Path) -> Result<(), Failed> {
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))
        .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).map_err(|e| e.to_string())?.filter_map(Result::ok) {
            chown_tree(&e.path())?;
        }
    }
    Ok(())
}

/// Pids of the processes whose real uid is `uid`.
fn processes_of(uid: u32) -> std::collections::BTreeSet<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/proc") else { return Default::default() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid))
        .collect()
}

fn twenty_labs_at_j4_leave_nothing_behind() -> Result<(), Failed> {
    let junit = fixture_target_dir().join("lab-junit.xml");
    let junit_arg = junit.display().to_string();
    let child = cvtest_command("lab", &["-j", "4", "--message-format", "json", "--junit", &junit_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let runner = child.id();
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check_fixture_statuses(&stdout, &stderr, "")?;
    // In the JUnit report each node's run is a child of its test: `<test>/lab/<node>`.
    let xml = std::fs::read_to_string(&junit)?;
    let children = xml.matches("/lab/").count();
    let oneof =
        xml.contains("name=\"many::lab07/lab/c\"") && xml.contains("classname=\"labfix::many::lab07\"");
    // 22 labs of three nodes, and the four sabotaging tests' labs of one.
    if children != 22 * 3 + 4 || !oneof {
        return Err(
            format!("expected 70 lab node testcases in the JUnit report, got {children}:\n{xml}").into()
        );
    }
    no_fixture_process(Duration::from_secs(5))?;
    let cgroups = cgroups_of(runner);
    if !cgroups.is_empty() {
        return Err(format!("the runner's cgroups are left: {cgroups:?}").into());
    }
    no_lab_socket_left()
}

fn no_lab_socket_left() -> Result<(), Failed> {
    let sockets: Vec<_> = std::fs::read_dir(fixture_target_dir().join("cvtest-lab"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    if !sockets.is_empty() {
        return Err(format!("lab sockets are left: {sockets:?}").into());
    }
    Ok(())
}

/// A worker keeps its lab socket for its next test. Four tests on one worker each use a lab,
/// then leave a connection queued on the socket, and end with their lab open (the 2nd and 4th)
/// or replace the socket's file with a socket of their own (the 1st and 3rd). Each still gets a
/// working lab of its maker's: the 4th on the 2nd's socket (taken while the 3rd runs), whose
/// queue the maker emptied; the 3rd on a new one, as the 1st's file was replaced. The run
/// leaves no socket behind, the replacements included.
fn a_sabotaged_socket_is_not_served_again() -> Result<(), Failed> {
    let out = cvtest_command("lab", &["-j", "1", "--message-format", "json", "sabotage::"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut passed = Vec::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["type"] == "test" && v["status"] == "pass" && v["lab_nodes"].as_array().map_or(0, Vec::len) == 1
        {
            passed.push(v["name"].as_str().unwrap_or("").to_owned());
        }
    }
    passed.sort();
    if passed != ["sabotage::s1", "sabotage::s2", "sabotage::s3", "sabotage::s4"] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "expected the four sabotaging tests to pass with their lab: {passed:?}\n{stdout}\n{stderr}"
        )
        .into());
    }
    no_fixture_process(Duration::from_secs(5))?;
    no_lab_socket_left()
}

fn killed_runner_leaves_no_node_behind() -> Result<(), Failed> {
    let mut child =
        cvtest_command("lab", &["-j", "2", "--message-format", "json", "times_out_with_a_lab_open", "lab01"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
    // Until the nodes run: the idle node function's processes show up.
    let deadline = Instant::now() + Duration::from_secs(120);
    while fixture_processes().len() < 4 {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the fixture's labs never started".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    no_fixture_process(Duration::from_secs(10))
}

/// Waits up to `within` for every process of the fixture's test binary to be gone.
fn no_fixture_process(within: Duration) -> Result<(), Failed> {
    let deadline = Instant::now() + within;
    loop {
        let left = fixture_processes();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("processes of the fixture are left: {left:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids running the lab fixture's test binary (its nodes and tests).
fn fixture_processes() -> Vec<i32> {
    let target = fixture_target_dir();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
                exe.starts_with(&target)
                    && exe.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("labfix-"))
            })
        })
        .collect()
}

/// Cgroup directories named for the runner `pid` (`cvtest.<pid>.*`), anywhere in the hierarchies.
fn cgroups_of(pid: u32) -> Vec<String> {
    let prefix = format!("cvtest.{pid}.");
    let mut found = Vec::new();
    let mut stack = vec![(Path::new("/sys/fs/cgroup").to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.filter_map(Result::ok) {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                found.push(path.display().to_string());
            } else if depth < 6 {
                stack.push((path, depth + 1));
            }
        }
    }
    found
}
