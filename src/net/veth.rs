//! The veth pair of a container.

use std::os::fd::BorrowedFd;

use cvtest_spec::NetworkSpec;

use super::NetError;
use crate::outcome::NetStats;

// TEMPORARY stubs of the `net` branch's contract; replaced by that branch on merge.

/// `veth{id}` on the host, `veth{partial_id}c` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethName {
    host: String,
}

impl VethName {
    pub fn next() -> VethName {
        VethName { host: String::from("vethstub") }
    }
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// A live veth pair.
#[derive(Debug)]
pub struct Veth {}

impl Veth {
    pub fn create(
        netns: BorrowedFd<'_>,
        spec: &NetworkSpec,
        name: &VethName,
        owner: &str,
    ) -> Result<Veth, NetError> {
        let _ = (netns, spec, name, owner);
        Err(NetError::NameTaken { name: name.host().to_owned() })
    }
    pub fn stats(&self) -> Result<NetStats, NetError> {
        Ok(NetStats::default())
    }
    pub fn release(self) {}
}

/// Deletes veths whose alias names a dead owner.
pub fn sweep_stale_links(owner_alive: fn(&str) -> bool) -> Result<usize, NetError> {
    let _ = owner_alive;
    Ok(0)
}
