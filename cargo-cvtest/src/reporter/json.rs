//! `--message-format json`: one JSON object per line on stdout. The schema is documented in
//! `cargo-cvtest/README.md`; `version` changes when a field changes meaning or goes away.

use std::io::{self, Write};

use cvtest::Peaks;
use serde_json::{json, Value};

use crate::events::{Event, PeakScope, Status, Verdict};
use crate::reporter::summary::RunSummary;
use crate::reporter::Reporter;
use crate::settings::{Effective, Expect};
use crate::testlist::TestCase;

pub const SCHEMA_VERSION: u32 = 1;

pub struct JsonReporter<W: Write> {
    out: W,
    summary: RunSummary,
    run_start: Option<std::time::Instant>,
}

impl<W: Write> JsonReporter<W> {
    pub fn new(out: W) -> Self {
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

pub fn limits_json(s: &Effective) -> Value {
    json!({
        "memory": s.memory.to_string(),
        "memory_bytes": s.memory.bytes(),
        "pids": s.pids.to_string(),
        "cpu_weight": s.cpu_weight.get(),
        "cpus": s.cpus.map(|c| c.to_string()),
        "network": s.network.map(|n| n.to_string()),
        "host_address": s.network.map(|n| n.host().to_string()),
        "timeout_ms": s.timeout.map(ms),
        "privileged": s.privileged,
        "caps": (!s.caps.is_empty()).then(|| s.caps.to_string()),
        "enforced": s.enforced,
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
pub fn list_json_line(binary_id: &str, t: &TestCase) -> String {
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

impl<W: Write> Reporter for JsonReporter<W> {
    fn report(&mut self, event: &Event) -> io::Result<()> {
        self.summary.add(event);
        let v = match event {
            Event::RunStarted { to_run, ignored, filtered_out, jobs, isolation, memory_budget } => {
                self.run_start = Some(std::time::Instant::now());
                json!({
                "type": "run-started",
                "version": SCHEMA_VERSION,
                "to_run": to_run,
                "ignored": ignored,
                "filtered_out": filtered_out,
                "jobs": jobs,
                "isolation": match isolation { crate::cli::Isolation::Test => "test", crate::cli::Isolation::Binary => "binary" },
                "memory_budget_bytes": memory_budget,
                })
            }
            Event::TestStarted { .. } => return Ok(()),
            Event::TestFinished(t) => {
                let verdict = t.verdict();
                let failure = verdict == Verdict::Failure;
                let (exit_code, signal, message) = match &t.status {
                    Status::Fail { exit_code } => (Some(*exit_code), None, None),
                    Status::Signal { signal } => (None, Some(*signal), None),
                    Status::SetupError { message } => (None, None, Some(message.clone())),
                    Status::Pass => (Some(0), None, None),
                    Status::Oom | Status::Timeout | Status::Ignored | Status::Cancelled => (None, None, None),
                };
                json!({
                    "type": "test",
                    "binary": t.binary_id,
                    "name": t.name,
                    "status": t.status.json_name(),
                    "expected": expect_json(t.expect),
                    "success": verdict != Verdict::Failure,
                    "label": t.label(),
                    "started_at_ms": self.run_start.map(|s| ms(t.started_at.saturating_duration_since(s))),
                    "duration_ms": ms(t.duration),
                    "exit_code": exit_code,
                    "signal": signal,
                    "message": message,
                    "limits": limits_json(&t.settings),
                    "peaks_scope": match t.scope { PeakScope::Test => "test", PeakScope::Binary => "binary" },
                    "peaks": t.peaks.as_ref().map(|p| peaks_json(p, t.pids_limit_hit)),
                    "stdout": failure.then(|| String::from_utf8_lossy(&t.stdout).into_owned()),
                    "stderr": failure.then(|| String::from_utf8_lossy(&t.stderr).into_owned()),
                })
            }
            Event::BinaryFinished(b) => json!({
                "type": "binary",
                "binary": b.binary_id,
                "status": b.status.json_name(),
                "tests": b.tests,
                "duration_ms": ms(b.duration),
                "peaks": b.peaks.as_ref().map(|p| peaks_json(p, b.pids_limit_hit)),
            }),
            Event::Interrupted { signal } => json!({ "type": "interrupted", "signal": signal }),
            Event::Stopping => json!({ "type": "stopping", "reason": "fail-fast" }),
            Event::Warning { message } => json!({ "type": "warning", "message": message }),
            Event::RunFinished { elapsed } => {
                let s = &self.summary;
                let counts: serde_json::Map<String, Value> =
                    s.counts.iter().map(|(_, label, n)| (label.clone(), json!(n))).collect();
                json!({
                    "type": "run-finished",
                    "elapsed_ms": ms(*elapsed),
                    "passed": s.succeeded,
                    "failed": s.failed,
                    "ignored": s.ignored,
                    "not_run": s.not_run(),
                    "interrupted_by": s.interrupted,
                    "success": s.success(),
                    "counts": counts,
                })
            }
        };
        self.line(v)
    }
}
