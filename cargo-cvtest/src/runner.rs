//! Running units of work in containers, on `--jobs` worker threads, and turning what the
//! containers report into [`Event`]s. The runner never prints.
//!
//! A unit is one test in its own container (`<binary> --exact <name> --nocapture`), or with
//! `--isolation binary` a group of a binary's tests that share their settings, run as one
//! `<binary> --exact <name>...` whose per-test results are read from libtest's output.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::cell::RefCell;

use cvtest::lab::maker;
use cvtest::lease::{self, LeaseError, WaitPolicy, Waiting};
use cvtest::{
    Command, Container, CpuList, Options, Outcome, Rootfs, Stdio, Termination, Zygote, ZygoteError,
};
use cvtest_spec::NetworkSpec;

use crate::discovery::BinaryEntry;
use crate::events::{Attempt, BinaryFinished, Event, PeakScope, Status, TestFinished, UnitError, Verdict};
use crate::policy::SlowTimeout;
use crate::sampler::{Registration, Sampler};
use crate::scheduler::{Scheduler, Ticket};
use crate::selection::{TestCase, TestList};
use crate::settings::Effective;
use crate::timeline::{MarkKind, Timeline};
use crate::units::Unit;

/// Set in every test's environment: the test runs under `cargo cvtest` (one container per test).
pub(crate) const ENV_RUNNER: &str = "CVTEST_RUNNER";

/// Output kept per stream of a test; past this the library drops the middle and marks it.
pub(crate) const CAPTURE_LIMIT: usize = 1 << 20;
/// Everything workers share.
pub(crate) struct Runner<'a> {
    pub(crate) list: &'a TestList,
    pub(crate) units: &'a [Unit],
    pub(crate) scheduler: &'a Scheduler,
    /// Host directories a test may write (target dir, workspace, package dirs).
    pub(crate) writable: Vec<PathBuf>,
    pub(crate) fail_fast: bool,
    /// `--no-capture`: tests' output goes to ours as it comes.
    pub(crate) no_capture: bool,
    /// Set once a worker warned that its zygote is gone (one warning per run).
    pub(crate) zygote_warned: AtomicBool,
    /// `--timeline`: samples each container's usage while it runs.
    pub(crate) sampler: Option<&'a Sampler>,
    /// How many workers run (a worker takes its next unit ahead only while more than this
    /// many wait).
    pub(crate) workers: usize,
    /// Prepare a worker's next test ahead ([`Ahead`]; `CVTEST_SPAWN_AHEAD=0` turns it off).
    pub(crate) spawn_ahead: bool,
    /// Each worker's share of the CPUs, one per worker (`crate::placement`); empty: none.
    pub(crate) cpu_shares: Vec<CpuList>,
    /// The next worker's index into `cpu_shares`.
    pub(crate) next_worker: AtomicUsize,
    /// Set, with why, once a container could not be placed on its worker's CPUs: from then on
    /// no container is placed (the run says so once).
    pub(crate) unplaced: std::sync::OnceLock<String>,
    pub(crate) unplaced_warned: AtomicBool,
    /// Set, with why, once the kernel refused a container's throw-away `HOME`
    /// (`Options::overlay_dirs`): the run says so once.
    pub(crate) overlay_refused: std::sync::OnceLock<String>,
    pub(crate) overlay_warned: AtomicBool,
    /// The run's tail (`crate::placement::Tail`): once a worker has run out of units, the placed
    /// containers get all of the run's CPUs.
    pub(crate) tail: crate::placement::Tail,
    /// Each worker's slot for the unit it took ahead ([`Ahead`]), one per worker: a worker that
    /// runs out of units takes one another worker holds paused behind a long test.
    pub(crate) ahead_slots: Vec<Mutex<Option<Ahead>>>,
}

/// A worker's next test, taken while its current one runs: admitted, its container created and
/// spawned paused (cloned, in its cgroup, its init's mounts and capability drops done or under
/// way), so that when the current test ends only the go is left. The kernel work is the same;
/// it now overlaps the running test instead of leaving a core idle between two tests.
pub(crate) struct Ahead {
    ticket: Ticket,
    prepared: PreparedContainer,
}

/// A unit's container up to the go.
struct PreparedContainer {
    container: Container,
    maker: Option<maker::Maker>,
    /// The command as spawned (with the lab maker's socket).
    command: Command,
    /// The unit's share of the machine-wide memory budget.
    _memory: lease::Lease,
}

/// What a unit's container starts from: the container prepared ahead for it, if any, and the
/// worker's slot for the next unit's (`None`: take none ahead).
struct Next<'a> {
    prepared: Option<PreparedContainer>,
    ahead: Option<AheadSlot<'a>>,
    /// Where this unit's container runs: the worker's share of the CPUs, or `None` (anywhere).
    cpus: Option<&'a CpuList>,
}

/// A worker's slot for the unit it takes ahead, and where that unit will run (the worker's
/// share of the CPUs, whatever the current unit's own placement).
#[derive(Clone, Copy)]
struct AheadSlot<'a> {
    slot: &'a Mutex<Option<Ahead>>,
    cpus: Option<&'a CpuList>,
}

/// A created container and what starting it takes.
struct Contain<'a, 'z> {
    container: Container,
    maker: Option<maker::Maker>,
    command: &'a Command,
    time_limit: Option<Duration>,
    zygote: Option<&'z mut Zygote>,
    ahead: Option<AheadSlot<'a>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The arguments that run one test of a libtest binary.
fn test_args(t: &TestCase, b: &BinaryEntry) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--exact".into(), OsString::from(&t.name), "--nocapture".into()];
    // One test to run: libtest's default harness then need not size a thread pool, which reads
    // the cgroup's CPU quota (on cgroup v1, /proc/self/mountinfo too) in every test process.
    // Other harnesses get only what they were listed with.
    if !b.bin.custom_harness {
        args.push("--test-threads=1".into());
    }
    if t.ignored {
        args.push("--ignored".into());
    }
    args
}

thread_local! {
    /// A worker's lab sockets, kept between its tests (`maker::prepare_reusing`).
    static LAB_SOCKETS: RefCell<maker::Sockets> = RefCell::new(maker::Sockets::default());
    /// Each test binary's lab socket directory (`maker::socket_dir`: a walk up its path).
    static LAB_DIRS: RefCell<HashMap<PathBuf, Option<PathBuf>>> = RefCell::new(HashMap::new());
    /// Each test binary's command without arguments (`Runner::command`).
    static COMMANDS: RefCell<HashMap<PathBuf, Command>> = RefCell::new(HashMap::new());
}

/// The lab maker of the test `cmd` starts in `container`, on a socket of the worker's kept ones
/// when there is one (`cmd` gets its path).
fn prepare_lab(container: &mut Container, cmd: &mut Command) -> Option<maker::Maker> {
    let program = cmd.get_program().to_path_buf();
    let dir = LAB_DIRS.with_borrow_mut(|dirs| {
        dirs.entry(program).or_insert_with_key(|program| maker::socket_dir(program)).clone()
    });
    LAB_SOCKETS.with_borrow_mut(|kept| maker::prepare_reusing(container, dir, cmd, kept))
}

/// Whether a container with `limits` may be placed on `share`: not when its CPU quota
/// (`cpus = "2"`) asks for more CPUs than the share has; that test runs wherever the kernel puts it.
fn placeable(limits: &cvtest::Limits, share: &CpuList) -> bool {
    limits.cpus.map_or(true, |q| u64::from(q.millicpus()) <= share.cpus().len() as u64 * 1000)
}

/// Whether workers prepare their next test ahead: unless `CVTEST_SPAWN_AHEAD` is `0`, `off` or
/// `false` (A/B measurements).
pub(crate) fn spawn_ahead_enabled() -> bool {
    !matches!(std::env::var("CVTEST_SPAWN_AHEAD").as_deref(), Ok("0" | "off" | "false"))
}

impl Runner<'_> {
    /// One worker: takes units until none are left, sending an event per result.
    ///
    /// Each worker has its own zygote (`cvtest::zygote`), which clones its containers' inits:
    /// cloning from this multi-threaded process would copy its address space every time, and
    /// the copy-on-write faults after each clone interrupt every CPU the other workers run on.
    /// One per worker, so that workers do not queue behind one another's clones. Without one
    /// (it could not start, or was lost) the worker clones directly; the run says so once.
    pub(crate) fn work(&self, events: Sender<Event>) {
        // A zygote whose bounding set holds only what the run's tests keep: their inits drop
        // nothing more (where the set cannot be changed, a zygote like any other).
        let started = match self.zygote_caps() {
            Some(keep) => Zygote::start_bounded(keep).or_else(|_| Zygote::start()),
            None => Zygote::start(),
        };
        let mut zygote = match started {
            Ok(z) => Some(z),
            Err(e) => {
                self.warn_zygote(&events, &e);
                None
            }
        };
        let index = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let own_slot = Mutex::new(None);
        let ahead = self.ahead_slots.get(index).unwrap_or(&own_slot);
        let home = match self.cpu_shares.len() {
            0 => None,
            n => self.cpu_shares.get(index % n),
        };
        // The worker's zygote on its share too: the inits it clones start where they will run.
        // Only a placement: should it fail, the containers' own affinity still places them.
        if let (Some(cpus), Some(z)) = (home, zygote.as_mut()) {
            let _ = z.set_cpu_affinity(cpus);
        }
        loop {
            let taken = lock(ahead).take();
            let (ticket, prepared) = match taken {
                // Stopped (`--fail-fast`, an interrupt) before it started: it never ran.
                Some(a) if self.scheduler.is_stopped() => {
                    drop(a.prepared);
                    self.scheduler.give_back(a.ticket);
                    continue;
                }
                Some(a) => (a.ticket, Some(a.prepared)),
                // While it waits for a unit's memory or network, its CPUs are lent.
                None => match self.scheduler.next_or_idle(|| self.tail.idle()) {
                    Some(t) => (t, None),
                    // Out of units: this worker's CPUs fall idle. The tests still running may
                    // have them, and a unit another worker holds paused (behind a test that may
                    // run long) starts here instead.
                    None => {
                        self.tail.begin();
                        match self.ahead_slots.iter().find_map(|s| lock(s).take()) {
                            Some(a) if self.scheduler.is_stopped() => {
                                drop(a.prepared);
                                self.scheduler.give_back(a.ticket);
                                continue;
                            }
                            Some(a) => (a.ticket, Some(a.prepared)),
                            None => break,
                        }
                    }
                },
            };
            let cpus = home.filter(|_| self.unplaced.get().is_none() && !self.tail.begun());
            let next = Next { prepared, ahead: Some(AheadSlot { slot: ahead, cpus }), cpus };
            let unit = &self.units[ticket.unit];
            let failed = match unit {
                Unit::Test(i) => {
                    let t = &self.list.tests[*i];
                    let b = self.list.binary_of(t);
                    let _ =
                        events.send(Event::TestStarted { binary_id: b.bin.id.clone(), name: t.name.clone() });
                    let r = self.run_test(&ticket, t, b, zygote.as_mut(), &events, next);
                    let failed = r.verdict() == Verdict::Failure;
                    let _ = events.send(Event::TestFinished(Box::new(r)));
                    failed
                }
                Unit::Binary { binary, tests } => {
                    self.run_binary(&ticket, *binary, tests, &events, zygote.as_mut())
                }
            };
            if let Some(why) = self.unplaced.get() {
                if !self.unplaced_warned.swap(true, Ordering::Relaxed) {
                    let message = format!(
                        "cannot place containers on their worker's CPUs ({why}): the run's next containers go wherever the kernel puts them"
                    );
                    let _ = events.send(Event::Warning { message });
                }
            }
            if let Some(why) = self.overlay_refused.get() {
                if !self.overlay_warned.swap(true, Ordering::Relaxed) {
                    let message = format!(
                        "the kernel refused the throw-away layer over the tests' HOME ({why}): HOME is read-only in their containers (overlayfs, in a user namespace Linux 5.11+, makes it writable)"
                    );
                    let _ = events.send(Event::Warning { message });
                }
            }
            if let Some(lost) = zygote.as_ref().and_then(Zygote::lost) {
                self.warn_zygote(&events, lost);
                zygote = None;
            }
            // `--fail-fast`, decided here only: the first failure stops admission (before this
            // unit's slot frees, so that nothing more starts) and says so, once.
            if failed && self.fail_fast && self.scheduler.stop_admitting() {
                let _ = events.send(Event::Stopping);
            }
            self.scheduler.finish(ticket);
        }
        // The worker's lab sockets, kept between its tests, are removed.
        LAB_SOCKETS.take();
    }

    /// Takes the worker's next unit ahead, when it is a test that can be prepared so (one
    /// container, no network of its own: its subnet is not held before it runs), a zygote
    /// clones (a paused init must not be a copy of this multi-threaded process), more units wait
    /// than there are workers, and its lease and container can be had without waiting.
    /// Anything short of a paused container gives the unit back, untouched: it then starts as
    /// any other, and reports its errors there.
    fn take_ahead(&self, zygote: Option<&mut Zygote>, AheadSlot { slot, cpus }: AheadSlot<'_>) {
        let Some(zygote) = zygote else { return };
        if !self.spawn_ahead || lock(slot).is_some() || zygote.lost().is_some() {
            return;
        }
        let eligible = |u: usize| match &self.units[u] {
            Unit::Test(i) => {
                let t = &self.list.tests[*i];
                !t.whole_binary && t.settings.network().is_none()
            }
            Unit::Binary { .. } => false,
        };
        let Some(ticket) = self.scheduler.try_next_ahead(self.workers, eligible) else { return };
        let Unit::Test(i) = &self.units[ticket.unit] else {
            self.scheduler.give_back(ticket);
            return;
        };
        let t = &self.list.tests[*i];
        let b = self.list.binary_of(t);
        match self.prepare_ahead(t, b, zygote, cpus) {
            Some(prepared) => *lock(slot) = Some(Ahead { ticket, prepared }),
            None => self.scheduler.give_back(ticket),
        }
    }

    fn prepare_ahead(
        &self,
        t: &TestCase,
        b: &BinaryEntry,
        zygote: &mut Zygote,
        cpus: Option<&CpuList>,
    ) -> Option<PreparedContainer> {
        let never_wait = |_: &Waiting| false;
        let memory = lease::take_memory(
            self.scheduler.charge_mib(t.settings.memory_bytes()),
            self.scheduler.budget_mib(),
            &WaitPolicy { label: None, timeout: Duration::ZERO, observer: Some(&never_wait) },
        )
        .ok()?;
        let mut container = Container::create(&self.options(&t.settings, cpus)).ok()?;
        let mut command = self.command(b, test_args(t, b));
        let maker = prepare_lab(&mut container, &mut command);
        container.spawn_paused_via(zygote, &command).ok()?;
        Some(PreparedContainer { container, maker, command, _memory: memory })
    }

    /// The capabilities any test of the run keeps; `None` if one is privileged (keeps all).
    fn zygote_caps(&self) -> Option<cvtest_spec::Capabilities> {
        self.list.tests.iter().try_fold(cvtest_spec::Capabilities::NONE, |all, t| {
            let o = t.settings.options();
            (!o.privileged()).then(|| all | o.capabilities())
        })
    }

    fn warn_zygote(&self, events: &Sender<Event>, why: &ZygoteError) {
        if !self.zygote_warned.swap(true, Ordering::Relaxed) {
            let message = format!(
                "a worker's zygote is gone, its containers are cloned directly: {}",
                cvtest::error_chain(why)
            );
            let _ = events.send(Event::Warning { message });
        }
    }

    /// The container of a test: its settings' options, the host's root with `writable` writable,
    /// a network namespace of the run's pool when the test cannot change one (the library
    /// decides which can; `CVTEST_NETNS_POOL=0` turns it off), its housekeeping (cgroups
    /// made ahead, teardown behind) on the process's background thread (`CVTEST_BACKGROUND=0`
    /// turns it off; the run's end drains it), and `cpus` (the worker's share of the CPUs, for
    /// a single test's container: `crate::placement`) as its CPU affinity.
    fn options(&self, s: &Effective, cpus: Option<&CpuList>) -> Options {
        let mut o = s.options().clone();
        o.set_rootfs(Rootfs::Host { writable: self.writable.clone() });
        o.set_reuse_netns(true);
        o.set_background(true);
        o.set_cpu_affinity(cpus.filter(|c| placeable(o.limits(), c)).cloned());
        o
    }

    /// The command of one run of binary `b`: a clone of the worker's command for `b`, made at
    /// its first run (the environment, the largest part, is shared by the clones until one
    /// changes it), with `args`.
    fn command(&self, b: &BinaryEntry, args: Vec<OsString>) -> Command {
        let mut cmd = COMMANDS.with_borrow_mut(|made| {
            made.entry(b.bin.path.clone().into_std_path_buf())
                .or_insert_with(|| self.binary_command(b))
                .clone()
        });
        cmd.args(args);
        cmd
    }

    fn binary_command(&self, b: &BinaryEntry) -> Command {
        let mut cmd = Command::new(b.bin.path.as_std_path());
        for (k, v) in &b.env.vars {
            cmd.env(k, v);
        }
        cmd.env_remove(cvtest_spec::ENV_LIST_SETTINGS);
        cmd.env(ENV_RUNNER, "cargo-cvtest");
        cmd.current_dir(&b.env.cwd);
        let stdio = if self.no_capture { Stdio::Inherit } else { Stdio::Capture { limit: CAPTURE_LIMIT } };
        cmd.stdout(stdio);
        cmd.stderr(stdio);
        cmd
    }

    /// Creates, starts (through `zygote` when there is one) and waits for one container; destroys
    /// it whatever happens.
    #[allow(clippy::too_many_arguments)]
    fn contain(
        &self,
        ticket: &Ticket,
        settings: &Effective,
        cmd: &Command,
        zygote: Option<&mut Zygote>,
        who: (&str, &str, &Sender<Event>),
        time_limit: Option<Duration>,
        next: Next<'_>,
    ) -> Result<Contained, NoOutcome> {
        if self.scheduler.is_interrupted() {
            return Err(NoOutcome::Cancelled);
        }
        let Next { prepared, ahead, cpus } = next;
        if let Some(p) = prepared {
            let PreparedContainer { container, maker, command, _memory } = p;
            let run = Contain { container, maker, command: &command, time_limit, zygote, ahead };
            return self.contained(ticket, settings, run, |c, _| c.resume());
        }
        // While it waits for a machine-wide lease (its share of the memory budget, shared with
        // other runners, or its subnet), the unit is reported waiting, with the holder.
        let (binary_id, name, events) = who;
        let label = format!("{binary_id} {name}");
        let reported: RefCell<Option<Waiting>> = RefCell::new(None);
        // While it waits, its CPUs are lent to the containers running.
        let idle = RefCell::new(None);
        let observer = |w: &Waiting| {
            idle.borrow_mut().get_or_insert_with(|| self.tail.idle());
            let mut reported = reported.borrow_mut();
            if reported.as_ref() != Some(w) {
                let _ = events.send(Event::TestWaiting {
                    binary_id: binary_id.to_owned(),
                    name: name.to_owned(),
                    what: w.what.clone(),
                    holder: w.holder.clone(),
                });
                *reported = Some(w.clone());
            }
            !self.scheduler.is_interrupted()
        };
        let _memory = lease::take_memory(
            self.scheduler.charge_mib(settings.memory_bytes()),
            self.scheduler.budget_mib(),
            &WaitPolicy { label: Some(&label), timeout: MEMORY_WAIT, observer: Some(&observer) },
        )
        .map_err(|e| match e {
            LeaseError::GaveUp { .. } => NoOutcome::Cancelled,
            e => NoOutcome::Error(UnitError::Memory(e)),
        })?;
        let policy = WaitPolicy {
            label: Some(&label),
            timeout: settings.timeout().unwrap_or(lease::DEFAULT_WAIT),
            observer: Some(&observer),
        };
        let mut c =
            Container::create_waiting(&self.options(settings, cpus), &policy).map_err(|e| match e {
                cvtest::CreateError::Lease(LeaseError::GaveUp { .. }) => NoOutcome::Cancelled,
                e => NoOutcome::Error(UnitError::Create(e)),
            })?;
        // The test's lab maker (`cvtest::lab`): this worker makes its nodes (rootless: in the
        // test's user namespace, which the container keeps for it).
        let mut with_lab = cmd.clone();
        let maker = prepare_lab(&mut c, &mut with_lab);
        let run = Contain { container: c, maker, command: &with_lab, time_limit, zygote, ahead };
        self.contained(ticket, settings, run, |c, zygote| match zygote {
            Some(z) => c.spawn_via(z, &with_lab),
            None => c.spawn(&with_lab),
        })
    }

    /// Starts a created container (`start`: spawns it, or resumes it), serves its lab maker,
    /// takes the worker's next unit ahead while it runs, waits for it, and destroys it whatever
    /// happens.
    fn contained(
        &self,
        ticket: &Ticket,
        settings: &Effective,
        run: Contain<'_, '_>,
        start: impl FnOnce(&mut Container, Option<&mut Zygote>) -> Result<(), cvtest::SpawnError>,
    ) -> Result<Contained, NoOutcome> {
        let Contain { container: mut c, mut maker, command: cmd, time_limit, mut zygote, ahead } = run;
        let network = c.network();
        let mut timeline = None;
        let result = (|| {
            match start(&mut c, zygote.as_deref_mut()) {
                // The worker's CPUs are gone (offline, or out of the run's cpuset): the placement
                // was only a preference. This container and the run's next ones go unplaced.
                Err(cvtest::SpawnError::Affinity { cpus, source }) => {
                    let _ = self.unplaced.set(format!("CPUs {cpus}: {source}"));
                    c.set_cpu_affinity(None);
                    match zygote.as_deref_mut() {
                        Some(z) => c.spawn_via(z, cmd),
                        None => c.spawn(cmd),
                    }
                    .map_err(UnitError::Spawn)?;
                }
                started => started.map_err(UnitError::Spawn)?,
            }
            if let Some(why) = c.overlay_refused() {
                let _ = self.overlay_refused.set(why.to_string());
            }
            let _placed = c.affinity_handle().map(|h| self.tail.running(h));
            if let Some(m) = maker.as_mut() {
                // A lab's nodes run beside the test: wherever the kernel puts them.
                let options = self.options(settings, None);
                m.serve_container(
                    &c,
                    maker::NodeBase {
                        exe: cmd.get_program().to_path_buf(),
                        rootfs: options.rootfs().clone(),
                        limits: options.isolation().contains(cvtest::Isolation::CGROUPS),
                        test_network: network,
                    },
                );
            }
            if !self.scheduler.set_kill(ticket, c.kill_handle()) {
                c.kill_handle().kill();
            }
            let sampling = self.sample(&c);
            if let Some(slot) = ahead {
                self.take_ahead(zygote, slot);
            }
            let outcome = c.wait(time_limit).map_err(UnitError::Wait);
            timeline = sampling.and_then(|r| self.sampler?.take(r));
            outcome
        })();
        // The test has ended, and with it its end of the lab channel: its nodes are stopped.
        let (lab, connected) =
            maker.map(|m| LAB_SOCKETS.with_borrow_mut(|kept| m.finish_keeping(kept))).unwrap_or_default();
        if connected {
            c.mark_netns_changed();
        }
        // Destroy returns once the kernel has removed the veth (and released the subnet's lease),
        // so the next unit the scheduler admits on that subnet never meets its route.
        let destroyed = c.destroy().map_err(UnitError::Destroy);
        match (result, destroyed) {
            (Ok(o), Ok(())) => {
                let timeline = timeline.map(|mut t| {
                    t.finish(o.duration, mark_of(o.termination));
                    Arc::new(t)
                });
                Ok(Contained { outcome: o, network, timeline, lab })
            }
            (Err(e), _) | (Ok(_), Err(e)) => Err(NoOutcome::Error(e)),
        }
    }

    /// Registers the container with the sampler (`--timeline`). A container without a cgroup
    /// (`--no-limits`), or whose counters cannot be opened, has no timeline.
    fn sample(&self, c: &Container) -> Option<Registration> {
        let sampler = self.sampler?;
        let probe = c.usage_probe().ok()??;
        Some(sampler.register(probe, c.started_at()?))
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

    /// Runs a test, and again in a fresh container after each failed attempt that its retries
    /// allow (see [`TestFinished::retryable`]); its last attempt, with the earlier ones.
    fn run_test(
        &self,
        ticket: &Ticket,
        t: &TestCase,
        b: &BinaryEntry,
        mut zygote: Option<&mut Zygote>,
        events: &Sender<Event>,
        next: Next<'_>,
    ) -> TestFinished {
        let mut earlier = Vec::new();
        let Next { mut prepared, ahead, cpus } = next;
        loop {
            // The first attempt runs in the container prepared ahead, if any; a retry in a fresh one.
            let next = Next { prepared: prepared.take(), ahead, cpus };
            let mut r = self.run_attempt(ticket, t, b, zygote.as_deref_mut(), events, next);
            r.tries.earlier = earlier;
            let more = r.attempt() <= t.retries as usize && !self.scheduler.is_interrupted();
            if !(more && r.retryable()) {
                return r;
            }
            earlier = r.tries.earlier.clone();
            earlier.push(Attempt::of(&r));
            let _ = events.send(Event::AttemptFailed(Box::new(r)));
        }
    }

    /// One attempt of a test in its own container; with a slow timeout, a watcher sends a
    /// `TestSlow` event at each period, and `terminate_after` periods are its time limit (when
    /// shorter than its timeout: the existing timeout path, the whole container killed).
    fn run_attempt(
        &self,
        ticket: &Ticket,
        t: &TestCase,
        b: &BinaryEntry,
        zygote: Option<&mut Zygote>,
        events: &Sender<Event>,
        next: Next<'_>,
    ) -> TestFinished {
        // A whole binary runs its own tests side by side: wherever the kernel puts them.
        let next = if t.whole_binary { Next { cpus: None, ..next } } else { next };
        let args = if t.whole_binary {
            self.list_filter_args().into_iter().map(OsString::from).collect()
        } else {
            test_args(t, b)
        };
        let cmd = self.command(b, args);
        let started = Instant::now();
        let mut r = TestFinished::unmeasured(&b.bin.id, t, Status::Pass, started, PeakScope::Test);
        let slow_limit = t
            .slow
            .and_then(|s| s.limit())
            .filter(|l| t.settings.timeout().map_or(true, |timeout| *l < timeout));
        r.tries.slow_limit = slow_limit;
        let time_limit = slow_limit.or(t.settings.timeout());
        let who = (b.bin.id.as_str(), t.name.as_str(), events);
        let contained = std::thread::scope(|s| {
            let (stop, stopped) = mpsc::channel::<()>();
            if let Some(slow) = t.slow {
                let (events, binary_id, name) = (events.clone(), b.bin.id.clone(), t.name.clone());
                s.spawn(move || watch_slow(slow, started, &stopped, &events, (binary_id, name)));
            }
            let result = self.contain(ticket, &t.settings, &cmd, zygote, who, time_limit, next);
            drop(stop);
            result
        });
        match contained {
            Ok(Contained { outcome: o, network, timeline, lab }) => {
                r.network = network;
                r.timeline = timeline;
                r.status = self.status(&o);
                if matches!(r.status, Status::Pass) && !t.whole_binary && !ran_the_test(&o.stdout) {
                    r.status = Status::Error(Arc::new(UnitError::NoSuchTest { name: t.name.clone() }));
                }
                r.duration = o.duration;
                r.peaks = Some(o.peaks);
                r.pids_limit_hit = o.pids_limit_hit;
                r.leftover = o.leftover;
                r.stdout = o.stdout;
                r.stdout.extend_from_slice(maker::render(&lab).as_bytes());
                r.stderr = o.stderr;
                r.lab = lab;
            }
            Err(why) => {
                r.status = why.into();
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
        let unit_name = format!("{} tests", cases.len());
        let who = (b.bin.id.as_str(), unit_name.as_str(), events);
        let next = Next { prepared: None, ahead: None, cpus: None };
        let result = self.contain(ticket, settings, &cmd, zygote, who, settings.timeout(), next);
        let (binary_status, outcome, timeline) = match result {
            Ok(Contained { outcome: o, timeline, .. }) => (self.status(&o), Some(o), timeline),
            Err(why) => (why.into(), None, None),
        };
        let parsed = outcome.as_ref().map(|o| parse_libtest_pretty(&o.stdout)).unwrap_or_default();
        let mut any_failed = false;
        for t in &cases {
            let (status, stdout) = result_in_binary(&parsed, &binary_status, &t.name);
            let r = TestFinished {
                stdout,
                // The binary's one timeline (the same `Arc` for each of its tests).
                timeline: timeline.clone(),
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
            timeline,
        })));
        any_failed
    }
}

/// What a unit's container gave: its outcome, the network it had, and its timeline
/// (`--timeline`).
struct Contained {
    outcome: Outcome,
    network: Option<NetworkSpec>,
    timeline: Option<Arc<Timeline>>,
    /// The nodes of the labs the test made, when it made any.
    lab: Vec<cvtest::lab::NodeReport>,
}

/// Why a unit's container gave no outcome: the run was interrupted before it was created, or the
/// library failed.
#[derive(Debug)]
enum NoOutcome {
    Cancelled,
    Error(UnitError),
}

impl From<UnitError> for NoOutcome {
    fn from(e: UnitError) -> Self {
        NoOutcome::Error(e)
    }
}

impl From<NoOutcome> for Status {
    fn from(why: NoOutcome) -> Self {
        match why {
            NoOutcome::Cancelled => Status::Cancelled,
            NoOutcome::Error(e) => Status::Error(Arc::new(e)),
        }
    }
}

/// The status and failure output of test `name` from its binary's libtest output, when the
/// binary ended as `binary_status`.
fn result_in_binary(parsed: &Pretty, binary_status: &Status, name: &str) -> (Status, Vec<u8>) {
    match parsed.results.iter().find(|(n, _)| n == name) {
        Some((_, LibtestResult::Ok)) => (Status::Pass, Vec::new()),
        Some((_, LibtestResult::Ignored)) => (Status::Ignored, Vec::new()),
        Some((_, LibtestResult::Failed)) => {
            let output = parsed.failure_output.iter().find(|(n, _)| n == name).map(|(_, o)| o.clone());
            (Status::Fail { exit_code: 101 }, output.unwrap_or_default())
        }
        // Not reported: the binary died (OOM, timeout, signal) before or while running it, or
        // (exit 0) it never ran it.
        None => match binary_status {
            Status::Pass => (Status::Error(Arc::new(UnitError::NotReported)), Vec::new()),
            other => (other.clone(), Vec::new()),
        },
    }
}

/// Sends a `TestSlow` event each time the test started at `started` runs past another `period`,
/// until `stopped` (the test ended) or its last period before `terminate_after` ends it.
fn watch_slow(
    slow: SlowTimeout,
    started: Instant,
    stopped: &Receiver<()>,
    events: &Sender<Event>,
    (binary_id, name): (String, String),
) {
    let last = slow.terminate_after.map_or(u32::MAX, |n| n.get() - 1);
    for n in 1..=last {
        let elapsed = slow.period.saturating_mul(n);
        let wait = started
            .checked_add(elapsed)
            .map_or(Duration::MAX, |at| at.saturating_duration_since(Instant::now()));
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {
                let terminating = n == last && slow.terminate_after.is_some();
                let ev = Event::TestSlow {
                    binary_id: binary_id.clone(),
                    name: name.clone(),
                    elapsed,
                    terminating,
                };
                let _ = events.send(ev);
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The mark a container's end puts on its timeline.
fn mark_of(t: Termination) -> Option<MarkKind> {
    match t {
        Termination::OomKilled => Some(MarkKind::Oom),
        Termination::TimedOut => Some(MarkKind::Timeout),
        Termination::Exited(_) | Termination::Signaled(_) => None,
    }
}

/// How long a unit waits for its share of the memory budget while other runners use it.
const MEMORY_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Whether libtest ran the one test it was asked for ([`cvtest::spec::libtest`]'s rule): when
/// its summary says it did not (the name matched nothing), its exit 0 is a silent pass we
/// refuse. Without a summary (the test closed its stdout) the exit status stands.
fn ran_the_test(stdout: &[u8]) -> bool {
    cvtest::spec::libtest::ran_exactly_one(stdout) != Some(false)
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
    fn a_cpu_quota_larger_than_the_share_is_not_placed() {
        let one = CpuList::new([1]).unwrap();
        let two = CpuList::new([2, 3]).unwrap();
        let mut limits = cvtest::Limits::default();
        assert!(placeable(&limits, &one), "no quota");
        limits.cpus = cvtest_spec::parse_cpus("1").unwrap();
        assert!(placeable(&limits, &one));
        limits.cpus = cvtest_spec::parse_cpus("1.5").unwrap();
        assert!(!placeable(&limits, &one));
        assert!(placeable(&limits, &two));
        limits.cpus = cvtest_spec::parse_cpus("0.5").unwrap();
        assert!(placeable(&limits, &one));
    }

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
    fn a_test_of_a_shared_binary_gets_its_own_result() {
        let p = parse_libtest_pretty(
            b"test a ... ok\ntest b ... FAILED\n\n---- b stdout ----\nboom\n\nfailures:\n",
        );
        assert!(matches!(result_in_binary(&p, &Status::Fail { exit_code: 101 }, "a").0, Status::Pass));
        let (status, output) = result_in_binary(&p, &Status::Fail { exit_code: 101 }, "b");
        assert!(matches!(status, Status::Fail { exit_code: 101 }) && output == b"boom\n\n");
        // Missing after an OOM: the binary's status; missing after exit 0: not reported.
        assert!(matches!(result_in_binary(&p, &Status::Oom, "c").0, Status::Oom));
        let (status, _) = result_in_binary(&p, &Status::Pass, "c");
        assert_eq!(status.error().map(UnitError::kind), Some("not-reported"));
    }

    #[test]
    fn detects_running_zero_tests() {
        assert!(!ran_the_test(b"\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.00s\n"));
        assert!(ran_the_test(b"\nrunning 1 test\ntest x ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.00s\n"));
        assert!(ran_the_test(b"\nrunning 1 test\nbefore closing\n"), "no summary: the exit status stands");
    }
}
