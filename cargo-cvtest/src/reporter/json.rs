//! `--message-format json`: one JSON object per line on stdout. The schema is documented in
//! `cargo-cvtest/README.md`; `version` changes when a field changes meaning or goes away.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use cvtest::Peaks;
use serde_json::{json, Value};

use crate::events::{Attempt, Event, PeakScope, RunStats, Status, TestFinished, UnitError, Verdict};
use crate::expect::Expect;
use crate::reporter::summary::RunSummary;
use crate::reporter::Reporter;
use crate::selection::TestCase;
use crate::settings::Effective;
use crate::timeline::Timeline;

pub(crate) const SCHEMA_VERSION: u32 = 1;

pub(crate) struct JsonReporter<W: Write> {
    out: W,
    summary: RunSummary,
    run_start: Option<std::time::Instant>,
}

impl<W: Write> JsonReporter<W> {
    pub(crate) fn new(out: W) -> Self {
        JsonReporter { out, summary: RunSummary::new(0), run_start: None }
    }

    fn line(&mut self, v: Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &v)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub(crate) fn limits_json(s: &Effective) -> Value {
    let l = s.limits();
    json!({
        "memory": l.memory.to_string(),
        "memory_bytes": l.memory.bytes(),
        "pids": l.pids.to_string(),
        "cpu_weight": l.cpu_weight.get(),
        "cpus": l.cpus.map(|c| c.to_string()),
        "network": s.network().map(|n| n.to_string()),
        "host_address": s.network().and_then(|n| n.fixed()).map(|n| n.host().to_string()),
        "host_access": s.host_access().to_string(),
        "timeout_ms": s.timeout().map(ms),
        "privileged": s.privileged(),
        "caps": (!s.added_caps().is_empty()).then(|| s.added_caps().to_string()),
        "enforced": s.enforced(),
    })
}

fn peaks_json(p: &Peaks, pids_limit_hit: bool) -> Value {
    json!({
        "memory_bytes": p.memory_bytes.map(|m| m.value),
        "memory_sampled": p.memory_bytes.map(|m| m.sampled),
        "pids": p.pids.map(|m| m.value),
        "pids_sampled": p.pids.map(|m| m.sampled),
        "max_rss_bytes": p.max_rss_bytes,
        "cpu_user_ms": p.cpu_user.map(ms),
        "cpu_system_ms": p.cpu_system.map(ms),
        "oom_kills": p.oom_kills,
        "pids_limit_hit": pids_limit_hit,
        "net": p.net.map(|n| json!({
            "rx_bytes": n.rx_bytes, "tx_bytes": n.tx_bytes, "rx_packets": n.rx_packets, "tx_packets": n.tx_packets,
        })),
    })
}

fn expect_json(e: Expect) -> &'static str {
    e.as_str()
}

/// A line of `--list --message-format json`.
pub(crate) fn list_json_line(binary_id: &str, t: &TestCase) -> String {
    json!({
        "type": "test-listed",
        "version": SCHEMA_VERSION,
        "binary": binary_id,
        "name": t.name,
        "ignored": t.ignored,
        "runs": t.disposition == crate::filter::Disposition::Run,
        "cv_test": t.cv,
        "whole_binary": t.whole_binary,
        "should_panic": t.should_panic,
        "expect": expect_json(t.expect),
        "limits": limits_json(&t.settings),
    })
    .to_string()
}

/// The exit code, signal and error message of a status.
fn status_parts(status: &Status) -> (Option<i32>, Option<i32>, Option<String>) {
    match status {
        Status::Fail { exit_code } => (Some(*exit_code), None, None),
        Status::Signal { signal } => (None, Some(*signal), None),
        Status::Error(e) => (None, None, Some(e.message())),
        Status::Pass => (Some(0), None, None),
        Status::Oom | Status::Timeout | Status::Ignored | Status::Cancelled => (None, None, None),
    }
}

/// What an attempt's JSON shows, borrowed from an earlier [`Attempt`] or from the test's last
/// run (whose captured output is not copied for it).
struct AttemptView<'a> {
    status: &'a Status,
    duration: std::time::Duration,
    peaks: Option<&'a cvtest::Peaks>,
    pids_limit_hit: bool,
    /// `Some` for the earlier attempts (the last one's is the test's own `timeline`, not repeated).
    timeline: Option<Option<&'a Timeline>>,
}

impl<'a> AttemptView<'a> {
    fn earlier(a: &'a Attempt) -> Self {
        let timeline = Some(a.timeline.as_deref());
        AttemptView {
            status: &a.status,
            duration: a.duration,
            peaks: a.peaks.as_ref(),
            pids_limit_hit: a.pids_limit_hit,
            timeline,
        }
    }
    fn last(t: &'a TestFinished) -> Self {
        AttemptView {
            status: &t.status,
            duration: t.duration,
            peaks: t.peaks.as_ref(),
            pids_limit_hit: t.pids_limit_hit,
            timeline: None,
        }
    }
}

/// One attempt of a test, numbered from 1.
fn attempt_json(number: usize, a: AttemptView<'_>) -> Value {
    let (exit_code, signal, message) = status_parts(a.status);
    let mut v = json!({
        "attempt": number,
        "status": a.status.json_name(),
        "duration_ms": ms(a.duration),
        "exit_code": exit_code,
        "signal": signal,
        "message": message,
        "peaks": a.peaks.map(|p| peaks_json(p, a.pids_limit_hit)),
    });
    if let Some(timeline) = a.timeline {
        v["timeline"] = timeline.map(timeline_json).into();
    }
    v
}

/// A `test` line (or a `test-attempt-failed` one); `run_start` is when `run-started` was written.
fn test_json(t: &TestFinished, run_start: Option<Instant>) -> Value {
    let verdict = t.verdict();
    let failure = verdict == Verdict::Failure;
    let (exit_code, signal, message) = status_parts(&t.status);
    let attempts: Vec<Value> = t
        .tries
        .earlier
        .iter()
        .map(AttemptView::earlier)
        .chain(std::iter::once(AttemptView::last(t)))
        .enumerate()
        .map(|(i, a)| attempt_json(i + 1, a))
        .collect();
    json!({
        "type": "test",
        "binary": t.binary_id,
        "name": t.name,
        "status": t.status.json_name(),
        "expected": expect_json(t.expect),
        "success": verdict != Verdict::Failure,
        "label": t.label(),
        "started_at_ms": run_start.map(|s| ms(t.started_at.saturating_duration_since(s))),
        "duration_ms": ms(t.duration),
        "exit_code": exit_code,
        "signal": signal,
        "message": message,
        "error_kind": t.status.error().map(UnitError::kind),
        "limits": limits_json(&t.settings),
        "network": t.network.map(|n| json!({
            "address": n.container().to_string(),
            "host": n.host().to_string(),
            "prefix": n.prefix_len(),
        })),
        "peaks_scope": match t.scope { PeakScope::Test => "test", PeakScope::Binary => "binary" },
        "peaks": t.peaks.as_ref().map(|p| peaks_json(p, t.pids_limit_hit)),
        "leftover": t.leftover.iter().map(|l| json!({ "pid": l.pid, "name": l.name })).collect::<Vec<_>>(),
        "leak": t.leak.as_str(),
        // Its lab's nodes (`cvtest::lab`), children of the test: each run's outcome and peaks.
        "lab_nodes": t.lab.iter().map(lab_node_json).collect::<Vec<_>>(),
        "flaky": t.flaky(),
        "attempt": t.attempt(),
        "attempts_allowed": t.tries.allowed.max(1),
        "attempts": attempts,
        // A binary's one timeline is on its `binary` line, not repeated on each test's.
        "timeline": t.timeline.as_deref().filter(|_| t.scope == PeakScope::Test).map(timeline_json),
        "stdout": failure.then(|| String::from_utf8_lossy(&t.stdout).into_owned()),
        "stderr": failure.then(|| String::from_utf8_lossy(&t.stderr).into_owned()),
    })
}

/// A lab node of a test: its address and every run (a restart adds one).
fn lab_node_json(n: &cvtest::lab::NodeReport) -> Value {
    json!({
        "name": n.name,
        "address": n.address.to_string(),
        "runs": n.runs.iter().map(|r| json!({
            "outcome": r.outcome,
            "success": r.ok,
            "oom": r.oom,
            "pids_limit_hit": r.pids_limit_hit,
            "peak_memory_bytes": r.peak_memory_bytes,
            "peak_pids": r.peak_pids,
            "cpu_ms": r.cpu_ms,
            "duration_ms": r.duration_ms,
        })).collect::<Vec<_>>(),
    })
}

/// A container's usage over time (`--timeline`), as columns of equal length: per point its
/// time since the command started, the most memory and pids seen in its bucket (null where the
/// kernel does not count), the CPU time used by then.
pub(crate) fn timeline_json(t: &Timeline) -> Value {
    let p = &t.points;
    json!({
        "interval_ms": ms(t.interval),
        "base_interval_ms": ms(t.base_interval),
        "samples": t.samples,
        "cap": t.cap(),
        "t_ms": p.iter().map(|p| ms(p.at)).collect::<Vec<_>>(),
        "memory_bytes": p.iter().map(|p| p.memory_bytes).collect::<Vec<_>>(),
        "pids": p.iter().map(|p| p.pids).collect::<Vec<_>>(),
        "cpu_ms": p.iter().map(|p| p.cpu.map(ms)).collect::<Vec<_>>(),
        "marks": t.marks.iter().map(|m| json!({ "kind": m.kind.as_str(), "at_ms": ms(m.at) })).collect::<Vec<_>>(),
    })
}

/// The `run-finished` line: the run's statistics, and the counts by label.
fn run_finished_json(elapsed: Duration, stats: &RunStats, summary: &RunSummary) -> Value {
    let counts: serde_json::Map<String, Value> =
        summary.counts.iter().map(|(_, label, n)| (label.clone(), json!(n))).collect();
    json!({
        "type": "run-finished",
        "elapsed_ms": ms(elapsed),
        "passed": stats.succeeded,
        "failed": stats.failed,
        "ignored": stats.ignored,
        "flaky": stats.flaky,
        "not_run": stats.not_run(),
        "interrupted_by": stats.interrupted,
        "success": stats.success(),
        "counts": counts,
    })
}

impl<W: Write> Reporter for JsonReporter<W> {
    fn report(&mut self, event: &Event) -> io::Result<()> {
        self.summary.add(event);
        let v = match event {
            Event::RunStarted { to_run, ignored, filtered_out, jobs, scope, memory_budget, cpu_shares } => {
                self.run_start = Some(std::time::Instant::now());
                json!({
                "type": "run-started",
                "version": SCHEMA_VERSION,
                "to_run": to_run,
                "ignored": ignored,
                "filtered_out": filtered_out,
                "jobs": jobs,
                "isolation": scope.as_str(),
                "memory_budget_bytes": memory_budget,
                "cpu_shares": cpu_shares,
                })
            }
            Event::TestStarted { .. } => return Ok(()),
            Event::TestWaiting { binary_id, name, what, holder } => json!({
                "type": "test-waiting",
                "binary": binary_id,
                "name": name,
                "waiting_for": what,
                "holder": holder.as_ref().map(|h| json!({ "pid": h.pid, "test": h.test, "holds": h.what })),
            }),
            Event::TestSlow { binary_id, name, elapsed, terminating } => json!({
                "type": "test-slow",
                "binary": binary_id,
                "name": name,
                "elapsed_ms": ms(*elapsed),
                "terminating": terminating,
            }),
            Event::AttemptFailed(t) => {
                let mut v = test_json(t, self.run_start);
                v["type"] = json!("test-attempt-failed");
                v
            }
            Event::TestFinished(t) => test_json(t, self.run_start),
            Event::BinaryFinished(b) => json!({
                "type": "binary",
                "binary": b.binary_id,
                "status": b.status.json_name(),
                "error_kind": b.status.error().map(UnitError::kind),
                "tests": b.tests,
                "duration_ms": ms(b.duration),
                "peaks": b.peaks.as_ref().map(|p| peaks_json(p, b.pids_limit_hit)),
                "timeline": b.timeline.as_deref().map(timeline_json),
            }),
            Event::Interrupted { signal } => json!({ "type": "interrupted", "signal": signal }),
            Event::Stopping => json!({ "type": "stopping", "reason": "fail-fast" }),
            Event::Warning { message } => json!({ "type": "warning", "message": message }),
            Event::RunFinished { elapsed, stats } => run_finished_json(*elapsed, stats, &self.summary),
        };
        self.line(v)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::{TestFinished, UnitError};

    fn line(t: TestFinished) -> Value {
        let mut out = Vec::new();
        JsonReporter::new(&mut out).report(&Event::TestFinished(Box::new(t))).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn an_error_has_its_kind_and_whole_chain() {
        let create = cvtest::CreateError::Privileges { missing: "uid 1000".into(), fix: "run as root" };
        let v = line(TestFinished::sample(Status::Error(Arc::new(UnitError::Create(create)))));
        assert_eq!(v["status"], "error");
        assert_eq!(v["error_kind"], "create");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot create the container: cvtest cannot create containers as uid 1000")
        );
        let v =
            line(TestFinished::sample(Status::Error(Arc::new(UnitError::NoSuchTest { name: "t".into() }))));
        assert_eq!(v["error_kind"], "no-such-test");
    }

    #[test]
    fn an_outcome_has_no_error_kind() {
        let v = line(TestFinished::sample(Status::Fail { exit_code: 101 }));
        assert_eq!(v["status"], "fail");
        assert!(v["error_kind"].is_null() && v["message"].is_null());
        assert!(line(TestFinished::sample(Status::Cancelled))["error_kind"].is_null());
    }
}
