//! One run, stage by stage: workspace and config, build, discovery, selection, then listing or
//! running the tests.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cvtest::__private::ENV_LIMITS;
use cvtest::{Options, Rootfs};
use cvtest_spec::TestSettings;

use crate::build::{self, BuildOptions, Workspace};
use crate::config::Config;
use crate::discovery;
use crate::env::Toolchain;
use crate::errors::{render_chain, RunError, SetupError, UsageError};
use crate::events::{Event, PeakScope, RunStats, Status, TestFinished};
use crate::exit_codes;
use crate::expect::Expect;
use crate::filter::{Disposition, NameFilter};
use crate::history::{History, Order};
use crate::partition::Partition;
use crate::policy::{PolicyKeys, RunPolicy};
use crate::reporter::{self, OutputFormat, ReportOptions, Reporter};
use crate::runner;
use crate::sampler::Sampler;
use crate::scheduler::Scheduler;
use crate::selection::TestList;
use crate::settings::{self, Resolver};
use crate::signals::SignalWatch;
use crate::timeline::TimelineOptions;
use crate::units::{self, ContainerScope};

/// Everything a run needs, in the stages' own types (`cli` converts the command line into it).
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub(crate) build: BuildOptions,
    pub(crate) filter: NameFilter,
    pub(crate) partition: Option<Partition>,
    /// The CLI's limits as a settings layer; with `force_limits` they go over everything.
    pub(crate) limits: TestSettings,
    pub(crate) force_limits: bool,
    /// `--no-limits`: containers without cgroups, on purpose (as `CVTEST_LIMITS=off` or the
    /// config's `limits = "off"`).
    pub(crate) no_limits: bool,
    /// Containers at once; `None` for the number of CPUs.
    pub(crate) jobs: Option<NonZeroUsize>,
    /// Each worker's containers on its own share of the CPUs (`crate::placement`).
    pub(crate) pin: bool,
    pub(crate) scope: ContainerScope,
    /// `--profile` / `CVTEST_PROFILE`: the config profile (the default one when `None`).
    pub(crate) profile: Option<String>,
    /// The CLI's runner flags (retries, slow timeout, fail-fast, JUnit path, status levels): over
    /// the profile's keys. `report.junit` is ignored in their favour.
    pub(crate) policy: PolicyKeys,
    /// Tests' output goes straight to ours, not captured.
    pub(crate) no_capture: bool,
    /// `None` for `MemAvailable` at start.
    pub(crate) memory_budget: Option<u64>,
    /// List the tests instead of running them.
    pub(crate) list: bool,
    /// `--order`: which units start first.
    pub(crate) order: Order,
    pub(crate) report: ReportOptions,
    /// `--timeline` (or `--html`): sample each container's usage while it runs.
    pub(crate) timeline: Option<TimelineOptions>,
}

fn check_signal(signals: &SignalWatch) -> Result<(), RunError> {
    match signals.received() {
        Some(sig) => Err(RunError::Interrupted(sig)),
        None => Ok(()),
    }
}

/// Runs (or lists) the tests; the exit code, or what ended the run before its tests could decide.
pub(crate) fn run(opts: &RunOptions, signals: &SignalWatch) -> Result<i32, RunError> {
    let selected = select(opts, signals)?;
    if opts.list {
        print_list(&selected.list, opts.report.format)
            .map_err(|source| SetupError::Write { path: "stdout".into(), source })?;
        return Ok(exit_codes::OK);
    }
    // Without limits the preflight's container has no cgroup either: it checks what the tests need.
    preflight(&selected.container)?;
    let budget = opts.memory_budget.unwrap_or_else(mem_available);
    Ok(run_tests(opts, selected, budget, signals))
}

/// The selected tests, and what running them needs.
struct Selected {
    list: TestList,
    /// Host directories a test may write.
    writable: Vec<PathBuf>,
    /// The container of a test without settings of its own.
    container: Options,
    /// Containers (and listings) at once.
    jobs: usize,
    /// `false` in the explicit no-limits mode (see [`settings::limits_enforced`]).
    enforced: bool,
    /// The profile's and the CLI's runner keys.
    policy: RunPolicy,
    /// The profile's JUnit path, relative to the workspace root.
    profile_junit: Option<PathBuf>,
    /// The durations of earlier runs in this target directory.
    history: History,
}

/// Reads the workspace and its config, builds the tests, asks each binary for its tests, and
/// keeps those the filters and the partition select, with their settings.
fn select(opts: &RunOptions, signals: &SignalWatch) -> Result<Selected, RunError> {
    let ws = build::load_workspace(&opts.build)?;
    let config = Config::load(&ws)?;
    let policy = RunPolicy {
        profile: config.profile(opts.profile.as_deref()).map_err(UsageError::from)?,
        cli: opts.policy.clone(),
    };
    let profile_junit = policy.profile.junit.as_ref().map(|p| ws.root().as_std_path().join(p));
    let enforced = settings::limits_enforced(opts.no_limits, std::env::var_os(ENV_LIMITS), &config)?;
    let resolver = Resolver { config, cli: opts.limits.clone(), force: opts.force_limits, enforced };
    let output = build::build(&opts.build, &ws, opts.report.paint.on)?;
    check_signal(signals)?;
    let toolchain = Toolchain::detect()?;
    let jobs =
        opts.jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |j| j.get());
    let writable = writable_dirs(&ws);
    let container = default_container(&writable, enforced)?;
    let entries = discovery::discover(&ws, &output, &toolchain, jobs, &container)?;
    check_signal(signals)?;
    let mut list = TestList::new(entries, &opts.filter, opts.partition, &resolver)?;
    for i in 0..list.tests.len() {
        let b = list.binary_of(&list.tests[i]);
        let overrides = resolver.config.policy_overrides(&b.package, &b.bin.id, &list.tests[i].name);
        (list.tests[i].retries, list.tests[i].slow) = policy.for_test(&overrides);
    }
    let history = History::load(ws.target_dir.as_std_path());
    Ok(Selected { list, writable, container, jobs, enforced, policy, profile_junit, history })
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

fn print_list(list: &TestList, format: OutputFormat) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let width =
        list.tests.iter().map(|t| list.binary_of(t).bin.id.len() + 1 + t.name.len()).max().unwrap_or(0);
    for t in &list.tests {
        let id = &list.binary_of(t).bin.id;
        match format {
            OutputFormat::Json => writeln!(out, "{}", reporter::list_json_line(id, t))?,
            OutputFormat::Human => {
                let full = format!("{id} {}", t.name);
                let mut extra = String::new();
                if t.disposition == Disposition::Ignored {
                    extra.push_str(" [ignored]");
                }
                if t.expect != Expect::Pass {
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
fn preflight(container: &Options) -> Result<(), SetupError> {
    let c = cvtest::Container::create(container).map_err(SetupError::Container)?;
    // A container that cannot be removed will show up as an error of the first test too.
    let _ = c.destroy();
    Ok(())
}

/// The container of a test without settings of its own (the defaults, as every test gets them),
/// with the host's root and `writable` writable: for the preflight and for listing custom harnesses.
/// Without a cgroup when the limits are not `enforced`.
fn default_container(writable: &[PathBuf], enforced: bool) -> Result<Options, SetupError> {
    let mut options = Options::for_test(&TestSettings::default()).map_err(SetupError::Options)?;
    if !enforced {
        options.set_isolation(settings::no_limits_isolation());
    }
    options.set_rootfs(Rootfs::Host { writable: writable.to_vec() });
    Ok(options)
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

/// Runs the selected tests in containers, `jobs` at a time within the memory `budget`, and
/// reports them; the exit code.
fn run_tests(opts: &RunOptions, selected: Selected, budget: u64, signals: &SignalWatch) -> i32 {
    let Selected { list, writable, jobs, enforced, container: _, policy, profile_junit, history } = selected;
    let mut units = units::plan(&list, opts.scope);
    history.order(&list, &mut units, opts.order);
    let scheduler =
        Scheduler::new(units.iter().enumerate().map(|(i, u)| (i, units::demand(&list, u))), budget);
    let report = ReportOptions {
        junit: opts.policy.junit.clone().or(profile_junit),
        levels: policy.levels(),
        ..opts.report.clone()
    };
    let mut sink = Sink::new(reporter::for_run(&report), history);
    let started = Instant::now();
    let workers = jobs.min(units.len());
    let allowed = if opts.pin { crate::placement::allowed_cpus() } else { Vec::new() };
    let cpu_shares = crate::placement::shares(&allowed, workers).unwrap_or_default();
    // What the placed containers get once the run's tail begins (`placement::Tail`).
    let all_cpus = (!cpu_shares.is_empty()).then(|| cvtest::CpuList::new(allowed).ok()).flatten();
    let shares_shown = cpu_shares.iter().map(ToString::to_string).collect();
    announce(&mut sink, &list, (opts.scope, jobs, budget, shares_shown), started);
    if !enforced {
        // Run-wide, said once at the start; every test's line and JSON say it again.
        let message = "limits are NOT enforced in this run (--no-limits, CVTEST_LIMITS=off or `limits = \"off\"`): \
                       the containers have no cgroup; each test shows the largest process's RSS and the CPU time \
                       from rusage instead of its peaks"
            .to_owned();
        sink.emit(Event::Warning { message });
    }
    // One thread samples every running container; without it, no timelines (said once).
    let sampler = opts.timeline.and_then(|t| match Sampler::start(t) {
        Ok(s) => Some(s),
        Err(e) => {
            sink.emit(Event::Warning {
                message: format!("no timelines: cannot start the sampling thread: {e}"),
            });
            None
        }
    });
    let runner = runner::Runner {
        list: &list,
        units: &units,
        scheduler: &scheduler,
        writable,
        fail_fast: policy.run_keys().fail_fast.unwrap_or(false),
        no_capture: opts.no_capture,
        zygote_warned: Default::default(),
        sampler: sampler.as_ref(),
        workers,
        spawn_ahead: runner::spawn_ahead_enabled(),
        cpu_shares,
        next_worker: Default::default(),
        unplaced: Default::default(),
        unplaced_warned: Default::default(),
        overlay_refused: Default::default(),
        overlay_warned: Default::default(),
        tail: crate::placement::Tail::new(all_cpus),
        ahead_slots: (0..workers).map(|_| Default::default()).collect(),
    };
    drive(&runner, workers, signals, &mut sink);
    // Destroying a container does not wait for the kernel to delete its veth; the run ends
    // when they are gone, so nothing of it is left when `cargo cvtest` returns.
    let _ = cvtest::wait_released_veths(VETHS_GONE_TIMEOUT);
    if let Err(e) = sink.history.save() {
        sink.emit(Event::Warning { message: render_chain(&e) });
    }
    sink.finish(started.elapsed())
}

/// How long the run's end waits for the kernel to delete the veths of its containers.
const VETHS_GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// `RunStarted`, then the ignored tests, which are reported without running.
fn announce(
    sink: &mut Sink,
    list: &TestList,
    (scope, jobs, budget, cpu_shares): (ContainerScope, usize, u64, Vec<String>),
    started: Instant,
) {
    let ignored: Vec<_> = list.tests.iter().filter(|t| t.disposition == Disposition::Ignored).collect();
    sink.emit(Event::RunStarted {
        to_run: list.to_run().count(),
        ignored: ignored.len(),
        filtered_out: list.filtered_out,
        jobs,
        scope,
        memory_budget: budget,
        cpu_shares,
    });
    for t in ignored {
        let ev =
            TestFinished::unmeasured(&list.binary_of(t).bin.id, t, Status::Ignored, started, PeakScope::Test);
        sink.emit(Event::TestFinished(Box::new(ev)));
    }
}

/// Runs `workers` threads of `runner` and passes their events on until all are done. The first
/// signal interrupts the scheduler (no new unit, running containers killed) and is reported.
fn drive(runner: &runner::Runner<'_>, workers: usize, signals: &SignalWatch, sink: &mut Sink) {
    let mut interrupted = false;
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<Event>();
        for _ in 0..workers {
            let tx = tx.clone();
            s.spawn(move || runner.work(tx));
        }
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(ev) => sink.emit(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => sink.tick(),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if !interrupted {
                if let Some(signal) = signals.received() {
                    interrupted = true;
                    runner.scheduler.interrupt();
                    sink.emit(Event::Interrupted { signal });
                }
            }
        }
    });
}

/// Where events go: into the run's statistics, then to every reporter.
struct Sink {
    stats: RunStats,
    /// Records the duration of every test that ran, for the next run's order.
    history: History,
    reporters: Vec<Box<dyn Reporter>>,
    /// The first report that could not be written.
    report_error: Option<std::io::Error>,
}

impl Sink {
    fn new(reporters: Vec<Box<dyn Reporter>>, history: History) -> Sink {
        Sink { stats: RunStats::default(), history, reporters, report_error: None }
    }

    fn emit(&mut self, ev: Event) {
        self.stats.add(&ev);
        if let Event::TestFinished(t) = &ev {
            if t.status.ran() {
                self.history.record(&t.binary_id, &t.name, t.duration);
            }
        }
        for r in &mut self.reporters {
            if let Err(e) = r.report(&ev) {
                self.report_error.get_or_insert(e);
            }
        }
    }

    /// Lets reporters redraw their progress while no event comes.
    fn tick(&mut self) {
        for r in &mut self.reporters {
            let _ = r.tick();
        }
    }

    /// Ends the run: `RunFinished` with the statistics, which give the exit code (unless a report
    /// could not be written: setup failed).
    fn finish(mut self, elapsed: Duration) -> i32 {
        let stats = self.stats;
        self.emit(Event::RunFinished { elapsed, stats });
        if let Some(e) = self.report_error {
            say!("error: failed to write a report: {e}");
            return exit_codes::SETUP_FAILED;
        }
        stats.exit_code()
    }
}
