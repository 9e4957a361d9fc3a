//! Test durations from earlier runs, and the start order they give: slowest first.
//!
//! A suite's wall time is often set by a few long tests. Started in listed order, a long test
//! that comes late runs alone at the end while the other workers sit idle (the bytes crate's
//! 25-41 s test is its 905th of 1,079). Each run records how long every test it ran took in
//! `<target-dir>/cvtest/durations.json` (or `$CVTEST_HISTORY`); the next run starts its units longest first (longest
//! processing time first, the classic list-scheduling rule), tests it has no record of at the
//! median of the known ones. `--order listed` keeps the listed order.
//!
//! The file is a cache: a missing, unreadable or foreign one is an empty history, and a run that
//! cannot write it says so in a warning and goes on. Concurrent runs in one target directory each
//! merge their tests into what is on disk when they end and replace the file atomically (the
//! last writer wins for a test both ran).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::selection::TestList;
use crate::units::Unit;

/// Below the target directory.
pub(crate) const HISTORY_FILE: &str = "cvtest/durations.json";
/// Overrides the file (e.g. one a CI cache keeps across jobs, whose target dirs start empty).
pub(crate) const ENV_HISTORY: &str = "CVTEST_HISTORY";
const VERSION: u32 = 1;
/// Expected durations closer than this count as equal for the order.
const ORDER_STEP_SECS: f64 = 0.05;

/// In which order units start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Order {
    /// Longest first, by the durations of earlier runs.
    #[default]
    SlowestFirst,
    /// As listed: binaries in build order, tests in each binary's order.
    Listed,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    /// `"<binary id> <test name>"` → seconds of its last run.
    tests: HashMap<String, f64>,
}

/// Durations of earlier runs.
#[derive(Debug, Default)]
pub(crate) struct History {
    path: PathBuf,
    tests: HashMap<String, f64>,
    /// This run's tests, merged in by [`History::save`].
    ran: HashMap<String, f64>,
}

/// The history could not be written.
#[derive(Debug, thiserror::Error)]
#[error("could not record the tests' durations in {path} (the next run starts them in listed order instead of longest first)")]
pub(crate) struct SaveError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn key(binary_id: &str, name: &str) -> String {
    format!("{binary_id} {name}")
}

impl History {
    /// The history kept under `target_dir` (or in `$CVTEST_HISTORY`); empty when there is
    /// none or it cannot be read.
    pub(crate) fn load(target_dir: &Path) -> History {
        let path = match std::env::var_os(ENV_HISTORY) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => target_dir.join(HISTORY_FILE),
        };
        let tests = read(&path).unwrap_or_default();
        History { path, tests, ran: HashMap::new() }
    }

    /// The recorded duration of a test.
    pub(crate) fn duration(&self, binary_id: &str, name: &str) -> Option<f64> {
        self.tests.get(&key(binary_id, name)).copied()
    }

    /// Reorders `units` by `order`: longest expected first, stable (equal ones, to 50 ms, keep
    /// their order).
    pub(crate) fn order(&self, list: &TestList, units: &mut [Unit], order: Order) {
        if order == Order::Listed || self.tests.is_empty() {
            return;
        }
        let known = |i: usize| {
            let t = &list.tests[i];
            self.duration(&list.binary_of(t).bin.id, &t.name)
        };
        let mut all: Vec<f64> = list.to_run().filter_map(|(i, _)| known(i)).collect();
        if all.is_empty() {
            return;
        }
        all.sort_by(f64::total_cmp);
        let median = all[all.len() / 2];
        let expected = |u: &Unit| -> f64 {
            match u {
                Unit::Test(i) => known(*i).unwrap_or(median),
                Unit::Binary { tests, .. } => tests.iter().map(|i| known(*i).unwrap_or(median)).sum(),
            }
        };
        // In 50 ms steps: tests that take about as long keep their listed order (their
        // durations differ by noise, and binaries stay together).
        let mut keyed: Vec<(u64, Unit)> =
            units.iter().map(|u| ((expected(u) / ORDER_STEP_SECS) as u64, u.clone())).collect();
        keyed.sort_by_key(|k| std::cmp::Reverse(k.0));
        for (slot, (_, u)) in units.iter_mut().zip(keyed) {
            *slot = u;
        }
    }

    /// Records one test's duration in this run.
    pub(crate) fn record(&mut self, binary_id: &str, name: &str, duration: Duration) {
        self.ran.insert(key(binary_id, name), duration.as_secs_f64());
    }

    /// Merges this run's durations into the file on disk (as it is now: another run may have
    /// written it meanwhile) and replaces it atomically. Nothing to do when no test ran.
    pub(crate) fn save(&self) -> Result<(), SaveError> {
        if self.ran.is_empty() {
            return Ok(());
        }
        let err = |source| SaveError { path: self.path.clone(), source };
        let mut tests = read(&self.path).unwrap_or_default();
        tests.extend(self.ran.iter().map(|(k, v)| (k.clone(), *v)));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::sudo::create_dir_all(dir).map_err(err)?;
        let json = serde_json::to_vec(&File { version: VERSION, tests }).map_err(|e| err(e.into()))?;
        // Written beside it and renamed over it: a reader sees the old file or the new one.
        let tmp = self.path.with_extension(format!("json.{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, json).and_then(|()| {
            crate::sudo::give_file(&tmp);
            std::fs::rename(&tmp, &self.path)
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }
}

fn read(path: &Path) -> Option<HashMap<String, f64>> {
    let text = std::fs::read(path).ok()?;
    let file: File = serde_json::from_slice(&text).ok()?;
    (file.version == VERSION).then_some(file.tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_merges_with_what_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = History::load(dir.path());
        a.record("bin", "one", Duration::from_millis(1500));
        a.save().unwrap();
        let mut b = History::load(dir.path());
        assert_eq!(b.duration("bin", "one"), Some(1.5));
        b.record("bin", "two", Duration::from_millis(250));
        b.save().unwrap();
        let c = History::load(dir.path());
        assert_eq!((c.duration("bin", "one"), c.duration("bin", "two")), (Some(1.5), Some(0.25)));
    }

    #[test]
    fn a_foreign_or_broken_file_is_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for text in ["not json", r#"{"version": 99, "tests": {"bin one": 1.0}}"#] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(History::load(dir.path()).duration("bin", "one"), None, "{text}");
        }
    }
}
