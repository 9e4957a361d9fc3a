//! cvtest: run each Rust test in its own container.
//!
//! A container here is a process tree in new PID, mount, UTS, IPC, network (and, where the kernel
//! has it, cgroup) namespaces, inside a cgroup with memory, pids and CPU limits, optionally with a
//! veth pair linking its network namespace to the host. When it ends you get an [`Outcome`]: how
//! the test ended (exit, signal, OOM kill, timeout) and the resource peaks the kernel recorded.
//!
//! The API follows the shape of the containerv C library:
//!
//! ```no_run
//! use cvtest::{Command, Container, Isolation, Options};
//!
//! let mut opts = Options::new();
//! opts.set_isolation(Isolation::CGROUPS | Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL);
//! opts.set_cgroup_limits("512M", "100", "64")?;
//! opts.set_network("10.0.0.2", "255.255.255.0", "10.0.0.1")?;
//! let mut container = Container::create(&opts)?;
//! container.spawn(&Command::new("/bin/true"))?;
//! let outcome = container.wait(None)?;
//! println!("{outcome:?}");
//! container.destroy()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The public API, whole:
//! - [`Options`] (what a container gets: [`Isolation`], [`Limits`], network, [`Rootfs`],
//!   Linux [`Capabilities`]; [`Options::for_test`] maps a test's settings) and [`Command`];
//! - [`Container`]: `create` → `spawn` / `spawn_via` a [`Zygote`] → `wait` → [`Outcome`]
//!   ([`Termination`], [`Peaks`]) → `destroy`; a [`KillHandle`] kills it from another thread;
//! - one error type per operation ([`CreateError`], [`SpawnError`], [`WaitError`],
//!   [`DestroyError`], [`ZygoteError`], with [`CgroupError`] and [`NetError`] as causes),
//!   [`error_chain`] to show one whole; [`release_own_cgroup`] at the end of a run;
//! - [`cv_test`], the attribute, and [`spec`], the one parser of every value a user writes;
//!   [`zygote::serve_if_requested`], first thing in a `main` that uses a zygote.
//!
//! `__private` (for the macro's generated code) and `test_support` (for cvtest's own tests) are
//! hidden and not part of the API. See `ARCHITECTURE.md` in the repository for how the pieces
//! fit.

// Raw syscalls and every `unsafe` block live in `sys`, nowhere else.
#![deny(unsafe_code)]

mod affinity;
mod background;
mod capture;
mod cgroup;
mod command;
mod container;
mod error;
pub mod lab;
pub mod lease;
mod mountinfo;
mod net;
mod options;
mod outcome;
mod owner;
mod preflight;
mod sandbox;
mod sweep;
#[allow(unsafe_code)]
mod sys;
mod userns_support;
pub mod zygote;

#[doc(hidden)]
pub mod __private;
#[doc(hidden)]
pub mod test_support;

pub use affinity::AffinityHandle;
pub use cgroup::{CgroupError, Usage, UsageProbe};
pub use command::Command;
pub use container::{Container, KillHandle};
pub use error::{error_chain, CreateError, DestroyError, SpawnError, WaitError, ZygoteError};
pub use net::{wait_released as wait_released_veths, NetError, NetlinkError, NetnsPoolStats};
pub use options::{Isolation, Limits, Options, Rootfs, Stdio};
pub use outcome::{Leftover, Measured, NetStats, Outcome, Peaks, Termination};
pub use preflight::FORCE_ROOTLESS_ENV;
pub use sandbox::userns::{MappedOwner, OWNER_ENV as MAP_ROOT_TO_ENV};
pub use userns_support::{UsernsProblem, APPARMOR_PROFILE};
pub use zygote::Zygote;

pub use cvtest_macros::cv_test;
pub use cvtest_spec as spec;
pub use cvtest_spec::{
    Capabilities, CpuList, CpuQuota, CpuWeight, HostAccess, MemoryLimit, NetworkSpec, ParseError, PidsLimit,
};

/// The CPUs this process may run on (its CPU affinity, as `taskset -p` shows it): the set a
/// runner shares out with [`Options::set_cpu_affinity`].
pub fn cpu_affinity() -> std::io::Result<CpuList> {
    sandbox::spawn::get_affinity(0)
}

/// Undoes what creating containers did to this process's own cgroup (on cgroup v2 below the
/// root, the supervisor leaf it moved into), once every container of this process is gone: a
/// runner calls it at the end of a run so that not even an empty cgroup is left. Nothing to do
/// if this process never made a container.
pub fn release_own_cgroup() -> Result<(), CgroupError> {
    cgroup::Hierarchy::detected().map_or(Ok(()), cgroup::Hierarchy::release)
}

/// How this process's pool of network namespaces was used (see [`Options::set_reuse_netns`]).
pub fn netns_pool_stats() -> NetnsPoolStats {
    net::pool::stats()
}

/// `0` (or `off`, `false`): no container of this process reuses a network namespace, whatever
/// its options say (for A/B measurements).
pub const NETNS_POOL_ENV: &str = "CVTEST_NETNS_POOL";

/// `0` (or `off`, `false`): no container of this process leaves work to the background thread,
/// whatever its options say (see [`Options::set_background`]; for A/B measurements).
pub const BACKGROUND_ENV: &str = "CVTEST_BACKGROUND";

/// `0` (or `off`, `false`): no container of this process has a cgroup an earlier one had, whatever
/// its options say (see [`Options::set_background`]; for A/B measurements).
pub const CGROUP_REUSE_ENV: &str = "CVTEST_CGROUP_REUSE";

/// Set in the environment of every process a [`Container`] spawns, to the container's id.
/// `#[cv_test]` bodies run directly when they see it: never a container inside a container.
pub const ENV_CONTAINER: &str = "CVTEST_CONTAINER";

/// Set for a container with a network: the container's address (`198.19.0.2`).
pub const ENV_NET_ADDRESS: &str = "CVTEST_NET_ADDRESS";
/// Set for a container with a network: the host end's address (`198.19.0.1`).
pub const ENV_NET_HOST: &str = "CVTEST_NET_HOST";
/// Set for a container with a network: the subnet's prefix length (`30`).
pub const ENV_NET_PREFIX: &str = "CVTEST_NET_PREFIX";

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
