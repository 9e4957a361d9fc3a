//! `--junit PATH`: JUnit XML through quick-junit, one `<testsuite>` per binary, the peaks and
//! limits as `<property>`s of each test case. Output is kept for failures only, and only its
//! last [`KEEP_OUTPUT`] bytes, so memory stays bounded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use quick_junit::{
    FlakyOrRerun, NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use crate::events::{Attempt, Event, Status, TestFinished, Verdict};
use crate::reporter::Reporter;

const KEEP_OUTPUT: usize = 64 * 1024;

pub(crate) struct JunitReporter {
    path: PathBuf,
    suites: BTreeMap<String, Vec<TestCase>>,
    binary_props: BTreeMap<String, Vec<Property>>,
}

impl JunitReporter {
    pub(crate) fn new(path: PathBuf) -> Self {
        JunitReporter { path, suites: BTreeMap::new(), binary_props: BTreeMap::new() }
    }

    fn case(t: &TestFinished) -> TestCase {
        let status = match t.verdict() {
            Verdict::Success => TestCaseStatus::success(),
            Verdict::NotRun => TestCaseStatus::skipped(),
            Verdict::Failure => {
                let mut s = TestCaseStatus::non_success(kind(&t.status));
                // An error's type is its kind (`create`, `spawn`, ...), an outcome's its label.
                s.set_type(t.status.error().map_or_else(|| t.label(), |e| e.kind().to_owned()));
                s.set_message(message(&t.status, t));
                s.set_rerun_kind(FlakyOrRerun::Rerun);
                s
            }
        };
        // Earlier attempts: `<flakyFailure>`s of a passing test, `<rerunFailure>`s beside the
        // `<failure>` of one that failed every time.
        let mut status = status;
        status.add_reruns(t.tries.earlier.iter().map(|a| rerun(a, t)));
        let mut c = TestCase::new(t.name.clone(), status);
        c.set_classname(t.binary_id.clone());
        c.set_time(t.duration);
        let mut props = vec![
            Property::new("cvtest.status", t.label()),
            Property::new("cvtest.limit.memory", t.settings.limits().memory.to_string()),
            Property::new("cvtest.limit.pids", t.settings.limits().pids.to_string()),
            Property::new("cvtest.limit.cpu_weight", t.settings.limits().cpu_weight.to_string()),
        ];
        if let Some(p) = &t.peaks {
            props.extend(peak_props("cvtest", p, t.pids_limit_hit));
        }
        for (i, a) in t.tries.earlier.iter().enumerate() {
            let prefix = format!("cvtest.attempt{}", i + 1);
            props.push(Property::new(format!("{prefix}.status"), a.status.name()));
            if let Some(p) = &a.peaks {
                props.extend(peak_props(&prefix, p, a.pids_limit_hit));
            }
        }
        if t.leaked() {
            props.push(Property::new("cvtest.leftover", crate::leak::describe(&t.leftover)));
        }
        c.add_properties(props);
        if t.verdict() == Verdict::Failure {
            c.set_system_out_lossy(tail(&t.stdout));
            c.set_system_err_lossy(tail(&t.stderr));
        }
        c
    }

    fn write(&self) -> std::io::Result<()> {
        let mut report = Report::new("cvtest");
        for (bin, cases) in &self.suites {
            let mut suite = TestSuite::new(bin.clone());
            if let Some(p) = self.binary_props.get(bin) {
                suite.add_properties(p.iter().cloned());
            }
            suite.add_test_cases(cases.iter().cloned());
            report.add_test_suite(suite);
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::sudo::create_dir_all(dir)?;
        }
        let file = std::fs::File::create(&self.path)?;
        crate::sudo::give_file(&self.path);
        report.serialize(std::io::BufWriter::new(file)).map_err(std::io::Error::other)
    }
}

/// A test's lab nodes (`cvtest::lab`) as its children: one `<testcase>` per run of a node,
/// named `<test>/lab/<node>` (`#2` for a second run), class `<binary>::<test>`, failed when the
/// run ended other than as a node should (exit 0, or stopped by the test or its lab's end).
fn lab_cases(t: &TestFinished) -> Vec<TestCase> {
    let mut cases = Vec::new();
    for node in &t.lab {
        for (i, run) in node.runs.iter().enumerate() {
            let status = if run.ok {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_type(if run.oom { "oom" } else { "node" });
                s.set_message(run.outcome.clone());
                s
            };
            let run_no = if i > 0 { format!("#{}", i + 1) } else { String::new() };
            let mut c = TestCase::new(format!("{}/lab/{}{run_no}", t.name, node.name), status);
            c.set_classname(format!("{}::{}", t.binary_id, t.name));
            c.set_time(std::time::Duration::from_millis(run.duration_ms));
            let mut props = vec![
                Property::new("cvtest.lab.address", node.address.to_string()),
                Property::new("cvtest.lab.outcome", run.outcome.clone()),
            ];
            if let Some(m) = run.peak_memory_bytes {
                props.push(Property::new("cvtest.peak.memory_bytes", m.to_string()));
            }
            if let Some(p) = run.peak_pids {
                props.push(Property::new("cvtest.peak.pids", p.to_string()));
            }
            if run.pids_limit_hit {
                props.push(Property::new("cvtest.pids_limit_hit", "true"));
            }
            c.add_properties(props);
            if !run.ok {
                c.set_system_out_lossy(run.stdout.as_bytes());
                c.set_system_err_lossy(run.stderr.as_bytes());
            }
            cases.push(c);
        }
    }
    cases
}

/// The JUnit kind of a status that failed.
fn kind(status: &Status) -> NonSuccessKind {
    match status {
        Status::Fail { .. } | Status::Pass | Status::Oom | Status::Timeout | Status::Signal { .. } => {
            NonSuccessKind::Failure
        }
        Status::Error(_) | Status::Cancelled | Status::Ignored => NonSuccessKind::Error,
    }
}

/// Why an attempt of `t` ended as `status` failed.
fn message(status: &Status, t: &TestFinished) -> String {
    match status {
        Status::Error(e) => e.message(),
        Status::Fail { exit_code } => format!("exited with code {exit_code}"),
        Status::Signal { signal } => format!("killed by signal {signal}"),
        Status::Oom => format!("OOM-killed at the memory limit {}", t.settings.limits().memory),
        Status::Timeout => "killed at its timeout".to_owned(),
        Status::Pass if t.leaked() => {
            format!("left processes running (leak = \"fail\"): {}", crate::leak::describe(&t.leftover))
        }
        Status::Pass => format!("expected {}, but it passed", t.expect.as_str()),
        Status::Cancelled => "cancelled".to_owned(),
        Status::Ignored => String::new(),
    }
}

/// An earlier, failed attempt of `t`.
fn rerun(a: &Attempt, t: &TestFinished) -> TestRerun {
    let mut r = TestRerun::new(kind(&a.status));
    r.set_time(a.duration);
    r.set_type(a.status.error().map_or_else(|| a.status.name().to_owned(), |e| e.kind().to_owned()));
    r.set_message(message(&a.status, t));
    r.set_system_out_lossy(tail(&a.stdout));
    r.set_system_err_lossy(tail(&a.stderr));
    r
}

/// The peaks as properties named `{prefix}.peak.memory_bytes` and so on.
fn peak_props(prefix: &str, p: &cvtest::Peaks, pids_limit_hit: bool) -> Vec<Property> {
    let mut v = Vec::new();
    if let Some(m) = p.memory_bytes {
        v.push(Property::new(format!("{prefix}.peak.memory_bytes"), m.value.to_string()));
        v.push(Property::new(format!("{prefix}.peak.memory_sampled"), m.sampled.to_string()));
    }
    if let Some(m) = p.pids {
        v.push(Property::new(format!("{prefix}.peak.pids"), m.value.to_string()));
    }
    if let Some(d) = p.cpu_user {
        v.push(Property::new(format!("{prefix}.cpu.user_ms"), d.as_millis().to_string()));
    }
    if let Some(d) = p.cpu_system {
        v.push(Property::new(format!("{prefix}.cpu.system_ms"), d.as_millis().to_string()));
    }
    if let Some(n) = p.oom_kills {
        v.push(Property::new(format!("{prefix}.oom_kills"), n.to_string()));
    }
    v.push(Property::new(format!("{prefix}.pids_limit_hit"), pids_limit_hit.to_string()));
    if let Some(n) = p.net {
        v.push(Property::new(format!("{prefix}.net.rx_bytes"), n.rx_bytes.to_string()));
        v.push(Property::new(format!("{prefix}.net.tx_bytes"), n.tx_bytes.to_string()));
    }
    v
}

fn tail(b: &[u8]) -> &[u8] {
    &b[b.len().saturating_sub(KEEP_OUTPUT)..]
}

impl Reporter for JunitReporter {
    fn report(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::TestWaiting { .. } => {}
            Event::TestFinished(t) => {
                let cases = self.suites.entry(t.binary_id.clone()).or_default();
                cases.push(Self::case(t));
                cases.extend(lab_cases(t));
            }
            Event::BinaryFinished(b) => {
                if let Some(p) = &b.peaks {
                    self.binary_props.entry(b.binary_id.clone()).or_default().extend(peak_props(
                        "cvtest",
                        p,
                        b.pids_limit_hit,
                    ));
                }
            }
            Event::RunFinished { .. } => self.write()?,
            Event::RunStarted { .. }
            | Event::TestStarted { .. }
            | Event::TestSlow { .. }
            | Event::AttemptFailed(_)
            | Event::Interrupted { .. }
            | Event::Stopping
            | Event::Warning { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::UnitError;

    fn failure_type(status: Status) -> Option<String> {
        let case = JunitReporter::case(&TestFinished::sample(status));
        match case.status {
            TestCaseStatus::NonSuccess { ty, .. } => ty.map(|t| t.to_string()),
            _ => None,
        }
    }

    #[test]
    fn an_error_is_typed_by_its_kind() {
        let e = UnitError::Spawn(cvtest::SpawnError::AlreadySpawned);
        assert_eq!(failure_type(Status::Error(Arc::new(e))).as_deref(), Some("spawn"));
        assert_eq!(failure_type(Status::Oom).as_deref(), Some("OOM"));
    }
}
