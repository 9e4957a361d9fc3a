//! Networking, in-process over rtnetlink (netlink-packet-route on a netlink-sys socket): no `ip`
//! processes.
//!
//! A container with a network gets a veth pair: the host end `veth{id}` in the host's namespace,
//! the container end `veth{partial_id}c` created directly inside the container's network
//! namespace (IFLA_NET_NS_FD on the peer). Addresses on both ends, both up, a default route in the
//! container via the host end. The host end's alias records the owner (`cvtest owner=<pid>:<start
//! time>`) so that a sweep can remove the links of a dead runner.
//!
//! Teardown does not delete the veth synchronously: closing the last handle on the container's
//! network namespace destroys the container end and with it the host end. Names carry a
//! per-process counter and the pid, so a new pair never collides with one still being torn down.

mod netlink;
mod validate;
mod veth;

pub use validate::check_host_routes;
pub use veth::{sweep_stale_links, Veth, VethName};

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// A network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network {subnet} clashes with {route} on the host's interface {interface}; pick a subnet that no host route covers")]
    RouteClash { subnet: String, route: String, interface: String },
    #[error("failed to open a netlink socket{}", in_ns.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Socket { in_ns: Option<PathBuf>, #[source] source: io::Error },
    #[error("netlink request {request} failed")]
    Netlink { request: String, #[source] source: io::Error },
    #[error("failed to bring up lo")]
    Loopback(#[source] io::Error),
    #[error("a link named {name} already exists")]
    NameTaken { name: String },
    #[error("failed to read the counters of {name}")]
    Stats { name: String, #[source] source: io::Error },
    #[error("the address {addr} is not usable: {reason}")]
    Address { addr: Ipv4Addr, reason: String },
}
