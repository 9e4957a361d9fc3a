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
