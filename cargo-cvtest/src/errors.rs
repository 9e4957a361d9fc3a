//! One error type per stage. Printed once, with its whole chain, by [`crate::main`].

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::exit_codes;

/// A user mistake in a config file or on the command line: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{0}")]
    Args(String),
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
    #[error("CVTEST_LIMITS={value:?} is not understood: set it to off (run without limits, as --no-limits does) or on")]
    LimitsEnv { value: String },
}

/// Reading the workspace or preparing the run failed: exit code 102.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
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
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
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
}

/// Why a test binary's list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("failed to run {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` exited with {status}:\n{stderr}")]
    Exit { command: String, status: String, stderr: String },
    #[error("bad `cvtest-settings:` line")]
    Settings(#[source] serde_json::Error),
    #[error("the settings dump has version {0}; this cargo-cvtest reads version 1 (rebuild with a matching cvtest)")]
    SettingsVersion(u64),
    #[error("in a container")]
    Container(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// `cargo test --no-run` failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
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
}

/// Anything that ends a run before its tests' results decide the exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
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
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) => exit_codes::USAGE,
            RunError::Setup(_) => exit_codes::SETUP_FAILED,
            RunError::Build(_) => exit_codes::BUILD_FAILED,
            RunError::Interrupted(sig) => exit_codes::INTERRUPTED_BASE + sig,
        }
    }
}

/// `error: top\n  caused by: next\n ...`, the whole chain once.
pub fn render_chain(e: &dyn std::error::Error) -> String {
    let mut s = format!("error: {e}");
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!("\n  caused by: {c}"));
        cur = c.source();
    }
    s
}
