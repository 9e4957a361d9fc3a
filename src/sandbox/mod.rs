//! The container's processes: clone into new namespaces, PID 1, mounts.
//!
//! `spawn.rs` prepares everything in the parent (C strings, fds, the mount plan), clones the init
//! process and talks to it over a typed channel. `init.rs` is the only code that runs in the
//! child between clone and exec: async-signal-safe, raw syscalls, no allocation. `wire.rs`
//! carries an init plan to a zygote (`crate::zygote`), which clones the init in the caller's place.
//! `nested.rs` does what a rootless lab maker may not do itself, in helpers that join the test's
//! user namespace.

pub(crate) mod channel;
pub(crate) mod init;
pub(crate) mod mounts;
pub(crate) mod nested;
pub(crate) mod spawn;
pub(crate) mod userns;
pub(crate) mod wire;
