//! A lab's switch: a bridge in a network namespace of its own, made and held by the process
//! that makes the lab (the `#[cv_test]` parent or the runner), never by the test. A rootless
//! maker's ([`Switch::create_in`]) is owned by the test's user namespace, and its sockets (the
//! switch's, each member's) are opened by helpers there (`sandbox::nested`).
//!
//! Every member (the test's container, each node) gets a veth pair: one end inside the member's
//! network namespace (`lab0` for the test, `eth0` for a node) with the member's address, the
//! other in the switch's namespace, enslaved to the bridge. Names in the switch's namespace are
//! the lab's own (`test`, `n2` for the node at `.2`): nothing else lives there, and the kernel
//! frees the namespace (the bridge and every port with it) when the last fd of it closes, also
//! when its maker is SIGKILLed.
//!
//! On the switch side of a node's port:
//! - partitions: a `clsact` qdisc and a `cls_bpf` program at egress ([`super::filter`])
//!   dropping every frame to the node from the members cut from it (known by source MAC, or by
//!   IPv4 source): unicast, broadcast, ARP, IPv6, raw frames alike;
//! - impairments ([`Shaping`]): the root qdisc of both ends of the link (so each direction is
//!   delayed, lossy or limited): `tbf` for a rate alone, `netem` (which has its own rate) for
//!   delay, jitter or loss.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcHeader, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::netlink::{set_up_message, Netlink, NetlinkError};
use super::veth::{address_message, no_ipv6_addresses_message, run, Step, LOOPBACK_INDEX};
use super::{filter, NetError};

/// The bridge's name in the switch's namespace.
const BRIDGE: &str = "sw";
/// The filter handle of a port's partition program (fixed, so it can be replaced).
const CUT_HANDLE: TcHandle = TcHandle { major: 0, minor: 1 };
/// The root qdisc's handle of an impaired end, `1:`.
const ROOT_HANDLE: TcHandle = TcHandle { major: 1, minor: 0 };

/// The switch: its namespace (held by this fd and the socket; nothing else) and a netlink
/// socket in it.
pub struct Switch {
    netns: OwnedFd,
    nl: Netlink,
    bridge: u32,
    /// Rootless: the test's user namespace, which owns the switch's network namespace (and the
    /// nodes' user namespaces); members' sockets are opened from there (`sandbox::nested`).
    userns: Option<Arc<OwnedFd>>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("netns", &super::netns::describe(self.netns.as_fd()))
            .field("bridge", &self.bridge)
            .finish()
    }
}

/// A node's place on a switch, given to its container before spawn: the link is made while the
/// init waits for its go, so the node's command starts with its address in place.
#[derive(Debug, Clone)]
pub(crate) struct LabPort {
    pub(crate) switch: Arc<Mutex<Switch>>,
    /// The port's name in the switch's namespace.
    pub(crate) port: String,
    pub(crate) address: Ipv4Addr,
    pub(crate) prefix: u8,
    /// A rootless lab's user namespace (the test's): the node's init is cloned inside it.
    pub(crate) userns: Option<Arc<OwnedFd>>,
}

/// The name of a node's end of its link, inside the node.
pub(crate) const NODE_END: &str = "eth0";

impl LabPort {
    /// Links the node's namespace `member` to the switch (a pair left by an earlier run of the
    /// node on the same port is deleted first).
    pub(crate) fn attach(&self, member: BorrowedFd<'_>) -> Result<(), NetError> {
        let mut switch = self.switch.lock().unwrap_or_else(PoisonError::into_inner);
        switch.detach(&self.port)?;
        switch.attach(member, &self.port, NODE_END, self.address, self.prefix).map(drop)
    }
}

/// How a link is impaired, each direction. `None`/zero: not impaired in that respect.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shaping {
    pub delay: Duration,
    pub jitter: Duration,
    /// Loss probability, 0.0..=1.0.
    pub loss: f64,
    /// Bits per second.
    pub rate: Option<u64>,
}

impl Shaping {
    /// Whether it needs netem (delay, jitter or loss); a rate alone is tbf's.
    pub fn needs_netem(&self) -> bool {
        !self.delay.is_zero() || !self.jitter.is_zero() || self.loss > 0.0
    }

    fn is_none(&self) -> bool {
        !self.needs_netem() && self.rate.is_none()
    }
}

/// A qdisc the kernel does not have.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("the kernel has no {qdisc} qdisc (build it with {option}, or load its module sch_{qdisc}); it is what {what} needs")]
    Missing { qdisc: &'static str, option: &'static str, what: &'static str },
    #[error(transparent)]
    Net(#[from] NetError),
}

impl Switch {
    /// A new network namespace (made on a thread of its own, which then ends: no thread of this
    /// process moves) with a bridge `sw` up and `lo` up.
    pub fn create() -> Result<Switch, NetError> {
        Switch::with_bridge(Switch::root_netns()?, None)
    }

    /// [`Switch::create`] for a rootless maker: the namespace is made by a helper in the test's
    /// user namespace `userns` (which owns it), and its socket opened there.
    pub(crate) fn create_in(userns: Arc<OwnedFd>) -> Result<Switch, NetError> {
        let (socket, netns) = crate::sandbox::nested::netlink_socket_in(userns.as_fd(), None)
            .map_err(|e| nested_error("make the lab switch's", "network namespace", e))?;
        let netns = netns.expect("a new namespace is returned");
        let nl = Netlink::from_socket(socket, "the lab switch's network namespace".to_owned())?;
        Switch::with_bridge((netns, nl), Some(userns))
    }

    fn root_netns() -> Result<(OwnedFd, Netlink), NetError> {
        let netns = std::thread::spawn(|| -> Result<OwnedFd, NetError> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| NetError::Netns {
                action: "make (unshare) the lab switch's",
                netns: "network namespace".to_owned(),
                source: errno.into(),
            })?;
            let path = "/proc/thread-self/ns/net";
            std::fs::File::open(path).map(OwnedFd::from).map_err(|source| NetError::Netns {
                action: "open the lab switch's",
                netns: path.to_owned(),
                source,
            })
        })
        .join()
        .expect("the switch thread does not panic")?;
        let nl = Netlink::open_in(netns.as_fd())?;
        Ok((netns, nl))
    }

    fn with_bridge(
        (netns, mut nl): (OwnedFd, Netlink),
        userns: Option<Arc<OwnedFd>>,
    ) -> Result<Switch, NetError> {
        let mut create = LinkMessage::default();
        create.header.flags = LinkFlags::Up;
        create.header.change_mask = LinkFlags::Up;
        create.attributes.push(LinkAttribute::IfName(BRIDGE.to_owned()));
        create.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        run(
            &mut nl,
            vec![
                Step::new(RouteNetlinkMessage::NewLink(create), NLM_F_CREATE | NLM_F_EXCL)
                    .what(format!("RTM_NEWLINK bridge {BRIDGE}")),
                Step::new(set_up_message(LOOPBACK_INDEX), 0).what("RTM_SETLINK lo up".to_owned()),
            ],
        )?;
        let bridge = nl.link_index(BRIDGE)?.ok_or_else(|| {
            nl.error(
                format!("RTM_GETLINK {BRIDGE}"),
                NetlinkError::Decode("the new bridge could not be read back".to_owned()),
            )
        })?;
        run(
            &mut nl,
            vec![Step::new(no_ipv6_addresses_message(bridge), 0)
                .what(format!("RTM_SETLINK {BRIDGE} addrgenmode none"))
                .tolerate(Errno::EAFNOSUPPORT)],
        )?;
        Ok(Switch { netns, nl, bridge, userns })
    }

    /// Whether the switch is a rootless maker's.
    pub(crate) fn is_rootless(&self) -> bool {
        self.userns.is_some()
    }

    /// A route-netlink socket in the member's namespace `member`: opened there (root), or by a
    /// helper in the test's user namespace (rootless).
    fn open_member(&self, member: BorrowedFd<'_>) -> Result<Netlink, NetError> {
        let Some(userns) = &self.userns else { return Netlink::open_in(member) };
        let label = super::netns::describe(member);
        let (socket, _) = crate::sandbox::nested::netlink_socket_in(userns.as_fd(), Some(member))
            .map_err(|e| nested_error("open a netlink socket in", &label, e))?;
        Netlink::from_socket(socket, label)
    }

    /// Links the network namespace `member` to the bridge: the port `port` here, `inside` there
    /// with `address/prefix`, both up, `lo` up there. Returns the port's index. On failure the
    /// pair is deleted again.
    pub fn attach(
        &mut self,
        member: BorrowedFd<'_>,
        port: &str,
        inside: &str,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<u32, NetError> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(inside.to_owned()));
        // A MAC made of the address: a member that comes back (a restarted node) is the same
        // neighbour to everyone, whose ARP caches stay right.
        // The partition filters know a sender by it too (`filter::LAB_MAC_PREFIX`).
        let [a, b, c, d] = address.octets();
        let [p, q] = filter::LAB_MAC_PREFIX;
        peer.attributes.push(LinkAttribute::Address(vec![p, q, a, b, c, d]));
        peer.attributes.push(LinkAttribute::NetNsFd(std::os::fd::AsRawFd::as_raw_fd(&member)));
        let mut create = LinkMessage::default();
        create.header.flags = LinkFlags::Up;
        create.header.change_mask = LinkFlags::Up;
        create.attributes.push(LinkAttribute::IfName(port.to_owned()));
        create.attributes.push(LinkAttribute::Controller(self.bridge));
        create.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.nl.request(RouteNetlinkMessage::NewLink(create), NLM_F_CREATE | NLM_F_EXCL).map_err(|e| {
            self.nl.error(format!("RTM_NEWLINK veth {port} (lab port) with peer {inside}"), e)
        })?;
        let index = self.nl.link_index(port)?.ok_or_else(|| {
            self.nl
                .error(format!("RTM_GETLINK {port}"), NetlinkError::Decode("the new port is gone".to_owned()))
        })?;
        let configured = run(
            &mut self.nl,
            vec![Step::new(no_ipv6_addresses_message(index), 0)
                .what(format!("RTM_SETLINK {port} addrgenmode none"))
                .tolerate(Errno::EAFNOSUPPORT)],
        )
        .and_then(|()| configure_member(self.open_member(member)?, inside, address, prefix));
        match configured {
            Ok(()) => Ok(index),
            Err(e) => {
                let _ = self.nl.delete_link(index);
                Err(e)
            }
        }
    }

    /// Deletes the port `port` (and so its pair) if it is still there; waits for the kernel.
    pub fn detach(&mut self, port: &str) -> Result<(), NetError> {
        if let Some(index) = self.nl.link_index(port)? {
            self.nl.delete_link(index)?;
        }
        Ok(())
    }

    /// Makes the port `port` drop every frame the switch would deliver to its member from any of
    /// `blocked` (none: passes everything), whatever the frame carries. The first call adds the
    /// port's `clsact` qdisc; each call replaces the program.
    pub fn set_blocked(&mut self, port: &str, blocked: &[Ipv4Addr]) -> Result<(), NetError> {
        let index = self.port_index(port)?;
        // Rootless, no eBPF (BPF_PROG_LOAD of a tc program needs CAP_BPF and CAP_NET_ADMIN of
        // the host): the same filter in classic BPF, which cls_bpf takes inline.
        let prog = if self.is_rootless() { None } else { Some(filter::load_partition(blocked, port)?) };
        let message = match &prog {
            Some(prog) => filter::bpf_filter_message(
                index,
                prog,
                filter::CLSACT_EGRESS,
                CUT_HANDLE,
                filter::PARTITION_NAME,
            ),
            None => filter::classic_partition_message(index, blocked, CUT_HANDLE),
        };
        run(
            &mut self.nl,
            vec![
                Step::new(filter::clsact_message(index), NLM_F_CREATE | NLM_F_EXCL)
                    .what(format!("RTM_NEWQDISC clsact on {port}"))
                    .tolerate(Errno::EEXIST),
                Step::new(message, NLM_F_CREATE | NLM_F_REPLACE).what(format!(
                    "RTM_NEWTFILTER bpf (partition, {} senders) on {port} egress",
                    blocked.len()
                )),
            ],
        )
    }

    /// Impairs the link of `port` both ways: its root qdisc here, and that of `inside` in the
    /// member's namespace `member`. [`Shaping::default`] removes the impairment.
    pub fn shape(
        &mut self,
        port: &str,
        member: BorrowedFd<'_>,
        inside: &str,
        shaping: &Shaping,
    ) -> Result<(), ShapeError> {
        let index = self.port_index(port)?;
        shape_one(&mut self.nl, index, port, shaping)?;
        let mut there = self.open_member(member)?;
        let inside_index = there.link_index(inside)?.ok_or_else(|| {
            there.error(
                format!("RTM_GETLINK {inside}"),
                NetlinkError::Decode("the member's end is gone".to_owned()),
            )
        })?;
        shape_one(&mut there, inside_index, inside, shaping)
    }

    fn port_index(&mut self, port: &str) -> Result<u32, NetError> {
        self.nl.link_index(port)?.ok_or_else(|| {
            self.nl.error(format!("RTM_GETLINK {port}"), NetlinkError::Decode("no such lab port".to_owned()))
        })
    }
}

/// A helper's failure as a [`NetError`].
fn nested_error(action: &'static str, netns: &str, e: crate::sandbox::nested::Failed) -> NetError {
    NetError::Netns { action, netns: netns.to_owned(), source: std::io::Error::other(e) }
}

/// The member's end (through `nl`, a socket in its namespace): IPv6 quiet, up, its address,
/// and `lo` up, in one datagram.
fn configure_member(mut nl: Netlink, inside: &str, address: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    let index = nl.link_index(inside)?.ok_or_else(|| {
        nl.error(format!("RTM_GETLINK {inside}"), NetlinkError::Decode("the member's end is gone".to_owned()))
    })?;
    run(
        &mut nl,
        vec![
            Step::new(no_ipv6_addresses_message(index), 0)
                .what(format!("RTM_SETLINK {inside} addrgenmode none"))
                .tolerate(Errno::EAFNOSUPPORT),
            Step::new(set_up_message(index), 0).what(format!("RTM_SETLINK {inside} up")),
            Step::new(address_message(index, address, prefix), NLM_F_CREATE | NLM_F_EXCL)
                .what(format!("RTM_NEWADDR {address}/{prefix} on {inside}")),
            Step::new(set_up_message(LOOPBACK_INDEX), 0).what("RTM_SETLINK lo up".to_owned()),
        ],
    )
}

/// The root qdisc of `index` for `shaping`: removed, `tbf`, or `netem`.
fn shape_one(nl: &mut Netlink, index: u32, name: &str, shaping: &Shaping) -> Result<(), ShapeError> {
    let header =
        TcHeader { index: index as i32, handle: ROOT_HANDLE, parent: TcHandle::ROOT, ..Default::default() };
    if shaping.is_none() {
        let msg = TcMessage::from_parts(header, vec![]);
        return match nl.request(RouteNetlinkMessage::DelQueueDiscipline(msg), 0) {
            Ok(_) => Ok(()),
            // Nothing there to remove.
            Err(e) if matches!(e.errno(), Some(Errno::ENOENT | Errno::EINVAL)) => Ok(()),
            Err(e) => Err(nl.error(format!("RTM_DELQDISC root on {name}"), e).into()),
        };
    }
    let (kind, options, option, what) = if shaping.needs_netem() {
        ("netem", netem_options(shaping), "CONFIG_NET_SCH_NETEM", "delay, jitter and loss")
    } else {
        ("tbf", tbf_options(shaping.rate.unwrap_or(u64::MAX)), "CONFIG_NET_SCH_TBF", "a link rate")
    };
    let msg = TcMessage::from_parts(
        header,
        vec![TcAttribute::Kind(kind.to_owned()), TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, options))],
    );
    match nl.request(RouteNetlinkMessage::NewQueueDiscipline(msg), NLM_F_CREATE | NLM_F_REPLACE) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.errno(), Some(Errno::ENOENT | Errno::EOPNOTSUPP)) => {
            Err(ShapeError::Missing { qdisc: kind, option, what })
        }
        Err(e) => Err(nl.error(format!("RTM_NEWQDISC {kind} root on {name}"), e).into()),
    }
}

const TCA_OPTIONS: u16 = 2;

/// One netlink attribute: header, value, padding to 4 bytes.
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity((len + 3) & !3);
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize((len + 3) & !3, 0);
    out
}

/// `struct tc_netem_qopt` (latency, limit, loss, gap, duplicate, jitter: the 32-bit forms, the
/// exact values follow as attributes), then `TCA_NETEM_LATENCY64`, `TCA_NETEM_JITTER64`
/// (nanoseconds) and the rate (`TCA_NETEM_RATE`, bytes per second; `TCA_NETEM_RATE64` above
/// 4 GB/s).
fn netem_options(s: &Shaping) -> Vec<u8> {
    const TCA_NETEM_RATE: u16 = 6;
    const TCA_NETEM_RATE64: u16 = 8;
    const TCA_NETEM_LATENCY64: u16 = 10;
    const TCA_NETEM_JITTER64: u16 = 11;
    /// Packets queued in the qdisc at most.
    const LIMIT: u32 = 10_000;
    let ticks = |d: Duration| u32::try_from(d.as_nanos() / 64).unwrap_or(u32::MAX);
    let loss = (s.loss.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u32;
    let mut out = Vec::new();
    for field in [ticks(s.delay), LIMIT, loss, 0, 0, ticks(s.jitter)] {
        out.extend_from_slice(&field.to_ne_bytes());
    }
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    out.extend(nla(TCA_NETEM_LATENCY64, &nanos(s.delay).to_ne_bytes()));
    out.extend(nla(TCA_NETEM_JITTER64, &nanos(s.jitter).to_ne_bytes()));
    if let Some(bits) = s.rate {
        let bytes = (bits / 8).max(1);
        let mut rate = Vec::with_capacity(16);
        rate.extend_from_slice(&u32::try_from(bytes).unwrap_or(u32::MAX).to_ne_bytes());
        rate.extend_from_slice(&[0u8; 12]); // packet_overhead, cell_size, cell_overhead
        out.extend(nla(TCA_NETEM_RATE, &rate));
        if bytes > u64::from(u32::MAX) {
            out.extend(nla(TCA_NETEM_RATE64, &bytes.to_ne_bytes()));
        }
    }
    out
}

/// `TCA_TBF_PARMS` (`struct tc_tbf_qopt`: rate and peak rate specs, limit, buffer, mtu), the
/// burst in bytes (`TCA_TBF_BURST`, so no rate table is needed) and `TCA_TBF_RATE64` above
/// 4 GB/s. The queue holds about 100 ms at the rate.
fn tbf_options(bits: u64) -> Vec<u8> {
    const TCA_TBF_PARMS: u16 = 1;
    const TCA_TBF_RATE64: u16 = 4;
    const TCA_TBF_BURST: u16 = 6;
    const TC_LINKLAYER_ETHERNET: u8 = 1;
    let bytes = (bits / 8).max(1);
    // At least a few full frames, else about 4 ms at the rate.
    let burst = u32::try_from((bytes / 250).max(16 * 1024)).unwrap_or(u32::MAX);
    let limit = u32::try_from((bytes / 10).max(u64::from(burst) * 2)).unwrap_or(u32::MAX);
    let ratespec = |rate: u32| {
        let mut r = vec![0u8, TC_LINKLAYER_ETHERNET, 0, 0, 0, 0, 0, 0];
        r.extend_from_slice(&rate.to_ne_bytes());
        r
    };
    let mut parms = ratespec(u32::try_from(bytes).unwrap_or(u32::MAX));
    parms.extend(vec![0u8; 12]); // no peak rate
    parms.extend_from_slice(&limit.to_ne_bytes());
    parms.extend_from_slice(&0u32.to_ne_bytes()); // buffer: from TCA_TBF_BURST
    parms.extend_from_slice(&0u32.to_ne_bytes()); // mtu: only with a peak rate
    let mut out = nla(TCA_TBF_PARMS, &parms);
    out.extend(nla(TCA_TBF_BURST, &burst.to_ne_bytes()));
    if bytes > u64::from(u32::MAX) {
        out.extend(nla(TCA_TBF_RATE64, &bytes.to_ne_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tbf_parms_have_the_kernels_layout() {
        let o = tbf_options(8_000_000);
        // TCA_TBF_PARMS: 4-byte header + 36-byte struct tc_tbf_qopt.
        assert_eq!(u16::from_ne_bytes([o[0], o[1]]), 40);
        assert_eq!(u32::from_ne_bytes(o[12..16].try_into().unwrap()), 1_000_000, "rate in bytes/s");
        assert_eq!(o[5], 1, "linklayer ethernet");
        // Then TCA_TBF_BURST.
        assert_eq!(u16::from_ne_bytes([o[42], o[43]]), 6);
    }

    #[test]
    fn netem_leads_with_its_struct() {
        let s = Shaping { delay: Duration::from_millis(50), loss: 0.5, ..Default::default() };
        let o = netem_options(&s);
        assert_eq!(u32::from_ne_bytes(o[0..4].try_into().unwrap()), 50_000_000 / 64);
        assert_eq!(u32::from_ne_bytes(o[8..12].try_into().unwrap()), u32::MAX / 2);
        // TCA_NETEM_LATENCY64 right after the 24-byte struct.
        assert_eq!(u16::from_ne_bytes([o[26], o[27]]), 10);
        assert_eq!(i64::from_ne_bytes(o[28..36].try_into().unwrap()), 50_000_000);
        assert!(s.needs_netem() && !Shaping { rate: Some(1), ..Default::default() }.needs_netem());
    }
}
