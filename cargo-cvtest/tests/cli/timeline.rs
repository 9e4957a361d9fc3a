//! `--timeline` and `--html`: real runs sampled while they run, the JSON timelines, the HTML
//! report (its contents here; in a real browser in `browser.rs`).

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::support::{check, cvtest, exit_code, fixture_target_dir, json_lines, privileged, tests_by_name};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("timelines_in_json_and_html", timelines_in_json_and_html),
        privileged(
            "binary_isolation_has_one_timeline_per_container",
            binary_isolation_has_one_timeline_per_container,
        ),
    ]
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// The OOM hog (32M limit), a test that sleeps 300 ms, and one that sleeps until its 3 s
/// timeout, sampled every 1 ms: 3000 samples, more than the 512 points a timeline keeps.
pub(crate) fn run_with_timelines(html: &std::path::Path) -> std::process::Output {
    let _ = std::fs::remove_file(html);
    cvtest(
        "basic",
        &[
            "--lib",
            "--message-format",
            "json",
            "--timeout",
            "3s",
            "--timeline-interval",
            "1ms",
            "--html",
            html.to_str().unwrap(),
            "limits::oom_hog_256m",
            "ok::binds_port_8080_a",
            "bad::sleeps_30s",
        ],
    )
}

fn timelines_in_json_and_html() -> Result<(), Failed> {
    let html = fixture_target_dir().join("timeline-report.html");
    let out = run_with_timelines(&html);
    exit_code(&out, 100)?;
    let t = tests_by_name(&json_lines(&out));
    check(t.len() == 3, "three tests", &out)?;
    for (name, v) in &t {
        let tl = &v["timeline"];
        check(tl.is_object(), &format!("{name} has a timeline"), &out)?;
        let n = nums(&tl["t_ms"]).len();
        check(n > 0, &format!("{name}: points"), &out)?;
        for col in ["memory_bytes", "pids", "cpu_ms"] {
            check(
                tl[col].as_array().map(Vec::len) == Some(n),
                &format!("{name}: {col} has {n} values"),
                &out,
            )?;
        }
        let cap = tl["cap"].as_u64().unwrap_or(0) as usize;
        check(cap == 512 && n <= cap, &format!("{name}: {n} points within the cap {cap}"), &out)?;
    }

    // The hog: memory approaches its 32 MiB limit; the OOM mark lies within its duration.
    let hog = &t["limits::oom_hog_256m"];
    check(hog["status"] == "oom", "the hog is OOM-killed", &out)?;
    let limit = hog["limits"]["memory_bytes"].as_f64().unwrap_or(0.0);
    let max_mem = nums(&hog["timeline"]["memory_bytes"]).into_iter().fold(0.0, f64::max);
    check(
        limit > 0.0 && max_mem >= 0.75 * limit && max_mem <= limit + (1 << 20) as f64,
        &format!("the hog's sampled memory {max_mem} approaches its limit {limit}"),
        &out,
    )?;
    let marks = hog["timeline"]["marks"].as_array().cloned().unwrap_or_default();
    let duration = hog["duration_ms"].as_f64().unwrap_or(-1.0);
    check(
        marks.len() == 1
            && marks[0]["kind"] == "oom"
            && marks[0]["at_ms"].as_f64().is_some_and(|at| at > 0.0 && at <= duration),
        &format!("one OOM mark within the hog's {duration} ms: {marks:?}"),
        &out,
    )?;

    // The sleeper: sampled while it slept, and not after its end.
    let sleeper = &t["ok::binds_port_8080_a"];
    let times = nums(&sleeper["timeline"]["t_ms"]);
    let duration = sleeper["duration_ms"].as_f64().unwrap_or(0.0);
    let period = sleeper["timeline"]["interval_ms"].as_f64().unwrap_or(0.0);
    let last = times.last().copied().unwrap_or(f64::MAX);
    check(
        last <= duration + period,
        &format!("last point {last} ms after the end {duration} ms + {period}"),
        &out,
    )?;
    check(
        last >= 250.0,
        &format!("sampled until near its end (300 ms of sleep): last point {last} ms"),
        &out,
    )?;
    check(sleeper["timeline"]["marks"].as_array().is_some_and(Vec::is_empty), "no mark on a pass", &out)?;

    // The 3 s test: thousands of samples, at most 512 points, buckets widened, timeout marked.
    let long = &t["bad::sleeps_30s"];
    check(long["status"] == "timeout", "the sleeper times out at 3 s", &out)?;
    let tl = &long["timeline"];
    let samples = tl["samples"].as_u64().unwrap_or(0);
    let points = nums(&tl["t_ms"]).len();
    check(
        samples > 512 && points <= 512 && tl["interval_ms"].as_f64() > tl["base_interval_ms"].as_f64(),
        &format!("{samples} samples kept as {points} points, interval {} ms", tl["interval_ms"]),
        &out,
    )?;
    check(tl["marks"][0]["kind"] == "timeout", "the timeout is marked", &out)?;

    // The HTML report: one file, the data inline, every test in it.
    let page = std::fs::read_to_string(&html).map_err(|e| format!("no report at {}: {e}", html.display()))?;
    check(page.starts_with("<!doctype html>"), "an HTML page", &out)?;
    for name in t.keys() {
        check(page.contains(&format!("\"{name}\"")), &format!("{name} is in the report"), &out)?;
    }
    Ok(())
}

/// `--isolation binary`: one curve per container, on the `binary` line; none repeated per test.
fn binary_isolation_has_one_timeline_per_container() -> Result<(), Failed> {
    let out = cvtest(
        "basic",
        &[
            "--lib",
            "--isolation",
            "binary",
            "--timeline",
            "--message-format",
            "json",
            "ok::passes",
            "ok::binds_port_8080_a",
        ],
    );
    exit_code(&out, 0)?;
    let lines = json_lines(&out);
    let binaries: Vec<&Value> = lines.iter().filter(|v| v["type"] == "binary").collect();
    check(binaries.len() == 1, "one binary container", &out)?;
    let tl = &binaries[0]["timeline"];
    let times = nums(&tl["t_ms"]);
    check(
        !times.is_empty() && times.last().copied().unwrap_or(0.0) >= 250.0,
        &format!("the binary's timeline covers its 300 ms test: {times:?}"),
        &out,
    )?;
    for (name, t) in tests_by_name(&lines) {
        check(
            t["peaks_scope"] == "binary" && t["timeline"].is_null(),
            &format!("{name}: not repeated"),
            &out,
        )?;
    }
    Ok(())
}
