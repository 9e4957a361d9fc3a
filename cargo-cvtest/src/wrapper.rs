//! `cargo-cvtest wrap TEST-BINARY ARGS...`: a nextest wrapper script that runs one test in its own
//! container.
//!
//! nextest runs `<wrapper> <test-binary> --exact <name> --nocapture [args]` once per test, with
//! `NEXTEST_*` variables set. This mode resolves the test's settings as `cargo cvtest` does
//! (`#[cv_test]`, config defaults and overrides; [`crate::standalone`]), runs the same command in a
//! container with them, its output going straight to nextest, and ends so that nextest reads the
//! result: the test's exit code; for a test killed by a signal, that signal; for an OOM kill or a
//! cvtest timeout, SIGKILL (what the container got) after a line that says which. A line with the
//! peaks follows the test's output (on stderr), and the attempt is appended to the run's peaks file
//! ([`crate::peaks_log`]). SIGTERM (nextest's timeout), SIGINT and SIGHUP kill the whole container;
//! the wrapper then dies by the same signal. A SIGKILLed wrapper takes its container with it (the
//! container's init watches a pipe only the wrapper holds).

use std::ffi::OsString;
use std::path::Path;
use std::time::SystemTime;

use cvtest::Command;
use cvtest_spec::ENV_LIST_SETTINGS;

use crate::errors::render_chain;
use crate::events::{PeakScope, Status, TestFinished, Verdict};
use crate::exit_codes;
use crate::peaks_log::{self, Record};
use crate::reporter::human_bytes;
use crate::runner::ENV_RUNNER;
use crate::standalone::{self, exec_direct, list, run_contained, secs, Exit, Listing, SignalGuard, Site};

/// `cargo-cvtest wrap ARGS` (ARGS: the test binary, then its arguments); returns the exit code.
pub(crate) fn main(args: &[OsString]) -> i32 {
    let Some((bin, rest)) = args.split_first() else {
        say!(
            "error: usage: cargo-cvtest wrap TEST-BINARY [ARGS]...: a nextest wrapper script (see cargo-cvtest/README.md)"
        );
        return exit_codes::USAGE;
    };
    let bin = Path::new(bin);
    if rest.iter().any(|a| a == "--list") {
        // Used as a list-wrapper too: listing runs no test, so it runs as it would without us.
        say!("cvtest: {}", render_chain(&exec_direct(bin, rest)));
        return exit_codes::SETUP_FAILED;
    }
    standalone::guarded(|guard| wrap(bin, rest, guard))
}

/// libtest flags that take a value (nextest passes `run-extra-args` through).
const VALUE_FLAGS: &[&str] =
    &["--test-threads", "--skip", "--color", "--format", "--logfile", "--shuffle-seed", "-Z"];

/// The test's name: `NEXTEST_TEST_NAME`, else the first argument that is not a flag or a flag's value.
fn test_name(args: &[OsString]) -> Option<String> {
    if let Some(n) = std::env::var("NEXTEST_TEST_NAME").ok().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if VALUE_FLAGS.contains(&a.as_ref()) {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a.into_owned());
        }
    }
    None
}

fn wrap(bin: &Path, rest: &[OsString], guard: &SignalGuard) -> Result<Exit, standalone::StandaloneError> {
    let site = Site::from_env(bin, "wrap")?;
    let config = site.config()?;
    let name = test_name(rest);
    let listing = match &name {
        Some(n) => list(bin, &["--exact", n])?,
        None => Listing::default(),
    };
    let name = name.unwrap_or_else(|| site.binary_id.clone());
    let (settings, expect) = site.resolve(&config, &name, listing.cv_settings(&name))?;
    let leak = config.leak(&site.package, &site.binary_id, &name);

    let mut cmd = Command::new(bin);
    cmd.args(rest).env_remove(ENV_LIST_SETTINGS).env(ENV_RUNNER, "cargo-cvtest wrap");
    if let Ok(cwd) = std::env::current_dir() {
        cmd.current_dir(cwd);
    }
    let wall = SystemTime::now();
    let Some(c) = run_contained(&settings, site.writable(), &cmd, guard)? else {
        return Ok(Exit::Signal(guard.received().unwrap_or(libc::SIGTERM)));
    };
    let t = TestFinished {
        binary_id: site.binary_id.clone(),
        name,
        status: standalone::status(&c.outcome, guard),
        expect,
        started_at: c.started,
        duration: c.outcome.duration,
        peaks: Some(c.outcome.peaks),
        pids_limit_hit: c.outcome.pids_limit_hit,
        scope: PeakScope::Test,
        settings,
        stdout: Vec::new(),
        stderr: Vec::new(),
        leftover: c.outcome.leftover.clone(),
        leak,
        network: c.network,
        tries: crate::events::Tries::default(),
        timeline: None,
        lab: Vec::new(),
    };
    say!("{}", peaks_line(&t, &c.container_id));
    if t.leaked() {
        say!(
            "cvtest: LEAK: still running in its container when the test ended (then killed): {}",
            crate::leak::describe(&t.leftover)
        );
    }
    match guard.received() {
        Some(sig) => say!(
            "cvtest: CANCELLED: the wrapper got signal {sig} (nextest sends SIGTERM when a test passes its \
             slow-timeout's terminate-after, and when the run is interrupted); the whole container was killed"
        ),
        None => {
            if let Some(why) = failure_reason(&t) {
                say!("cvtest: {}: {why}", t.label());
            }
        }
    }
    if let Ok(run_id) = std::env::var("NEXTEST_RUN_ID") {
        log(&site, &run_id, &t, &c.container_id, wall, guard.received());
    }
    Ok(exit_for(&t, guard))
}

/// Appends the attempt to the run's peaks file; a failure to write is a warning, not the test's.
fn log(site: &Site, run_id: &str, t: &TestFinished, container: &str, wall: SystemTime, signal: Option<i32>) {
    let Some(dir) = peaks_log::peaks_dir(site.target_dir.as_deref()) else { return };
    let attempt = std::env::var("NEXTEST_ATTEMPT").ok().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut record = Record::new(run_id, std::env::var("NEXTEST_ATTEMPT_ID").ok(), attempt, t, wall);
    record.container = Some(container.to_owned());
    record.signal = record.signal.or(signal);
    if let Err(e) = peaks_log::append(&dir, &record) {
        say!("cvtest: warning: cannot append to the peaks file in {}: {e}", dir.display());
    }
}

/// `cvtest: PASS [0.012s] mem 1.9 MiB/1G  pids 3/256  cpu 0.004s  container 4f (memory=1G ...)`.
pub(crate) fn peaks_line(t: &TestFinished, container: &str) -> String {
    let p = t.peaks.unwrap_or_default();
    let tilde = |sampled: bool| if sampled { "~" } else { "" };
    let mem =
        p.memory_bytes.map_or("-".to_owned(), |m| format!("{}{}", tilde(m.sampled), human_bytes(m.value)));
    let pids = p.pids.map_or("-".to_owned(), |m| format!("{}{}", tilde(m.sampled), m.value));
    let cpu = p.cpu_total().map_or("-".to_owned(), secs);
    let mut line = if t.settings.enforced() {
        format!(
            "cvtest: {} [{}] mem {mem}/{}  pids {pids}/{}  cpu {cpu}",
            t.label(),
            secs(t.duration),
            t.settings.limits().memory,
            t.settings.limits().pids
        )
    } else {
        let rss = p.max_rss_bytes.map_or("-".to_owned(), human_bytes);
        format!("cvtest: {} [{}] NO LIMITS  rss {rss}  cpu {cpu}", t.label(), secs(t.duration))
    };
    if let Some(n) = p.net {
        line.push_str(&format!("  net rx {} tx {}", human_bytes(n.rx_bytes), human_bytes(n.tx_bytes)));
    }
    line.push_str(&format!("  container {container} ({})", t.settings));
    line
}

/// What went wrong, in words, for a test that did not end as expected (nothing for one that did).
pub(crate) fn failure_reason(t: &TestFinished) -> Option<String> {
    if t.verdict() != Verdict::Failure {
        return None;
    }
    let peak = t.peaks.and_then(|p| p.memory_bytes).map_or("unknown".to_owned(), |m| human_bytes(m.value));
    let mut why = match &t.status {
        Status::Pass if t.leaked() => "it left processes running (leak = \"fail\")".to_owned(),
        Status::Pass => format!("expected {}, but it passed", t.expect.as_str()),
        Status::Fail { exit_code } => format!("exited with code {exit_code}"),
        Status::Signal { signal } => format!("killed by signal {signal}"),
        Status::Oom => format!(
            "out of memory: the kernel's OOM killer killed it at its memory limit of {} (peak {peak})",
            t.settings.limits().memory
        ),
        Status::Timeout => format!(
            "timed out: killed after its cvtest timeout of {}",
            t.settings.timeout().map_or("-".to_owned(), cvtest_spec::format_duration)
        ),
        Status::Ignored => return None,
        Status::Cancelled => "cancelled: a signal stopped the run".to_owned(),
        Status::Error(e) => e.message(),
    };
    if t.pids_limit_hit {
        why.push_str(&format!(
            "; it hit its pids limit of {} (a fork or thread was refused)",
            t.settings.limits().pids
        ));
    }
    Some(why)
}

/// How the wrapper ends for nextest to read the result.
fn exit_for(t: &TestFinished, guard: &SignalGuard) -> Exit {
    if let Some(sig) = guard.received() {
        return Exit::Signal(sig);
    }
    match t.verdict() {
        Verdict::Success | Verdict::NotRun => Exit::Code(0),
        Verdict::Failure => match &t.status {
            Status::Pass | Status::Ignored => Exit::Code(1),
            Status::Fail { exit_code } => Exit::Code(*exit_code),
            Status::Signal { signal } => Exit::from_test_signal(*signal),
            Status::Oom | Status::Timeout => Exit::Signal(libc::SIGKILL),
            Status::Cancelled => Exit::Signal(libc::SIGTERM),
            Status::Error(_) => Exit::Code(exit_codes::SETUP_FAILED),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_the_first_non_flag() {
        if std::env::var_os("NEXTEST_TEST_NAME").is_some() {
            return; // under nextest the variable wins, as it should
        }
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(test_name(&args(&["--exact", "a::b", "--nocapture"])), Some("a::b".to_owned()));
        assert_eq!(test_name(&args(&["--test-threads", "1", "x"])), Some("x".to_owned()));
        assert_eq!(test_name(&args(&["--nocapture"])), None);
    }
}
