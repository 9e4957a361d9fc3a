//! One error type per operation. Context in fields, the cause in `#[source]`, lower-case
//! messages. Print the whole chain once, at the edge.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use crate::cgroup::CgroupError;
use crate::net::NetError;

/// An error and its sources on one line, `what: why: deeper why`: how a caller shows a
/// library error whole, once, at its edge.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// [`crate::Container::create`] failed; whatever it had made is already undone.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cvtest cannot create containers as {missing}: {fix}")]
    Privileges { missing: String, fix: &'static str },
    /// An ordinary user, and this kernel keeps it from user namespaces.
    #[error("cvtest cannot create containers as an ordinary user here: {0}")]
    UserNamespaces(#[from] crate::UsernsProblem),
    #[error("Linux {found} is too old: cvtest needs {need} or later (clone3 with pidfds, close_range); upgrade the kernel")]
    KernelTooOld { found: String, need: String },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Network(#[from] NetError),
    #[error("cannot take the container's network lease")]
    Lease(#[from] crate::lease::LeaseError),
    #[error("the root filesystem {path} is not a usable directory")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the overlay directory {path} is not usable: it must be an existing directory other than /")]
    Overlay {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the writable directory {path} is not usable: it must be an existing directory other than /")]
    Writable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the writable directory {path} belongs to {dir_uid}:{dir_gid}, and the test's root is {uid}:{gid} on the host (its user namespace), which may not write there: chown it to {uid}:{gid}, or set CVTEST_MAP_ROOT_TO to its owner")]
    NotWritableByMappedRoot { path: PathBuf, dir_uid: u32, dir_gid: u32, uid: u32, gid: u32 },
}

/// [`crate::Container::spawn`] failed; the container is still there and can be destroyed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the container already has a process")]
    AlreadySpawned,
    #[error("the container was not spawned paused (resume follows spawn_paused_via)")]
    NotPaused,
    #[error("program {program:?} not found or not executable")]
    NotFound {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to execute {program:?}")]
    Exec {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the {what} {value:?} contains a NUL byte (or, for a variable name, is empty or has '=')")]
    Nul { what: &'static str, value: OsString },
    #[error("cannot find the current directory to run the command in; set Command::current_dir")]
    CurrentDir(#[source] io::Error),
    #[error("failed to create a pipe to the container")]
    Pipe(#[source] io::Error),
    #[error("failed to talk to the container's init")]
    Channel(#[source] io::Error),
    #[error("failed to clone the container's init process")]
    Clone(#[source] io::Error),
    #[error("failed to place the container's init on CPUs {cpus} (sched_setaffinity): none of them may be online and in this process's cpuset; `taskset -pc $$` shows which are (Options::set_cpu_affinity)")]
    Affinity {
        cpus: cvtest_spec::CpuList,
        #[source]
        source: io::Error,
    },
    #[error("failed to write the container's user namespace map {path}; rootless, the kernel allows only the caller's own uid and gid, after `deny` in setgroups (is kernel.apparmor_restrict_unprivileged_userns=1? see the README's Requirements)")]
    IdMap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to copy the rootless container's netlink sockets from its init (pidfd_getfd needs ptrace access to it: is kernel.yama.ptrace_scope 2 or more?)")]
    RunNetns(#[source] io::Error),
    #[error("failed to open the container's network namespace {path}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("container setup failed while {stage}")]
    Setup {
        stage: String,
        #[source]
        source: io::Error,
    },
    #[error("the container's init died during setup ({status})")]
    InitDied { status: String },
    #[error(
        "the container's init was killed for lack of memory before the command could start: \
         its memory limit is too small to start a process (raise it by a few MiB)"
    )]
    SetupOutOfMemory,
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Network(#[from] NetError),
}

/// A [`crate::zygote::Zygote`] could not start, or stopped serving (then spawns through it are
/// done directly: see [`crate::zygote::Zygote::lost`]).
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    #[error(
        "this process is itself a zygote that did not serve: call cvtest::zygote::serve_if_requested() first thing in main"
    )]
    Nested,
    #[error("failed to start the zygote process")]
    Start(#[source] io::Error),
    #[error(
        "the zygote process ended ({status}) without serving: the program must call \
         cvtest::zygote::serve_if_requested() first thing in main"
    )]
    NotServing { status: String },
    #[error("the zygote (pid {pid}) did not answer within {waited:?}")]
    NoAnswer { pid: i32, waited: std::time::Duration },
    #[error("the zygote speaks protocol {found}, this program {expected} (the program's binary changed since it started)")]
    Protocol { found: u32, expected: u32 },
    #[error("the zygote (pid {pid}) died ({status})")]
    Died { pid: i32, status: String },
    #[error("failed to talk to the zygote (pid {pid})")]
    Channel {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("the zygote (pid {pid}) refused a request: {reason}")]
    Refused { pid: i32, reason: &'static str },
    #[error("the zygote (pid {pid}) sent a malformed reply")]
    Garbled { pid: i32 },
    #[error("the zygote (pid {pid}) cannot clone an init where this process can (does it lack this process's capabilities?)")]
    CannotClone {
        pid: i32,
        #[source]
        source: io::Error,
    },
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
    #[error(transparent)]
    Network(#[from] NetError),
}

/// [`crate::Container::destroy`] could not remove everything.
#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    #[error("the container's init (pid {pid}) did not exit after SIGKILL")]
    InitStuck { pid: i32 },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Network(#[from] NetError),
}
