//! Faults inside tests: each run is checked for the outcome the runner reports, then for
//! leftovers.

use std::time::Duration;

use libtest_mimic::{Completion, Failed};
use serde_json::Value;

use super::host::{probe_host, Baseline};
use super::run::{ms, rendezvous, Finished, Invocation};
use super::{note, CLEANUP_TIMEOUT};

/// Runs one fixture test by exact name (with extra runner flags), then checks that nothing of
/// the runner is left.
fn run_one(name: &str, extra: &[&str]) -> Result<Finished, Failed> {
    let rdv = rendezvous();
    run_one_in(&rdv, name, extra)
}

fn run_one_in(rdv: &tempfile::TempDir, name: &str, extra: &[&str]) -> Result<Finished, Failed> {
    let base = Baseline::capture();
    let mut args = vec!["-j", "1"];
    args.extend_from_slice(extra);
    args.extend(["--exact", name]);
    let done = Invocation::new(&args).env("RELIABILITY_DIR", rdv.path()).run()?;
    done.check_events_complete()?;
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    Ok(done)
}

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    v.pointer(path).unwrap_or(&Value::Null)
}

pub fn panic() -> Result<Completion, Failed> {
    let done = run_one("faults::panics", &[])?;
    done.expect_code(100)?;
    let t = done.test("faults::panics")?;
    done.check(t["status"] == "fail" && t["exit_code"] == 101, "a panic is FAIL with exit code 101")?;
    let stderr = t["stderr"].as_str().unwrap_or("");
    done.check(stderr.contains("this test panics on purpose"), "the panic message is kept")?;
    Ok(Completion::Completed)
}

pub fn oom() -> Result<Completion, Failed> {
    let done = run_one("faults::oom", &[])?;
    done.expect_code(100)?;
    let t = done.test("faults::oom")?;
    done.check(t["status"] == "oom", "status oom")?;
    done.check(field(t, "/peaks/oom_kills").as_u64().is_some_and(|n| n >= 1), "oom_kills >= 1")?;
    let peak = field(t, "/peaks/memory_bytes").as_u64().unwrap_or(u64::MAX);
    done.check(peak <= 64 << 20, &format!("peak memory {peak} within the 64 MiB limit"))?;
    Ok(Completion::Completed)
}

/// The bomb fills its 32 pids; meanwhile the host starts processes promptly; then the test
/// passes and its container (with the bomb) is gone.
pub fn fork_bomb() -> Result<Completion, Failed> {
    let base = Baseline::capture();
    let rdv = rendezvous();
    let mut run = Invocation::new(&["-j", "1", "--exact", "faults::fork_bomb"])
        .env("RELIABILITY_DIR", rdv.path())
        .start()?;
    run.wait_for_file(&rdv.path().join("bomb.full"), Duration::from_secs(300))?;
    // While the bomb runs: 50 processes on the host, each must start and end promptly.
    let probe = probe_host(50);
    std::fs::write(rdv.path().join("probe.done"), b"")?;
    let done = run.finish(Duration::from_secs(300))?;
    let worst = probe?;
    done.check_events_complete()?;
    done.expect_code(0)?;
    let t = done.test("faults::fork_bomb")?;
    done.check(t["status"] == "pass", "the bomb test passes: its forks were refused at the limit")?;
    let pids = field(t, "/peaks/pids").as_u64().unwrap_or(0);
    done.check((30..=32).contains(&pids), &format!("peak pids {pids}, want 30..=32 (the limit is 32)"))?;
    done.check(field(t, "/peaks/pids_limit_hit") == true, "pids_limit_hit")?;
    if worst > Duration::from_secs(2) {
        return Err(format!("the host was slow during the fork bomb: /bin/true took {worst:?}").into());
    }
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    note(&format!(
        "fork bomb under pids=32: peak pids {pids}, slowest host /bin/true of 50 during it {worst:?}"
    ));
    Ok(Completion::Completed)
}

pub fn daemon() -> Result<Completion, Failed> {
    let rdv = rendezvous();
    let done = run_one_in(&rdv, "faults::daemonizes_and_exits", &[])?;
    done.check(rdv.path().join("daemon.alive").exists(), "the daemon ran")?;
    done.expect_code(0)?;
    let t = done.test("faults::daemonizes_and_exits")?;
    done.check(t["status"] == "pass", "pass")?;
    let d = ms(&t["duration_ms"]);
    done.check(d < 10_000.0, &format!("took {d} ms: the runner waited for the daemon"))?;
    Ok(Completion::Completed)
}

pub fn ignores_sigterm() -> Result<Completion, Failed> {
    let done = run_one("faults::ignores_sigterm", &["--timeout", "2s"])?;
    done.expect_code(100)?;
    let t = done.test("faults::ignores_sigterm")?;
    done.check(t["status"] == "timeout", "a test that ignores SIGTERM still ends as TIMEOUT")?;
    let d = ms(&t["duration_ms"]);
    done.check((2000.0..10_000.0).contains(&d), &format!("duration {d} ms, want 2 s to 10 s"))?;
    Ok(Completion::Completed)
}

pub fn closes_stdout() -> Result<Completion, Failed> {
    let done = run_one("faults::closes_stdout", &[])?;
    done.expect_code(0)?;
    let t = done.test("faults::closes_stdout")?;
    done.check(t["status"] == "pass", "pass with stdout and stderr closed")?;
    let done = run_one("faults::closes_stdout_then_panics", &[])?;
    done.expect_code(100)?;
    let t = done.test("faults::closes_stdout_then_panics")?;
    done.check(t["status"] == "fail" && t["exit_code"] == 101, "FAIL, 101")?;
    let stderr = t["stderr"].as_str().unwrap_or("");
    done.check(stderr.contains("stdout is closed and this test panics"), "the panic is on stderr")?;
    Ok(Completion::Completed)
}

/// Kept output per stream (`CAPTURE_LIMIT` in cargo-cvtest/src/runner.rs).
const CAPTURE_LIMIT: usize = 1 << 20;
/// The runner's peak RSS while a test writes 100 MiB must stay below this.
const FLOOD_RSS_BOUND_MIB: f64 = 48.0;

/// The JUnit report keeps at most this much of a failure's output.
const JUNIT_BOUND: u64 = 1 << 20;

pub fn flood() -> Result<Completion, Failed> {
    let rdv = rendezvous();
    let junit = rdv.path().join("junit.xml");
    let junit_arg = junit.display().to_string();
    let done = run_one_in(&rdv, "faults::floods_stdout", &["--junit", &junit_arg])?;
    done.expect_code(100)?;
    let t = done.test("faults::floods_stdout")?;
    done.check(t["status"] == "fail", "FAIL")?;
    let out = t["stdout"].as_str().unwrap_or("");
    done.check(out.len() <= CAPTURE_LIMIT + 200, &format!("kept stdout is {} bytes", out.len()))?;
    done.check(out.contains("FLOOD-BEGIN") && out.contains("FLOOD-END"), "head and tail are kept")?;
    let marker = out.lines().find(|l| l.contains("bytes truncated"));
    done.check(marker.is_some(), "a truncation marker")?;
    done.check(
        done.hwm_mib() > 0.0 && done.hwm_mib() < FLOOD_RSS_BOUND_MIB,
        &format!("runner peak RSS {:.1} MiB, bound {FLOOD_RSS_BOUND_MIB} MiB", done.hwm_mib()),
    )?;
    let junit_len = std::fs::metadata(&junit).map(|m| m.len()).unwrap_or(0);
    done.check(junit_len > 0 && junit_len < JUNIT_BOUND, &format!("JUnit report of {junit_len} bytes"))?;
    note(&format!(
        "100 MiB on stdout: kept {} bytes with {:?}; JUnit report {junit_len} bytes; runner peak RSS {:.1} MiB",
        out.len(),
        marker.unwrap_or_default(),
        done.hwm_mib()
    ));
    Ok(Completion::Completed)
}

pub fn hang() -> Result<Completion, Failed> {
    let done = run_one("faults::hangs_past_timeout", &[])?;
    done.expect_code(100)?;
    let t = done.test("faults::hangs_past_timeout")?;
    done.check(t["status"] == "timeout", "TIMEOUT")?;
    let d = ms(&t["duration_ms"]);
    done.check((1000.0..10_000.0).contains(&d), &format!("duration {d} ms, want 1 s to 10 s"))?;
    Ok(Completion::Completed)
}
