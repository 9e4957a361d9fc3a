//! Labs (`cvtest::lab`) under `cargo cvtest`: twenty labs of three nodes at `-j 4`, a lab whose
//! test panics and one whose test times out, then nothing of them left: no process of the
//! fixture, no cgroup of the runner, no lab socket. And a runner SIGKILLed while its tests have
//! labs open leaves no process behind either (its nodes die with it; its switches' namespaces
//! were held only by its fds).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

use crate::support::{cvtest_command, fixture_target_dir, privileged};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("lab::twenty_labs_at_j4_leave_nothing_behind", twenty_labs_at_j4_leave_nothing_behind),
        privileged("lab::killed_runner_leaves_no_node_behind", killed_runner_leaves_no_node_behind),
    ]
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
    let mut statuses = std::collections::BTreeMap::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["type"] == "test" {
            let nodes = v["lab_nodes"].as_array().map_or(0, Vec::len);
            statuses.insert(v["name"].as_str().unwrap_or("").to_owned(), (v["status"].clone(), nodes));
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let many: Vec<_> = statuses.iter().filter(|(n, _)| n.starts_with("many::")).collect();
    if many.len() != 20 || many.iter().any(|(_, (s, nodes))| s != "pass" || *nodes != 3) {
        return Err(format!("expected 20 passing labs of 3 nodes: {statuses:?}\n{stderr}").into());
    }
    let timed_out = statuses.get("times_out_with_a_lab_open").map(|(s, n)| (s.clone(), *n));
    if timed_out != Some(("timeout".into(), 3)) {
        return Err(format!("the timing-out lab test: {timed_out:?}\n{stderr}").into());
    }
    let panicked = statuses.get("panics_with_a_lab_open").map(|(s, n)| (s.clone(), *n));
    if panicked != Some(("pass".into(), 3)) {
        return Err(format!("the panicking lab test: {panicked:?}\n{stderr}").into());
    }
    // In the JUnit report each node's run is a child of its test: `<test>/lab/<node>`.
    let xml = std::fs::read_to_string(&junit)?;
    let children = xml.matches("/lab/").count();
    let oneof =
        xml.contains("name=\"many::lab07/lab/c\"") && xml.contains("classname=\"labfix::many::lab07\"");
    if children != 22 * 3 || !oneof {
        return Err(
            format!("expected 66 lab node testcases in the JUnit report, got {children}:\n{xml}").into()
        );
    }
    no_fixture_process(Duration::from_secs(5))?;
    let cgroups = cgroups_of(runner);
    if !cgroups.is_empty() {
        return Err(format!("the runner's cgroups are left: {cgroups:?}").into());
    }
    let sockets: Vec<_> = std::fs::read_dir(fixture_target_dir().join("cvtest-lab"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    if !sockets.is_empty() {
        return Err(format!("lab sockets are left: {sockets:?}").into());
    }
    Ok(())
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
