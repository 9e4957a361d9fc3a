//! What the reports summarize: counts by label and the top tests by peak memory and
//! by duration. Bounded: only the top N rows are kept, whatever the number of tests. Whether the
//! run succeeded is not decided here but by [`crate::events::RunStats`].

use std::time::Duration;

use crate::events::{Event, PeakScope, Status, Verdict};

/// One row of a top table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) binary_id: String,
    /// The test name, or a note for a binary-wide container.
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) memory: Option<u64>,
    pub(crate) pids: Option<u64>,
    pub(crate) duration: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct RunSummary {
    top: usize,
    /// (status rank, label, count), kept sorted.
    pub(crate) counts: Vec<(u8, String, usize)>,
    pub(crate) top_memory: Vec<Row>,
    pub(crate) longest: Vec<Row>,
}

fn rank(s: &Status) -> u8 {
    match s {
        Status::Pass => 0,
        Status::Fail { .. } => 1,
        Status::Oom => 2,
        Status::Timeout => 3,
        Status::Signal { .. } => 4,
        Status::Error(_) => 5,
        Status::Cancelled => 6,
        Status::Ignored => 7,
    }
}

impl RunSummary {
    pub(crate) fn new(top: usize) -> Self {
        RunSummary { top, ..Default::default() }
    }

    pub(crate) fn add(&mut self, ev: &Event) {
        match ev {
            // Ignored tests arrive as `TestFinished` with `Status::Ignored`, counted below.
            Event::RunStarted { .. }
            | Event::TestStarted { .. }
            | Event::TestWaiting { .. }
            | Event::TestSlow { .. }
            | Event::AttemptFailed(_) => {}
            Event::TestFinished(t) => {
                self.count(&t.status, t.label(), 1);
                if t.scope == PeakScope::Test && t.verdict() != Verdict::NotRun {
                    let row = Row {
                        binary_id: t.binary_id.clone(),
                        name: t.name.clone(),
                        label: t.label(),
                        memory: t.peaks.and_then(|p| p.memory_bytes).map(|m| m.value),
                        pids: t.peaks.and_then(|p| p.pids).map(|m| m.value),
                        duration: t.duration,
                    };
                    self.offer(row);
                }
            }
            Event::BinaryFinished(b) => {
                let row = Row {
                    binary_id: b.binary_id.clone(),
                    name: format!("({} tests in one container)", b.tests),
                    label: b.status.name().to_owned(),
                    memory: b.peaks.and_then(|p| p.memory_bytes).map(|m| m.value),
                    pids: b.peaks.and_then(|p| p.pids).map(|m| m.value),
                    duration: b.duration,
                };
                self.offer(row);
            }
            Event::Stopping
            | Event::Interrupted { .. }
            | Event::Warning { .. }
            | Event::RunFinished { .. } => {}
        }
    }

    fn count(&mut self, s: &Status, label: String, n: usize) {
        let r = rank(s);
        match self.counts.iter_mut().find(|(_, l, _)| *l == label) {
            Some((_, _, c)) => *c += n,
            None => {
                self.counts.push((r, label, n));
                self.counts.sort();
            }
        }
    }

    fn offer(&mut self, row: Row) {
        if self.top == 0 {
            return;
        }
        if row.memory.is_some() {
            self.top_memory.push(row.clone());
            self.top_memory.sort_by(|a, b| b.memory.cmp(&a.memory).then_with(|| a.name.cmp(&b.name)));
            self.top_memory.truncate(self.top);
        }
        self.longest.push(row);
        self.longest.sort_by(|a, b| b.duration.cmp(&a.duration).then_with(|| a.name.cmp(&b.name)));
        self.longest.truncate(self.top);
    }
}
