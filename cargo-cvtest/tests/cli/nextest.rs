//! cvtest inside other runners: `cargo nextest run` with `cargo-cvtest wrap` as its wrapper
//! script, and `cargo test` / nextest with `cargo-cvtest runner` as cargo's target runner. The
//! fixture (tests/fixtures/nextest) is copied with README's `.config/nextest.toml` and
//! `.cargo/config.toml` snippets, as written, and run by the real nextest and cargo; then nothing
//! of the containers may be left (no process, no cgroup).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

use crate::support::{
    check, cvtest_cgroups, fixture, fixture_target_dir, plain, privileged, processes_with_arg, text,
};

/// The argument of the fixture's sleeping children (`sleep 4242.5`): distinctive, to find leftovers.
const SLEEPER: &str = "4242.5";

pub fn trials() -> Vec<Trial> {
    vec![
        plain("readme_has_the_nextest_and_cargo_snippets", readme_snippets),
        privileged("nextest_wrapper_runs_each_test_in_its_own_container", wrapper_run),
        privileged("nextest_wrapper_ctrl_c_ends_the_containers", wrapper_ctrl_c),
        privileged("nextest_wrapper_sigkilled_takes_its_container_along", wrapper_sigkilled),
        privileged("nextest_archive_partitions_run_through_the_wrapper", archive_partitions),
        privileged("target_runner_under_cargo_test_and_nextest", target_runner),
        privileged("wrapper_and_runner_honour_cvtest_limits_off", wrapper_and_runner_without_limits),
        privileged("cvtest_leak_names_leftover_processes_and_fails_with_leak_fail", cvtest_leak),
        privileged("cvtest_no_capture_shows_a_passing_tests_output_live", cvtest_no_capture),
    ]
}

/// The body of README's fenced block whose first line is `first_line`.
fn readme_snippet(first_line: &str) -> Result<String, Failed> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            if body.first() == Some(&first_line) {
                return Ok(body.join("\n") + "\n");
            }
        }
    }
    Err(format!("README.md has no code block starting with {first_line:?}").into())
}

fn readme_snippets() -> Result<(), Failed> {
    let nextest = readme_snippet("# .config/nextest.toml")?;
    for want in [
        "experimental = [\"wrapper-scripts\"]",
        "command = \"cargo-cvtest wrap\"",
        "run-wrapper = \"cvtest\"",
    ] {
        if !nextest.contains(want) {
            return Err(format!("the nextest snippet lacks {want:?}:\n{nextest}").into());
        }
    }
    let cargo = readme_snippet("# .cargo/config.toml")?;
    if !cargo.contains("runner = \"cargo-cvtest runner\"") {
        return Err(format!("the cargo snippet lacks the runner:\n{cargo}").into());
    }
    Ok(())
}

/// nextest config the trials add below README's snippet.
const NEXTEST_TIMEOUT: &str = "\n[[profile.default.overrides]]\nfilter = \"test(sleeps_forever)\"\n\
                               slow-timeout = { period = \"1s\", terminate-after = 2 }\n";

/// The fixture copied to `<fixture target dir>/nx-<name>` (a fixed place, so builds are reused),
/// with README's nextest snippet (plus `nextest_extra`) and/or its cargo runner snippet.
fn fixture_copy(name: &str, nextest_extra: Option<&str>, runner: bool) -> Result<PathBuf, Failed> {
    let src = fixture("nextest");
    let dir = fixture_target_dir().join(format!("nx-{name}"));
    std::fs::create_dir_all(dir.join("src"))?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let manifest = std::fs::read_to_string(src.join("Cargo.toml"))?
        .replace("path = \"../../../..\"", &format!("path = {:?}", repo.display().to_string()));
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(src.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    }
    std::fs::copy(src.join("src/lib.rs"), dir.join("src/lib.rs"))?;
    let _ = std::fs::remove_dir_all(dir.join(".config"));
    let _ = std::fs::remove_dir_all(dir.join(".cargo"));
    if let Some(extra) = nextest_extra {
        std::fs::create_dir_all(dir.join(".config"))?;
        std::fs::write(dir.join(".config/nextest.toml"), readme_snippet("# .config/nextest.toml")? + extra)?;
    }
    if runner {
        std::fs::create_dir_all(dir.join(".cargo"))?;
        std::fs::write(dir.join(".cargo/config.toml"), readme_snippet("# .cargo/config.toml")?)?;
    }
    Ok(dir)
}

/// `PATH` with cargo-cvtest's directory first, as README asks (`cargo-cvtest` on `PATH`).
fn path_with_cvtest() -> std::ffi::OsString {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cargo-cvtest")).parent().expect("a bin dir").to_path_buf();
    let old = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&old))).expect("a valid PATH")
}

/// `cargo ARGS` in `dir`, building into the fixtures' target dir.
fn cargo(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // `--target-dir` before any `--` (after which arguments go to the test binaries).
    let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    cmd.args(&args[..split]).arg("--target-dir").arg(fixture_target_dir()).args(&args[split..]);
    cmd.current_dir(dir)
        .env("PATH", path_with_cvtest())
        .env("CARGO_NET_OFFLINE", "true")
        .env("NO_COLOR", "1")
        .env_remove("CARGO_TERM_COLOR")
        .env_remove("CVTEST_CONTAINER")
        .env_remove("CVTEST_LIST_SETTINGS")
        .env_remove("CVTEST_PEAKS_DIR")
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NEXTEST") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Both outputs, as one text.
fn all_text(out: &Output) -> String {
    format!("{}\n{}", text(&out.stdout), text(&out.stderr))
}

/// Whether nextest printed `STATUS [...] (...) nxfix NAME`.
fn nextest_line(out: &str, status: &str, name: &str) -> bool {
    out.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with(status) && l.ends_with(&format!("nxfix {name}"))
    })
}

/// `Nextest run ID <uuid> with ...`.
fn run_id(out: &str) -> Option<String> {
    out.lines().find_map(|l| l.split("Nextest run ID ").nth(1)?.split_whitespace().next().map(str::to_owned))
}

/// Nothing of the containers is left: no sleeper, no cgroup that was not there before.
fn nothing_left(before: &std::collections::BTreeSet<String>) -> Result<(), Failed> {
    // A container's cgroup goes before its wrapper exits; allow the kernel a moment to reap.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sleepers = processes_with_arg(SLEEPER);
        let new: Vec<_> = cvtest_cgroups().difference(before).cloned().collect();
        if sleepers.is_empty() && new.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("left behind: sleepers {sleepers:?}, cgroups {new:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wrapper_run() -> Result<(), Failed> {
    let dir = fixture_copy("wrapper", Some(NEXTEST_TIMEOUT), false)?;
    let before = cvtest_cgroups();
    let out = cargo(&dir, &["nextest", "run", "--no-fail-fast"]).output()?;
    let all = all_text(&out);
    check(out.status.code() == Some(100), "nextest exits 100: some tests fail on purpose", &out)?;
    for name in [
        "ok::in_a_container",
        "ok::binds_port_8080_a",
        "ok::binds_port_8080_b",
        "ok::leaves_a_sleeper_behind",
        "pids::thread_storm_hits_the_limit",
        "net::veth_from_attribute",
        "net::veth_from_config",
    ] {
        check(nextest_line(&all, "PASS", name), &format!("{name} passes in its container"), &out)?;
    }
    // OOM from the config override (memory = 32M), said in the test's output.
    check(nextest_line(&all, "SIGKILL", "oom::hog_is_oom_killed"), "the hog dies by SIGKILL", &out)?;
    check(
        all.contains(
            "cvtest: OOM: out of memory: the kernel's OOM killer killed it at its memory limit of 32M",
        ),
        "the OOM kill is named in nextest's failure output",
        &out,
    )?;
    // nextest's own timeout: SIGTERM to the wrapper, which kills the whole container.
    check(nextest_line(&all, "TIMEOUT", "timeout::sleeps_forever"), "nextest times the sleeper out", &out)?;
    check(
        all.contains("cvtest: CANCELLED: the wrapper got signal 15"),
        "the wrapper says it was stopped",
        &out,
    )?;
    nothing_left(&before)?;

    // The peaks file of the run, and its summary.
    let id = run_id(&all).ok_or("no run id in nextest's output")?;
    let file = fixture_target_dir().join("cvtest/nextest").join(format!("{id}.jsonl"));
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(&file)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    check(records.len() == 9, &format!("9 records in {}, got {}", file.display(), records.len()), &out)?;
    let hog = records.iter().find(|r| r["name"] == "oom::hog_is_oom_killed").ok_or("no record of the hog")?;
    check(
        hog["status"] == "oom" && hog["settings"]["memory"] == "32M",
        &format!("the hog's record: {hog}"),
        &out,
    )?;
    let storm =
        records.iter().find(|r| r["name"] == "pids::thread_storm_hits_the_limit").ok_or("no storm")?;
    check(storm["pids_limit_hit"] == true, &format!("the storm's record: {storm}"), &out)?;
    let peaks = Command::new(env!("CARGO_BIN_EXE_cargo-cvtest"))
        .args(["cvtest", "peaks", &id, "--target-dir"])
        .arg(fixture_target_dir())
        .env("NO_COLOR", "1")
        .env_remove("CVTEST_PEAKS_DIR")
        .current_dir(&dir)
        .output()?;
    let shown = text(&peaks.stdout);
    check(
        peaks.status.success()
            && shown.contains("Top peak memory:")
            && shown.contains("Longest:")
            && shown.contains("9 tests run: 7 passed, 2 failed"),
        &format!("cargo cvtest peaks {id} shows the run:\n{shown}"),
        &peaks,
    )
}

/// Starts nextest on the sleeper, in a process group of its own (as a terminal's foreground
/// job), and waits until the sleeper runs in its container.
fn start_sleeper_run(name: &str) -> Result<(std::process::Child, PathBuf), Failed> {
    use std::os::unix::process::CommandExt;
    let dir = fixture_copy(name, Some(""), false)?;
    // Build first, so that the wait below is for the test only.
    let built = cargo(&dir, &["nextest", "list"]).output()?;
    check(built.status.success(), "nextest lists the fixture", &built)?;
    let child = cargo(&dir, &["nextest", "run", "-E", "test(sleeps_forever)", "--no-fail-fast"])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while processes_with_arg(SLEEPER).is_empty() {
        if Instant::now() > deadline {
            return Err("the sleeper never started".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, dir))
}

fn finish(child: std::process::Child) -> Result<Output, Failed> {
    let out = child.wait_with_output()?;
    Ok(out)
}

fn wrapper_ctrl_c() -> Result<(), Failed> {
    let before = cvtest_cgroups();
    let (child, _) = start_sleeper_run("interrupt")?;
    let pgid = child.id() as i32;
    // SAFETY: kill has no memory-safety preconditions; the group is the one we just made.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let out = finish(child)?;
    check(!out.status.success(), "an interrupted nextest run fails", &out)?;
    nothing_left(&before)
}

/// The wrapper of the running test, found by its command line.
fn wrapper_pid() -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_wrapper = args.len() > 2
            && args[0].ends_with(b"cargo-cvtest")
            && args[1] == b"wrap"
            && args.iter().any(|a| *a == b"timeout::sleeps_forever");
        is_wrapper.then_some(pid)
    })
}

fn wrapper_sigkilled() -> Result<(), Failed> {
    let before = cvtest_cgroups();
    let (child, dir) = start_sleeper_run("sigkill")?;
    let Some(wrapper) = wrapper_pid() else {
        // SAFETY: kill has no memory-safety preconditions; the group is the run we started.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        return Err("no wrapper process found".into());
    };
    // SAFETY: kill has no memory-safety preconditions; the pid is the wrapper we found.
    unsafe { libc::kill(wrapper, libc::SIGKILL) };
    let out = finish(child)?;
    check(all_text(&out).contains("SIGKILL"), "nextest reports the wrapper's SIGKILL", &out)?;
    // The container's init watched a pipe only the wrapper held: the container is gone with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with_arg(SLEEPER).is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "sleepers outlived their SIGKILLed wrapper: {:?}",
                processes_with_arg(SLEEPER)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its empty cgroup may stay until the next container is created, which sweeps it.
    let again = cargo(&dir, &["nextest", "run", "-E", "test(in_a_container)"]).output()?;
    check(again.status.success(), "a later run through the wrapper passes", &again)?;
    nothing_left(&before)
}

fn archive_partitions() -> Result<(), Failed> {
    let dir = fixture_copy("archive", Some(NEXTEST_TIMEOUT), false)?;
    let archive = fixture_target_dir().join("nx-archive.tar.zst");
    let archive_arg = archive.to_str().ok_or("a UTF-8 target dir")?;
    let made = cargo(&dir, &["nextest", "archive", "--archive-file", archive_arg]).output()?;
    check(made.status.success(), "nextest archives the fixture", &made)?;
    let extract = tempfile::tempdir()?;
    let peaks = tempfile::tempdir()?;
    let before = cvtest_cgroups();
    let mut seen = Vec::new();
    for k in 1..=2 {
        // From another directory, with the binaries at another path: nextest remaps them.
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["nextest", "run", "--archive-file"])
            .arg(&archive)
            .arg("--workspace-remap")
            .arg(&dir)
            .arg("--extract-to")
            .arg(extract.path())
            .args(["--extract-overwrite", "--partition", &format!("count:{k}/2"), "-E", "not test(timeout)"])
            .arg("--no-fail-fast")
            .current_dir(extract.path())
            .env("PATH", path_with_cvtest())
            .env("CVTEST_PEAKS_DIR", peaks.path())
            .env("NO_COLOR", "1")
            .env_remove("CVTEST_CONTAINER")
            .stdin(Stdio::null());
        let out = cmd.output()?;
        let all = all_text(&out);
        let id = run_id(&all).ok_or("no run id")?;
        let records = std::fs::read_to_string(peaks.path().join(format!("{id}.jsonl")))?;
        let names: Vec<String> = records
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .map(|v| v["name"].as_str().unwrap_or("").to_owned())
            })
            .collect::<Result<_, _>>()?;
        check(
            !names.is_empty() && names.len() < 8,
            &format!("partition {k}/2 ran part of the tests: {names:?}"),
            &out,
        )?;
        if names.iter().any(|n| n == "oom::hog_is_oom_killed") {
            check(
                all.contains("cvtest: OOM: out of memory"),
                "the override's limit reaches the archived binary",
                &out,
            )?;
        }
        if names.iter().any(|n| n == "ok::in_a_container") {
            check(nextest_line(&all, "PASS", "ok::in_a_container"), "in_a_container passes", &out)?;
        }
        seen.extend(names);
    }
    seen.sort();
    seen.dedup();
    if seen.len() != 8 {
        return Err(format!(
            "the two partitions together ran {} distinct tests, not 8: {seen:?}",
            seen.len()
        )
        .into());
    }
    nothing_left(&before)
}

fn target_runner() -> Result<(), Failed> {
    let dir = fixture_copy("runner", None, true)?;
    let before = cvtest_cgroups();
    // One binary, one container for the plain tests: in_a_container sees PID 2 and CVTEST_CONTAINER.
    let out = cargo(&dir, &["test", "--", "ok::in_a_container", "pids::"]).output()?;
    let all = all_text(&out);
    check(out.status.success(), "cargo test passes through the runner", &out)?;
    check(all.contains("test result: ok. 2 passed"), "libtest's own output, unchanged", &out)?;
    check(all.contains("cvtest: nxfix ["), "the container's peaks line", &out)?;
    // Tests with their own settings get their own container; #[cv_test] tests their own too.
    let out = cargo(&dir, &["test", "--", "oom::", "net::"]).output()?;
    let all = all_text(&out);
    check(out.status.code() == Some(101), "cargo test fails: the hog is OOM-killed", &out)?;
    check(
        all.contains(
            "cvtest: OOM: the kernel's OOM killer killed the test binary at its memory limit of 32M",
        ),
        "the OOM kill is named",
        &out,
    )?;
    check(all.contains("test net::veth_from_config ... ok"), "the network override's group passes", &out)?;
    check(
        all.contains("test net::veth_from_attribute ... ok"),
        "the #[cv_test] test passes on its own",
        &out,
    )?;
    // nextest through the runner: the listing stays clean, each test in a container.
    let out = cargo(&dir, &["nextest", "run", "--no-fail-fast", "-E", "not test(timeout)"]).output()?;
    let all = all_text(&out);
    check(out.status.code() == Some(100), "nextest fails only the hog", &out)?;
    for name in
        ["ok::in_a_container", "ok::binds_port_8080_a", "ok::binds_port_8080_b", "net::veth_from_config"]
    {
        check(nextest_line(&all, "PASS", name), &format!("{name} passes through the runner"), &out)?;
    }
    check(nextest_line(&all, "SIGKILL", "oom::hog_is_oom_killed"), "the hog is killed", &out)?;
    nothing_left(&before)
}

/// `CVTEST_LIMITS=off`: the hog (64 MiB under `memory = "32M"`) passes through the wrapper and
/// through the runner, in containers without a cgroup; the wrapper's line says NO LIMITS and its
/// record says `enforced: false` with the hog's RSS. A bad value fails the test with the error.
fn wrapper_and_runner_without_limits() -> Result<(), Failed> {
    let dir = fixture_copy("nolimits", Some(""), true)?;
    let before = cvtest_cgroups();
    let hog = ["nextest", "run", "--success-output", "immediate", "-E", "test(oom::hog_is_oom_killed)"];
    let out = cargo(&dir, &hog).env("CVTEST_LIMITS", "off").output()?;
    let all = all_text(&out);
    check(out.status.success(), "the hog passes without limits", &out)?;
    check(nextest_line(&all, "PASS", "oom::hog_is_oom_killed"), "nextest says PASS", &out)?;
    check(all.contains("NO LIMITS  rss"), "the wrapper's line says NO LIMITS", &out)?;
    let id = run_id(&all).ok_or("no run id in nextest's output")?;
    let file = fixture_target_dir().join("cvtest/nextest").join(format!("{id}.jsonl"));
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&file)?.lines().next().ok_or("an empty peaks file")?)?;
    let rss = record["max_rss_bytes"].as_u64().unwrap_or(0);
    check(
        record["enforced"] == false && record["memory_bytes"].is_null() && rss >= 64 << 20,
        &format!("the record says no limits, no cgroup peak, rss >= 64 MiB: {record}"),
        &out,
    )?;
    let out = cargo(&dir, &hog).env("CVTEST_LIMITS", "maybe").output()?;
    check(!out.status.success(), "a bad CVTEST_LIMITS fails the test", &out)?;
    check(
        all_text(&out).contains("CVTEST_LIMITS=\"maybe\" is not understood"),
        "the wrapper says why",
        &out,
    )?;
    // The target runner under cargo test (the nextest wrapper config is there too, but unused).
    let out = cargo(&dir, &["test", "--", "oom::"]).env("CVTEST_LIMITS", "off").output()?;
    let all = all_text(&out);
    check(out.status.success(), "the hog passes through the runner without limits", &out)?;
    check(all.contains("limits-not-enforced"), "the runner's settings say limits-not-enforced", &out)?;
    nothing_left(&before)
}

/// `cargo cvtest` on the copied fixture: JSON lines by test name.
fn cvtest_json(
    dir: &Path,
    filter: &str,
) -> Result<(Output, std::collections::BTreeMap<String, serde_json::Value>), Failed> {
    let out = Command::new(env!("CARGO_BIN_EXE_cargo-cvtest"))
        .args(["cvtest", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(fixture_target_dir())
        .args(["--message-format", "json", filter])
        .env("CARGO_NET_OFFLINE", "true")
        .env("NO_COLOR", "1")
        .env_remove("CVTEST_CONTAINER")
        .stdin(Stdio::null())
        .output()?;
    let by_name = crate::support::tests_by_name(&crate::support::json_lines(&out));
    Ok((out, by_name))
}

fn cvtest_leak() -> Result<(), Failed> {
    let dir = fixture_copy("leak", None, false)?;
    let _ = std::fs::remove_file(dir.join(".config/cvtest.toml"));
    let before = cvtest_cgroups();
    let (out, tests) = cvtest_json(&dir, "ok::")?;
    check(out.status.success(), "a leak passes by default", &out)?;
    let leak = tests.get("ok::leaves_a_sleeper_behind").ok_or("no result for the sleeper's test")?;
    let left = leak["leftover"].as_array().cloned().unwrap_or_default();
    check(
        leak["label"] == "LEAK"
            && leak["success"] == true
            && left.len() == 1
            && left[0]["name"] == "sleep"
            && left[0]["pid"].as_i64().is_some_and(|p| p > 2),
        &format!("the sleeper's test is a passing LEAK naming `sleep` with its pid: {leak}"),
        &out,
    )?;
    let plain = tests.get("ok::in_a_container").ok_or("no result for in_a_container")?;
    check(
        plain["label"] == "PASS" && plain["leftover"].as_array().is_some_and(|a| a.is_empty()),
        &format!("a test that leaves nothing is a PASS: {plain}"),
        &out,
    )?;
    check(
        text(&out.stderr).contains("still running when it ended (killed with its container): sleep (pid "),
        "the terminal names it",
        &out,
    )?;

    std::fs::create_dir_all(dir.join(".config"))?;
    std::fs::write(
        dir.join(".config/cvtest.toml"),
        "[[overrides]]\nfilter = \"leaves_a_sleeper\"\nleak = \"fail\"\n",
    )?;
    let (out, tests) = cvtest_json(&dir, "ok::")?;
    check(out.status.code() == Some(100), "leak = \"fail\" fails the run", &out)?;
    let leak = tests.get("ok::leaves_a_sleeper_behind").ok_or("no result for the sleeper's test")?;
    check(leak["label"] == "LEAK" && leak["success"] == false, &format!("a failing LEAK: {leak}"), &out)?;
    check(
        text(&out.stderr).contains("it left processes running (leak = \"fail\")"),
        "the failure says why",
        &out,
    )?;
    nothing_left(&before)
}

fn cvtest_no_capture() -> Result<(), Failed> {
    const OUTPUT: &str = "some output that is not shown for passing tests";
    let out = crate::support::cvtest("basic", &["--lib", "--exact", "ok::passes_too"]);
    check(
        out.status.success() && !all_text(&out).contains(OUTPUT),
        "captured: a pass shows no output",
        &out,
    )?;
    let out = crate::support::cvtest("basic", &["--lib", "--no-capture", "--exact", "ok::passes_too"]);
    check(out.status.success(), "the test passes", &out)?;
    check(text(&out.stdout).contains(OUTPUT), "--no-capture: the test's stdout is ours, as it runs", &out)?;
    check(text(&out.stderr).contains("1 tests run: 1 passed"), "the summary still follows", &out)
}
