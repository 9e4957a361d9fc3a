//! The container lifecycle: create → spawn → wait → destroy (also on Drop).
//!
//! `create` validates, sweeps what dead runners left, and makes the cgroup with its limits.
//! `spawn` clones the container's PID 1 into new namespaces and into the cgroup (before it runs
//! anything), links its network namespace with a veth, then lets it exec the command as PID 2.
//! `wait` reads the output, enforces the timeout, samples usage where the kernel keeps no peaks,
//! and when the main process ends reads the peaks before anything is torn down. `destroy` kills
//! the whole cgroup, waits until it is empty, removes it, and lets the network namespace (and with
//! it the veth) go.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{CreateError, DestroyError, SpawnError, WaitError};
use crate::options::{Options, Stdio};
use crate::outcome::Outcome;

/// What to run inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The environment. Starts as a copy of this process's environment; [`Command::env_clear`]
    /// empties it.
    pub env: BTreeMap<OsString, OsString>,
    /// The working directory inside the container; the caller's when `None`.
    pub cwd: Option<PathBuf>,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl Command {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: std::env::vars_os().collect(),
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
        self.env.insert(k.into(), v.into());
        self
    }
    pub fn env_remove(&mut self, k: impl Into<OsString>) -> &mut Self {
        self.env.remove(&k.into());
        self
    }
    pub fn env_clear(&mut self) -> &mut Self {
        self.env.clear();
        self
    }
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
}

/// One container. Dropping it destroys it.
#[derive(Debug)]
pub struct Container {
    // Filled in by the runtime implementation.
}

/// Kills a container's whole process tree from another thread (Ctrl-C handling, timeouts).
#[derive(Debug, Clone)]
pub struct KillHandle {}

impl Container {
    /// Validates the options, sweeps what dead runners left, and creates the cgroup with its
    /// limits. On error nothing is left behind.
    pub fn create(options: &Options) -> Result<Container, CreateError> {
        let _ = options;
        todo!()
    }

    /// A short unique id (`[0-9a-z]{1,11}`), also the veth's `{id}`.
    pub fn id(&self) -> &str {
        todo!()
    }

    /// Starts `command` as the container's main process (PID 2 under the container's PID 1).
    /// One per container.
    pub fn spawn(&mut self, command: &Command) -> Result<(), SpawnError> {
        let _ = command;
        todo!()
    }

    /// Waits for the main process to end (or `timeout` to pass, which kills the whole
    /// container), then reads the peaks.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Outcome, WaitError> {
        let _ = timeout;
        todo!()
    }

    pub fn kill_handle(&self) -> KillHandle {
        todo!()
    }

    /// Kills everything left, removes the cgroup, releases the network namespace. Also on Drop.
    pub fn destroy(self) -> Result<(), DestroyError> {
        todo!()
    }
}

impl KillHandle {
    /// Kills every process of the container now; `wait` then reports how it ended.
    pub fn kill(&self) {
        todo!()
    }
}
