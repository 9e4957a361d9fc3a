//! The peaks of tests run through `cargo-cvtest wrap` under nextest: one JSON line per test
//! attempt, appended to `<target-dir>/cvtest/nextest/<NEXTEST_RUN_ID>.jsonl` (or under
//! `$CVTEST_PEAKS_DIR`), and `cargo cvtest peaks [RUN_ID]`, which shows a run's tests and the
//! summary's top tables from that file.
//!
//! Each line is one [`Record`]; lines are written with one `write` on a file opened for
//! appending, so parallel tests never interleave within a line.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use cvtest::{Measured, NetStats, Peaks};
use cvtest_spec::TestSettings;
use serde::{Deserialize, Serialize};

use crate::build::BuildOptions;
use crate::cli::ColorWhen;
use crate::errors::render_chain;
use crate::events::{Event, PeakScope, RunStats, Status, TestFinished};
use crate::expect::Expect;
use crate::reporter::{Painter, Reporter, TerminalReporter};
use crate::settings::Effective;

/// Overrides the directory of the peaks files.
pub(crate) const ENV_PEAKS_DIR: &str = "CVTEST_PEAKS_DIR";
/// Below the target directory.
pub(crate) const PEAKS_SUBDIR: &str = "cvtest/nextest";

/// One test attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) run_id: String,
    pub(crate) attempt_id: Option<String>,
    /// 1-based (`NEXTEST_ATTEMPT`).
    pub(crate) attempt: u32,
    pub(crate) binary_id: String,
    pub(crate) name: String,
    /// `Status::json_name`.
    pub(crate) status: String,
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) message: Option<String>,
    pub(crate) expect: String,
    pub(crate) container: Option<String>,
    /// Milliseconds since the Unix epoch when the attempt started.
    pub(crate) started_unix_ms: u64,
    pub(crate) duration_ms: u64,
    pub(crate) memory_bytes: Option<u64>,
    pub(crate) memory_sampled: bool,
    pub(crate) pids: Option<u64>,
    pub(crate) pids_sampled: bool,
    pub(crate) pids_limit_hit: bool,
    pub(crate) cpu_user_ms: Option<u64>,
    pub(crate) cpu_system_ms: Option<u64>,
    pub(crate) oom_kills: Option<u64>,
    pub(crate) net_rx_bytes: Option<u64>,
    pub(crate) net_tx_bytes: Option<u64>,
    /// The largest single process's RSS (rusage): the only memory figure without limits.
    #[serde(default)]
    pub(crate) max_rss_bytes: Option<u64>,
    /// `false` in the explicit no-limits mode: the container had no cgroup.
    #[serde(default = "enforced_default")]
    pub(crate) enforced: bool,
    /// The keys of the settings some layer set (the others are the library's defaults).
    pub(crate) settings: TestSettings,
    /// Processes still running in the container when the test ended (pid in the container, name).
    #[serde(default)]
    pub(crate) leftover: Vec<LeftoverRecord>,
    /// `leak` from config: whether those fail the test.
    #[serde(default)]
    pub(crate) leak: String,
}

/// A leftover process in a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeftoverRecord {
    pub(crate) pid: i32,
    pub(crate) name: String,
}

fn enforced_default() -> bool {
    true
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Record {
    /// The record of a finished test (`t`), started at `started` (wall clock).
    pub(crate) fn new(
        run_id: &str,
        attempt_id: Option<String>,
        attempt: u32,
        t: &TestFinished,
        started: SystemTime,
    ) -> Self {
        let p = t.peaks.unwrap_or_default();
        let (exit_code, signal, message) = match &t.status {
            Status::Pass => (Some(0), None, None),
            Status::Fail { exit_code } => (Some(*exit_code), None, None),
            Status::Signal { signal } => (None, Some(*signal), None),
            Status::Error(e) => (None, None, Some(e.message())),
            Status::Oom | Status::Timeout | Status::Ignored | Status::Cancelled => (None, None, None),
        };
        Record {
            run_id: run_id.to_owned(),
            attempt_id,
            attempt,
            binary_id: t.binary_id.clone(),
            name: t.name.clone(),
            status: t.status.json_name().to_owned(),
            exit_code,
            signal,
            message,
            expect: t.expect.as_str().to_owned(),
            container: None,
            started_unix_ms: started.duration_since(UNIX_EPOCH).map_or(0, ms),
            duration_ms: ms(t.duration),
            memory_bytes: p.memory_bytes.map(|m| m.value),
            memory_sampled: p.memory_bytes.is_some_and(|m| m.sampled),
            pids: p.pids.map(|m| m.value),
            pids_sampled: p.pids.is_some_and(|m| m.sampled),
            pids_limit_hit: t.pids_limit_hit,
            cpu_user_ms: p.cpu_user.map(ms),
            cpu_system_ms: p.cpu_system.map(ms),
            oom_kills: p.oom_kills,
            net_rx_bytes: p.net.map(|n| n.rx_bytes),
            net_tx_bytes: p.net.map(|n| n.tx_bytes),
            max_rss_bytes: p.max_rss_bytes,
            enforced: t.settings.enforced(),
            settings: t.settings.settings().clone(),
            leftover: t
                .leftover
                .iter()
                .map(|l| LeftoverRecord { pid: l.pid, name: l.name.clone() })
                .collect(),
            leak: t.leak.as_str().to_owned(),
        }
    }

    /// Back into the event the reporters show; an error if its settings are not valid.
    pub(crate) fn to_event(&self) -> Result<TestFinished, cvtest_spec::ParseError> {
        let status = match self.status.as_str() {
            "pass" => Status::Pass,
            "fail" => Status::Fail { exit_code: self.exit_code.unwrap_or(1) },
            "signal" => Status::Signal { signal: self.signal.unwrap_or(0) },
            "oom" => Status::Oom,
            "timeout" => Status::Timeout,
            "ignored" => Status::Ignored,
            "cancelled" => Status::Cancelled,
            // "error": the wrapper records only tests that ran; count anything else as a failure.
            _ => Status::Fail { exit_code: self.exit_code.unwrap_or(1) },
        };
        let measured = |value: Option<u64>, sampled: bool| value.map(|value| Measured { value, sampled });
        let net = match (self.net_rx_bytes, self.net_tx_bytes) {
            (Some(rx_bytes), Some(tx_bytes)) => Some(NetStats { rx_bytes, tx_bytes, ..Default::default() }),
            _ => None,
        };
        let peaks = Peaks {
            memory_bytes: measured(self.memory_bytes, self.memory_sampled),
            pids: measured(self.pids, self.pids_sampled),
            cpu_user: self.cpu_user_ms.map(Duration::from_millis),
            cpu_system: self.cpu_system_ms.map(Duration::from_millis),
            oom_kills: self.oom_kills,
            max_rss_bytes: self.max_rss_bytes,
            net,
        };
        let name = if self.attempt > 1 {
            format!("{} (attempt {})", self.name, self.attempt)
        } else {
            self.name.clone()
        };
        Ok(TestFinished {
            binary_id: self.binary_id.clone(),
            name,
            status,
            expect: self.expect.parse().unwrap_or(Expect::Pass),
            started_at: std::time::Instant::now(),
            duration: Duration::from_millis(self.duration_ms),
            peaks: Some(peaks),
            pids_limit_hit: self.pids_limit_hit,
            scope: PeakScope::Test,
            settings: if self.enforced {
                Effective::from_layers(self.settings.clone())?
            } else {
                Effective::from_layers(self.settings.clone())?.without_limits()
            },
            stdout: Vec::new(),
            stderr: Vec::new(),
            leftover: self
                .leftover
                .iter()
                .map(|l| cvtest::Leftover { pid: l.pid, host_pid: 0, name: l.name.clone() })
                .collect(),
            leak: self.leak.parse().unwrap_or_default(),
            tries: crate::events::Tries::default(),
            network: None,
            timeline: None,
            lab: Vec::new(),
        })
    }
}

/// The directory of the peaks files of binaries in `target_dir`.
pub(crate) fn peaks_dir(target_dir: Option<&Path>) -> Option<PathBuf> {
    match std::env::var_os(ENV_PEAKS_DIR).filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d)),
        None => target_dir.map(|t| t.join(PEAKS_SUBDIR)),
    }
}

/// The file of run `run_id` in `dir`.
pub(crate) fn run_file(dir: &Path, run_id: &str) -> PathBuf {
    // A run id is a UUID; anything else is kept to one safe file name.
    let safe: String = run_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    dir.join(format!("{safe}.jsonl"))
}

/// Appends `record` to its run's file, as one line in one write.
pub(crate) fn append(dir: &Path, record: &Record) -> io::Result<PathBuf> {
    crate::sudo::create_dir_all(dir)?;
    let path = run_file(dir, &record.run_id);
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    crate::sudo::give_file(&path);
    f.write_all(&line)?;
    Ok(path)
}

/// Why `cargo cvtest peaks` could not show a run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeaksError {
    #[error("cannot find the target directory")]
    Workspace(#[source] crate::errors::SetupError),
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no peaks file in {dir}: run `cargo nextest run` with the cvtest wrapper script first (see cargo-cvtest/README.md)")]
    NoRuns { dir: PathBuf },
    #[error("{path}:{line}: not a cvtest peaks record")]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: the record of {test} has settings that are not valid")]
    Settings {
        path: PathBuf,
        test: String,
        #[source]
        source: cvtest_spec::ParseError,
    },
    #[error("failed to write the summary")]
    Write(#[source] io::Error),
}

/// `cargo cvtest peaks`: the peaks of a nextest run through the cvtest wrapper.
#[derive(Debug, Parser)]
#[command(
    name = "cargo cvtest peaks",
    bin_name = "cargo cvtest peaks",
    about = "Show the tests and the top peak-memory and longest tables of a `cargo nextest run` made through the \
             cvtest wrapper script (its NEXTEST_RUN_ID; the latest run when left out)"
)]
pub(crate) struct PeaksArgs {
    /// The run (NEXTEST_RUN_ID, as nextest prints it); the most recent file when left out
    pub(crate) run_id: Option<String>,
    /// Read the peaks files from this directory [default: <target-dir>/cvtest/nextest, or $CVTEST_PEAKS_DIR]
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Path to Cargo.toml (to find the target directory)
    #[arg(long = "manifest-path", value_name = "PATH")]
    pub(crate) manifest_path: Option<PathBuf>,
    /// The target directory of the run
    #[arg(long = "target-dir", value_name = "DIRECTORY")]
    pub(crate) target_dir: Option<PathBuf>,
    /// Rows in the top-memory and longest-duration tables
    #[arg(long = "top", value_name = "N", default_value_t = 5)]
    pub(crate) top: usize,
    /// Show every attempt of a retried test, not only its last one
    #[arg(long = "all-attempts")]
    pub(crate) all_attempts: bool,
    /// Coloring
    #[arg(long, value_enum, value_name = "WHEN")]
    pub(crate) color: Option<ColorWhen>,
}

/// Runs `cargo cvtest peaks` with `args` (after `peaks`); returns the exit code.
pub(crate) fn main(args: &[std::ffi::OsString]) -> i32 {
    let parsed =
        PeaksArgs::parse_from(std::iter::once("cargo cvtest peaks".into()).chain(args.iter().cloned()));
    match show(&parsed, &mut io::stdout().lock()) {
        Ok(()) => crate::exit_codes::OK,
        Err(e) => {
            say!("{}", render_chain(&e));
            crate::exit_codes::SETUP_FAILED
        }
    }
}

fn directory(args: &PeaksArgs) -> Result<PathBuf, PeaksError> {
    if let Some(d) = &args.dir {
        return Ok(d.clone());
    }
    if let Some(d) = std::env::var_os(ENV_PEAKS_DIR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let build = BuildOptions {
        cargo_args: Vec::new(),
        manifest_path: args.manifest_path.clone(),
        target_dir: args.target_dir.clone(),
        offline: false,
        locked: false,
    };
    let ws = crate::build::load_workspace(&build).map_err(PeaksError::Workspace)?;
    Ok(ws.target_dir.into_std_path_buf().join(PEAKS_SUBDIR))
}

/// The run's records, in the order they were written.
pub(crate) fn read(path: &Path) -> Result<Vec<Record>, PeaksError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| PeaksError::Read { path: path.to_owned(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| PeaksError::Parse {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

fn latest(dir: &Path) -> Result<PathBuf, PeaksError> {
    let rd = std::fs::read_dir(dir).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => PeaksError::NoRuns { dir: dir.to_owned() },
        _ => PeaksError::Read { path: dir.to_owned(), source },
    })?;
    rd.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
        .ok_or_else(|| PeaksError::NoRuns { dir: dir.to_owned() })
}

/// Writes the run's tests and summary (with its top tables) to `out`.
pub(crate) fn show(args: &PeaksArgs, out: &mut dyn Write) -> Result<(), PeaksError> {
    let dir = directory(args)?;
    let path = match &args.run_id {
        Some(id) => run_file(&dir, id),
        None => latest(&dir)?,
    };
    let mut records = read(&path)?;
    records.sort_by(|a, b| {
        (a.started_unix_ms, &a.binary_id, &a.name).cmp(&(b.started_unix_ms, &b.binary_id, &b.name))
    });
    if !args.all_attempts {
        // The last attempt of each test decides it, as in nextest's own summary.
        let mut last: Vec<Record> = Vec::new();
        for r in records {
            match last.iter_mut().find(|l| l.binary_id == r.binary_id && l.name == r.name) {
                Some(l) if l.attempt <= r.attempt => *l = r,
                Some(_) => {}
                None => last.push(r),
            }
        }
        records = last;
    }
    let start = records.iter().map(|r| r.started_unix_ms).min().unwrap_or(0);
    let end = records.iter().map(|r| r.started_unix_ms + r.duration_ms).max().unwrap_or(0);
    let paint = Painter { on: args.color == Some(ColorWhen::Always) };
    let mut buf = Vec::new();
    writeln!(buf, "       Peaks {} ({} tests)", path.display(), records.len()).map_err(PeaksError::Write)?;
    {
        let mut reporter = TerminalReporter::new(&mut buf, paint, false, args.top);
        let mut stats = RunStats::default();
        for r in &records {
            let t = r.to_event().map_err(|source| PeaksError::Settings {
                path: path.clone(),
                test: r.name.clone(),
                source,
            })?;
            let ev = Event::TestFinished(Box::new(t));
            stats.add(&ev);
            reporter.report(&ev).map_err(PeaksError::Write)?;
        }
        let elapsed = Duration::from_millis(end.saturating_sub(start));
        reporter.report(&Event::RunFinished { elapsed, stats }).map_err(PeaksError::Write)?;
    }
    out.write_all(&buf).and_then(|()| out.flush()).map_err(PeaksError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, attempt: u32, status: &str, mem: u64) -> Record {
        Record {
            run_id: "0123-run".into(),
            attempt_id: Some(format!("0123-run:b${name}#{attempt}")),
            attempt,
            binary_id: "b".into(),
            name: name.into(),
            status: status.into(),
            exit_code: (status == "pass").then_some(0),
            signal: None,
            message: None,
            expect: "pass".into(),
            container: Some("1".into()),
            started_unix_ms: 1_000 + u64::from(attempt),
            duration_ms: 20,
            memory_bytes: Some(mem),
            memory_sampled: false,
            pids: Some(3),
            pids_sampled: false,
            pids_limit_hit: false,
            cpu_user_ms: Some(1),
            cpu_system_ms: Some(2),
            oom_kills: Some(0),
            net_rx_bytes: None,
            net_tx_bytes: None,
            max_rss_bytes: Some(mem),
            enforced: true,
            settings: TestSettings { memory: Some("64M".parse().unwrap()), ..Default::default() },
            leftover: Vec::new(),
            leak: "pass".into(),
        }
    }

    #[test]
    fn records_round_trip_and_summarise() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &record("big", 1, "oom", 64 << 20)).unwrap();
        append(dir.path(), &record("big", 2, "pass", 60 << 20)).unwrap();
        let path = append(dir.path(), &record("small", 1, "pass", 1 << 20)).unwrap();
        assert_eq!(path, dir.path().join("0123-run.jsonl"));
        let back = read(&path).unwrap();
        // A record without the no-limits fields (an older wrapper's) reads as enforced.
        let old = serde_json::to_value(&back[0]).map(|mut v| {
            v.as_object_mut().map(|o| (o.remove("enforced"), o.remove("max_rss_bytes")));
            v
        });
        let old: Record = serde_json::from_value(old.unwrap()).unwrap();
        assert!(old.enforced && old.max_rss_bytes.is_none() && old.to_event().unwrap().settings.enforced());
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], record("big", 1, "oom", 64 << 20));
        assert!(matches!(back[0].to_event().unwrap().status, Status::Oom));
        assert_eq!(back[0].to_event().unwrap().settings.limits().memory, "64M".parse().unwrap());

        let args = PeaksArgs::parse_from(["peaks", "--dir", dir.path().to_str().unwrap()]);
        let mut out = Vec::new();
        show(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Top peak memory:"), "{text}");
        assert!(text.contains("2 tests run: 2 passed"), "{text}");
        let all = PeaksArgs::parse_from([
            "peaks",
            "0123-run",
            "--all-attempts",
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        let mut out = Vec::new();
        show(&all, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("big (attempt 2)") && text.contains("1 failed"), "{text}");
    }
}
