//! Retries (FLAKY), slow tests and their escalation to TIMEOUT, profiles and their precedence,
//! status levels: the real binary on the `basic` fixture's `retry` module (whose tests fail or
//! sleep only when `CVTEST_FIXTURE_MARKERS` names a directory).

use std::process::Output;

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::support::{
    check, cvtest, cvtest_command, exit_code, fixture_target_dir, json_lines, leftovers_of, privileged,
    processes_running_from, tests_by_name, text,
};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("flaky_test_is_flaky_in_every_report", flaky_test_is_flaky_in_every_report),
        privileged("exhausted_retries_fail_with_rerun_failures", exhausted_retries_fail_with_rerun_failures),
        privileged("slow_tests_and_terminate_after", slow_tests_and_terminate_after),
        privileged("profiles_and_status_levels", profiles_and_status_levels),
        privileged("slowest_first_from_recorded_durations", slowest_first_from_recorded_durations),
    ]
}

/// `cargo cvtest --lib ARGS` on `basic` with a fresh marker directory; the run's pid too.
pub fn run_with_markers(args: &[&str]) -> Result<(Output, u32), Failed> {
    // In the target dir: a test's /tmp is its own.
    let dir = fixture_target_dir();
    std::fs::create_dir_all(&dir)?;
    let markers = tempfile::tempdir_in(&dir)?;
    let mut cmd = cvtest_command("basic", &[&["--lib"], args].concat());
    cmd.env("CVTEST_FIXTURE_MARKERS", markers.path());
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
    let pid = child.id();
    Ok((child.wait_with_output()?, pid))
}

fn junit_doc(path: &std::path::Path) -> Result<String, Failed> {
    std::fs::read_to_string(path).map_err(|e| format!("junit not written: {e}").into())
}

fn mem_peak(v: &Value) -> Option<u64> {
    v["peaks"]["memory_bytes"].as_u64()
}

fn flaky_test_is_flaky_in_every_report() -> Result<(), Failed> {
    let junit = fixture_target_dir().join("flaky-junit.xml");
    let _ = std::fs::remove_file(&junit);
    let html = fixture_target_dir().join("flaky-report.html");
    let _ = std::fs::remove_file(&html);
    // Retries come from the `ci` profile; the CLI shows every line over its status_level = "fail".
    let (out, _) = run_with_markers(&[
        "--profile",
        "ci",
        "--status-level",
        "all",
        "--message-format",
        "json",
        "--junit",
        junit.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "retry::flaky_fails_first_attempt",
    ])?;
    exit_code(&out, 0)?;
    let err = text(&out.stderr);
    check(err.contains("TRY 1 FAIL"), "the failed first attempt is shown live", &out)?;
    check(err.contains("first attempt fails on purpose"), "with its output", &out)?;
    check(err.contains("FLAKY") && err.contains("(1 flaky)"), "FLAKY line and summary", &out)?;
    check(err.contains("Flaky:"), "listed at the end (default final level)", &out)?;
    let lines = json_lines(&out);
    let t = tests_by_name(&lines);
    let f = &t["retry::flaky_fails_first_attempt"];
    check(f["status"] == "pass" && f["flaky"] == true && f["success"] == true, "flaky passes", &out)?;
    check(f["label"] == "FLAKY" && f["attempt"] == 2 && f["attempts_allowed"] == 2, "attempt 2 of 2", &out)?;
    let attempts = f["attempts"].as_array().cloned().unwrap_or_default();
    check(attempts.len() == 2, "two attempts", &out)?;
    check(attempts[0]["status"] == "fail" && attempts[0]["exit_code"] == 101, "the first failed", &out)?;
    check(attempts[1]["status"] == "pass", "the second passed", &out)?;
    for a in &attempts {
        let m = mem_peak(a).unwrap_or(0);
        check(m >= 8 << 20, &format!("each attempt has its own peak (>= 8 MiB): {m}"), &out)?;
    }
    // Each attempt's own curve (--html implies --timeline): the earlier one in its attempt, the
    // last one as the test's timeline (not repeated).
    // (How many points each has depends on how long it ran: a passing attempt can end before its
    // first sample, so only the timelines' presence is asserted.)
    let timeline = |v: &Value| v["timeline"]["t_ms"].is_array() && v["timeline"]["cap"].is_u64();
    check(timeline(&attempts[0]), "the first attempt's timeline", &out)?;
    check(attempts[1].get("timeline").is_none() && timeline(f), "the last attempt's is the test's", &out)?;
    let page = std::fs::read_to_string(&html).map_err(|e| format!("no HTML report: {e}"))?;
    let data = page
        .split_once(r#"<script id="cvtest-data" type="application/json">"#)
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(d, _)| d)
        .ok_or("no data in the HTML report")?;
    let data: Value = serde_json::from_str(data).map_err(|e| format!("HTML data is not JSON: {e}"))?;
    let row = &data["tests"][0];
    check(
        row[14].as_array().is_some_and(|a| a.len() == 1 && a[0][0].is_u64() && a[0][0] != row[12]),
        "the HTML row lists the earlier attempt with a curve of its own",
        &out,
    )?;
    check(
        lines.iter().any(|l| l["type"] == "test-attempt-failed" && l["attempt"] == 1),
        "a test-attempt-failed line",
        &out,
    )?;
    let end = lines.last().unwrap();
    check(end["passed"] == 1 && end["failed"] == 0 && end["flaky"] == 1, "run-finished counts", &out)?;
    let xml = junit_doc(&junit)?;
    let doc = roxmltree::Document::parse(&xml).map_err(|e| format!("junit is not XML: {e}"))?;
    let case = doc.descendants().find(|n| n.has_tag_name("testcase")).ok_or("no testcase")?;
    check(case.children().any(|n| n.has_tag_name("flakyFailure")), "a <flakyFailure>", &out)?;
    check(!case.children().any(|n| n.has_tag_name("failure")), "and no <failure>", &out)?;
    let prop = |name: &str| {
        case.descendants().find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
    };
    check(prop("cvtest.attempt1.peak.memory_bytes").is_some(), "the first attempt's peak", &out)?;
    check(prop("cvtest.peak.memory_bytes").is_some(), "the last attempt's peak", &out)?;
    check(prop("cvtest.status").and_then(|p| p.attribute("value")) == Some("FLAKY"), "status FLAKY", &out)
}

fn exhausted_retries_fail_with_rerun_failures() -> Result<(), Failed> {
    let junit = fixture_target_dir().join("rerun-junit.xml");
    let _ = std::fs::remove_file(&junit);
    let (out, _) = run_with_markers(&[
        "--retries",
        "2",
        "--message-format",
        "json",
        "--junit",
        junit.to_str().unwrap(),
        "retry::always_fails",
    ])?;
    exit_code(&out, 100)?;
    let err = text(&out.stderr);
    check(err.contains("TRY 1 FAIL") && err.contains("TRY 2 FAIL"), "two retried attempts", &out)?;
    check(!err.contains("FLAKY"), "not flaky", &out)?;
    let t = tests_by_name(&json_lines(&out));
    let a = &t["retry::always_fails"];
    check(a["status"] == "fail" && a["attempt"] == 3, "FAIL on its third attempt", &out)?;
    let attempts = a["attempts"].as_array().cloned().unwrap_or_default();
    check(attempts.len() == 3 && attempts.iter().all(|x| x["status"] == "fail"), "3 failed attempts", &out)?;
    let xml = junit_doc(&junit)?;
    let doc = roxmltree::Document::parse(&xml).map_err(|e| format!("junit is not XML: {e}"))?;
    let case = doc.descendants().find(|n| n.has_tag_name("testcase")).ok_or("no testcase")?;
    let reruns = case.children().filter(|n| n.has_tag_name("rerunFailure")).count();
    check(case.children().any(|n| n.has_tag_name("failure")), "a <failure>", &out)?;
    check(reruns == 2, &format!("two <rerunFailure>s, found {reruns}"), &out)?;

    // The CLI beats the profile: `ci` retries once, `--retries 0` not at all.
    let (out, _) = run_with_markers(&[
        "--profile",
        "ci",
        "--retries",
        "0",
        "--message-format",
        "json",
        "retry::flaky_fails_first_attempt",
    ])?;
    exit_code(&out, 100)?;
    let t = tests_by_name(&json_lines(&out));
    let f = &t["retry::flaky_fails_first_attempt"];
    check(f["status"] == "fail" && f["attempt"] == 1 && f["flaky"] == false, "not retried", &out)
}

fn slow_tests_and_terminate_after() -> Result<(), Failed> {
    // Both sleep 4 s; the package config ends `sleeps_4s_terminated` after 2 periods of 1 s.
    let (out, pid) = run_with_markers(&[
        "--slow-timeout",
        "1s",
        "--jobs",
        "2",
        "--message-format",
        "json",
        "retry::sleeps_4s",
    ])?;
    exit_code(&out, 100)?;
    let lines = json_lines(&out);
    let t = tests_by_name(&lines);
    check(t["retry::sleeps_4s"]["status"] == "pass", "the slow test passes", &out)?;
    let terminated = &t["retry::sleeps_4s_terminated"];
    check(terminated["status"] == "timeout", "terminate_after ends it as TIMEOUT", &out)?;
    let slow = |name: &str| lines.iter().filter(|l| l["type"] == "test-slow" && l["name"] == name).count();
    check(slow("retry::sleeps_4s") >= 1, "test-slow events for the slow test", &out)?;
    check(slow("retry::sleeps_4s_terminated") == 1, "one period before it is ended", &out)?;
    check(
        lines.iter().any(|l| {
            l["type"] == "test-slow" && l["name"] == "retry::sleeps_4s_terminated" && l["terminating"] == true
        }),
        "the last period says it will end",
        &out,
    )?;
    let err = text(&out.stderr);
    let slow_lines = err.lines().filter(|l| l.trim_start().starts_with("SLOW [")).count();
    check(slow_lines >= 2, "SLOW lines in the terminal", &out)?;
    check(err.contains("--terminate-after slow periods"), "the TIMEOUT says why", &out)?;
    // [profile.default] final_status_level = "slow": slow tests are listed at the end.
    check(err.contains("Slow:"), "the default profile's final level lists slow tests", &out)?;
    // The whole container was killed: nothing left.
    let left = leftovers_of(pid);
    check(left.is_empty(), &format!("no cgroup or link left: {left:?}"), &out)?;
    let procs = processes_running_from(&fixture_target_dir());
    check(procs.is_empty(), &format!("no test process left: {procs:?}"), &out)
}

fn profiles_and_status_levels() -> Result<(), Failed> {
    let pass_line = |out: &Output| text(&out.stderr).lines().any(|l| l.trim_start().starts_with("PASS ["));
    let args = ["--lib", "ok::passes_too"];
    // Default: every line.
    let out = cvtest("basic", &args);
    exit_code(&out, 0)?;
    check(pass_line(&out), "PASS shown by default", &out)?;
    // `ci`: status_level = "fail" hides it (the summary still counts it).
    let out = cvtest("basic", &[&args[..], &["--profile", "ci"]].concat());
    exit_code(&out, 0)?;
    check(!pass_line(&out), "the profile hides PASS", &out)?;
    check(text(&out.stderr).contains("cvtest: 1 passed"), "still counted", &out)?;
    // The CLI beats the profile.
    let out = cvtest("basic", &[&args[..], &["--profile", "ci", "--status-level", "pass"]].concat());
    check(pass_line(&out), "--status-level beats the profile", &out)?;
    let out = cvtest("basic", &[&args[..], &["--status-level", "none"]].concat());
    check(!pass_line(&out), "--status-level none hides it", &out)?;
    // CVTEST_PROFILE selects it too; --profile beats the variable.
    let mut cmd = cvtest_command("basic", &args);
    let out = cmd.env("CVTEST_PROFILE", "ci").output()?;
    check(!pass_line(&out), "CVTEST_PROFILE=ci", &out)?;
    let mut cmd = cvtest_command("basic", &[&args[..], &["--profile", "default"]].concat());
    let out = cmd.env("CVTEST_PROFILE", "ci").output()?;
    check(pass_line(&out), "--profile beats CVTEST_PROFILE", &out)?;
    // An unknown profile: a usage error naming the defined ones.
    let out = cvtest("basic", &[&args[..], &["--profile", "nightly"]].concat());
    exit_code(&out, 2)?;
    let err = text(&out.stderr);
    check(
        err.contains("no profile named \"nightly\"") && err.contains("defined: ci, default"),
        "lists them",
        &out,
    )
}

/// The names of the `test` lines, in the order they came (at `-j 1`, the start order).
fn finished_order(out: &Output) -> Vec<String> {
    json_lines(out)
        .iter()
        .filter(|v| v["type"] == "test" && v["status"] != "ignored")
        .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Durations recorded by a run start the next one longest first; `--order listed` keeps the
/// listed order; the file is rewritten with what the run measured.
fn slowest_first_from_recorded_durations() -> Result<(), Failed> {
    let dir = fixture_target_dir();
    std::fs::create_dir_all(&dir)?;
    let tmp = tempfile::tempdir_in(&dir)?;
    let history = tmp.path().join("durations.json");
    let run = |order: &str| -> Result<Output, Failed> {
        let mut cmd = cvtest_command(
            "basic",
            &["--lib", "-j", "1", "--message-format", "json", "--order", order, "ok::"],
        );
        cmd.env("CVTEST_HISTORY", &history);
        let out = cmd.output()?;
        exit_code(&out, 0)?;
        Ok(out)
    };
    let first = run("slowest-first")?;
    let listed = finished_order(&first);
    check(listed.len() >= 4, "the ok:: tests ran", &first)?;
    let read = || -> Result<serde_json::Map<String, Value>, Failed> {
        let v: Value = serde_json::from_slice(&std::fs::read(&history)?)?;
        Ok(v["tests"].as_object().cloned().unwrap_or_default())
    };
    let recorded = read()?;
    let binary = json_lines(&first)
        .iter()
        .find(|v| v["type"] == "test")
        .and_then(|v| v["binary"].as_str().map(str::to_owned))
        .unwrap_or_default();
    for name in &listed {
        let secs = recorded.get(&format!("{binary} {name}")).and_then(Value::as_f64);
        check(secs.is_some_and(|s| s > 0.0 && s < 60.0), &format!("{name} recorded: {secs:?}"), &first)?;
    }
    // Without a history the first run kept the listed order. Now the listed-last test is the
    // slowest, the listed-first the next, the others equal: those two start first, the others
    // after in their listed order.
    let (last, head) = (listed[listed.len() - 1].clone(), listed[0].clone());
    let mut tests = serde_json::Map::new();
    for name in &listed {
        let secs = if *name == last {
            100.0
        } else if *name == head {
            50.0
        } else {
            0.001
        };
        tests.insert(format!("{binary} {name}"), secs.into());
    }
    let fake = serde_json::json!({ "version": 1, "tests": tests });
    std::fs::write(&history, serde_json::to_vec(&fake)?)?;
    let second = run("slowest-first")?;
    let order = finished_order(&second);
    check(order.len() == listed.len(), "the same tests", &second)?;
    check(order[0] == last && order[1] == head, &format!("slowest first: {order:?}"), &second)?;
    let middle: Vec<_> = listed[1..listed.len() - 1].to_vec();
    check(order[2..] == middle[..], "the unknown ones keep their listed order", &second)?;
    let after = read()?;
    let last_secs = after.get(&format!("{binary} {last}")).and_then(Value::as_f64);
    check(
        last_secs.is_some_and(|s| s < 60.0),
        &format!("rewritten with the measured time: {last_secs:?}"),
        &second,
    )?;
    // The fake order again, with --order listed: ignored.
    std::fs::write(&history, serde_json::to_vec(&fake)?)?;
    let third = run("listed")?;
    check(finished_order(&third) == listed, "--order listed", &third)?;
    Ok(())
}
