//! Networking, in-process over rtnetlink (netlink-packet-route on a synchronous netlink-sys
//! socket): no `ip` processes.
//!
//! A container with a network gets a veth pair: the host end `veth{id}` in the host's namespace,
//! the container end `veth{id}c` created directly inside the container's network namespace
//! (`IFLA_NET_NS_FD` on the peer: about 1 ms, where moving it in afterwards costs about 30 ms).
//! Addresses on both ends, both up, `lo` up, a default route in the container via the host end.
//! The host end's alias records the owner (`cvtest owner=<owner tag>`) so that a sweep can remove
//! the links of a dead runner. By default the host end filters what comes in (`filter`): the
//! container reaches the host end's address and nothing else of the host.
//!
//! Teardown does not delete the veth synchronously: when the container's network namespace goes
//! away the kernel destroys the container end, and with it the host end. Names carry the pid and
//! a per-process counter and skip any name still present, so a new pair never collides with one
//! the kernel is still tearing down.

mod filter;
mod netlink;
mod netns;
mod validate;
mod veth;

pub use netlink::{Answer, Netlink, NetlinkError};
pub use validate::check_host_routes;
pub use veth::{sweep_stale_links, Veth, VethName, ALIAS_PREFIX};

use std::io;

/// A network operation failed. Every message says what was attempted and in which namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("failed to write {path}")]
    Sysctl {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("network {subnet} overlaps the host's route {route} on interface {interface}; a veth there would break the host's networking, so pick a subnet that no host route covers")]
    RouteClash { subnet: String, route: String, interface: String },
    #[error("failed to open a netlink socket in {netns}")]
    Socket {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to {action} {netns}")]
    Netns {
        action: &'static str,
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink request {request} failed in {netns}")]
    Netlink {
        request: String,
        netns: String,
        #[source]
        source: NetlinkError,
    },
    #[error("a link named {name} already exists{where_}; it may belong to another process, or a previous run that used the same pid", where_ = if *in_container { " in the container's network namespace" } else { " on the host" })]
    NameTaken { name: String, in_container: bool },
    #[error("failed to load the filter that keeps a container to the host end {name} (BPF_PROG_LOAD); the kernel needs BPF and cls_bpf for it, or give the test host_access = \"all\"")]
    HostFilter {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to read the traffic counters of {name}")]
    Stats {
        name: String,
        #[source]
        source: NetlinkError,
    },
}
