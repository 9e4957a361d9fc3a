//! Filters and partitions, checked through `--list --message-format json` (no test runs).

use std::collections::BTreeSet;

use libtest_mimic::{Failed, Trial};

use crate::support::{check, cvtest, exit_code, json_lines, privileged, tests_by_name};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("list_shows_effective_limits", list_shows_effective_limits),
        privileged("filters_match_cargo_test", filters_match_cargo_test),
        privileged("partitions_cover_the_list_once", partitions_cover_the_list_once),
    ]
}

/// The names `--list` selects with these extra args, and whether each would run.
fn listed(args: &[&str]) -> Result<Vec<(String, bool)>, Failed> {
    let mut a = vec!["--list", "--message-format", "json", "--lib", "--test", "integ"];
    a.extend_from_slice(args);
    let out = cvtest("basic", &a);
    exit_code(&out, 0)?;
    Ok(json_lines(&out).iter().map(|v| (v["name"].as_str().unwrap().to_owned(), v["runs"] == true)).collect())
}

fn list_shows_effective_limits() -> Result<(), Failed> {
    let out = cvtest("basic", &["--list", "--message-format", "json"]);
    exit_code(&out, 0)?;
    let t = tests_by_name(&json_lines(&out));
    let get = |name: &str| t.get(name).cloned().ok_or_else(|| Failed::from(format!("{name} not listed")));
    // #[cv_test] value
    check(get("limits::oom_hog_256m")?["limits"]["memory"] == "32M", "cv_test memory", &out)?;
    // package config override by exact name, and its default pids over .config/cvtest.toml
    let o = get("limits::override_target")?;
    check(
        o["limits"]["memory"] == "48M" && o["limits"]["pids"] == "128",
        "config override + package default",
        &out,
    )?;
    // .config/cvtest.toml timeout, library default memory
    let p = get("ok::passes")?;
    check(
        p["limits"]["timeout_ms"] == 60000.0 && p["limits"]["memory"] == "1G",
        "config timeout, default memory",
        &out,
    )?;
    check(get("limits::expected_oom_hog")?["expect"] == "oom", "expect from config", &out)?;
    check(get("ok::ignored_passes")?["ignored"] == true, "ignored flag", &out)?;
    // the custom harness binary is one test, run whole
    check(get("basic::custom")?["whole_binary"] == true, "custom harness run whole", &out)?;
    // CLI defaults sit below #[cv_test]; --force-limits puts them on top
    let out = cvtest("basic", &["--list", "--message-format", "json", "--lib", "--memory", "77M"]);
    let t = tests_by_name(&json_lines(&out));
    check(t["ok::passes"]["limits"]["memory"] == "77M", "CLI default applies", &out)?;
    check(t["limits::oom_hog_256m"]["limits"]["memory"] == "32M", "cv_test beats CLI default", &out)?;
    check(
        t["limits::override_target"]["limits"]["memory"] == "48M",
        "config override beats CLI default",
        &out,
    )?;
    let out = cvtest(
        "basic",
        &["--list", "--message-format", "json", "--lib", "--memory", "77M", "--force-limits"],
    );
    let t = tests_by_name(&json_lines(&out));
    check(t["limits::oom_hog_256m"]["limits"]["memory"] == "77M", "--force-limits beats cv_test", &out)?;
    check(
        t["limits::oom_hog_256m"]["limits"]["pids"] == "128",
        "--force-limits only forces what it sets",
        &out,
    )
}

fn filters_match_cargo_test() -> Result<(), Failed> {
    let names = |v: Vec<(String, bool)>| v.into_iter().map(|(n, _)| n).collect::<BTreeSet<_>>();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    let got = names(listed(&["binds_port"])?);
    if got != set(&["ok::binds_port_8080_a", "ok::binds_port_8080_b"]) {
        return Err(format!("substring: {got:?}").into());
    }
    let got = names(listed(&["ok::passes", "--exact"])?);
    if got != set(&["ok::passes"]) {
        return Err(format!("--exact: {got:?}").into());
    }
    let got = names(listed(&["ok::", "--skip", "binds", "--skip", "passes"])?);
    if got != set(&["ok::cargo_env", "ok::writes_package_and_target_dirs"]) {
        return Err(format!("--skip: {got:?}").into());
    }
    // libtest-style arguments after `--`
    let got = names(listed(&["--", "ok::passes", "--exact"])?);
    if got != set(&["ok::passes"]) {
        return Err(format!("after --: {got:?}").into());
    }
    let all = listed(&["ok::"])?;
    let ignored_runs = all.iter().find(|(n, _)| n == "ok::ignored_passes").map(|(_, r)| *r);
    if ignored_runs != Some(false) {
        return Err(format!("ignored tests are listed but do not run by default: {all:?}").into());
    }
    let only = listed(&["--ignored"])?;
    if only != [("ok::ignored_passes".to_owned(), true)] {
        return Err(format!("--ignored: {only:?}").into());
    }
    let incl = listed(&["ok::", "--include-ignored"])?;
    if incl.len() != all.len() || !incl.iter().all(|(_, r)| *r) {
        return Err(format!("--include-ignored: {incl:?}").into());
    }
    Ok(())
}

fn partitions_cover_the_list_once() -> Result<(), Failed> {
    let full: Vec<String> = listed(&[])?.into_iter().map(|(n, _)| n).collect();
    if full.len() < 10 {
        return Err(format!("fixture list too short: {full:?}").into());
    }
    for kind in ["count", "hash"] {
        let mut seen: Vec<String> = Vec::new();
        let mut sizes = Vec::new();
        for k in 1..=3 {
            let part = format!("{kind}:{k}/3");
            let names: Vec<String> = listed(&["--partition", &part])?.into_iter().map(|(n, _)| n).collect();
            sizes.push(names.len());
            seen.extend(names);
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        if seen.len() != full.len() || unique.len() != full.len() {
            return Err(format!(
                "{kind}: shards {sizes:?} overlap or miss tests ({} listed, {} seen)",
                full.len(),
                seen.len()
            )
            .into());
        }
        if kind == "count" && sizes.iter().max().unwrap() - sizes.iter().min().unwrap() > 1 {
            return Err(format!("count shards are uneven: {sizes:?}").into());
        }
    }
    Ok(())
}
