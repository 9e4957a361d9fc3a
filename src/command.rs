//! What to run inside a container: program, arguments, environment, directory, output.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::options::Stdio;

/// What to run inside a container. Built like [`std::process::Command`]; what cannot be passed
/// to `execve` (a NUL byte, an empty or `=`-holding variable name) is refused by the spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: PathBuf,
    args: Vec<OsString>,
    /// Shared between clones until one changes it (a runner clones one command per test).
    env: Arc<BTreeMap<OsString, OsString>>,
    cwd: Option<PathBuf>,
    stdout: Stdio,
    stderr: Stdio,
}

impl Command {
    /// `program` with no arguments, this process's environment, the caller's working directory
    /// and its stdout and stderr.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Arc::new(std::env::vars_os().collect()),
            cwd: None,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
        }
    }

    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(&mut self, args: I) -> &mut Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> &mut Self {
        let (k, v) = (k.into(), v.into());
        // Unchanged: the environment stays shared with the clones it came from.
        if self.env.get(&k) != Some(&v) {
            Arc::make_mut(&mut self.env).insert(k, v);
        }
        self
    }

    pub fn env_remove(&mut self, k: impl Into<OsString>) -> &mut Self {
        let k = k.into();
        if self.env.contains_key(&k) {
            Arc::make_mut(&mut self.env).remove(&k);
        }
        self
    }

    /// Empties the environment (which starts as a copy of this process's).
    pub fn env_clear(&mut self) -> &mut Self {
        if !self.env.is_empty() {
            self.env = Arc::default();
        }
        self
    }

    /// The working directory inside the container.
    pub fn current_dir(&mut self, d: impl Into<PathBuf>) -> &mut Self {
        self.cwd = Some(d.into());
        self
    }

    pub fn stdout(&mut self, s: Stdio) -> &mut Self {
        self.stdout = s;
        self
    }

    pub fn stderr(&mut self, s: Stdio) -> &mut Self {
        self.stderr = s;
        self
    }

    pub fn get_program(&self) -> &Path {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// The environment the main process gets (besides `CVTEST_CONTAINER`, which the spawn sets).
    pub fn get_envs(&self) -> impl ExactSizeIterator<Item = (&OsStr, &OsStr)> {
        self.env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }

    pub fn get_env(&self, key: impl AsRef<OsStr>) -> Option<&OsStr> {
        self.env.get(key.as_ref()).map(OsString::as_os_str)
    }

    /// The working directory inside the container; `None`: the caller's.
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    pub fn get_stdout(&self) -> Stdio {
        self.stdout
    }

    pub fn get_stderr(&self) -> Stdio {
        self.stderr
    }
}
