//! Sweeping what a dead runner left: cgroups named `cvtest.<pid>.<start>.<seq>` and veths whose
//! alias names an owner that no longer runs. Safe with several runners at once: a live owner's
//! things are never touched.

// TEMPORARY stubs of the `cgroup` branch's contract; replaced by that branch on merge.

/// The owner tag of this process: `<pid>.<start time in clock ticks since boot>`.
pub fn owner_tag() -> &'static str {
    "0.0"
}

/// Whether the owner named by `tag` still runs.
pub fn owner_alive(tag: &str) -> bool {
    let _ = tag;
    true
}

/// Removes the cgroups of dead owners below this process's own cgroups.
pub fn sweep_stale_cgroups() -> Result<usize, crate::cgroup::CgroupError> {
    Ok(0)
}
