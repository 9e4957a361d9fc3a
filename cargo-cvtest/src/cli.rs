//! The command line: `cargo cvtest [OPTIONS] [FILTERS]... [-- LIBTEST ARGS]`.
//!
//! Every value is parsed here, at the edge, so that a bad value is a usage error (exit code 2)
//! that names the flag, the value and what is accepted. Limits go through `cvtest-spec`, the one
//! value parser.
//!
//! The stages never see clap's types: [`CvtestArgs::into_options`] converts the command line into
//! their own option types ([`RunOptions`] and what it holds).

use std::io::IsTerminal;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::styling::{AnsiColor, Styles};
use clap::{Args, CommandFactory, Parser, ValueEnum};
use cvtest_spec::{
    parse_cpus, parse_duration, CpuQuota, CpuWeight, MemoryLimit, NetworkSetting, ParseError, PidsLimit,
    TestSettings,
};

use crate::build::BuildOptions;
use crate::errors::{LibtestArgsError, UsageError};
use crate::filter::{NameFilter, RunIgnored};
use crate::history::Order;
use crate::partition::{InvalidPartition, Partition};
use crate::policy::{InvalidStatusLevel, PolicyKeys, StatusLevel};
use crate::reporter::{OutputFormat, Painter, ReportOptions};
use crate::run::RunOptions;
use crate::timeline::{self, TimelineOptions};
use crate::units::ContainerScope;

/// `cargo` as it calls us: `cargo-cvtest cvtest ...`.
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = styles(), disable_help_subcommand = true)]
pub(crate) enum CargoCli {
    /// Run each test in its own container, in parallel, and report resource peaks.
    Cvtest(CvtestArgs),
}

/// The `cvtest` subcommand.
#[derive(Debug, Args)]
#[command(
    version,
    about = "Build the tests, run each one in its own container (cgroup limits, private namespaces, an \
             optional veth) in parallel, and report pass/fail with peak memory, pids, CPU time and network \
             bytes.",
    after_help = "Exit codes: 0 all tests passed, 100 a test failed, 101 the build failed, 102 setup failed, \
                  2 usage error, 128+N interrupted by signal N.\nSettings precedence (lowest first): library \
                  defaults < config defaults < --memory/--pids/... < config overrides < #[cv_test] < \
                  --memory/--pids/... with --force-limits."
)]
pub(crate) struct CvtestArgs {
    #[command(flatten)]
    pub(crate) build: BuildArgs,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
    #[command(flatten)]
    pub(crate) report: ReportArgs,
    #[command(flatten)]
    pub(crate) timeline: TimelineArgs,
}

/// Resource timelines and the HTML report.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct TimelineArgs {
    /// Sample each container's memory, pids and CPU time while it runs; JSON gets a `timeline` per
    /// test (per binary with --isolation binary)
    #[arg(long, help_heading = "Reporting")]
    pub(crate) timeline: bool,
    /// Time between two samples with --timeline ("10ms", "1ms" to "1s") [default: 10ms]
    #[arg(long = "timeline-interval", value_name = "DURATION", value_parser = parse_timeline_interval, help_heading = "Reporting")]
    pub(crate) timeline_interval: Option<Duration>,
    /// Write a self-contained HTML report (tests, peaks, timelines) to this file; implies --timeline
    #[arg(long, value_name = "PATH", help_heading = "Reporting")]
    pub(crate) html: Option<PathBuf>,
}

/// What cargo builds: passed through to `cargo test --no-run`.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct BuildArgs {
    /// Package to test (see `cargo help pkgid`)
    #[arg(short = 'p', long = "package", value_name = "SPEC", help_heading = "Package Selection")]
    pub(crate) packages: Vec<String>,
    /// Test all packages in the workspace
    #[arg(long, help_heading = "Package Selection")]
    pub(crate) workspace: bool,
    /// Exclude packages from the test (with --workspace)
    #[arg(long, value_name = "SPEC", help_heading = "Package Selection")]
    pub(crate) exclude: Vec<String>,

    /// Test only this package's library
    #[arg(long, help_heading = "Target Selection")]
    pub(crate) lib: bool,
    /// Test all binaries
    #[arg(long, help_heading = "Target Selection")]
    pub(crate) bins: bool,
    /// Test only the specified binary
    #[arg(long = "bin", value_name = "NAME", help_heading = "Target Selection")]
    pub(crate) bin: Vec<String>,
    /// Test all targets that have `test = true` set
    #[arg(long, help_heading = "Target Selection")]
    pub(crate) tests: bool,
    /// Test only the specified test target
    #[arg(long = "test", value_name = "NAME", help_heading = "Target Selection")]
    pub(crate) test: Vec<String>,
    /// Test all examples
    #[arg(long, help_heading = "Target Selection")]
    pub(crate) examples: bool,
    /// Test only the specified example
    #[arg(long = "example", value_name = "NAME", help_heading = "Target Selection")]
    pub(crate) example: Vec<String>,
    /// Test all targets (does not include doctests)
    #[arg(long = "all-targets", help_heading = "Target Selection")]
    pub(crate) all_targets: bool,

    /// Space or comma separated list of features to activate
    #[arg(short = 'F', long, value_name = "FEATURES", help_heading = "Feature Selection")]
    pub(crate) features: Vec<String>,
    /// Activate all available features
    #[arg(long = "all-features", help_heading = "Feature Selection")]
    pub(crate) all_features: bool,
    /// Do not activate the `default` feature
    #[arg(long = "no-default-features", help_heading = "Feature Selection")]
    pub(crate) no_default_features: bool,

    /// Build artifacts in release mode, with optimizations
    #[arg(short = 'r', long, help_heading = "Compilation Options")]
    pub(crate) release: bool,
    /// Build artifacts with the specified cargo profile (cargo's `--profile`; cvtest's own
    /// `--profile` selects a config profile)
    #[arg(long = "cargo-profile", value_name = "PROFILE-NAME", help_heading = "Compilation Options")]
    pub(crate) cargo_profile: Option<String>,
    /// Directory for all generated artifacts
    #[arg(long = "target-dir", value_name = "DIRECTORY", help_heading = "Compilation Options")]
    pub(crate) target_dir: Option<PathBuf>,

    /// Path to Cargo.toml
    #[arg(long = "manifest-path", value_name = "PATH", help_heading = "Manifest Options")]
    pub(crate) manifest_path: Option<PathBuf>,
    /// Assert that `Cargo.lock` will remain unchanged
    #[arg(long, help_heading = "Manifest Options")]
    pub(crate) locked: bool,
    /// Run without accessing the network
    #[arg(long, help_heading = "Manifest Options")]
    pub(crate) offline: bool,
    /// Equivalent to specifying both --locked and --offline
    #[arg(long, help_heading = "Manifest Options")]
    pub(crate) frozen: bool,
}

/// Which tests run: like `cargo test`'s filters.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct FilterArgs {
    /// Run only tests whose names contain one of these strings
    #[arg(value_name = "FILTERS", help_heading = "Test Selection")]
    pub(crate) filters: Vec<String>,
    /// Match FILTERS (and --skip) against whole test names
    #[arg(long, help_heading = "Test Selection")]
    pub(crate) exact: bool,
    /// Skip tests whose names contain this string (repeatable)
    #[arg(long, value_name = "FILTER", help_heading = "Test Selection")]
    pub(crate) skip: Vec<String>,
    /// Run only ignored tests
    #[arg(long, conflicts_with = "include_ignored", help_heading = "Test Selection")]
    pub(crate) ignored: bool,
    /// Run ignored and not ignored tests
    #[arg(long = "include-ignored", help_heading = "Test Selection")]
    pub(crate) include_ignored: bool,
    /// Run one part of the tests: count:K/N takes every Nth test starting at the Kth, hash:K/N the tests
    /// whose name hashes to K (1 <= K <= N)
    #[arg(long, value_name = "count:K/N|hash:K/N", value_parser = parse_partition, help_heading = "Test Selection")]
    pub(crate) partition: Option<Partition>,
    /// libtest-style arguments after `--`: FILTERS, --exact, --skip FILTER, --ignored, --include-ignored
    #[arg(
        last = true,
        value_name = "LIBTEST_ARGS",
        allow_hyphen_values = true,
        help_heading = "Test Selection"
    )]
    pub(crate) libtest_args: Vec<String>,
}

/// Defaults for every test's container, or with --force-limits the limits of every test.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct LimitArgs {
    /// Memory limit per container: bytes, K/M/G/T (binary), or "max"
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true, help_heading = "Limits")]
    pub(crate) memory: Option<MemoryLimit>,
    /// Pids limit per container (processes and threads), or "max"
    #[arg(long, value_name = "N", value_parser = parse_pids, allow_hyphen_values = true, help_heading = "Limits")]
    pub(crate) pids: Option<PidsLimit>,
    /// CPU weight per container, 1 to 10000 (100 is the default share)
    #[arg(long = "cpu-weight", value_name = "N", value_parser = parse_cpu_weight, allow_hyphen_values = true, help_heading = "Limits")]
    pub(crate) cpu_weight: Option<CpuWeight>,
    /// CPU quota per container in CPUs ("0.5", "2"), or "max"
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus_flag, allow_hyphen_values = true, help_heading = "Limits")]
    pub(crate) cpus: Option<CpuQuotaArg>,
    /// Give every test a veth with this address (tests then run one at a time), or "auto": a free
    /// subnet each (from $CVTEST_NET_POOL, default 198.19.0.0/16)
    #[arg(long, value_name = "CIDR|auto", value_parser = parse_network, allow_hyphen_values = true, help_heading = "Limits")]
    pub(crate) network: Option<NetworkSetting>,
    /// Time limit per test ("30s", "2m", "1m30s"); the whole container is killed when it passes
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, allow_hyphen_values = true, help_heading = "Limits")]
    pub(crate) timeout: Option<Duration>,
    /// Apply --memory, --pids, --cpu-weight, --cpus, --network and --timeout to every test, over config
    /// and #[cv_test] values
    #[arg(long = "force-limits", help_heading = "Limits")]
    pub(crate) force_limits: bool,
    /// Run without cgroup limits, on purpose (where no cgroup can be delegated, e.g. cgroup v1
    /// as an ordinary user); also CVTEST_LIMITS=off or `limits = "off"` in the config. Every
    /// test is reported with its limits not enforced, and with the peaks rusage gives
    #[arg(long = "no-limits", help_heading = "Limits")]
    pub(crate) no_limits: bool,
}

/// A parsed `--cpus`: a quota, or "max" for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuQuotaArg(pub(crate) Option<CpuQuota>);

/// How tests run.
#[derive(Debug, Args, Clone)]
pub(crate) struct RunArgs {
    /// Number of containers running at once [default: the number of CPUs]
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_jobs, allow_hyphen_values = true, help_heading = "Execution")]
    pub(crate) jobs: Option<NonZeroUsize>,
    /// One container per test, or one per test binary (cheaper; peaks per binary)
    #[arg(long, value_enum, default_value_t = Isolation::Test, help_heading = "Execution")]
    pub(crate) isolation: Isolation,
    /// Stop starting tests after the first failure
    #[arg(long = "fail-fast", overrides_with = "no_fail_fast", help_heading = "Execution")]
    pub(crate) fail_fast: bool,
    /// Run every test whatever fails (over a profile's `fail_fast = true`)
    #[arg(long = "no-fail-fast", overrides_with = "fail_fast", help_heading = "Execution")]
    pub(crate) no_fail_fast: bool,
    /// The config profile: a [profile.NAME] table of .config/cvtest.toml, over [profile.default]
    #[arg(short = 'P', long, value_name = "NAME", env = "CVTEST_PROFILE", help_heading = "Execution")]
    pub(crate) profile: Option<String>,
    /// Run a failing test again, up to N more times, each in a fresh container; one that then
    /// passes is FLAKY (and passes) [default: 0, or the profile's and overrides' `retries`]
    #[arg(long, value_name = "N", value_parser = parse_retries, allow_hyphen_values = true, help_heading = "Execution")]
    pub(crate) retries: Option<u32>,
    /// Print a SLOW line each time a test runs past another multiple of this ("60s")
    #[arg(long = "slow-timeout", value_name = "DURATION", value_parser = parse_timeout, allow_hyphen_values = true, help_heading = "Execution")]
    pub(crate) slow_timeout: Option<Duration>,
    /// End a test as TIMEOUT (the whole container killed) after N slow periods
    #[arg(long = "terminate-after", value_name = "N", value_parser = parse_terminate_after, allow_hyphen_values = true, help_heading = "Execution")]
    pub(crate) terminate_after: Option<NonZeroU32>,
    /// Let the kernel place every container anywhere; by default each of N workers' containers
    /// runs on its own share of the CPUs (a test then sees that share; also CVTEST_PIN=0)
    #[arg(long = "no-pin", help_heading = "Execution")]
    pub(crate) no_pin: bool,
    /// Show every test's output live instead of capturing it (one test at a time, as nextest does)
    #[arg(long = "no-capture", alias = "nocapture", help_heading = "Execution")]
    pub(crate) no_capture: bool,
    /// Memory that running containers' limits may add up to [default: MemAvailable at start]
    #[arg(long = "memory-budget", value_name = "SIZE", value_parser = parse_budget, allow_hyphen_values = true, help_heading = "Execution")]
    pub(crate) memory_budget: Option<u64>,
    /// List the tests with their effective limits instead of running them
    #[arg(long, help_heading = "Execution")]
    pub(crate) list: bool,
    /// Start order: the slowest tests of earlier runs first (recorded in
    /// <target-dir>/cvtest/durations.json), or as listed
    #[arg(long, value_enum, default_value_t = OrderArg::SlowestFirst, help_heading = "Execution")]
    pub(crate) order: OrderArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OrderArg {
    /// Longest first, by the durations earlier runs recorded; unknown tests at their median
    SlowestFirst,
    /// Binaries in build order, tests in each binary's order
    Listed,
}

/// How results are shown.
#[derive(Debug, Args, Clone)]
pub(crate) struct ReportArgs {
    /// Output format on stdout: human-readable, or JSON lines (schema: cargo-cvtest/README.md)
    #[arg(long = "message-format", value_enum, default_value_t = MessageFormat::Human, help_heading = "Reporting")]
    pub(crate) message_format: MessageFormat,
    /// Write a JUnit XML report to this file
    #[arg(long, value_name = "PATH", help_heading = "Reporting")]
    pub(crate) junit: Option<PathBuf>,
    /// Coloring [default: auto; CARGO_TERM_COLOR and NO_COLOR are honoured]
    #[arg(long, value_enum, value_name = "WHEN", help_heading = "Reporting")]
    pub(crate) color: Option<ColorWhen>,
    /// Rows in the summary's top-memory and longest-duration tables
    #[arg(
        long = "top",
        value_name = "N",
        default_value_t = 5,
        value_parser = parse_top,
        allow_hyphen_values = true,
        help_heading = "Reporting"
    )]
    pub(crate) top: usize,
    /// Test lines shown as tests end: none, fail, retry, slow, leak, pass, skip, all (each shows
    /// what the ones before it show) [default: all]
    #[arg(long = "status-level", value_name = "LEVEL", value_parser = parse_status_level, help_heading = "Reporting")]
    pub(crate) status_level: Option<StatusLevel>,
    /// Tests listed again at the end, by the same levels [default: retry: failures and flaky tests]
    #[arg(long = "final-status-level", value_name = "LEVEL", value_parser = parse_status_level, help_heading = "Reporting")]
    pub(crate) final_status_level: Option<StatusLevel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Isolation {
    /// Each test in its own container
    Test,
    /// Each test binary in one container; tests with their own settings still get their own
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MessageFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl CvtestArgs {
    /// The run's options, in the stages' own types. Folds libtest-style arguments after `--` in
    /// first; a bad one is a usage error.
    pub(crate) fn into_options(mut self) -> Result<RunOptions, UsageError> {
        merge_libtest_args(&mut self.filter)?;
        Ok(RunOptions {
            build: self.build.to_options(),
            filter: self.filter.name_filter(),
            partition: self.filter.partition,
            limits: self.limits.settings_layer(),
            force_limits: self.limits.force_limits,
            no_limits: self.limits.no_limits,
            // Output shown live: one test at a time, so that outputs do not interleave.
            jobs: if self.run.no_capture { NonZeroUsize::new(1) } else { self.run.jobs },
            no_capture: self.run.no_capture,
            pin: crate::placement::enabled(self.run.no_pin),
            scope: self.run.isolation.into(),
            profile: self.run.profile,
            policy: PolicyKeys {
                retries: self.run.retries,
                slow_timeout: self.run.slow_timeout,
                terminate_after: self.run.terminate_after,
                fail_fast: match (self.run.fail_fast, self.run.no_fail_fast) {
                    (true, _) => Some(true),
                    (false, true) => Some(false),
                    (false, false) => None,
                },
                junit: self.report.junit.clone(),
                status_level: self.report.status_level,
                final_status_level: self.report.final_status_level,
            },
            memory_budget: self.run.memory_budget,
            list: self.run.list,
            order: match self.run.order {
                OrderArg::SlowestFirst => Order::SlowestFirst,
                OrderArg::Listed => Order::Listed,
            },
            report: ReportOptions {
                paint: Painter { on: color_on(self.report.color) },
                format: match self.report.message_format {
                    MessageFormat::Human => OutputFormat::Human,
                    MessageFormat::Json => OutputFormat::Json,
                },
                junit: self.report.junit,
                html: self.timeline.html.clone(),
                top: self.report.top,
                levels: Default::default(),
            },
            timeline: (self.timeline.timeline || self.timeline.html.is_some()).then(|| TimelineOptions {
                interval: self.timeline.timeline_interval.unwrap_or(timeline::DEFAULT_INTERVAL),
                ..TimelineOptions::default()
            }),
        })
    }
}

impl BuildArgs {
    /// The selection flags in cargo's words, for `cargo test --no-run` and `cargo metadata`.
    fn to_options(&self) -> BuildOptions {
        let mut v: Vec<String> = Vec::new();
        let mut push_all = |flag: &str, vals: &[String]| {
            for x in vals {
                v.push(flag.to_owned());
                v.push(x.clone());
            }
        };
        push_all("--package", &self.packages);
        push_all("--exclude", &self.exclude);
        push_all("--bin", &self.bin);
        push_all("--test", &self.test);
        push_all("--example", &self.example);
        push_all("--features", &self.features);
        let flags = [
            (self.workspace, "--workspace"),
            (self.lib, "--lib"),
            (self.bins, "--bins"),
            (self.tests, "--tests"),
            (self.examples, "--examples"),
            (self.all_targets, "--all-targets"),
            (self.all_features, "--all-features"),
            (self.no_default_features, "--no-default-features"),
            (self.release, "--release"),
            (self.locked, "--locked"),
            (self.offline, "--offline"),
            (self.frozen, "--frozen"),
        ];
        v.extend(flags.iter().filter(|(on, _)| *on).map(|(_, f)| (*f).to_owned()));
        if let Some(p) = &self.cargo_profile {
            v.push("--profile".into());
            v.push(p.clone());
        }
        if let Some(d) = &self.target_dir {
            v.push("--target-dir".into());
            v.push(d.display().to_string());
        }
        if let Some(m) = &self.manifest_path {
            v.push("--manifest-path".into());
            v.push(m.display().to_string());
        }
        BuildOptions {
            cargo_args: v,
            manifest_path: self.manifest_path.clone(),
            target_dir: self.target_dir.clone(),
            offline: self.offline || self.frozen,
            locked: self.locked || self.frozen,
        }
    }
}

impl FilterArgs {
    fn name_filter(&self) -> NameFilter {
        let run_ignored = if self.ignored {
            RunIgnored::Only
        } else if self.include_ignored {
            RunIgnored::All
        } else {
            RunIgnored::Default
        };
        NameFilter { patterns: self.filters.clone(), exact: self.exact, skip: self.skip.clone(), run_ignored }
    }
}

impl LimitArgs {
    /// The limit flags as a settings layer (see `settings` for where it goes).
    fn settings_layer(&self) -> TestSettings {
        TestSettings {
            memory: self.memory,
            pids: self.pids,
            cpu_weight: self.cpu_weight,
            cpus: self.cpus.map(|c| c.0),
            network: self.network,
            timeout: self.timeout,
            ..TestSettings::default()
        }
    }
}

impl From<Isolation> for ContainerScope {
    fn from(i: Isolation) -> Self {
        match i {
            Isolation::Test => ContainerScope::Test,
            Isolation::Binary => ContainerScope::Binary,
        }
    }
}

/// Whether to paint: `--color`/`CARGO_TERM_COLOR` decide; with `auto`, a terminal on stderr and no
/// `NO_COLOR`.
fn color_on(when: Option<ColorWhen>) -> bool {
    match when.unwrap_or(ColorWhen::Auto) {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty()) && std::io::stderr().is_terminal()
        }
    }
}

fn styles() -> Styles {
    Styles::styled()
        .header(AnsiColor::Green.on_default().bold())
        .usage(AnsiColor::Green.on_default().bold())
        .literal(AnsiColor::Cyan.on_default().bold())
        .placeholder(AnsiColor::Cyan.on_default())
}

/// A flag value that is not of the flag's kind (the flags whose values `cvtest-spec` does not parse).
#[derive(Debug, thiserror::Error)]
enum FlagError {
    #[error("invalid job count {0:?}; expected a whole number of containers at once, 1 or more")]
    Jobs(String),
    #[error("invalid row count {0:?}; expected a whole number of rows, 0 or more")]
    Top(String),
    #[error("invalid retry count {0:?}; expected a whole number of retries, 0 or more")]
    Retries(String),
    #[error("invalid period count {0:?}; expected a whole number of slow periods, 1 or more")]
    TerminateAfter(String),
    #[error("invalid timeline interval {input:?}: {reason}; expected a duration from 1ms to 1s (\"10ms\", \"250ms\")")]
    TimelineInterval { input: String, reason: String },
    #[error("invalid memory budget {input:?}: {reason}; {BUDGET_ACCEPTED}")]
    Budget { input: String, reason: String },
}

const BUDGET_ACCEPTED: &str = "expected a size in bytes (\"1048576\") or with a binary unit K, M, G or T \
                               (\"8G\"), at least 1M; leave the flag out for no budget";

fn parse_jobs(s: &str) -> Result<NonZeroUsize, FlagError> {
    s.trim().parse::<NonZeroUsize>().map_err(|_| FlagError::Jobs(s.to_owned()))
}

fn parse_timeline_interval(s: &str) -> Result<Duration, FlagError> {
    let bad = |reason: String| FlagError::TimelineInterval { input: s.to_owned(), reason };
    let d = parse_duration(s).map_err(|e| bad(e.reason))?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(1) {
        return Err(bad("out of range".into()));
    }
    Ok(d)
}

fn parse_top(s: &str) -> Result<usize, FlagError> {
    s.trim().parse::<usize>().map_err(|_| FlagError::Top(s.to_owned()))
}

fn parse_memory(s: &str) -> Result<MemoryLimit, ParseError> {
    s.parse()
}
fn parse_budget(s: &str) -> Result<u64, FlagError> {
    let bad = |reason: &str| FlagError::Budget { input: s.to_owned(), reason: reason.to_owned() };
    match s.parse::<MemoryLimit>() {
        Ok(MemoryLimit::Bytes(b)) => Ok(b),
        Ok(MemoryLimit::Max) => Err(bad("\"max\" is not a size")),
        Err(e) => Err(bad(&e.reason)),
    }
}
fn parse_pids(s: &str) -> Result<PidsLimit, ParseError> {
    s.parse()
}
fn parse_cpu_weight(s: &str) -> Result<CpuWeight, ParseError> {
    s.parse()
}
fn parse_cpus_flag(s: &str) -> Result<CpuQuotaArg, ParseError> {
    parse_cpus(s).map(CpuQuotaArg)
}
fn parse_network(s: &str) -> Result<NetworkSetting, ParseError> {
    NetworkSetting::parse(s, None)
}
fn parse_timeout(s: &str) -> Result<Duration, ParseError> {
    parse_duration(s)
}
fn parse_status_level(s: &str) -> Result<StatusLevel, InvalidStatusLevel> {
    s.parse()
}
fn parse_retries(s: &str) -> Result<u32, FlagError> {
    s.parse().map_err(|_| FlagError::Retries(s.to_owned()))
}
fn parse_terminate_after(s: &str) -> Result<NonZeroU32, FlagError> {
    s.parse().map_err(|_| FlagError::TerminateAfter(s.to_owned()))
}
fn parse_partition(s: &str) -> Result<Partition, InvalidPartition> {
    s.parse()
}

/// Parses the command line; clap prints help/version/usage errors and exits (0, or 2).
pub(crate) fn parse_from<I, T>(args: I) -> CvtestArgs
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let CargoCli::Cvtest(mut args) = CargoCli::parse_from(args);
    if args.report.color.is_none() {
        args.report.color = color_from_env();
    }
    args
}

/// `CARGO_TERM_COLOR`, as cargo reads it; a bad value is a usage error naming the variable.
fn color_from_env() -> Option<ColorWhen> {
    let value = std::env::var("CARGO_TERM_COLOR").ok()?;
    match value.trim() {
        "auto" => Some(ColorWhen::Auto),
        "always" => Some(ColorWhen::Always),
        "never" => Some(ColorWhen::Never),
        _ => {
            let msg = format!(
                "invalid value {value:?} in the environment variable CARGO_TERM_COLOR; expected auto, always or never"
            );
            CargoCli::command().error(clap::error::ErrorKind::InvalidValue, msg).exit()
        }
    }
}

/// Folds libtest-style arguments given after `--` into the filter flags.
fn merge_libtest_args(filter: &mut FilterArgs) -> Result<(), LibtestArgsError> {
    let args = std::mem::take(&mut filter.libtest_args);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exact" => filter.exact = true,
            "--ignored" => filter.ignored = true,
            "--include-ignored" => filter.include_ignored = true,
            "--skip" => {
                let v = it.next().ok_or(LibtestArgsError::SkipWithoutValue)?;
                filter.skip.push(v);
            }
            // Accepted for compatibility; cvtest captures output and runs one test per container.
            "--nocapture" | "--no-capture" | "--show-output" | "--quiet" | "-q" => {}
            s if s.starts_with("--test-threads") => {
                if s == "--test-threads" {
                    it.next();
                }
            }
            s if s.starts_with("--skip=") => filter.skip.push(s["--skip=".len()..].to_owned()),
            s if s.starts_with('-') => return Err(LibtestArgsError::Unsupported(s.to_owned())),
            _ => filter.filters.push(a),
        }
    }
    if filter.ignored && filter.include_ignored {
        return Err(LibtestArgsError::IgnoredConflict);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_tree_is_consistent() {
        CargoCli::command().debug_assert();
    }

    #[test]
    fn libtest_args_after_double_dash() {
        let mut f = FilterArgs {
            libtest_args: ["foo", "--exact", "--skip", "bar", "--test-threads=1", "--include-ignored"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        };
        merge_libtest_args(&mut f).unwrap();
        assert_eq!(f.filters, ["foo"]);
        assert!(f.exact && f.include_ignored && !f.ignored);
        assert_eq!(f.skip, ["bar"]);
        let mut bad = FilterArgs { libtest_args: vec!["--format=json".into()], ..Default::default() };
        assert!(merge_libtest_args(&mut bad).unwrap_err().to_string().contains("--format=json"));
    }

    #[test]
    fn passes_selection_flags_through() {
        let args = BuildArgs {
            packages: vec!["a".into()],
            test: vec!["t".into()],
            release: true,
            frozen: true,
            features: vec!["x y".into()],
            ..Default::default()
        };
        let o = args.to_options();
        assert_eq!(o.cargo_args.join(" "), "--package a --test t --features x y --release --frozen");
        assert!(o.offline && o.locked, "--frozen is both for cargo metadata");
    }
}
