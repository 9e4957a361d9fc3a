//! Running units of work in containers, on `--jobs` worker threads, and turning what the
//! containers report into [`Event`]s. The runner never prints.
//!
//! A unit is one test in its own container (`<binary> --exact <name> --nocapture`), or with
//! `--isolation binary` a group of a binary's tests that share their settings, run as one
//! `<binary> --exact <name>...` whose per-test results are read from libtest's output.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use cvtest::{Command, Container, Options, Outcome, Rootfs, Stdio, Termination, Zygote, ZygoteError};

use crate::cli::Isolation;
use crate::events::{BinaryFinished, Event, PeakScope, Status, TestFinished, Verdict};
use crate::scheduler::{Demand, Scheduler, Ticket};
use crate::settings::Effective;
use crate::testlist::{BinaryEntry, TestCase, TestList};

/// Set in every test's environment: the test runs under `cargo cvtest` (one container per test).
pub const ENV_RUNNER: &str = "CVTEST_RUNNER";

/// Output kept per stream of a test; past this the library drops the middle and marks it.
pub const CAPTURE_LIMIT: usize = 1 << 20;
/// The most test names given to one binary-isolation run (keeps argv small).
const MAX_TESTS_PER_BINARY_UNIT: usize = 512;

/// A unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// One test (index into [`TestList::tests`]) in its own container.
    Test(usize),
    /// Several tests of one binary, with equal settings, in one container.
    Binary { binary: usize, tests: Vec<usize> },
}

/// Splits the tests to run into units.
pub fn plan(list: &TestList, isolation: Isolation) -> Vec<Unit> {
    match isolation {
        Isolation::Test => list.to_run().map(|(i, _)| Unit::Test(i)).collect(),
        Isolation::Binary => {
            let mut units: Vec<Unit> = Vec::new();
            // Group by (binary, settings); networked, whole-binary and expected-failure tests
            // keep their own container so that their limits and outcome are their own.
            let mut groups: Vec<(usize, Effective, Vec<usize>)> = Vec::new();
            for (i, t) in list.to_run() {
                let alone = t.whole_binary || t.settings.network.is_some() || t.expect != Default::default();
                if alone {
                    units.push(Unit::Test(i));
                    continue;
                }
                match groups.iter_mut().find(|(b, s, v)| {
                    *b == t.binary && *s == t.settings && v.len() < MAX_TESTS_PER_BINARY_UNIT
                }) {
                    Some((_, _, v)) => v.push(i),
                    None => groups.push((t.binary, t.settings.clone(), vec![i])),
                }
            }
            units.extend(groups.into_iter().map(|(binary, _, tests)| Unit::Binary { binary, tests }));
            units
        }
    }
}

/// What a unit needs from the scheduler.
pub fn demand(list: &TestList, unit: &Unit) -> Demand {
    let settings = match unit {
        Unit::Test(i) => &list.tests[*i].settings,
        Unit::Binary { tests, .. } => &list.tests[tests[0]].settings,
    };
    Demand { memory: settings.memory_bytes(), networks: settings.network.into_iter().collect() }
}

/// Everything workers share.
pub struct Runner<'a> {
    pub list: &'a TestList,
    pub units: &'a [Unit],
    pub scheduler: &'a Scheduler,
    /// Host directories a test may write (target dir, workspace, package dirs).
    pub writable: Vec<PathBuf>,
    pub fail_fast: bool,
    /// Set once a worker warned that its zygote is gone (one warning per run).
    pub zygote_warned: AtomicBool,
}

impl Runner<'_> {
    /// One worker: takes units until none are left, sending an event per result.
    ///
    /// Each worker has its own zygote (`cvtest::zygote`), which clones its containers' inits:
    /// cloning from this multi-threaded process would copy its address space every time, and
    /// the copy-on-write faults after each clone interrupt every CPU the other workers run on.
    /// One per worker, so that workers do not queue behind one another's clones. Without one
    /// (it could not start, or was lost) the worker clones directly; the run says so once.
    pub fn work(&self, events: Sender<Event>) {
        let mut zygote = match Zygote::start() {
            Ok(z) => Some(z),
            Err(e) => {
                self.warn_zygote(&events, &e);
                None
            }
        };
        while let Some(ticket) = self.scheduler.next() {
            let unit = &self.units[ticket.unit];
            let failed = match unit {
                Unit::Test(i) => {
                    let t = &self.list.tests[*i];
                    let b = self.list.binary_of(t);
                    let _ =
                        events.send(Event::TestStarted { binary_id: b.bin.id.clone(), name: t.name.clone() });
                    let r = self.run_test(&ticket, t, b, zygote.as_mut());
                    let failed = r.verdict() == Verdict::Failure;
                    let _ = events.send(Event::TestFinished(Box::new(r)));
                    failed
                }
                Unit::Binary { binary, tests } => {
                    self.run_binary(&ticket, *binary, tests, &events, zygote.as_mut())
                }
            };
            if let Some(lost) = zygote.as_ref().and_then(Zygote::lost) {
                self.warn_zygote(&events, lost);
                zygote = None;
            }
            self.scheduler.finish(ticket);
            if failed && self.fail_fast {
                self.scheduler.stop_admitting();
            }
        }
    }

    fn warn_zygote(&self, events: &Sender<Event>, why: &ZygoteError) {
        if !self.zygote_warned.swap(true, Ordering::Relaxed) {
            let message = chain("a worker's zygote is gone, its containers are cloned directly", why);
            let _ = events.send(Event::Warning { message });
        }
    }

    fn options(&self, s: &Effective) -> Result<Options, cvtest::ParseError> {
        let mut o = Options::new();
        if !s.enforced {
            // The explicit no-limits mode: everything but the cgroup.
            o.set_isolation(
                cvtest::Isolation::NETWORK
                    | cvtest::Isolation::FILESYSTEM
                    | cvtest::Isolation::PROCESS_CONTROL
                    | cvtest::Isolation::IPC,
            );
        }
        o.set_limits(s.limits());
        o.set_network_spec(s.network);
        if let Some(name) = &s.hostname {
            o.set_hostname(name)?;
        }
        o.set_privileged(s.privileged);
        o.set_capabilities(cvtest::Capabilities::DEFAULT | s.caps);
        o.set_rootfs(Rootfs::Host { writable: self.writable.clone() });
        Ok(o)
    }

    fn command(&self, b: &BinaryEntry, args: Vec<OsString>) -> Command {
        let mut cmd = Command::new(b.bin.path.as_std_path());
        cmd.args(args);
        for (k, v) in &b.env.vars {
            cmd.env(k, v);
        }
        cmd.env_remove(crate::list::ENV_LIST_SETTINGS);
        cmd.env(ENV_RUNNER, "cargo-cvtest");
        cmd.current_dir(&b.env.cwd);
        cmd.stdout(Stdio::Capture { limit: CAPTURE_LIMIT });
        cmd.stderr(Stdio::Capture { limit: CAPTURE_LIMIT });
        cmd
    }

    /// Creates, starts (through `zygote` when there is one) and waits for one container; destroys
    /// it whatever happens.
    fn contain(
        &self,
        ticket: &Ticket,
        settings: &Effective,
        cmd: &Command,
        zygote: Option<&mut Zygote>,
    ) -> Result<Outcome, String> {
        if self.scheduler.is_interrupted() {
            return Err(CANCELLED.to_owned());
        }
        let options = self.options(settings).map_err(|e| chain("cannot create the container", &e))?;
        let mut c = Container::create(&options).map_err(|e| chain("cannot create the container", &e))?;
        let result = (|| {
            match zygote {
                Some(z) => c.spawn_via(z, cmd),
                None => c.spawn(cmd),
            }
            .map_err(|e| chain("cannot start the test in its container", &e))?;
            if !self.scheduler.set_kill(ticket, c.kill_handle()) {
                c.kill_handle().kill();
            }
            c.wait(settings.timeout).map_err(|e| chain("lost track of the container", &e))
        })();
        let veth = c.veth_host_name().map(str::to_owned);
        let destroyed = c.destroy().map_err(|e| chain("cannot clean up the container", &e));
        if let Some(name) = veth {
            // The kernel removes the veth (and its host route) after the network namespace goes,
            // asynchronously. Its subnet stays reserved until then, or the next test on the same
            // subnet would see a route clash.
            wait_link_gone(&name);
        }
        match (result, destroyed) {
            (Ok(o), Ok(())) => Ok(o),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    }

    fn status(&self, outcome: &Outcome) -> Status {
        match outcome.termination {
            Termination::Exited(0) => Status::Pass,
            Termination::Exited(_) if self.scheduler.is_interrupted() => Status::Cancelled,
            Termination::Exited(code) => Status::Fail { exit_code: code },
            Termination::Signaled(_) if self.scheduler.is_interrupted() => Status::Cancelled,
            Termination::Signaled(signal) => Status::Signal { signal },
            Termination::OomKilled => Status::Oom,
            Termination::TimedOut => Status::Timeout,
        }
    }

    fn run_test(
        &self,
        ticket: &Ticket,
        t: &TestCase,
        b: &BinaryEntry,
        zygote: Option<&mut Zygote>,
    ) -> TestFinished {
        let mut args: Vec<OsString> = Vec::new();
        if t.whole_binary {
            args.extend(self.list_filter_args().into_iter().map(OsString::from));
        } else {
            args.extend(["--exact".into(), OsString::from(&t.name), "--nocapture".into()]);
            if t.ignored {
                args.push("--ignored".into());
            }
        }
        let cmd = self.command(b, args);
        let started = Instant::now();
        let mut r = TestFinished::unmeasured(&b.bin.id, t, Status::Pass, started, PeakScope::Test);
        match self.contain(ticket, &t.settings, &cmd, zygote) {
            Ok(o) => {
                r.status = self.status(&o);
                if r.status == Status::Pass && !t.whole_binary && !ran_the_test(&o.stdout) {
                    r.status = Status::SetupError {
                        message: format!(
                            "the test binary ran no test named {:?} (was it renamed since listing?)",
                            t.name
                        ),
                    };
                }
                r.duration = o.duration;
                r.peaks = Some(o.peaks);
                r.pids_limit_hit = o.pids_limit_hit;
                r.stdout = o.stdout;
                r.stderr = o.stderr;
            }
            Err(m) if m == CANCELLED => {
                r.status = Status::Cancelled;
                r.duration = started.elapsed();
            }
            Err(message) => {
                r.status = Status::SetupError { message };
                r.duration = started.elapsed();
            }
        }
        r
    }

    fn list_filter_args(&self) -> Vec<String> {
        self.list.whole_binary_args.clone()
    }

    /// Runs several tests of one binary in one container; returns whether any failed.
    fn run_binary(
        &self,
        ticket: &Ticket,
        binary: usize,
        tests: &[usize],
        events: &Sender<Event>,
        zygote: Option<&mut Zygote>,
    ) -> bool {
        let b = &self.list.binaries[binary];
        let cases: Vec<&TestCase> = tests.iter().map(|&i| &self.list.tests[i]).collect();
        let settings = &cases[0].settings;
        let mut args: Vec<OsString> = vec!["--exact".into()];
        args.extend(cases.iter().map(|t| OsString::from(&t.name)));
        if cases.iter().any(|t| t.ignored) {
            args.push("--include-ignored".into());
        }
        let cmd = self.command(b, args);
        let started = Instant::now();
        let result = self.contain(ticket, settings, &cmd, zygote);
        let (binary_status, outcome) = match result {
            Ok(o) => (self.status(&o), Some(o)),
            Err(m) if m == CANCELLED => (Status::Cancelled, None),
            Err(message) => (Status::SetupError { message }, None),
        };
        let parsed = outcome.as_ref().map(|o| parse_libtest_pretty(&o.stdout)).unwrap_or_default();
        let mut any_failed = false;
        for t in &cases {
            let (status, stdout) = match parsed.results.iter().find(|(n, _)| n == &t.name) {
                Some((_, LibtestResult::Ok)) => (Status::Pass, Vec::new()),
                Some((_, LibtestResult::Ignored)) => (Status::Ignored, Vec::new()),
                Some((_, LibtestResult::Failed)) => (
                    Status::Fail { exit_code: 101 },
                    parsed
                        .failure_output
                        .iter()
                        .find(|(n, _)| n == &t.name)
                        .map(|(_, o)| o.clone())
                        .unwrap_or_default(),
                ),
                // Not reported: the binary died (OOM, timeout, signal) before or while running it.
                None => match &binary_status {
                    Status::Pass => (
                        Status::SetupError { message: "the test binary did not report this test".into() },
                        Vec::new(),
                    ),
                    other => (other.clone(), Vec::new()),
                },
            };
            let r = TestFinished {
                stdout,
                ..TestFinished::unmeasured(&b.bin.id, t, status, started, PeakScope::Binary)
            };
            any_failed |= r.verdict() == Verdict::Failure;
            let _ = events.send(Event::TestFinished(Box::new(r)));
        }
        let (peaks, pids_limit_hit, duration) = outcome
            .as_ref()
            .map_or((None, false, started.elapsed()), |o| (Some(o.peaks), o.pids_limit_hit, o.duration));
        let _ = events.send(Event::BinaryFinished(Box::new(BinaryFinished {
            binary_id: b.bin.id.clone(),
            status: binary_status,
            duration,
            peaks,
            pids_limit_hit,
            tests: cases.len(),
        })));
        any_failed
    }
}

const CANCELLED: &str = "\0cancelled";

/// How long a released veth may take to disappear before its subnet is handed out anyway (the
/// next container then reports a clear route-clash error rather than waiting forever).
const LINK_GONE_TIMEOUT: Duration = Duration::from_secs(5);

fn wait_link_gone(name: &str) {
    let path = std::path::Path::new("/sys/class/net").join(name);
    let deadline = Instant::now() + LINK_GONE_TIMEOUT;
    let mut pause = Duration::from_micros(200);
    while path.exists() && Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn chain(what: &str, e: &dyn std::error::Error) -> String {
    format!("{what}: {}", cvtest::error_chain(e))
}

/// libtest ran exactly the one test it was asked for ([`cvtest::spec::libtest`]'s rule); when
/// it did not (the name matched nothing), its exit 0 is a silent pass we refuse.
fn ran_the_test(stdout: &[u8]) -> bool {
    cvtest::spec::libtest::Summary::parse(stdout).is_some_and(|s| s.ran_exactly_one())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LibtestResult {
    Ok,
    Failed,
    Ignored,
}

#[derive(Debug, Default)]
struct Pretty {
    results: Vec<(String, LibtestResult)>,
    failure_output: Vec<(String, Vec<u8>)>,
}

/// Reads libtest's default ("pretty") output: `test NAME ... ok|FAILED|ignored`, and the
/// `---- NAME stdout ----` sections of failures.
fn parse_libtest_pretty(stdout: &[u8]) -> Pretty {
    let text = String::from_utf8_lossy(stdout);
    let mut p = Pretty::default();
    let mut section: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, result)) = rest.rsplit_once(" ... ") {
                let r = match result {
                    "ok" => Some(LibtestResult::Ok),
                    "FAILED" => Some(LibtestResult::Failed),
                    r if r.starts_with("ignored") => Some(LibtestResult::Ignored),
                    _ => None,
                };
                if let Some(r) = r {
                    p.results.push((name.to_owned(), r));
                    continue;
                }
            }
        }
        if let Some(name) = line.strip_prefix("---- ").and_then(|l| l.strip_suffix(" stdout ----")) {
            if let Some((n, o)) = section.take() {
                p.failure_output.push((n, o.into_bytes()));
            }
            section = Some((name.to_owned(), String::new()));
            continue;
        }
        if line == "failures:" || line.starts_with("test result: ") {
            if let Some((n, o)) = section.take() {
                p.failure_output.push((n, o.into_bytes()));
            }
            continue;
        }
        if let Some((_, o)) = section.as_mut() {
            o.push_str(line);
            o.push('\n');
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_pretty_output() {
        let out = b"\nrunning 3 tests\ntest a::one ... ok\ntest a::two ... FAILED\ntest a::three ... ignored, slow\n\n\
failures:\n\n---- a::two stdout ----\nthread 'a::two' panicked at src/lib.rs:3:5:\nboom\n\n\nfailures:\n    a::two\n\n\
test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out\n";
        let p = parse_libtest_pretty(out);
        assert_eq!(
            p.results,
            [
                ("a::one".to_owned(), LibtestResult::Ok),
                ("a::two".to_owned(), LibtestResult::Failed),
                ("a::three".to_owned(), LibtestResult::Ignored)
            ]
        );
        assert_eq!(p.failure_output.len(), 1);
        let o = String::from_utf8(p.failure_output[0].1.clone()).unwrap();
        assert!(o.contains("boom"), "{o}");
    }

    #[test]
    fn detects_running_zero_tests() {
        assert!(!ran_the_test(b"\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.00s\n"));
        assert!(ran_the_test(b"\nrunning 1 test\ntest x ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.00s\n"));
    }
}
