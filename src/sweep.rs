//! Sweeping what a dead runner left: cgroups named `cvtest.<pid>.<start>.<seq>` and veths whose
//! alias names an owner that no longer runs. Safe with several runners at once: a live owner's
//! things are never touched.

/// The owner tag of this process: `<pid>.<start time in clock ticks since boot>`.
pub fn owner_tag() -> &'static str {
    todo!("sweep: owner tag")
}
