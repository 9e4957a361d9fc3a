//! What cvtest's own tests reach below the public API. Not a public API: no stability promise,
//! hidden from the docs, used by `tests/privileged`, `cargo-cvtest/tests` and the benches only.
//!
//! - cgroups: [`Hierarchy`] (detect this process's hierarchy, create a cgroup with limits,
//!   `release` the supervisor leaf) and the [`Cgroup`] interface of one cgroup;
//! - network: [`Veth`] pairs and their [`VethName`]s, a [`Netlink`] socket, the host route
//!   check, the veth sweep and the owner alias prefix;
//! - the owner tag of this process and the cgroup sweep.

pub use crate::cgroup::{Cgroup, CgroupStats, CgroupVersion, Hierarchy, PeakSupport, Sample};
pub use crate::net::{check_host_routes, sweep_stale_links, Answer, Netlink, Veth, VethName, ALIAS_PREFIX};
pub use crate::sweep::sweep_stale_cgroups_now;

/// The owner tag of this process, `<pid>.<start>.<pidns inode>`: in its cgroups' names and its
/// veths' aliases.
pub fn owner_tag() -> &'static str {
    crate::owner::tag()
}

/// Whether the owner of `tag` may still run (anything but provably dead): what the sweeps ask.
pub fn owner_may_be_alive(tag: &str) -> bool {
    crate::owner::may_be_alive(tag)
}

/// Releases `veth` as a container's teardown does: the kernel deletes it with its network
/// namespace, and until then a route check names it as ours.
pub fn release_veth(veth: Veth) {
    crate::net::release_veth(veth)
}

/// Returns once the background thread has done every job queued so far (the teardown that
/// destroyed containers left it: a cgroup's removal or recycling, a namespace's check).
pub fn background_settled() {
    crate::background::settle()
}

/// SIGKILLs each of `pids` that `dir/cgroup.procs` still lists, through a pidfd opened before
/// the check (what the kill of a cgroup without `cgroup.kill` or a frozen freezer does).
pub fn kill_pids_still_in(dir: &std::path::Path, pids: &[i32]) -> Result<(), crate::CgroupError> {
    crate::cgroup::fs::kill_pids(dir, pids)
}
