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
pub(crate) mod pool;
mod released;
mod switch;
mod validate;
mod veth;

pub use released::wait_released;
pub(crate) use released::{forget_removed as forget_removed_veths, is_released, release as release_veth};

pub use netlink::{Answer, Netlink, NetlinkError};
pub use pool::NetnsPoolStats;
pub(crate) use switch::{LabPort, ShapeError, Shaping, Switch, NODE_END};
pub use validate::check_host_routes;
pub(crate) use validate::{host_ipv4_routes, route_overlaps};
pub(crate) use veth::ReadyPair;
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
    #[error("network {subnet} overlaps the host's route {route}{on}; a veth there would break the host's networking, so pick a subnet that no host route covers", on = on_interface(*ifindex, interface.as_deref(), *ours))]
    RouteClash {
        subnet: String,
        route: String,
        /// The route's interface, `None` for a route without one.
        ifindex: Option<u32>,
        /// Its name; `None` without an interface, or when the link went before the name was read.
        interface: Option<String>,
        /// The interface is a veth this process released, which the kernel is deleting.
        ours: bool,
    },
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

/// " on interface eth0", " on interface 7 (gone)", " on a veth of this process being removed".
fn on_interface(ifindex: Option<u32>, name: Option<&str>, ours: bool) -> String {
    match (ifindex, name, ours) {
        (Some(_), Some(name), true) => format!(" on interface {name}, a veth of this process being removed"),
        (Some(_), Some(name), false) => format!(" on interface {name}"),
        (Some(index), None, _) => format!(" on interface {index}, already removed"),
        (None, _, _) => String::new(),
    }
}
