//! Real runs: outcomes, the JSON and JUnit reports, exit codes, isolation modes, admission.

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::support::{
    check, cvtest, exit_code, fixture_target_dir, json_lines, privileged, tests_by_name, text,
};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("outcomes_json_and_junit", outcomes_json_and_junit),
        privileged("passing_run_exits_0_with_cargo_env", passing_run_exits_0_with_cargo_env),
        privileged(
            "binary_isolation_runs_a_binary_per_container",
            binary_isolation_runs_a_binary_per_container,
        ),
        privileged("memory_budget_serializes_tests", memory_budget_serializes_tests),
        privileged("overlapping_networks_never_overlap_in_time", overlapping_networks_never_overlap_in_time),
        privileged("fail_fast_stops_after_the_first_failure", fail_fast_stops_after_the_first_failure),
        privileged("no_limits_is_said_for_every_test", no_limits_is_said_for_every_test),
        privileged("each_worker_runs_its_tests_on_its_own_cpus", each_worker_runs_its_tests_on_its_own_cpus),
        privileged("no_test_waits_paused_behind_a_long_one", no_test_waits_paused_behind_a_long_one),
        privileged(
            "a_worker_that_waits_for_memory_lends_its_cpus",
            a_worker_that_waits_for_memory_lends_its_cpus,
        ),
    ]
}

fn status_of(t: &std::collections::BTreeMap<String, Value>, name: &str) -> String {
    t.get(name)
        .map_or_else(|| format!("<{name} missing>"), |v| v["status"].as_str().unwrap_or("?").to_owned())
}

fn outcomes_json_and_junit() -> Result<(), Failed> {
    let junit = fixture_target_dir().join("outcomes-junit.xml");
    let _ = std::fs::remove_file(&junit);
    let out = cvtest(
        "basic",
        &[
            "--lib",
            "--message-format",
            "json",
            "--junit",
            junit.to_str().unwrap(),
            "ok::passes",
            "bad::fails_with_panic",
            "bad::aborts_with_signal",
            "limits::oom_hog_256m",
            "limits::expected_oom_hog",
            "limits::times_out_after_1s",
            "limits::thread_storm_under_16_pids",
            "limits::hog_64m_fits_in_256m",
        ],
    );
    exit_code(&out, 100)?;
    let lines = json_lines(&out);
    let t = tests_by_name(&lines);
    let want = [
        ("ok::passes", "pass"),
        ("ok::passes_too", "pass"),
        ("bad::fails_with_panic", "fail"),
        ("bad::aborts_with_signal", "signal"),
        ("limits::oom_hog_256m", "oom"),
        ("limits::expected_oom_hog", "oom"),
        ("limits::times_out_after_1s", "timeout"),
        ("limits::thread_storm_under_16_pids", "pass"),
        ("limits::hog_64m_fits_in_256m", "pass"),
    ];
    for (name, status) in want {
        check(
            status_of(&t, name) == status,
            &format!("{name} should be {status}, is {}", status_of(&t, name)),
            &out,
        )?;
    }
    check(t.len() == want.len(), "one event per selected test", &out)?;
    // Expected OOM counts as a success; the unexpected one does not.
    check(t["limits::expected_oom_hog"]["success"] == true, "expected OOM is a success", &out)?;
    check(t["limits::expected_oom_hog"]["label"] == "OOM (expected)", "labelled as expected", &out)?;
    check(t["limits::oom_hog_256m"]["success"] == false, "OOM is a failure", &out)?;
    // Peaks: memory near the hog's limit, pids limit hit, failure output kept.
    let hog = &t["limits::hog_64m_fits_in_256m"]["peaks"];
    let mem = hog["memory_bytes"].as_u64().unwrap_or(0);
    check((64 << 20..256 << 20).contains(&mem), &format!("64 MiB hog peak {mem}"), &out)?;
    check(
        t["limits::thread_storm_under_16_pids"]["peaks"]["pids_limit_hit"] == true,
        "pids limit hit",
        &out,
    )?;
    check(hog["pids"].as_u64().is_some_and(|p| p >= 1), "pids peak", &out)?;
    check(hog["cpu_user_ms"].is_number(), "cpu time", &out)?;
    let fail = &t["bad::fails_with_panic"];
    check(fail["exit_code"] == 101, "panic exit code", &out)?;
    check(
        fail["stdout"].as_str().unwrap_or("").contains("stdout of the failing test"),
        "failure stdout",
        &out,
    )?;
    check(fail["stderr"].as_str().unwrap_or("").contains("fails on purpose"), "failure stderr", &out)?;
    check(t["ok::passes"]["stdout"].is_null(), "passing output not in JSON", &out)?;
    let end = lines.last().unwrap();
    check(
        end["type"] == "run-finished" && end["failed"] == 4 && end["passed"] == 5,
        "run-finished counts",
        &out,
    )?;
    // Human output on stderr: one line per test, failing output, summary table.
    let err = text(&out.stderr);
    for needle in [
        "OOM (expected)",
        "TIMEOUT",
        "stdout of the failing test",
        "Top peak memory:",
        "Longest:",
        "cvtest: 5 passed, 4 failed, 0 ignored",
    ] {
        check(err.contains(needle), &format!("stderr shows {needle:?}"), &out)?;
    }
    // JUnit: parsed, one case per test, failures marked, peaks as properties.
    let xml = std::fs::read_to_string(&junit).map_err(|e| format!("junit not written: {e}"))?;
    let doc = roxmltree::Document::parse(&xml).map_err(|e| format!("junit is not XML: {e}"))?;
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    check(cases.len() == want.len(), &format!("{} junit cases", cases.len()), &out)?;
    let failures = cases.iter().filter(|c| c.children().any(|n| n.has_tag_name("failure"))).count();
    check(failures == 4, &format!("{failures} junit failures"), &out)?;
    let hog_case =
        cases.iter().find(|c| c.attribute("name") == Some("limits::hog_64m_fits_in_256m")).unwrap();
    let prop = hog_case
        .descendants()
        .find(|n| n.has_tag_name("property") && n.attribute("name") == Some("cvtest.peak.memory_bytes"))
        .and_then(|n| n.attribute("value"))
        .and_then(|v| v.parse::<u64>().ok());
    check(prop == Some(mem), "junit memory peak property equals the JSON one", &out)
}

fn passing_run_exits_0_with_cargo_env() -> Result<(), Failed> {
    // ok:: (two tests bind 127.0.0.1:8080 at once), integration tests (CARGO_BIN_EXE_*,
    // CARGO_TARGET_TMPDIR), the custom harness run whole, networked tests on one subnet.
    let out = cvtest(
        "basic",
        &["-j", "2", "--message-format", "json", "ok::", "integ", "networked", "basic::custom"],
    );
    exit_code(&out, 0)?;
    let t = tests_by_name(&json_lines(&out));
    for name in [
        "ok::passes",
        "ok::cargo_env",
        "ok::binds_port_8080_a",
        "ok::binds_port_8080_b",
        "ok::writes_package_and_target_dirs",
        "integ_passes",
        "integ_runs_the_binary",
        "basic::custom",
        "limits::networked_a",
        "limits::networked_b",
    ] {
        check(status_of(&t, name) == "pass", &format!("{name} passes"), &out)?;
    }
    check(status_of(&t, "ok::ignored_passes") == "ignored", "ignored reported", &out)?;
    let net = &t["limits::networked_a"]["peaks"]["net"];
    check(net.is_object(), "networked test has net counters", &out)
}

fn binary_isolation_runs_a_binary_per_container() -> Result<(), Failed> {
    let out = cvtest(
        "basic",
        &["--lib", "--isolation", "binary", "--message-format", "json", "ok::", "--skip", "binds"],
    );
    exit_code(&out, 0)?;
    let lines = json_lines(&out);
    let t = tests_by_name(&lines);
    for name in ["ok::passes", "ok::passes_too", "ok::cargo_env", "ok::writes_package_and_target_dirs"] {
        check(status_of(&t, name) == "pass", &format!("{name} passes"), &out)?;
        check(t[name]["peaks_scope"] == "binary", "peaks are the binary's", &out)?;
    }
    let binaries: Vec<_> = lines.iter().filter(|v| v["type"] == "binary").collect();
    check(binaries.len() == 1 && binaries[0]["tests"] == 4, "one container for the four tests", &out)?;
    check(binaries[0]["peaks"]["memory_bytes"].as_u64().is_some_and(|m| m > 0), "binary peaks", &out)?;
    // A failure inside the shared container is still reported per test.
    let out = cvtest(
        "basic",
        &[
            "--lib",
            "--isolation",
            "binary",
            "--message-format",
            "json",
            "ok::passes",
            "bad::fails_with_panic",
        ],
    );
    exit_code(&out, 100)?;
    let t = tests_by_name(&json_lines(&out));
    check(
        status_of(&t, "bad::fails_with_panic") == "fail" && status_of(&t, "ok::passes") == "pass",
        "per-test results",
        &out,
    )?;
    check(
        t["bad::fails_with_panic"]["stdout"].as_str().unwrap_or("").contains("fails on purpose"),
        "its output",
        &out,
    )
}

/// `--fail-fast -j 1`: the first test (sorted: `bad::aborts_with_signal`) fails, one `stopping`
/// event follows, nothing more starts, and the rest count as not run.
fn fail_fast_stops_after_the_first_failure() -> Result<(), Failed> {
    let args = ["--lib", "--fail-fast", "-j", "1", "--message-format", "json", "bad::", "ok::passes"];
    let out = cvtest("basic", &args);
    exit_code(&out, 100)?;
    let lines = json_lines(&out);
    let t = tests_by_name(&lines);
    check(t.len() == 1 && status_of(&t, "bad::aborts_with_signal") == "signal", "only the first ran", &out)?;
    let stopping: Vec<_> = lines.iter().filter(|v| v["type"] == "stopping").collect();
    check(stopping.len() == 1 && stopping[0]["reason"] == "fail-fast", "one stopping event", &out)?;
    let end = lines.last().unwrap();
    check(
        end["type"] == "run-finished" && end["failed"] == 1 && end["not_run"] == 5 && end["success"] == false,
        "the others are not run",
        &out,
    )?;
    check(text(&out.stderr).contains("Stopping after a failure (--fail-fast)"), "said on stderr", &out)
}

/// (start, end) in ms of each named test.
fn intervals(t: &std::collections::BTreeMap<String, Value>, names: &[&str]) -> Vec<(f64, f64)> {
    names
        .iter()
        .map(|n| {
            let s = t[*n]["started_at_ms"].as_f64().unwrap_or(0.0);
            // started_at is taken before the container is created; duration is spawn to exit.
            (s, s + t[*n]["duration_ms"].as_f64().unwrap_or(0.0))
        })
        .collect()
}

fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn memory_budget_serializes_tests() -> Result<(), Failed> {
    let names = ["ok::binds_port_8080_a", "ok::binds_port_8080_b"];
    // Two 200M tests at -j 2 under `budget`: their (start, end) intervals, and the output.
    let run = |budget: &str| {
        let args = ["--lib", "-j", "2", "--memory", "200M", "--memory-budget", budget];
        let out = cvtest("basic", &[&args[..], &["--message-format", "json", "binds_port"]].concat());
        let iv = intervals(&tests_by_name(&json_lines(&out)), &names);
        (out, iv)
    };
    // A 300M budget: one at a time, although -j 2.
    let (out, iv) = run("300M");
    exit_code(&out, 0)?;
    check(!overlap(iv[0], iv[1]), &format!("ran together under a 300M budget: {iv:?}"), &out)?;
    // With room for both they run together (each sleeps 300 ms).
    let (out, iv) = run("1G");
    exit_code(&out, 0)?;
    check(overlap(iv[0], iv[1]), &format!("did not run together under a 1G budget: {iv:?}"), &out)?;
    // A test bigger than the budget still runs (alone).
    let out =
        cvtest("basic", &["--lib", "--memory-budget", "100M", "--message-format", "json", "hog_64m_fits"]);
    exit_code(&out, 0)
}

fn overlapping_networks_never_overlap_in_time() -> Result<(), Failed> {
    let names = ["limits::networked_a", "limits::networked_b"];
    for _ in 0..3 {
        let out = cvtest("basic", &["--lib", "-j", "2", "--message-format", "json", "networked"]);
        exit_code(&out, 0)?;
        let iv = intervals(&tests_by_name(&json_lines(&out)), &names);
        check(!overlap(iv[0], iv[1]), &format!("10.231.7.0/24 used twice at once: {iv:?}"), &out)?;
    }
    Ok(())
}

/// `--no-limits`: a 256 MiB hog under `memory = "32M"` passes (nothing limits it), the run says so
/// at the start, and every test's JSON says its limits were not enforced and gives the largest
/// process's RSS; the terminal line is marked. A bad `CVTEST_LIMITS` is a usage error.
fn no_limits_is_said_for_every_test() -> Result<(), Failed> {
    let out = cvtest(
        "basic",
        &["--lib", "--message-format", "json", "--no-limits", "limits::oom_hog_256m", "ok::passes"],
    );
    exit_code(&out, 0)?;
    let lines = json_lines(&out);
    let warned = lines
        .iter()
        .any(|l| l["type"] == "warning" && l["message"].as_str().is_some_and(|m| m.contains("NOT enforced")));
    check(warned, "a warning that limits are not enforced", &out)?;
    let t = tests_by_name(&lines);
    for name in ["limits::oom_hog_256m", "ok::passes"] {
        let test = t.get(name).ok_or_else(|| format!("{name} missing"))?;
        check(test["status"] == "pass", &format!("{name} passes without limits"), &out)?;
        check(test["limits"]["enforced"] == false, &format!("{name}: limits.enforced false"), &out)?;
        check(test["peaks"]["memory_bytes"].is_null(), &format!("{name}: no cgroup memory peak"), &out)?;
    }
    let rss = t["limits::oom_hog_256m"]["peaks"]["max_rss_bytes"].as_u64().unwrap_or(0);
    check(rss >= 256 << 20, &format!("the hog's largest RSS {rss} >= 256 MiB"), &out)?;
    check(text(&out.stderr).contains("NO LIMITS"), "the terminal line says NO LIMITS", &out)?;

    let mut cmd = crate::support::cvtest_command("basic", &["--list"]);
    let bad = cmd.env("CVTEST_LIMITS", "maybe").output().map_err(|e| e.to_string())?;
    exit_code(&bad, 2)?;
    check(text(&bad.stderr).contains("CVTEST_LIMITS=\"maybe\" is not understood"), "the usage error", &bad)
}

/// With `-j 2`, the worker that starts the long test takes the next one ahead (spawned paused,
/// to start as soon as the long one ends); once the other worker runs out of tests, it starts
/// that one instead of going idle. The long test waits for every quick one (30 s at most): held
/// behind it, one would not run until it ended.
fn no_test_waits_paused_behind_a_long_one() -> Result<(), Failed> {
    let dir = fixture_target_dir().join(format!("hostage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Small limits: a machine with little memory (the v2 VM's 2 GiB) would run one at a time.
    let mut cmd = crate::support::cvtest_command(
        "basic",
        &["--lib", "-j", "2", "--order", "listed", "--memory", "64M", "hostage::"],
    );
    cmd.env("CVTEST_FIXTURE_HOSTAGE", &dir);
    let out = cmd.output().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    exit_code(&out, 0)
}

/// With `-j 2` but memory for one test at a time (`--memory 64M --memory-budget 100M`), one
/// worker waits while the other's long test runs placed on a half of the CPUs: the waiting
/// worker lends its CPUs, and the long test ends on all of them (it waits up to 30 s for that).
fn a_worker_that_waits_for_memory_lends_its_cpus() -> Result<(), Failed> {
    let ours = cpus_allowed(&std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?)?;
    if ours.len() < 2 {
        return Ok(());
    }
    let all = cvtest_spec::CpuList::new(ours.iter().copied()).map_err(|e| e.to_string())?.to_string();
    let dir = fixture_target_dir().join(format!("lend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let args = [
        "--lib",
        "-j",
        "2",
        "--order",
        "listed",
        "--memory",
        "64M",
        "--memory-budget",
        "100M",
        "placement::a_long_test",
        "placement::records_cpus_a",
    ];
    let mut cmd = crate::support::cvtest_command("basic", &args);
    cmd.env("CVTEST_FIXTURE_PLACEMENT", &dir).env("CVTEST_FIXTURE_ALL_CPUS", &all);
    let out = cmd.output().map_err(|e| e.to_string())?;
    let long = std::fs::read_to_string(dir.join("long"));
    let _ = std::fs::remove_dir_all(&dir);
    exit_code(&out, 0)?;
    let long = long.map_err(|e| format!("the long test's record: {e}"))?;
    let last = long.split_once(' ').map(|(_, l)| l).ok_or_else(|| format!("record {long:?}"))?;
    if last != all {
        return Err(format!("the long test ended on CPUs {last}, not on all of {all}").into());
    }
    Ok(())
}

/// The CPUs a process may run on, from its `Cpus_allowed_list` line.
fn cpus_allowed(status: &str) -> Result<Vec<usize>, Failed> {
    let line =
        status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).ok_or("no Cpus_allowed_list")?;
    let list: cvtest_spec::CpuList = line.trim().parse().map_err(|e| format!("{e}"))?;
    Ok(list.cpus().to_vec())
}

/// With `-j 2`, each placement test runs on one of two halves of the CPUs this process may use
/// (the first half the larger, a half per worker), a whole custom-harness binary on all of them,
/// and `available_parallelism` in each counts its half; a long test started first, on a half,
/// gets all of them once the other worker has run out of tests (the run's tail); with
/// `--no-pin`, or `CVTEST_PIN=off`, each may run on all of them.
fn each_worker_runs_its_tests_on_its_own_cpus() -> Result<(), Failed> {
    let ours = cpus_allowed(&std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?)?;
    if ours.len() < 2 {
        // One CPU: there is nothing to share out, and the runner places nothing.
        let out = cvtest("basic", &["--lib", "-j", "2", "placement::"]);
        return exit_code(&out, 0);
    }
    let dir = fixture_target_dir().join(format!("placement-{}", std::process::id()));
    let all = cvtest_spec::CpuList::new(ours.iter().copied()).map_err(|e| e.to_string())?.to_string();
    // What each test recorded (its CPUs and available_parallelism), and the run's `cpu_shares`.
    type Seen = (Vec<(Vec<usize>, usize)>, Vec<String>);
    let run = |extra: &[&str], env: Option<(&str, &str)>| -> Result<Seen, Failed> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // Listed order: the long test first, so that it starts before the queue runs out. Not
        // ahead: its worker would hold a test paused until the long one ended, then start it
        // after the tail began, on every CPU.
        let args = [
            // Small limits: with too little memory for two at once (the v2 VM's 2 GiB), a
            // worker would wait, lending its CPUs to the test running (see the next trial).
            &["-j", "2", "--order", "listed", "--memory", "64M", "--message-format", "json"],
            extra,
            &["placement::", "basic::custom"],
        ]
        .concat();
        let mut cmd = crate::support::cvtest_command("basic", &args);
        cmd.env("CVTEST_FIXTURE_PLACEMENT", &dir)
            .env("CVTEST_FIXTURE_ALL_CPUS", &all)
            .env("CVTEST_SPAWN_AHEAD", "0");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        exit_code(&out, 0)?;
        let mut seen = Vec::new();
        for name in ["a", "b", "custom"] {
            let text =
                std::fs::read_to_string(dir.join(name)).map_err(|e| format!("test {name}'s record: {e}"))?;
            let (cpus, threads) = text.split_once(' ').ok_or_else(|| format!("record {text:?}"))?;
            let list: cvtest_spec::CpuList = cpus.parse().map_err(|e| format!("{e}"))?;
            seen.push((list.cpus().to_vec(), threads.parse::<usize>().map_err(|e| e.to_string())?));
        }
        let long =
            std::fs::read_to_string(dir.join("long")).map_err(|e| format!("the long test's record: {e}"))?;
        let (first, last) = long.split_once(' ').ok_or_else(|| format!("record {long:?}"))?;
        let parse = |l: &str| {
            l.parse::<cvtest_spec::CpuList>().map(|l| l.cpus().to_vec()).map_err(|e| format!("{e}"))
        };
        seen.push((parse(first)?, 0));
        seen.push((parse(last)?, 0));
        let lines = json_lines(&out);
        let started = lines.iter().find(|l| l["type"] == "run-started").ok_or("no run-started line")?;
        let shares = started["cpu_shares"].as_array().ok_or("no cpu_shares")?;
        Ok((seen, shares.iter().map(|v| v.as_str().unwrap_or("?").to_owned()).collect()))
    };
    let (seen, shares) = run(&[], None)?;
    // A single test of the default harness runs with --test-threads=1; a custom harness gets
    // only what it was listed with.
    for (name, want) in [("a", true), ("b", true), ("custom", false)] {
        let args = std::fs::read_to_string(dir.join(format!("{name}.args"))).map_err(|e| e.to_string())?;
        if args.lines().any(|a| a == "--test-threads=1") != want {
            return Err(format!("{name} ran with the arguments {args:?}").into());
        }
    }
    let half = ours.len() / 2 + ours.len() % 2;
    let want = [ours[..half].to_vec(), ours[half..].to_vec()];
    let said: Vec<String> = want
        .iter()
        .map(|w| cvtest_spec::CpuList::new(w.iter().copied()).map(|l| l.to_string()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if shares != said {
        return Err(format!("run-started says cpu_shares {shares:?}, expected {said:?}").into());
    }
    // Each test on one worker's share (both on one, should a worker start late); the custom
    // harness, run whole, on every CPU (not on its worker's zygote's share).
    if seen[2].0 != ours {
        return Err(format!("the whole binary ran on {:?}, not on all of {ours:?}", seen[2].0).into());
    }
    for (cpus, _) in &seen[..2] {
        if !want.contains(cpus) {
            return Err(
                format!("a test ran on CPUs {cpus:?}, not on either half {want:?} of {ours:?}").into()
            );
        }
    }
    // The long test: placed at first, on every CPU once the other worker ran out of tests.
    if !want.contains(&seen[3].0) || seen[4].0 != ours {
        return Err(format!(
            "the long test started on {:?} and ended on {:?}: expected a half of {ours:?}, then all of it",
            seen[3].0, seen[4].0
        )
        .into());
    }
    for (cpus, threads) in &seen[..3] {
        if *threads != cpus.len() {
            return Err(format!("available_parallelism {threads} on CPUs {cpus:?}").into());
        }
    }
    for (extra, env) in [(&["--no-pin"][..], None), (&[][..], Some(("CVTEST_PIN", "off")))] {
        let (seen, shares) = run(extra, env)?;
        if !shares.is_empty() {
            return Err(format!("with {extra:?} {env:?}: run-started says cpu_shares {shares:?}").into());
        }
        for (cpus, _) in &seen {
            if *cpus != ours {
                return Err(format!(
                    "with {extra:?} {env:?}: a test ran on {cpus:?}, not on all of {ours:?}"
                )
                .into());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
