//! `cargo-cvtest runner TEST-BINARY ARGS...`: a cargo target runner (`target.<cfg>.runner` or
//! `CARGO_TARGET_<TRIPLE>_RUNNER`) that runs a test binary in a container, like `cargo cvtest
//! --isolation binary`.
//!
//! - Listing (`--list`, as nextest lists through a runner) and anything that is not a test binary
//!   (`cargo run` runs `target/debug/NAME`, tests are in `deps/`) run directly: same output.
//! - The selected tests (the binary's own filters, parsed as libtest does) are grouped by their
//!   effective settings (config defaults and overrides). With one group and no `#[cv_test]` test
//!   among them, the binary runs once, with its own arguments, in one container: `cargo test`'s
//!   output, unchanged. Otherwise each group runs in its own container (`--exact NAMES`), one
//!   after another, and the `#[cv_test]` tests run on the host, where each makes its own container
//!   with its own settings, as under plain `cargo test`.
//! - nextest through the runner runs one test per invocation: one group, one container.

use std::ffi::OsString;
use std::path::Path;

use cvtest::{Command, Termination};
use cvtest_spec::ENV_LIST_SETTINGS;

use crate::errors::render_chain;
use crate::exit_codes;
use crate::filter::{Disposition, NameFilter, RunIgnored};
use crate::reporter::human_bytes;
use crate::runner::ENV_RUNNER;
use crate::settings::Effective;
use crate::standalone::{
    exec_direct, list, run_contained, secs, Contained, Exit, SignalGuard, Site, StandaloneError,
};

/// The most test names given to one run of a binary (keeps argv small).
const MAX_NAMES: usize = 512;

/// `cargo-cvtest runner ARGS` (ARGS: the binary, then its arguments); returns the exit code.
pub(crate) fn main(args: &[OsString]) -> i32 {
    let Some((bin, rest)) = args.split_first() else {
        say!(
            "error: usage: cargo-cvtest runner BINARY [ARGS]...: a cargo target runner (see cargo-cvtest/README.md)"
        );
        return exit_codes::USAGE;
    };
    let bin = Path::new(bin);
    let is_test_binary = bin.parent().and_then(Path::file_name).is_some_and(|d| d == "deps");
    if !is_test_binary || rest.iter().any(|a| a == "--list") {
        say!("cvtest: {}", render_chain(&exec_direct(bin, rest)));
        return exit_codes::SETUP_FAILED;
    }
    crate::standalone::guarded(|guard| run(bin, rest, guard))
}

/// A binary's arguments, split into libtest's test selection and everything else.
#[derive(Debug, Default)]
struct Args {
    filter: NameFilter,
    /// Passed on as given (`--nocapture`, `--test-threads N`, `--format X`, ...).
    other: Vec<OsString>,
}

/// Flags whose value is the next argument.
const VALUE_FLAGS: &[&str] = &["--test-threads", "--color", "--format", "--logfile", "--shuffle-seed", "-Z"];

fn parse_args(args: &[OsString]) -> Args {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let s = arg.to_string_lossy();
        match s.as_ref() {
            "--exact" => a.filter.exact = true,
            "--ignored" => a.filter.run_ignored = RunIgnored::Only,
            "--include-ignored" => a.filter.run_ignored = RunIgnored::All,
            "--skip" => a.filter.skip.extend(it.next().map(|v| v.to_string_lossy().into_owned())),
            s if s.starts_with("--skip=") => a.filter.skip.push(s["--skip=".len()..].to_owned()),
            s if VALUE_FLAGS.contains(&s) => {
                a.other.push(arg.clone());
                a.other.extend(it.next().cloned());
            }
            s if s.starts_with('-') => a.other.push(arg.clone()),
            _ => a.filter.patterns.push(s.into_owned()),
        }
    }
    a
}

/// Tests of one binary that run together.
#[derive(Debug)]
struct Group {
    settings: Effective,
    names: Vec<String>,
}

fn run(bin: &Path, rest: &[OsString], guard: &SignalGuard) -> Result<Exit, StandaloneError> {
    let site = Site::from_env(bin, "runner")?;
    let config = site.config()?;
    let args = parse_args(rest);
    let filter = &args.filter;
    let listing = list(bin, &[])?;
    let ignored = list(bin, &["--ignored"])?.tests;

    let mut groups: Vec<Group> = Vec::new();
    let mut cv_tests: Vec<String> = Vec::new();
    for name in &listing.tests {
        if filter.disposition(name, ignored.contains(name)) == Disposition::Excluded {
            continue;
        }
        let cv = listing.cv_settings(name);
        if cv.is_some() {
            cv_tests.push(name.clone());
            continue;
        }
        let (settings, _) = site.resolve(&config, name, None)?;
        match groups.iter_mut().find(|g| g.settings == settings && g.names.len() < MAX_NAMES) {
            Some(g) => g.names.push(name.clone()),
            None => groups.push(Group { settings, names: vec![name.clone()] }),
        }
    }

    if cv_tests.is_empty() && groups.len() <= 1 {
        let settings = match groups.pop() {
            Some(g) => g.settings,
            None => site.resolve(&config, "", None)?.0,
        };
        return Ok(match contained(bin, rest.to_vec(), &settings, &site, guard)? {
            Some(c) => judge(&c, &settings, &site, guard),
            None => Exit::Signal(guard.received().unwrap_or(libc::SIGTERM)),
        });
    }

    let mut selection: Vec<OsString> = Vec::new();
    match args.filter.run_ignored {
        RunIgnored::Only => selection.push("--ignored".into()),
        RunIgnored::All => selection.push("--include-ignored".into()),
        RunIgnored::Default => {}
    }
    selection.extend(args.other.iter().cloned());
    let mut failed = false;
    for g in &groups {
        say!("cvtest: {} tests of {} in one container ({})", g.names.len(), site.binary_id, g.settings);
        let mut argv: Vec<OsString> = vec!["--exact".into()];
        argv.extend(g.names.iter().map(OsString::from));
        argv.extend(selection.iter().cloned());
        match contained(bin, argv, &g.settings, &site, guard)? {
            Some(c) => match judge(&c, &g.settings, &site, guard) {
                Exit::Code(0) => {}
                Exit::Code(_) => failed = true,
                signal @ Exit::Signal(_) if guard.received().is_some() => return Ok(signal),
                Exit::Signal(_) => failed = true,
            },
            None => return Ok(Exit::Signal(guard.received().unwrap_or(libc::SIGTERM))),
        }
    }
    for names in cv_tests.chunks(MAX_NAMES) {
        say!(
            "cvtest: {} #[cv_test] tests of {} on the host, each in a container of its own",
            names.len(),
            site.binary_id
        );
        let status = std::process::Command::new(bin)
            .arg("--exact")
            .args(names)
            .args(&selection)
            .env_remove(ENV_LIST_SETTINGS)
            .status()
            .map_err(|source| StandaloneError::Exec { path: bin.to_owned(), source })?;
        if let Some(sig) = guard.received() {
            return Ok(Exit::Signal(sig));
        }
        failed |= !status.success();
    }
    Ok(Exit::Code(if failed { 101 } else { 0 }))
}

fn contained(
    bin: &Path,
    argv: Vec<OsString>,
    settings: &Effective,
    site: &Site,
    guard: &SignalGuard,
) -> Result<Option<Contained>, StandaloneError> {
    let mut cmd = Command::new(bin);
    cmd.args(argv).env_remove(ENV_LIST_SETTINGS).env(ENV_RUNNER, "cargo-cvtest runner");
    if let Ok(cwd) = std::env::current_dir() {
        cmd.current_dir(cwd);
    }
    run_contained(settings, site.writable(), &cmd, guard)
}

/// Prints the container's line (and why it failed, for an OOM kill or a timeout) and says how
/// to end.
fn judge(c: &Contained, settings: &Effective, site: &Site, guard: &SignalGuard) -> Exit {
    let p = &c.outcome.peaks;
    say!(
        "cvtest: {} [{}] mem {}/{}  pids {}/{}  cpu {}  container {} ({})",
        site.binary_id,
        secs(c.outcome.duration),
        p.memory_bytes.map_or("-".to_owned(), |m| human_bytes(m.value)),
        settings.limits().memory,
        p.pids.map_or("-".to_owned(), |m| m.value.to_string()),
        settings.limits().pids,
        p.cpu_total().map_or("-".to_owned(), secs),
        c.container_id,
        settings
    );
    if let Some(sig) = guard.received() {
        return Exit::Signal(sig);
    }
    match c.outcome.termination {
        Termination::Exited(code) => Exit::Code(code),
        Termination::Signaled(sig) => Exit::from_test_signal(sig),
        Termination::OomKilled => {
            say!(
                "cvtest: OOM: the kernel's OOM killer killed the test binary at its memory limit of {}",
                settings.limits().memory
            );
            Exit::Signal(libc::SIGKILL)
        }
        Termination::TimedOut => {
            say!(
                "cvtest: TIMEOUT: the test binary was killed after its cvtest timeout of {}",
                settings.timeout().map_or("-".to_owned(), cvtest_spec::format_duration)
            );
            Exit::Signal(libc::SIGKILL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_selection_from_other_flags() {
        let argv: Vec<OsString> = [
            "foo",
            "--exact",
            "--skip",
            "bar",
            "--nocapture",
            "--test-threads",
            "2",
            "--include-ignored",
            "-q",
        ]
        .map(OsString::from)
        .to_vec();
        let a = parse_args(&argv);
        assert_eq!(a.filter.patterns, ["foo"]);
        assert!(a.filter.exact && a.filter.run_ignored == RunIgnored::All);
        assert_eq!(a.filter.skip, ["bar"]);
        assert_eq!(a.other, ["--nocapture", "--test-threads", "2", "-q"].map(OsString::from));
    }
}
