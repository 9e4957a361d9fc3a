//! The command line: `cargo cvtest [OPTIONS] [FILTERS]... [-- LIBTEST ARGS]`.
//!
//! Every value is parsed here, at the edge, so that a bad value is a usage error (exit code 2)
//! that names the flag, the value and what is accepted. Limits go through `cvtest-spec`, the one
//! value parser.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::styling::{AnsiColor, Styles};
use clap::{Args, CommandFactory, Parser, ValueEnum};
use cvtest_spec::{parse_cpus, parse_duration, CpuQuota, CpuWeight, MemoryLimit, NetworkSpec, PidsLimit};

use crate::partition::Partition;

/// `cargo` as it calls us: `cargo-cvtest cvtest ...`.
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = styles(), disable_help_subcommand = true)]
pub enum CargoCli {
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
pub struct CvtestArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// What cargo builds: passed through to `cargo test --no-run`.
#[derive(Debug, Args, Default, Clone)]
pub struct BuildArgs {
    /// Package to test (see `cargo help pkgid`)
    #[arg(short = 'p', long = "package", value_name = "SPEC", help_heading = "Package Selection")]
    pub packages: Vec<String>,
    /// Test all packages in the workspace
    #[arg(long, help_heading = "Package Selection")]
    pub workspace: bool,
    /// Exclude packages from the test (with --workspace)
    #[arg(long, value_name = "SPEC", help_heading = "Package Selection")]
    pub exclude: Vec<String>,

    /// Test only this package's library
    #[arg(long, help_heading = "Target Selection")]
    pub lib: bool,
    /// Test all binaries
    #[arg(long, help_heading = "Target Selection")]
    pub bins: bool,
    /// Test only the specified binary
    #[arg(long = "bin", value_name = "NAME", help_heading = "Target Selection")]
    pub bin: Vec<String>,
    /// Test all targets that have `test = true` set
    #[arg(long, help_heading = "Target Selection")]
    pub tests: bool,
    /// Test only the specified test target
    #[arg(long = "test", value_name = "NAME", help_heading = "Target Selection")]
    pub test: Vec<String>,
    /// Test all examples
    #[arg(long, help_heading = "Target Selection")]
    pub examples: bool,
    /// Test only the specified example
    #[arg(long = "example", value_name = "NAME", help_heading = "Target Selection")]
    pub example: Vec<String>,
    /// Test all targets (does not include doctests)
    #[arg(long = "all-targets", help_heading = "Target Selection")]
    pub all_targets: bool,

    /// Space or comma separated list of features to activate
    #[arg(short = 'F', long, value_name = "FEATURES", help_heading = "Feature Selection")]
    pub features: Vec<String>,
    /// Activate all available features
    #[arg(long = "all-features", help_heading = "Feature Selection")]
    pub all_features: bool,
    /// Do not activate the `default` feature
    #[arg(long = "no-default-features", help_heading = "Feature Selection")]
    pub no_default_features: bool,

    /// Build artifacts in release mode, with optimizations
    #[arg(short = 'r', long, help_heading = "Compilation Options")]
    pub release: bool,
    /// Build artifacts with the specified profile
    #[arg(long, value_name = "PROFILE-NAME", help_heading = "Compilation Options")]
    pub profile: Option<String>,
    /// Directory for all generated artifacts
    #[arg(long = "target-dir", value_name = "DIRECTORY", help_heading = "Compilation Options")]
    pub target_dir: Option<PathBuf>,

    /// Path to Cargo.toml
    #[arg(long = "manifest-path", value_name = "PATH", help_heading = "Manifest Options")]
    pub manifest_path: Option<PathBuf>,
    /// Assert that `Cargo.lock` will remain unchanged
    #[arg(long, help_heading = "Manifest Options")]
    pub locked: bool,
    /// Run without accessing the network
    #[arg(long, help_heading = "Manifest Options")]
    pub offline: bool,
    /// Equivalent to specifying both --locked and --offline
    #[arg(long, help_heading = "Manifest Options")]
    pub frozen: bool,
}

/// Which tests run: like `cargo test`'s filters.
#[derive(Debug, Args, Default, Clone)]
pub struct FilterArgs {
    /// Run only tests whose names contain one of these strings
    #[arg(value_name = "FILTERS", help_heading = "Test Selection")]
    pub filters: Vec<String>,
    /// Match FILTERS (and --skip) against whole test names
    #[arg(long, help_heading = "Test Selection")]
    pub exact: bool,
    /// Skip tests whose names contain this string (repeatable)
    #[arg(long, value_name = "FILTER", help_heading = "Test Selection")]
    pub skip: Vec<String>,
    /// Run only ignored tests
    #[arg(long, conflicts_with = "include_ignored", help_heading = "Test Selection")]
    pub ignored: bool,
    /// Run ignored and not ignored tests
    #[arg(long = "include-ignored", help_heading = "Test Selection")]
    pub include_ignored: bool,
    /// Run one part of the tests: count:K/N takes every Nth test starting at the Kth, hash:K/N the tests
    /// whose name hashes to K (1 <= K <= N)
    #[arg(long, value_name = "count:K/N|hash:K/N", value_parser = parse_partition, help_heading = "Test Selection")]
    pub partition: Option<Partition>,
    /// libtest-style arguments after `--`: FILTERS, --exact, --skip FILTER, --ignored, --include-ignored
    #[arg(
        last = true,
        value_name = "LIBTEST_ARGS",
        allow_hyphen_values = true,
        help_heading = "Test Selection"
    )]
    pub libtest_args: Vec<String>,
}

/// Defaults for every test's container, or with --force-limits the limits of every test.
#[derive(Debug, Args, Default, Clone)]
pub struct LimitArgs {
    /// Memory limit per container: bytes, K/M/G/T (binary), or "max"
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true, help_heading = "Limits")]
    pub memory: Option<MemoryLimit>,
    /// Pids limit per container (processes and threads), or "max"
    #[arg(long, value_name = "N", value_parser = parse_pids, allow_hyphen_values = true, help_heading = "Limits")]
    pub pids: Option<PidsLimit>,
    /// CPU weight per container, 1 to 10000 (100 is the default share)
    #[arg(long = "cpu-weight", value_name = "N", value_parser = parse_cpu_weight, allow_hyphen_values = true, help_heading = "Limits")]
    pub cpu_weight: Option<CpuWeight>,
    /// CPU quota per container in CPUs ("0.5", "2"), or "max"
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus_flag, allow_hyphen_values = true, help_heading = "Limits")]
    pub cpus: Option<CpuQuotaArg>,
    /// Give every test a veth with this address (tests then run one at a time)
    #[arg(long, value_name = "CIDR", value_parser = parse_network, allow_hyphen_values = true, help_heading = "Limits")]
    pub network: Option<NetworkSpec>,
    /// Time limit per test ("30s", "2m", "1m30s"); the whole container is killed when it passes
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, allow_hyphen_values = true, help_heading = "Limits")]
    pub timeout: Option<Duration>,
    /// Apply --memory, --pids, --cpu-weight, --cpus, --network and --timeout to every test, over config
    /// and #[cv_test] values
    #[arg(long = "force-limits", help_heading = "Limits")]
    pub force_limits: bool,
    /// Run without cgroup limits, on purpose (where no cgroup can be delegated, e.g. cgroup v1
    /// as an ordinary user); also CVTEST_LIMITS=off or `limits = "off"` in the config. Every
    /// test is reported with its limits not enforced, and with the peaks rusage gives
    #[arg(long = "no-limits", help_heading = "Limits")]
    pub no_limits: bool,
}

/// A parsed `--cpus`: a quota, or "max" for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuotaArg(pub Option<CpuQuota>);

/// How tests run.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Number of containers running at once [default: the number of CPUs]
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_jobs, allow_hyphen_values = true, help_heading = "Execution")]
    pub jobs: Option<NonZeroUsize>,
    /// One container per test, or one per test binary (cheaper; peaks per binary)
    #[arg(long, value_enum, default_value_t = Isolation::Test, help_heading = "Execution")]
    pub isolation: Isolation,
    /// Stop starting tests after the first failure
    #[arg(long = "fail-fast", help_heading = "Execution")]
    pub fail_fast: bool,
    /// Memory that running containers' limits may add up to [default: MemAvailable at start]
    #[arg(long = "memory-budget", value_name = "SIZE", value_parser = parse_budget, allow_hyphen_values = true, help_heading = "Execution")]
    pub memory_budget: Option<u64>,
    /// List the tests with their effective limits instead of running them
    #[arg(long, help_heading = "Execution")]
    pub list: bool,
}

/// How results are shown.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// Output format on stdout: human-readable, or JSON lines (schema: cargo-cvtest/README.md)
    #[arg(long = "message-format", value_enum, default_value_t = MessageFormat::Human, help_heading = "Reporting")]
    pub message_format: MessageFormat,
    /// Write a JUnit XML report to this file
    #[arg(long, value_name = "PATH", help_heading = "Reporting")]
    pub junit: Option<PathBuf>,
    /// Coloring [default: auto; CARGO_TERM_COLOR and NO_COLOR are honoured]
    #[arg(long, value_enum, value_name = "WHEN", help_heading = "Reporting")]
    pub color: Option<ColorWhen>,
    /// Rows in the summary's top-memory and longest-duration tables
    #[arg(
        long = "top",
        value_name = "N",
        default_value_t = 5,
        value_parser = parse_top,
        allow_hyphen_values = true,
        help_heading = "Reporting"
    )]
    pub top: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Each test in its own container
    Test,
    /// Each test binary in one container; tests with their own settings still get their own
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

fn styles() -> Styles {
    Styles::styled()
        .header(AnsiColor::Green.on_default().bold())
        .usage(AnsiColor::Green.on_default().bold())
        .literal(AnsiColor::Cyan.on_default().bold())
        .placeholder(AnsiColor::Cyan.on_default())
}

fn parse_jobs(s: &str) -> Result<NonZeroUsize, String> {
    s.trim().parse::<NonZeroUsize>().map_err(|_| {
        format!("invalid job count {s:?}; expected a whole number of containers at once, 1 or more")
    })
}

fn parse_top(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("invalid row count {s:?}; expected a whole number of rows, 0 or more"))
}

fn parse_memory(s: &str) -> Result<MemoryLimit, String> {
    s.parse().map_err(|e: cvtest_spec::ParseError| e.to_string())
}
fn parse_budget(s: &str) -> Result<u64, String> {
    const ACCEPTED: &str =
        "expected a size in bytes (\"1048576\") or with a binary unit K, M, G or T (\"8G\"), \
                            at least 1M; leave the flag out for no budget";
    match s.parse::<MemoryLimit>() {
        Ok(MemoryLimit::Bytes(b)) => Ok(b),
        Ok(MemoryLimit::Max) => {
            Err(format!("invalid memory budget {s:?}: \"max\" is not a size; {ACCEPTED}"))
        }
        Err(e) => Err(format!("invalid memory budget {s:?}: {}; {ACCEPTED}", e.reason)),
    }
}
fn parse_pids(s: &str) -> Result<PidsLimit, String> {
    s.parse().map_err(|e: cvtest_spec::ParseError| e.to_string())
}
fn parse_cpu_weight(s: &str) -> Result<CpuWeight, String> {
    s.parse().map_err(|e: cvtest_spec::ParseError| e.to_string())
}
fn parse_cpus_flag(s: &str) -> Result<CpuQuotaArg, String> {
    parse_cpus(s).map(CpuQuotaArg).map_err(|e| e.to_string())
}
fn parse_network(s: &str) -> Result<NetworkSpec, String> {
    s.parse().map_err(|e: cvtest_spec::ParseError| e.to_string())
}
fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}
fn parse_partition(s: &str) -> Result<Partition, String> {
    s.parse()
}

/// Parses the command line; clap prints help/version/usage errors and exits (0, or 2).
pub fn parse_from<I, T>(args: I) -> CvtestArgs
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
pub fn merge_libtest_args(filter: &mut FilterArgs) -> Result<(), String> {
    let args = std::mem::take(&mut filter.libtest_args);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exact" => filter.exact = true,
            "--ignored" => filter.ignored = true,
            "--include-ignored" => filter.include_ignored = true,
            "--skip" => {
                let v = it.next().ok_or("`--skip` after `--` needs a value")?;
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
            s if s.starts_with('-') => {
                return Err(format!(
                    "unsupported test-binary argument `{s}` after `--`; accepted: FILTERS, --exact, --skip FILTER, \
                     --ignored, --include-ignored (and --nocapture, --test-threads N, which are ignored)"
                ))
            }
            _ => filter.filters.push(a),
        }
    }
    if filter.ignored && filter.include_ignored {
        return Err("`--ignored` and `--include-ignored` cannot be used together".to_owned());
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
        assert!(merge_libtest_args(&mut bad).unwrap_err().contains("--format=json"));
    }
}
