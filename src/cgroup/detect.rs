//! Finding the cgroup hierarchies and this process's own cgroup in each.

/// Which cgroup version the machine runs for the controllers cvtest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The detected hierarchies, and where this process's own cgroup is in each.
#[derive(Debug, Clone)]
pub struct Hierarchy {}

// TEMPORARY stub of the `cgroup` branch's contract, so the sandbox compiles before it lands.
// Replaced wholesale by the cgroup branch on merge.
impl Hierarchy {
    /// Detects the hierarchies (once per process).
    pub fn detect() -> Result<&'static Hierarchy, super::CgroupError> {
        Err(super::CgroupError::NoHierarchy { mountinfo: "/proc/self/mountinfo".into() })
    }

    /// Creates a new cgroup below this process's own, with `limits` written.
    pub fn create(
        &self,
        limits: &crate::options::Limits,
    ) -> Result<Box<dyn super::Cgroup>, super::CgroupError> {
        let _ = limits;
        Err(super::CgroupError::NoHierarchy { mountinfo: "/proc/self/mountinfo".into() })
    }
}
