//! `cargo cvtest`: build the tests, run each in its own container, in parallel, and report.
//!
//! Data flows one way: cargo's JSON ([`build`]) → test binaries → their lists ([`list`]) →
//! settings per test ([`settings`], [`config`]) → the test list ([`testlist`], [`filter`],
//! [`partition`]) → units and admission ([`runner::plan`], [`scheduler`]) → containers
//! ([`runner`]) → typed [`events`] → [`reporter`]s → summary → [`exit_codes`].

#![deny(unsafe_code)]

pub mod build;
pub mod cli;
pub mod config;
pub mod env;
pub mod errors;
pub mod events;
pub mod exit_codes;
pub mod filter;
pub mod list;
pub mod partition;
pub mod reporter;
pub mod runner;
pub mod scheduler;
pub mod settings;
pub mod signals;
pub mod testlist;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::build::{BuildOutput, Workspace};
use crate::cli::{CvtestArgs, MessageFormat};
use crate::config::Config;
use crate::env::Toolchain;
use crate::errors::{render_chain, RunError, SetupError, UsageError};
use crate::events::{Event, PeakScope, Status, TestFinished};
use crate::filter::{Disposition, NameFilter};
use crate::list::{BinaryTests, ContainerLauncher, HostLauncher};
use crate::reporter::{JsonReporter, JunitReporter, Painter, Reporter, RunSummary, TerminalReporter};
use crate::scheduler::Scheduler;
use crate::settings::{cli_layer, Resolver};
use crate::signals::SignalWatch;
use crate::testlist::{BinaryEntry, TestList};

/// The entry point of the `cargo-cvtest` binary.
pub fn main() -> std::process::ExitCode {
    // Re-executed as a worker's zygote (see `runner::Runner::work`): serve, never return.
    cvtest::zygote::serve_if_requested();
    let code = run_main(std::env::args_os());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Parses `args` (as cargo passes them: `cargo-cvtest cvtest ...`), runs, and returns the exit code.
pub fn run_main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut args = cli::parse_from(args);
    if let Err(e) = cli::merge_libtest_args(&mut args.filter) {
        eprintln!("{}", render_chain(&UsageError::Args(e)));
        return exit_codes::USAGE;
    }
    let paint = Painter::detect(args.report.color);
    let signals = match SignalWatch::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return exit_codes::SETUP_FAILED;
        }
    };
    let code = match run(&args, paint, &signals) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", render_chain(&e));
            e.exit_code()
        }
    };
    // Every container is gone by now: undo what the library did to our own cgroup (on cgroup v2
    // the supervisor leaf this process moved into), so not even an empty cgroup is left.
    if let Err(e) = cvtest::release_own_cgroup() {
        eprintln!("warning: {}", render_chain(&e));
    }
    code
}

/// Whether the run enforces limits: not with `--no-limits`, `CVTEST_LIMITS=off` or a config's
/// `limits = "off"` (in that order of precedence).
fn limits_enforced(no_limits: bool, config: &Config) -> Result<bool, UsageError> {
    if no_limits {
        return Ok(false);
    }
    match std::env::var(cvtest::__private::ENV_LIMITS) {
        Ok(v) if v == "off" => return Ok(false),
        Ok(v) if v == "on" => return Ok(true),
        Ok(v) if v.is_empty() => {}
        Ok(value) => return Err(UsageError::LimitsEnv { value }),
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(UsageError::LimitsEnv { value: v.to_string_lossy().into_owned() })
        }
        Err(std::env::VarError::NotPresent) => {}
    }
    Ok(config.limits_enforced().unwrap_or(true))
}

fn check_signal(signals: &SignalWatch) -> Result<(), RunError> {
    match signals.received() {
        Some(sig) => Err(RunError::Interrupted(sig)),
        None => Ok(()),
    }
}

fn run(args: &CvtestArgs, paint: Painter, signals: &SignalWatch) -> Result<i32, RunError> {
    let ws = build::load_workspace(&args.build)?;
    let config = Config::load(&ws)?;
    let enforced = limits_enforced(args.limits.no_limits, &config)?;
    let resolver =
        Resolver { config, cli: cli_layer(&args.limits), force: args.limits.force_limits, enforced };
    let output = build::build(&args.build, &ws, paint.on)?;
    check_signal(signals)?;
    let toolchain = Toolchain::detect()?;
    let jobs = args
        .run
        .jobs
        .map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |j| j.get());
    let writable = writable_dirs(&ws);
    let entries = discover(&ws, &output, &toolchain, jobs, &writable)?;
    check_signal(signals)?;
    let filter = NameFilter::from_args(&args.filter);
    let list = TestList::new(entries, &filter, args.filter.partition, &resolver);

    if args.run.list {
        print_list(&list, args.report.message_format)
            .map_err(|source| SetupError::Write { path: "stdout".into(), source })?;
        return Ok(exit_codes::OK);
    }
    preflight(&writable, enforced)?;
    let budget = args.run.memory_budget.unwrap_or_else(mem_available);
    run_tests(args, &list, writable, budget, jobs, paint, signals)
}

/// The directories a test may write: the target dir, the workspace, and packages outside it.
fn writable_dirs(ws: &Workspace) -> Vec<PathBuf> {
    let mut v = vec![ws.target_dir.clone().into_std_path_buf(), ws.root().to_path_buf().into_std_path_buf()];
    for p in &ws.metadata.packages {
        if let Some(dir) = p.manifest_path.parent() {
            if !v.iter().any(|w| dir.as_std_path().starts_with(w)) {
                v.push(dir.to_path_buf().into_std_path_buf());
            }
        }
    }
    v
}

/// Lists every binary's tests, `jobs` at a time.
fn discover(
    ws: &Workspace,
    output: &BuildOutput,
    toolchain: &Toolchain,
    jobs: usize,
    writable: &[PathBuf],
) -> Result<Vec<BinaryEntry>, SetupError> {
    let contained = ContainerLauncher { writable: writable.to_vec() };
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<BinaryTests, errors::ListError>>>> =
        output.binaries.iter().map(|_| Mutex::new(None)).collect();
    let envs: Vec<_> = output.binaries.iter().map(|b| env::test_env(b, ws, output, toolchain)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(output.binaries.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(bin) = output.binaries.get(i) else { break };
                let r = list::list_binary(bin, &envs[i], &HostLauncher, &contained);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    let mut entries = Vec::new();
    for ((bin, env), r) in output.binaries.iter().zip(envs).zip(results) {
        let tests = r
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .expect("every binary was listed")
            .map_err(|source| SetupError::List { binary: bin.id.clone(), source })?;
        let package = ws.package(&bin.package_id).map(|p| p.name.to_string()).unwrap_or_default();
        entries.push(BinaryEntry { bin: bin.clone(), package, env, tests });
    }
    Ok(entries)
}

fn print_list(list: &TestList, format: MessageFormat) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let width =
        list.tests.iter().map(|t| list.binary_of(t).bin.id.len() + 1 + t.name.len()).max().unwrap_or(0);
    for t in &list.tests {
        let id = &list.binary_of(t).bin.id;
        match format {
            MessageFormat::Json => writeln!(out, "{}", reporter::list_json_line(id, t))?,
            MessageFormat::Human => {
                let full = format!("{id} {}", t.name);
                let mut extra = String::new();
                if t.disposition == Disposition::Ignored {
                    extra.push_str(" [ignored]");
                }
                if t.expect != settings::Expect::Pass {
                    extra.push_str(&format!(" [expect {}]", t.expect.as_str()));
                }
                if t.whole_binary {
                    extra.push_str(" [whole binary]");
                }
                writeln!(out, "{full:<width$}  {}{extra}", t.settings)?;
            }
        }
    }
    out.flush()
}

/// Creates and destroys one container, so that missing privileges or cgroup controllers are one
/// clear error instead of one per test.
fn preflight(writable: &[PathBuf], enforced: bool) -> Result<(), SetupError> {
    // A test with no settings of its own: the defaults, as every test gets them.
    let mut opts =
        cvtest::Options::for_test(&cvtest::spec::TestSettings::default()).map_err(SetupError::Options)?;
    opts.set_rootfs(cvtest::Rootfs::Host { writable: writable.to_vec() });
    if !enforced {
        use cvtest::Isolation;
        opts.set_isolation(
            Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC,
        );
    }
    let c = cvtest::Container::create(&opts).map_err(SetupError::Container)?;
    // A container that cannot be removed will show up as an error of the first test too.
    let _ = c.destroy();
    Ok(())
}

/// `MemAvailable` from /proc/meminfo, or "unlimited" when it cannot be read.
fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kb| kb * 1024))
        })
        .unwrap_or(u64::MAX)
}

fn run_tests(
    args: &CvtestArgs,
    list: &TestList,
    writable: Vec<PathBuf>,
    budget: u64,
    jobs: usize,
    paint: Painter,
    signals: &SignalWatch,
) -> Result<i32, RunError> {
    let units = runner::plan(list, args.run.isolation);
    let scheduler =
        Scheduler::new(units.iter().enumerate().map(|(i, u)| (i, runner::demand(list, u))), budget);
    let mut reporters: Vec<Box<dyn Reporter>> =
        vec![Box::new(TerminalReporter::stderr(paint, args.report.top))];
    if args.report.message_format == MessageFormat::Json {
        reporters.push(Box::new(JsonReporter::new(std::io::stdout())));
    }
    if let Some(path) = &args.report.junit {
        reporters.push(Box::new(JunitReporter::new(path.clone())));
    }
    let mut summary = RunSummary::new(0);
    let mut report_error: Option<std::io::Error> = None;
    let mut emit = |ev: Event, reporters: &mut Vec<Box<dyn Reporter>>| {
        summary.add(&ev);
        for r in reporters.iter_mut() {
            if let Err(e) = r.report(&ev) {
                report_error.get_or_insert(e);
            }
        }
    };

    let started = Instant::now();
    let ignored: Vec<_> = list.tests.iter().filter(|t| t.disposition == Disposition::Ignored).collect();
    let to_run = list.to_run().count();
    emit(
        Event::RunStarted {
            to_run,
            ignored: ignored.len(),
            filtered_out: list.filtered_out,
            jobs,
            isolation: args.run.isolation,
            memory_budget: budget,
        },
        &mut reporters,
    );
    // The mode is run-wide: every test's settings say the same.
    if list.tests.iter().any(|t| !t.settings.enforced) {
        let message = "limits are NOT enforced in this run (--no-limits, CVTEST_LIMITS=off or `limits = \"off\"`): \
                       the containers have no cgroup; each test shows the largest process's RSS and the CPU time \
                       from rusage instead of its peaks"
            .to_owned();
        emit(Event::Warning { message }, &mut reporters);
    }
    for t in ignored {
        let ev =
            TestFinished::unmeasured(&list.binary_of(t).bin.id, t, Status::Ignored, started, PeakScope::Test);
        emit(Event::TestFinished(Box::new(ev)), &mut reporters);
    }

    let runner = runner::Runner {
        list,
        units: &units,
        scheduler: &scheduler,
        writable,
        fail_fast: args.run.fail_fast,
        zygote_warned: Default::default(),
    };
    let mut interrupted = None;
    let mut stopping_reported = false;
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<Event>();
        for _ in 0..jobs.min(units.len()) {
            let tx = tx.clone();
            let runner = &runner;
            s.spawn(move || runner.work(tx));
        }
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(ev) => {
                    let failed =
                        matches!(&ev, Event::TestFinished(t) if t.verdict() == events::Verdict::Failure);
                    emit(ev, &mut reporters);
                    if failed && args.run.fail_fast && !stopping_reported && interrupted.is_none() {
                        stopping_reported = true;
                        emit(Event::Stopping, &mut reporters);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    for r in reporters.iter_mut() {
                        let _ = r.tick();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if interrupted.is_none() {
                if let Some(sig) = signals.received() {
                    interrupted = Some(sig);
                    scheduler.interrupt();
                    emit(Event::Interrupted { signal: sig }, &mut reporters);
                }
            }
        }
    });
    emit(Event::RunFinished { elapsed: started.elapsed() }, &mut reporters);
    if let Some(e) = report_error {
        eprintln!("error: failed to write a report: {e}");
        return Ok(exit_codes::SETUP_FAILED);
    }
    Ok(match interrupted {
        Some(sig) => exit_codes::INTERRUPTED_BASE + sig,
        None if summary.success() => exit_codes::OK,
        None => exit_codes::TEST_FAILED,
    })
}
