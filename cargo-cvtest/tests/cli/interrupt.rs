//! Ctrl-C and SIGTERM mid-run: no new tests, running containers killed, partial summary,
//! exit 128 + signal, and nothing of ours left: no cgroup, no veth, no process. And a worker's
//! zygote killed mid-run: a warning, and the tests run on. And its output closed under it
//! (`cargo cvtest 2>&1 | head`): the run ends as it would, says it could not report, and
//! leaves nothing either.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

use crate::support::{cvtest_command, fixture_target_dir, leftovers_of, privileged, processes_running_from};

/// The distinct container cgroups (`cvtest.<pid>.<start>.<seq>`) of runner `pid`.
fn containers_of(pid: u32) -> std::collections::BTreeSet<String> {
    leftovers_of(pid)
        .iter()
        .filter(|p| !p.starts_with("link "))
        .filter_map(|p| p.rsplit('/').next().map(str::to_owned))
        .collect()
}

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("sigint_cleans_up_and_exits_130", || interrupt_with(libc::SIGINT)),
        privileged("sigterm_cleans_up_and_exits_143", || interrupt_with(libc::SIGTERM)),
        privileged("a_killed_zygote_means_one_warning_and_direct_clones", killed_zygote),
        privileged("a_closed_output_pipe_ends_the_run_with_nothing_left", closed_output),
    ]
}

/// The runner's zygotes: its children named `cvtest-zygote`, not zombies.
fn zygotes_of(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|f| f.parse::<u32>().ok()));
        if head.ends_with("(cvtest-zygote") && state != Some("Z") && ppid == Some(pid) {
            found.push(p);
        }
    }
    found
}

fn killed_zygote() -> Result<(), Failed> {
    // One worker, so one zygote; two of the tests take 300 ms, so that after the kill (as soon
    // as the first test runs) several containers are still to start.
    let mut child = cvtest_command("basic", &["--lib", "-j", "1", "--message-format", "json", "ok::"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(900);
    let killed = loop {
        let zygotes = zygotes_of(pid);
        if !zygotes.is_empty() && !containers_of(pid).is_empty() {
            for z in &zygotes {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(*z, libc::SIGKILL) };
            }
            break zygotes;
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            return Err(format!(
                "no zygote and container seen at once\nexit {:?}\n{}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let ctx = format!("killed zygote {killed:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    if output.status.code() != Some(0) {
        return Err(format!(
            "exit {:?}, want 0: the tests must not fail because of it\n{ctx}",
            output.status.code()
        )
        .into());
    }
    let lines: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let tests = lines.iter().filter(|v| v["type"] == "test" && v["status"] == "pass").count();
    let warnings: Vec<&serde_json::Value> = lines.iter().filter(|v| v["type"] == "warning").collect();
    let said = format!("the zygote (pid {}) died (signal 9)", killed[0]);
    if tests != 6
        || warnings.len() != 1
        || !warnings[0]["message"].as_str().is_some_and(|m| m.contains(&said))
    {
        return Err(format!("want 6 passed tests and one warning saying {said:?}\n{ctx}").into());
    }
    if !stderr.contains("Warning") {
        return Err(format!("no warning on the terminal\n{ctx}").into());
    }
    let left = leftovers_of(pid);
    let procs = processes_running_from(std::path::Path::new(env!("CARGO_BIN_EXE_cargo-cvtest")));
    if !left.is_empty() || !procs.is_empty() {
        return Err(format!("left behind: {left:?} {procs:?}\n{ctx}").into());
    }
    Ok(())
}

/// Stdout and stderr are one pipe whose reader has gone: every write fails with `EPIPE` (a Rust
/// program ignores SIGPIPE). Before, the first `eprintln!` at the run's end panicked: exit 101
/// ("build failed") and every cgroup of the run left behind. Now: the tests all run, the exit
/// code says a report could not be written (102), and nothing of the run is left.
fn closed_output() -> Result<(), Failed> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    drop(reader);
    let junit = fixture_target_dir().join(format!("closed-output-{}.xml", std::process::id()));
    let _ = std::fs::remove_file(&junit);
    let mut cmd = cvtest_command("basic", &["--lib", "-j", "2", "--junit", junit.to_str().unwrap(), "ok::"]);
    let writer2 = writer.try_clone()?;
    let mut child = cmd.stdout(std::fs::File::from(writer)).stderr(std::fs::File::from(writer2)).spawn()?;
    drop(cmd);
    let pid = child.id();
    let status = child.wait()?;
    let left = leftovers_of(pid);
    let procs = processes_running_from(std::path::Path::new(env!("CARGO_BIN_EXE_cargo-cvtest")));
    if status.code() != Some(102) || !left.is_empty() || !procs.is_empty() {
        return Err(format!("exit {status}, want 102; left behind: {left:?} {procs:?}").into());
    }
    // The tests ran (the JUnit report, a file, was written in full).
    let xml = std::fs::read_to_string(&junit).map_err(|e| format!("the JUnit report: {e}"))?;
    let _ = std::fs::remove_file(&junit);
    if xml.matches("<testcase").count() < 2 || xml.contains("<failure") {
        return Err(format!("the tests did not all run and pass: {xml}").into());
    }
    Ok(())
}

fn interrupt_with(sig: i32) -> Result<(), Failed> {
    let target = fixture_target_dir();
    let mut child = cvtest_command(
        "basic",
        // An explicit budget: the sleepers (1G limits) must run at once even on a small VM.
        &[
            "--lib",
            "-j",
            "3",
            "--memory-budget",
            "16G",
            "--message-format",
            "json",
            "sleeps_30s",
            "ok::passes",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()?;
    let pid = child.id();
    // Wait until both sleepers run (a test process from the fixture's target dir exists, twice).
    // Generous: under software emulation (the v2 VM) cargo may rebuild the fixture first.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        // Both sleepers' containers exist: two distinct cgroups of the runner (seen through
        // cgroupfs, which works wherever /proc/<pid>/exe paths differ, as in a VM).
        let running = containers_of(pid);
        if running.len() >= 2 {
            std::thread::sleep(Duration::from_millis(300));
            break;
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            return Err(format!(
                "the sleepers never started: {running:?}\nexit {:?}\n{}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill has no memory-safety preconditions; pid is our live child.
    unsafe { libc::kill(pid as i32, sig) };
    let sent = Instant::now();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).collect();
    let output = child.wait_with_output()?;
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let ctx = format!("stdout:\n{}\nstderr:\n{stderr}", lines.join("\n"));
    if output.status.code() != Some(128 + sig) {
        return Err(format!("exit {:?}, want {}\n{ctx}", output.status.code(), 128 + sig).into());
    }
    if took > Duration::from_secs(15) {
        return Err(format!("took {took:?} to stop: the sleepers were not killed\n{ctx}").into());
    }
    if !stderr.contains("Interrupted") || !stderr.contains("Summary") {
        return Err(format!("no partial summary\n{ctx}").into());
    }
    // Both sleepers are cancelled; so may be a short test that was just starting when the
    // signal came (a race the test cannot rule out), but nothing else.
    let cancelled: Vec<&String> = lines.iter().filter(|l| l.contains("\"status\":\"cancelled\"")).collect();
    let sleepers = cancelled.iter().filter(|l| l.contains("sleeps_30s")).count();
    let others_ok = cancelled.iter().all(|l| l.contains("sleeps_30s") || l.contains("\"name\":\"ok::"));
    if sleepers != 2 || !others_ok {
        return Err(format!(
            "{} cancelled tests, want the 2 sleepers (and at most a starting ok:: test)\n{ctx}",
            cancelled.len()
        )
        .into());
    }
    let left = leftovers_of(pid);
    let mut procs = processes_running_from(&target.join("debug/deps"));
    // A container's init is a fork of the runner or of its zygote (the runner re-executed): its
    // exe is cargo-cvtest, as is the zygote's.
    let runner_exe = std::path::Path::new(env!("CARGO_BIN_EXE_cargo-cvtest"));
    procs.extend(processes_running_from(runner_exe));
    if !left.is_empty() || !procs.is_empty() {
        return Err(format!("left behind: {left:?} {procs:?}\n{ctx}").into());
    }
    Ok(())
}
