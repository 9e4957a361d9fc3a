//! The veth pair of a container.

use super::NetError;

/// `veth{id}` on the host, `veth{partial_id}c` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethName {}

/// A live veth pair.
#[derive(Debug)]
pub struct Veth {}

/// Deletes veths whose alias names a dead owner.
pub fn sweep_stale_links() -> Result<usize, NetError> {
    todo!()
}
