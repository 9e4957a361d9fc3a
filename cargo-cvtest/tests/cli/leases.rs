//! Networks and memory shared by every cvtest on the machine (the `shared-net` fixture): tests
//! on one subnet and overlapping ones all pass under `cargo test`, `cargo nextest` and two
//! `cargo cvtest` runs at once; `network = "auto"` gives distinct subnets; two runners share one
//! memory budget; a test waiting for a held subnet is shown with its holder.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::support::{
    check, cvtest_command, exit_code, fixture, fixture_target_dir, json_lines, privileged, tests_by_name,
    text,
};

const FIXTURE: &str = "shared-net";

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("leases::one_subnet_under_cargo_test_threads", one_subnet_under_cargo_test_threads),
        privileged("leases::one_subnet_under_nextest", one_subnet_under_nextest),
        privileged("leases::one_subnet_two_runners_at_once", one_subnet_two_runners_at_once),
        privileged("leases::auto_fifty_tests_distinct_subnets", auto_fifty_tests_distinct_subnets),
        privileged("leases::two_runners_share_the_memory_budget", two_runners_share_the_memory_budget),
        privileged(
            "leases::waiting_test_is_reported_with_its_holder",
            waiting_test_is_reported_with_its_holder,
        ),
    ]
}

/// `cargo ARGS` on the fixture, with its target dir.
fn cargo(args: &[&str], after: &[&str]) -> Output {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args)
        .arg("--manifest-path")
        .arg(fixture(FIXTURE).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(fixture_target_dir())
        .args(after)
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("CVTEST_CONTAINER")
        .env_remove("CVTEST_LIST_SETTINGS")
        .stdin(Stdio::null());
    cmd.output().expect("run cargo")
}

/// Routes of the fixture's subnets (10.237.0.0/16) or its pool still on the host: left behind.
fn leftover_routes() -> Vec<String> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?.to_le_bytes();
            (dst[..2] == [10, 237]).then(|| format!("{} {}.{}.{}.{}", f[0], dst[0], dst[1], dst[2], dst[3]))
        })
        .collect()
}

fn nothing_left(out: &Output) -> Result<(), Failed> {
    let left = leftover_routes();
    check(left.is_empty(), &format!("routes left behind: {left:?}"), out)
}

fn one_subnet_under_cargo_test_threads() -> Result<(), Failed> {
    let out = cargo(&["test"], &["--test", "same_subnet", "--", "--test-threads=8"]);
    exit_code(&out, 0)?;
    check(text(&out.stdout).contains("test result: ok. 10 passed"), "not 10 passed", &out)?;
    nothing_left(&out)
}

fn one_subnet_under_nextest() -> Result<(), Failed> {
    let out = cargo(&["nextest", "run"], &["--test", "same_subnet", "-j", "8"]);
    check(!text(&out.stderr).contains("no such command"), "cargo nextest is not installed", &out)?;
    exit_code(&out, 0)?;
    check(text(&out.stderr).contains("10 tests run: 10 passed"), "not 10 passed", &out)?;
    nothing_left(&out)
}

/// Starts `cargo cvtest ARGS --message-format json` on the fixture.
fn spawn_cvtest(args: &[&str]) -> std::process::Child {
    let mut cmd = cvtest_command(FIXTURE, &[args, &["--message-format", "json"]].concat());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("start cargo-cvtest")
}

fn two_at_once(args: &[&str]) -> Result<[Output; 2], Failed> {
    // Built first, so that both runs start their tests at once rather than one waiting on the
    // other's build.
    let built = cargo(&["test"], &["--no-run", "--tests"]);
    exit_code(&built, 0)?;
    let a = spawn_cvtest(args);
    let b = spawn_cvtest(args);
    let (a, b) = (a.wait_with_output(), b.wait_with_output());
    Ok([a?, b?])
}

fn one_subnet_two_runners_at_once() -> Result<(), Failed> {
    for out in two_at_once(&["--test", "same_subnet", "-j", "8"])? {
        exit_code(&out, 0)?;
        let tests = tests_by_name(&json_lines(&out));
        let passed = tests.values().filter(|t| t["status"] == "pass").count();
        check(passed == 10, &format!("{passed} of 10 passed"), &out)?;
        nothing_left(&out)?;
    }
    Ok(())
}

fn auto_fifty_tests_distinct_subnets() -> Result<(), Failed> {
    let out = spawn_cvtest(&["--test", "auto", "-j", "4"]).wait_with_output()?;
    exit_code(&out, 0)?;
    let tests = tests_by_name(&json_lines(&out));
    let passed = tests.values().filter(|t| t["status"] == "pass").count();
    check(passed == 50, &format!("{passed} of 50 passed"), &out)?;
    let addresses: BTreeSet<String> =
        tests.values().filter_map(|t| t["network"]["address"].as_str().map(str::to_owned)).collect();
    check(addresses.len() == 50, &format!("{} distinct addresses: {addresses:?}", addresses.len()), &out)?;
    for t in tests.values() {
        check(t["network"]["prefix"] == 30 && t["limits"]["network"] == "auto", &format!("{t}"), &out)?;
    }
    Ok(())
}

fn two_runners_share_the_memory_budget() -> Result<(), Failed> {
    // Each runner's budget fits one 400M test; the tests fail if they meet one of any runner.
    for out in two_at_once(&["--test", "memory", "-j", "2", "--memory-budget", "600M"])? {
        exit_code(&out, 0)?;
        let tests = tests_by_name(&json_lines(&out));
        let passed = tests.values().filter(|t| t["status"] == "pass").count();
        check(passed == 2, &format!("{passed} of 2 passed (an OOM kill or a shared turn)"), &out)?;
    }
    Ok(())
}

fn waiting_test_is_reported_with_its_holder() -> Result<(), Failed> {
    let held = cvtest::lease::take_subnet(
        &"10.237.9.2/16".parse().expect("network"),
        &cvtest::lease::WaitPolicy { label: Some("leases::holder"), ..Default::default() },
    )?;
    let mut child = spawn_cvtest(&["--test", "same_subnet", "same_0"]);
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut waiting: Option<Value> = None;
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        seen.push(line.clone());
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["type"] == "test-waiting" {
            waiting = Some(v);
            break;
        }
        if v["type"] == "run-finished" {
            break;
        }
    }
    // Released only once the runner said it waits: the test then runs and passes.
    drop(held);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait()?;
    let w = waiting.ok_or_else(|| format!("no test-waiting event in {seen:?}"))?;
    if w["name"] != "same_0"
        || w["waiting_for"] != "10.237.0.0/24"
        || w["holder"]["pid"] != std::process::id()
        || w["holder"]["test"] != "leases::holder"
        || w["holder"]["holds"] != "10.237.0.0/16"
    {
        return Err(format!("unexpected waiting event {w}").into());
    }
    if !status.success() || !rest.iter().any(|l| l.contains("\"type\":\"test\"") && l.contains("\"pass\"")) {
        return Err(format!("the waiting test did not pass after the release ({status:?}): {rest:?}").into());
    }
    Ok(())
}
