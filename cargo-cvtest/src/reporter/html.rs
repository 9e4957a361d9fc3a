//! `--html PATH`: one self-contained HTML file (inline CSS and JS, the data inline as JSON; no
//! network, no external assets), written when the run finishes: the run's summary, a table of
//! every test (sortable, filterable, a sparkline per row drawn only when scrolled into view),
//! and on click a chart of the test's memory and pids against its limits with the OOM kill or
//! timeout marked.
//!
//! Compact for 10,000 tests: rows are arrays, binary ids and statuses are interned, memory is
//! in KiB, times and memory are delta-encoded integers. Test names are untrusted: the data sits
//! in a `<script type="application/json">` with `<`, `>`, `&`, U+2028 and U+2029 escaped as JSON
//! `\u` sequences (so no `</script>` or `<!--` can appear in it), and the page's script only
//! ever puts names into the DOM as text, never as markup.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cvtest_spec::PidsLimit;
use serde_json::{json, Value};

use crate::events::{Event, RunStats, TestFinished};
use crate::reporter::Reporter;
use crate::timeline::Timeline;

const TEMPLATE: &str = include_str!("report.html");
const DATA_SLOT: &str = "{{CVTEST_DATA}}";
/// The version of the inline data's layout (read by the page's own script only).
const DATA_VERSION: u32 = 1;

/// Collects what the page shows; writes the file at `run-finished`.
pub(crate) struct HtmlReporter {
    path: PathBuf,
    rows: Vec<Value>,
    binaries: Vec<String>,
    statuses: Vec<&'static str>,
    units: Vec<Value>,
    /// Each timeline's index in `units`, by the address of its `Arc` (tests of one
    /// `--isolation binary` container share one); the `Arc`s are kept so no address is reused.
    unit_of: Vec<(Arc<Timeline>, usize)>,
    /// `run-started`'s jobs and isolation, then the whole summary.
    run: Value,
}

impl HtmlReporter {
    pub(crate) fn new(path: PathBuf) -> Self {
        HtmlReporter {
            path,
            rows: Vec::new(),
            binaries: Vec::new(),
            statuses: Vec::new(),
            units: Vec::new(),
            unit_of: Vec::new(),
            run: Value::Null,
        }
    }

    fn intern_binary(&mut self, id: &str) -> usize {
        intern(&mut self.binaries, id, |b| b.as_str(), || id.to_owned())
    }

    fn add_unit(&mut self, t: &Arc<Timeline>) -> usize {
        // Shared timelines come one after another (a binary's tests): look at the last few.
        if let Some((_, i)) = self.unit_of.iter().rev().take(64).find(|(u, _)| Arc::ptr_eq(u, t)) {
            return *i;
        }
        self.units.push(unit_json(t));
        let i = self.units.len() - 1;
        if self.unit_of.len() >= 64 {
            self.unit_of.remove(0);
        }
        self.unit_of.push((Arc::clone(t), i));
        i
    }

    fn add_test(&mut self, t: &TestFinished) {
        let bin = self.intern_binary(&t.binary_id);
        let status = t.status.json_name();
        let st = intern(&mut self.statuses, status, |s| s, || status);
        let unit = t.timeline.as_ref().map(|tl| self.add_unit(tl));
        // A retried test's earlier attempts: `[unit, label, duration_ms]` each, oldest first.
        let earlier: Vec<Value> = t
            .tries
            .earlier
            .iter()
            .map(|a| {
                let unit = a.timeline.as_ref().map(|tl| self.add_unit(tl));
                json!([unit, a.status.name(), ms_int(a.duration)])
            })
            .collect();
        let peaks = t.peaks.as_ref();
        let limits = t.settings.limits();
        let label = t.label();
        self.rows.push(json!([
            bin,
            t.name,
            st,
            // The label when it says more than the status.
            if label == t.status.name() { Value::from(0) } else { Value::from(label) },
            u8::from(t.verdict() != crate::events::Verdict::Failure),
            ms_int(t.duration),
            peaks.and_then(|p| p.memory_bytes).map(|m| kib(m.value)),
            peaks.and_then(|p| p.pids).map(|m| m.value),
            peaks.and_then(|p| p.cpu_total()).map(ms_int),
            peaks.and_then(|p| p.net).map(|n| n.rx_bytes + n.tx_bytes),
            limits.memory.bytes().map(kib),
            match limits.pids {
                PidsLimit::Count(n) => Some(n),
                PidsLimit::Max => None,
            },
            unit,
            u8::from(t.scope == crate::events::PeakScope::Binary),
            if earlier.is_empty() { Value::from(0) } else { Value::from(earlier) },
        ]));
    }

    fn page(&self) -> String {
        let data = json!({
            "v": DATA_VERSION,
            "run": self.run,
            "bins": self.binaries,
            "st": self.statuses,
            "tests": self.rows,
            "units": self.units,
        });
        fill(TEMPLATE, &data)
    }

    fn write(&self) -> io::Result<()> {
        let mut f = io::BufWriter::new(std::fs::File::create(&self.path)?);
        f.write_all(self.page().as_bytes())?;
        f.flush()
    }
}

fn intern<T>(v: &mut Vec<T>, key: &str, as_str: impl Fn(&T) -> &str, make: impl FnOnce() -> T) -> usize {
    match v.iter().position(|x| as_str(x) == key) {
        Some(i) => i,
        None => {
            v.push(make());
            v.len() - 1
        }
    }
}

fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

fn ms_int(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Consecutive differences (the first value as is); `None` when any value is missing.
fn deltas(values: impl Iterator<Item = Option<i64>>) -> Value {
    let mut out = Vec::new();
    let mut prev = 0i64;
    for v in values {
        let Some(v) = v else { return Value::Null };
        out.push(v - prev);
        prev = v;
    }
    Value::from(out)
}

/// `[interval_ms, t_ms deltas, memory KiB deltas, pids, cpu_ms deltas, [[mark kind, at_ms]]]`;
/// a series the kernel did not give (at any point) is `null`.
fn unit_json(t: &Timeline) -> Value {
    let p = &t.points;
    let pids: Option<Vec<u64>> = p.iter().map(|p| p.pids).collect();
    json!([
        ms_int(t.interval),
        deltas(p.iter().map(|p| Some(p.at.as_millis() as i64))),
        deltas(p.iter().map(|p| p.memory_bytes.map(|m| kib(m) as i64))),
        pids,
        deltas(p.iter().map(|p| p.cpu.map(|c| c.as_millis() as i64))),
        t.marks.iter().map(|m| json!([m.kind.as_str(), ms_int(m.at)])).collect::<Vec<_>>(),
    ])
}

/// `data` as JSON that is safe inside a `<script>` element: every `<`, `>` and `&` (and the JS
/// line separators) become `\u` escapes, which JSON.parse reads back as the same characters.
pub(crate) fn script_safe_json(data: &Value) -> String {
    let text = data.to_string();
    let mut out = String::with_capacity(text.len() + 64);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn fill(template: &str, data: &Value) -> String {
    template.replacen(DATA_SLOT, &script_safe_json(data), 1)
}

fn run_json(elapsed: Duration, stats: &RunStats, started: &Value) -> Value {
    json!({
        "elapsed_ms": ms_int(elapsed),
        "passed": stats.succeeded,
        "failed": stats.failed,
        "ignored": stats.ignored,
        "not_run": stats.not_run(),
        "interrupted_by": stats.interrupted,
        "success": stats.success(),
        "jobs": started["jobs"],
        "isolation": started["isolation"],
    })
}

impl Reporter for HtmlReporter {
    fn report(&mut self, event: &Event) -> io::Result<()> {
        match event {
            Event::RunStarted { jobs, scope, .. } => {
                self.run = json!({ "jobs": jobs, "isolation": scope.as_str() });
            }
            Event::TestFinished(t) => self.add_test(t),
            Event::RunFinished { elapsed, stats } => {
                self.run = run_json(*elapsed, stats, &self.run);
                self.write()?;
            }
            // Its timeline came with its tests (the same `Arc`); earlier attempts come again
            // with the test's last one.
            Event::BinaryFinished(_)
            | Event::AttemptFailed(_)
            | Event::TestSlow { .. }
            | Event::TestStarted { .. }
            | Event::TestWaiting { .. }
            | Event::Interrupted { .. }
            | Event::Stopping
            | Event::Warning { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Status;
    use crate::timeline::{MarkKind, TimelineOptions};

    fn timeline(points: u64) -> Timeline {
        let mut t = Timeline::new(TimelineOptions::default());
        for i in 0..points {
            let u = cvtest::Usage {
                memory_bytes: Some((4 << 20) + i * 40960),
                pids: Some(2 + i % 3),
                cpu: Some(Duration::from_millis(i * 7)),
            };
            t.push(Duration::from_millis(i * 10), &u);
        }
        t.finish(Duration::from_millis(points * 10), Some(MarkKind::Oom).filter(|_| points > 100));
        t
    }

    fn report(tests: impl IntoIterator<Item = TestFinished>) -> String {
        let mut r = HtmlReporter::new(PathBuf::new());
        for t in tests {
            r.add_test(&t);
        }
        r.page()
    }

    /// The script elements of the page: those of the template, no more.
    fn script_closings(page: &str) -> usize {
        page.to_ascii_lowercase().matches("</script").count()
    }

    #[test]
    fn a_hostile_test_name_stays_data() {
        let mut t = TestFinished::sample(Status::Pass);
        t.name = "evil</script><script>alert(1)</script><!-- & \u{2028}".into();
        t.binary_id = "b</SCRIPT>".into();
        let page = report([t]);
        assert_eq!(script_closings(&page), script_closings(TEMPLATE), "a name closed a script element");
        assert!(!page.contains("<!-- &"), "markup from a name reached the page");
        // And it reads back as the same name.
        let start = page.find("type=\"application/json\">").unwrap() + "type=\"application/json\">".len();
        let end = start + page[start..].find("</script>").unwrap();
        let data: Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(data["tests"][0][1], "evil</script><script>alert(1)</script><!-- & \u{2028}");
        assert_eq!(data["bins"][0], "b</SCRIPT>");
    }

    #[test]
    fn the_page_script_never_writes_markup_from_data() {
        // Names reach the DOM through textContent only; innerHTML is never used.
        assert!(!TEMPLATE.contains("innerHTML") && !TEMPLATE.contains("outerHTML"));
        assert!(!TEMPLATE.contains("document.write") && !TEMPLATE.contains("insertAdjacentHTML"));
        // Nothing is fetched: no attribute names a resource, no script or style loads one.
        for loads in ["src=", "href=", "fetch(", "XMLHttpRequest", "@import", "url(", "https://"] {
            assert!(!TEMPLATE.contains(loads), "the page loads something: {loads}");
        }
    }

    #[test]
    fn tests_of_one_binary_container_share_its_one_curve() {
        let shared = Arc::new(timeline(5));
        let tests = (0..3).map(|i| {
            let mut t = TestFinished::sample(Status::Pass);
            t.name = format!("t{i}");
            t.scope = crate::events::PeakScope::Binary;
            t.timeline = Some(Arc::clone(&shared));
            t
        });
        let mut own = TestFinished::sample(Status::Pass);
        own.timeline = Some(Arc::new(timeline(5)));
        let page = report(tests.chain([own]));
        let start = page.find("type=\"application/json\">").unwrap() + "type=\"application/json\">".len();
        let end = start + page[start..].find("</script>").unwrap();
        let data: Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(data["units"].as_array().unwrap().len(), 2, "one curve for the binary, one of its own");
        let units: Vec<_> = (0..4).map(|i| data["tests"][i][12].as_u64().unwrap()).collect();
        assert_eq!(units, [0, 0, 0, 1]);
    }

    #[test]
    fn timelines_are_delta_encoded_and_missing_series_are_null() {
        let v = unit_json(&timeline(3));
        assert_eq!(v[0], 10);
        assert_eq!(v[1], json!([0, 10, 10]));
        assert_eq!(v[2], json!([4096, 40, 40]));
        assert_eq!(v[3], json!([2, 3, 4]));
        let mut t = Timeline::new(TimelineOptions::default());
        t.push(Duration::ZERO, &cvtest::Usage { memory_bytes: Some(1024), pids: None, cpu: None });
        t.finish(Duration::from_secs(1), None);
        let v = unit_json(&t);
        assert!(v[3].is_null() && v[4].is_null() && v[2] == json!([1]));
    }

    /// 10,000 tests (mostly short: a few points each; one in a hundred with a full timeline)
    /// stay a few MB; the number is in docs/BENCHMARKS.md (run with --nocapture to see it).
    #[test]
    fn ten_thousand_tests_make_a_small_file() {
        let tests = (0..10_000u64).map(|i| {
            let mut t = TestFinished::sample(if i % 97 == 0 { Status::Oom } else { Status::Pass });
            t.name = format!("module_{}::test_number_{i}", i % 50);
            t.binary_id = format!("crate_{}", i % 20);
            t.duration = Duration::from_millis(20 + i % 300);
            t.peaks = Some(cvtest::Peaks {
                memory_bytes: Some(cvtest::Measured { value: (3 << 20) + i * 4096, sampled: false }),
                pids: Some(cvtest::Measured { value: 1 + i % 9, sampled: false }),
                cpu_user: Some(Duration::from_micros(1500 + i)),
                cpu_system: Some(Duration::from_micros(900)),
                oom_kills: Some(0),
                max_rss_bytes: Some(2 << 20),
                net: None,
            });
            let points = if i % 100 == 0 { 2000 } else { 2 + i % 30 };
            t.timeline = Some(Arc::new(timeline(points)));
            t
        });
        let page = report(tests);
        println!("html report for 10,000 tests: {} bytes", page.len());
        assert!(page.len() < 6 << 20, "{} bytes", page.len());
    }
}
