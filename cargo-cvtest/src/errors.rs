//! One error type per stage. Printed once, with its whole chain, by [`crate::main`].

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use cvtest::{CreateError, DestroyError, SpawnError, WaitError};

use crate::exit_codes;

/// A user mistake in a config file or on the command line: exit code 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UsageError {
    #[error(transparent)]
    Args(#[from] LibtestArgsError),
    #[error("failed to read {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid TOML")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{origin}: {message}")]
    Config { origin: String, message: String },
    #[error("the settings of {binary} {test} do not make a container")]
    Settings {
        binary: String,
        test: String,
        #[source]
        source: cvtest::ParseError,
    },
    #[error(transparent)]
    Profile(#[from] crate::config::UnknownProfile),
    #[error("CVTEST_LIMITS={value:?} is not understood: set it to off (run without limits, as --no-limits does) or on")]
    LimitsEnv { value: String },
}

/// An argument after `--` that cvtest does not take as libtest would.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LibtestArgsError {
    #[error("`--skip` after `--` needs a value")]
    SkipWithoutValue,
    #[error(
        "unsupported test-binary argument `{0}` after `--`; accepted: FILTERS, --exact, --skip FILTER, \
         --ignored, --include-ignored (and --nocapture, --test-threads N, which are ignored)"
    )]
    Unsupported(String),
    #[error("`--ignored` and `--include-ignored` cannot be used together")]
    IgnoredConflict,
}

/// Reading the workspace or preparing the run failed: exit code 102.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("cargo metadata failed")]
    Metadata(#[source] Box<cargo_metadata::Error>),
    #[error("path {} is not UTF-8", .0.display())]
    NonUtf8Path(PathBuf),
    #[error("cannot read the current directory")]
    Cwd(#[source] io::Error),
    #[error("failed to run {program}")]
    Rustc {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to list the tests of {binary}")]
    List {
        binary: String,
        #[source]
        source: ListError,
    },
    #[error("cannot run tests in containers")]
    Container(#[source] cvtest::CreateError),
    #[error("the default settings do not make a container's options")]
    Options(#[source] cvtest::ParseError),
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Sudo(#[from] crate::sudo::SudoError),
}

/// Why a test binary's list could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListError {
    #[error("failed to run {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` exited with {status}:\n{stderr}")]
    Exit { command: String, status: String, stderr: String },
    #[error(transparent)]
    Settings(cvtest_spec::DumpError),
    #[error("in a container")]
    Container(#[source] Box<UnitError>),
}

/// Why a unit of work (a test's container, or a listing's) gave no outcome of its own. Closed,
/// like the test status that carries it (`Status::Error`): the library's typed error is kept, and each
/// reporter decides how to show a new kind.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnitError {
    #[error("cannot create the container")]
    Create(#[source] CreateError),
    #[error("cannot start the test in its container")]
    Spawn(#[source] SpawnError),
    #[error("lost track of the container")]
    Wait(#[source] WaitError),
    #[error("cannot clean up the container")]
    Destroy(#[source] DestroyError),
    /// Its share of the machine-wide memory budget could not be taken (see `cvtest::lease`).
    #[error("cannot take the test's share of the memory budget")]
    Memory(#[source] cvtest::lease::LeaseError),
    /// libtest ran no test of that name: it passed without running anything, which we refuse.
    #[error("the test binary ran no test named {name:?} (was it renamed since listing?)")]
    NoSuchTest { name: String },
    /// A binary run whole for several tests (`--isolation binary`) exited 0 without a result
    /// line for this one.
    #[error("the test binary did not report this test")]
    NotReported,
}

impl UnitError {
    /// The `error_kind` of JSON and the failure type of JUnit.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            UnitError::Create(_) => "create",
            UnitError::Spawn(_) => "spawn",
            UnitError::Wait(_) => "wait",
            UnitError::Destroy(_) => "destroy",
            UnitError::Memory(_) => "memory",
            UnitError::NoSuchTest { .. } => "no-such-test",
            UnitError::NotReported => "not-reported",
        }
    }

    /// The error and its causes on one line, as reporters show it.
    pub(crate) fn message(&self) -> String {
        cvtest::error_chain(self)
    }
}

/// `cargo test --no-run` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("failed to run {}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the build failed ({status})")]
    Failed { status: ExitStatus },
    #[error("cannot read cargo's JSON messages")]
    Messages(#[source] io::Error),
    #[error(transparent)]
    Sudo(#[from] crate::sudo::SudoError),
}

/// Anything that ends a run before its tests' results decide the exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
}

impl RunError {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) => exit_codes::USAGE,
            RunError::Setup(_) => exit_codes::SETUP_FAILED,
            RunError::Build(_) => exit_codes::BUILD_FAILED,
            RunError::Interrupted(sig) => exit_codes::INTERRUPTED_BASE + sig,
        }
    }
}

/// `error: top\n  caused by: next\n ...`, the whole chain once.
pub(crate) fn render_chain(e: &dyn std::error::Error) -> String {
    let mut s = format!("error: {e}");
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!("\n  caused by: {c}"));
        cur = c.source();
    }
    s
}
