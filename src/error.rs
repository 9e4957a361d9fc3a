//! One error type per operation. Context in fields, the cause in `#[source]`, lower-case
//! messages. Variants are added by the modules that produce them.

use std::io;
use std::path::PathBuf;

use crate::cgroup::CgroupError;
use crate::net::NetError;

/// [`crate::Container::create`] failed; whatever it had made is already undone.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cvtest needs {what} to create containers: {fix}")]
    Privileges { what: &'static str, fix: &'static str },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Network(#[from] NetError),
    #[error("the root filesystem {path} is not a directory")]
    Rootfs { path: PathBuf, #[source] source: io::Error },
}

/// [`crate::Container::spawn`] failed; the container is still there and can be destroyed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the container already has a process")]
    AlreadySpawned,
    #[error("program {program:?} not found or not executable")]
    NotFound { program: PathBuf, #[source] source: io::Error },
    #[error("failed to clone the container's init process")]
    Clone(#[source] io::Error),
    #[error("container setup failed at {stage}")]
    Setup { stage: &'static str, #[source] source: io::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Network(#[from] NetError),
}

/// [`crate::Container::wait`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the container has no process to wait for")]
    NotSpawned,
    #[error("failed to wait for the container's init process")]
    Wait(#[source] io::Error),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

/// [`crate::Container::destroy`] could not remove everything.
#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Network(#[from] NetError),
}
