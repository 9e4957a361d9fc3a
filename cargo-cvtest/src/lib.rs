//! `cargo cvtest`: build the tests, run each in its own container, in parallel, and report.
//!
//! Data flows one way: cargo's JSON ([`build`]) → test binaries → the tests each one has
//! ([`discovery`]) → settings per test ([`settings`], [`config`], [`policy`]) → the selected tests
//! ([`selection`], [`filter`], [`partition`]) → units and admission ([`units`], [`scheduler`]) →
//! containers ([`runner`]) → typed [`events`] and the run's statistics beside them → [`reporter`]s;
//! the statistics decide the [`exit_codes`]. [`cli`] is the edge: it converts the command line
//! into the stages' own options ([`run::RunOptions`]); [`run`] drives the stages.
//!
//! The library exists for the binary: [`main`] is its only public item, every module is private
//! and its items `pub(crate)`. The integration tests (`tests/cli`) drive the real binary; what
//! they check of the internals is unit-tested beside the code.

#![deny(unsafe_code)]

/// `eprintln!` that never panics. With stderr closed (`cargo cvtest 2>&1 | head`) `eprintln!`
/// panics, and a panic in the middle of the run's end skipped the cleanup of its cgroups and
/// turned the exit code into 101; a message is lost instead.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod build;
mod cli;
mod config;
mod discovery;
mod env;
mod errors;
mod events;
mod exit_codes;
mod expect;
mod filter;
mod history;
mod leak;
mod partition;
mod peaks_log;
mod placement;
mod policy;
mod reporter;
mod run;
mod runner;
mod sampler;
mod scheduler;
mod selection;
mod settings;
mod signals;
mod standalone;
mod sudo;
mod target_runner;
mod timeline;
mod units;
mod wrapper;

use crate::errors::render_chain;
use crate::signals::SignalWatch;

/// The entry point of the `cargo-cvtest` binary.
pub fn main() -> std::process::ExitCode {
    // Re-executed as a worker's zygote (see `runner::Runner::work`): serve, never return.
    cvtest::zygote::serve_if_requested();
    let code = run_main(std::env::args_os());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Parses `args` (as cargo passes them: `cargo-cvtest cvtest ...`), runs, and returns the exit code.
fn run_main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    if let Some(code) = dispatch_mode(&args) {
        return code;
    }
    let options = match cli::parse_from(args).into_options() {
        Ok(o) => o,
        Err(e) => {
            say!("{}", render_chain(&e));
            return exit_codes::USAGE;
        }
    };
    let signals = match SignalWatch::install() {
        Ok(s) => s,
        Err(e) => {
            say!("error: cannot install signal handlers: {e}");
            return exit_codes::SETUP_FAILED;
        }
    };
    // Once every container is gone (also when this thread unwinds from a panic): undo what the
    // library did to our own cgroup (on cgroup v2 the supervisor leaf this process moved into)
    // and let the background thread finish removing the run's cgroups, so that nothing is left.
    let _release = ReleaseOwnCgroup;
    match run::run(&options, &signals) {
        Ok(code) => code,
        Err(e) => {
            say!("{}", render_chain(&e));
            e.exit_code()
        }
    }
}

/// Calls [`cvtest::release_own_cgroup`] when dropped.
struct ReleaseOwnCgroup;

impl Drop for ReleaseOwnCgroup {
    fn drop(&mut self) {
        if let Err(e) = cvtest::release_own_cgroup() {
            say!("warning: {}", render_chain(&e));
        }
    }
}

/// The modes that are not a `cargo cvtest` run: `cargo-cvtest [cvtest] wrap|runner|peaks ARGS`
/// (a nextest wrapper script, a cargo target runner, the peaks of a nextest run).
fn dispatch_mode(args: &[std::ffi::OsString]) -> Option<i32> {
    let rest = args.get(1..)?;
    let rest = if rest.first().is_some_and(|a| a == "cvtest") { &rest[1..] } else { rest };
    let (mode, mode_args) = rest.split_first()?;
    match mode.to_str()? {
        "wrap" => Some(wrapper::main(mode_args)),
        "runner" => Some(target_runner::main(mode_args)),
        "peaks" => Some(peaks_log::main(mode_args)),
        _ => None,
    }
}
