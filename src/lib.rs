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
//! use cvtest::{Caps, Command, Container, Options};
//!
//! let mut opts = Options::new();
//! opts.set_caps(Caps::CGROUPS | Caps::NETWORK | Caps::FILESYSTEM | Caps::PROCESS_CONTROL);
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
//! See `ARCHITECTURE.md` in the repository for how the pieces fit.

mod capture;
pub mod cgroup;
mod container;
mod error;
pub mod net;
mod options;
mod outcome;
mod preflight;
mod sandbox;
pub mod sweep;
mod sys;
mod userns_support;
pub mod zygote;

#[doc(hidden)]
pub mod __private;

pub use container::{Command, Container, KillHandle};
pub use error::{CreateError, DestroyError, SpawnError, WaitError, ZygoteError};
pub use options::{Caps, Limits, Options, Rootfs, Stdio};
pub use outcome::{Measured, NetStats, Outcome, Peaks, Termination};
pub use userns_support::{UsernsProblem, APPARMOR_PROFILE};
pub use zygote::Zygote;

pub use cvtest_macros::cv_test;
pub use cvtest_spec as spec;
pub use cvtest_spec::{Capabilities, CpuQuota, CpuWeight, MemoryLimit, NetworkSpec, ParseError, PidsLimit};

/// Set in the environment of every process a [`Container`] spawns, to the container's id.
/// `#[cv_test]` bodies run directly when they see it: never a container inside a container.
pub const ENV_CONTAINER: &str = "CVTEST_CONTAINER";

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
