//! The veth pair of a container: naming, creation with the peer born inside the container's
//! network namespace, traffic counters, and the sweep of pairs whose owner died.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use cvtest_spec::{HostAccess, NetworkSpec};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::stats::{StatsAttribute, StatsFilterMask, StatsMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::filter;
use super::netlink::{set_up_message, with_host, Netlink};
use super::netns;
use super::validate::check_routes_with;
use super::NetError;
use crate::outcome::NetStats;

/// The host end's alias is this prefix followed by the owner tag.
pub const ALIAS_PREFIX: &str = "cvtest owner=";

/// `IFNAMSIZ - 1`: the longest interface name the kernel accepts.
const IFNAME_MAX: usize = 15;
/// Width of the pid part of an id, in base 36: 36^5 > 4194304, the largest pid_max.
const PID_DIGITS: usize = 5;
/// 36^5: what five base-36 digits hold. The counter part wraps here, keeping an id within 10
/// characters; names still in use are skipped after a wrap.
const FIVE_DIGITS: u32 = 36u32.pow(5);
/// `LOOPBACK_IFINDEX`: `lo` has index 1 in every network namespace.
pub(super) const LOOPBACK_INDEX: u32 = 1;

static NEXT_NAME: AtomicU32 = AtomicU32::new(0);

/// Held across the route check and the creation of a pair, so two containers of this process
/// cannot both pass the check with overlapping subnets. It does not order separate processes.
static SETUP: Mutex<()> = Mutex::new(());

/// The two names of a veth pair: `veth{id}` on the host, `veth{id}c` in the container.
///
/// The id is the pid (5 base-36 digits) followed by a per-process counter (1 to 5 base-36
/// digits), so names are unique within a process and across concurrent runners and both fit the
/// 15-character limit (the container end is at most `veth` + 10 + `c`). containerv shortened its
/// long id for the container end; ours is short enough to use whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VethName {
    host: String,
    container: String,
}

impl VethName {
    /// A name no link on this host has now. Names are never reused by one process, and a name
    /// still held (say by a pair of a dead process with the same pid that the kernel is still
    /// tearing down) is skipped; only this process makes names with its pid, so none can appear
    /// between this check and the creation.
    ///
    /// The check asks netlink (`RTM_GETLINK`), never `if_nametoindex`: as root, the kernel
    /// answers an ioctl about a missing link name by running `modprobe netdev-<name>` and then
    /// `modprobe <name>`, and waits for both (`dev_load`). A name that is free is exactly that
    /// case: two module-loader runs per container on a kernel with modules (0.4 s in the
    /// emulated CI VM). If no netlink socket can be had, the name is taken unchecked: creating
    /// the pair then says what is wrong.
    pub fn next() -> VethName {
        let mut netlink = super::Netlink::open().ok();
        loop {
            let name = VethName::next_id();
            let taken = netlink.as_mut().is_some_and(|nl| matches!(nl.link_index(name.host()), Ok(Some(_))));
            if !taken {
                return name;
            }
        }
    }

    /// The next name of this process, not checked against the host's links: the id of a
    /// container without a veth (its hostname, its cgroups), unique among this process's.
    pub fn next_id() -> VethName {
        let n = NEXT_NAME.fetch_add(1, Ordering::Relaxed) % FIVE_DIGITS;
        VethName::from_parts(std::process::id(), n)
    }

    fn from_parts(pid: u32, counter: u32) -> VethName {
        let mut id = base36(pid % FIVE_DIGITS);
        while id.len() < PID_DIGITS {
            id.insert(0, '0');
        }
        id.push_str(&base36(counter));
        let host = format!("veth{id}");
        let container = format!("{host}c");
        debug_assert!(container.len() <= IFNAME_MAX);
        VethName { host, container }
    }

    /// The host end: `veth{id}`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The container end: `veth{id}c`.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The id shared by both names.
    pub fn id(&self) -> &str {
        &self.host["veth".len()..]
    }
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// A live veth pair. Dropping it (or [`Veth::release`]) leaves the pair to the kernel, which
/// removes it when the container's network namespace goes away; [`Veth::delete`] removes it now.
#[derive(Debug)]
pub struct Veth {
    name: VethName,
    host_index: u32,
    container_index: u32,
    net: NetworkSpec,
    /// Rootless: the socket in the run's network namespace, which holds the host end (and
    /// keeps that namespace alive); `None`: the host end is on the host.
    run: Option<Mutex<Netlink>>,
}

impl Veth {
    /// Creates the pair for a container whose network namespace is `netns`:
    ///
    /// - checks the subnet against the host's routes ([`super::check_host_routes`]), under a
    ///   process-wide lock held until the host end has its address (and so its route);
    /// - one `RTM_NEWLINK` makes both ends, the container end directly inside `netns`, the host
    ///   end up;
    /// - the host end gets `net.host()` and the alias `cvtest owner=<owner_tag>` (the kernel
    ///   ignores an alias in the creating request); neither end gets IPv6 link-local addresses,
    ///   so an idle pair carries no traffic;
    /// - from a socket inside `netns`: the container end comes up with `net.container()` and a
    ///   default route via `net.host()`, and `lo` comes up (127.0.0.1/8).
    ///
    /// - unless `access` is [`HostAccess::All`], the host end's ingress filter
    ///   ([`super::filter`]): the container reaches the host end's address and nothing else of
    ///   the host;
    ///
    /// On any failure whatever was created is deleted again. [`NetError::NameTaken`] if a link
    /// with one of the names exists.
    pub fn create_with_access(
        netns: BorrowedFd<'_>,
        net: &NetworkSpec,
        name: &VethName,
        access: HostAccess,
        owner_tag: &str,
    ) -> Result<Veth, NetError> {
        // Loaded before the lock: it depends on nothing but the address.
        let filter = host_filter(access, net, &name.host)?;
        // Once the host end has its address its subnet shows in the host's routes, and a later
        // check sees it: the lock covers only that far.
        let setup = SETUP.lock().unwrap_or_else(PoisonError::into_inner);
        let veth = with_host(|nl| {
            check_routes_with(nl, net)?;
            let (host_index, container_index, alias_set) = create_pair(nl, netns, name, owner_tag, true)?;
            let veth = Veth { name: name.clone(), host_index, container_index, net: *net, run: None };
            match veth
                .configure_host(nl, owner_tag, alias_set, filter.as_ref(), false)
                .and_then(|()| no_forwarding(&name.host))
            {
                Ok(()) => Ok(veth),
                Err(e) => {
                    // The first error is what the caller needs. Deleting a pair we just made
                    // fails only if the kernel refuses everything, which that error shows.
                    let _ = nl.delete_link(host_index);
                    Err(e)
                }
            }
        })?;
        drop(setup);
        let configured = Netlink::open_in(netns).and_then(|mut inside| veth.configure_container(&mut inside));
        match configured {
            Ok(()) => Ok(veth),
            Err(e) => {
                let _ = with_host(|nl| nl.delete_link(veth.host_index));
                Err(e)
            }
        }
    }

    /// Configures a pair made ahead ([`ReadyPair::make`]) as [`Veth::create_with_access`] does
    /// a new one, for `net`: the route check under the same lock, the host end's address,
    /// filter and then `up`, the container end from inside `netns` (the namespace its peer was
    /// made in). On failure the pair is deleted.
    pub(crate) fn configure_ready(
        mut ready: ReadyPair,
        netns: BorrowedFd<'_>,
        net: &NetworkSpec,
        access: HostAccess,
        owner_tag: &str,
    ) -> Result<Veth, NetError> {
        let filter = host_filter(access, net, &ready.name.host)?;
        let veth = Veth {
            name: ready.name.clone(),
            host_index: ready.host_index,
            container_index: ready.container_index,
            net: *net,
            run: None,
        };
        let setup = SETUP.lock().unwrap_or_else(PoisonError::into_inner);
        // On error `ready` still owns the pair and deletes it.
        with_host(|nl| {
            check_routes_with(nl, net)?;
            veth.configure_host(nl, owner_tag, ready.alias_set, filter.as_ref(), true)
        })?;
        drop(setup);
        Netlink::open_in(netns).and_then(|mut inside| veth.configure_container(&mut inside))?;
        ready.armed = false;
        Ok(veth)
    }

    /// Rootless: the pair between the run's network namespace (the host end, with
    /// `net.host()`; a namespace owned by the container's user namespace, made by its init)
    /// and the container's (`netns`), configured through sockets the init opened in each:
    /// `run` and `inside`. This process may enter neither namespace, but requests on those
    /// sockets carry the init's credentials, which hold `CAP_NET_ADMIN` over both.
    ///
    /// No route check: nothing of the host's routing is touched. The run's namespace has `lo`
    /// and the host end, no route out: the test reaches its host end and nothing else.
    pub fn create_in_run(
        mut run: Netlink,
        mut inside: Netlink,
        netns: BorrowedFd<'_>,
        net: &NetworkSpec,
        name: &VethName,
        owner_tag: &str,
    ) -> Result<Veth, NetError> {
        let (host_index, container_index, alias_set) = create_pair(&mut run, netns, name, owner_tag, true)?;
        let mut veth = Veth { name: name.clone(), host_index, container_index, net: *net, run: None };
        let configured = veth
            .configure_host(&mut run, owner_tag, alias_set, None, false)
            .and_then(|()| {
                run.request(set_up_message(LOOPBACK_INDEX), 0)
                    .map_err(|e| run.error("RTM_SETLINK lo up", e))
                    .map(drop)
            })
            .and_then(|()| veth.configure_container(&mut inside));
        match configured {
            Ok(()) => {
                veth.run = Some(Mutex::new(run));
                Ok(veth)
            }
            Err(e) => {
                let _ = run.delete_link(host_index);
                Err(e)
            }
        }
    }

    /// Creates the pair with the default [`HostAccess::HostEnd`]: see [`Veth::create_with_access`].
    pub fn create(
        netns: BorrowedFd<'_>,
        net: &NetworkSpec,
        name: &VethName,
        owner_tag: &str,
    ) -> Result<Veth, NetError> {
        Veth::create_with_access(netns, net, name, HostAccess::HostEnd, owner_tag)
    }

    /// Address, alias, IPv6 quiet and the ingress filter (when given) on the host end, in one
    /// datagram. The host end is already up but has no carrier until the container end comes
    /// up, so all of it lands before anything is sent.
    fn configure_host(
        &self,
        nl: &mut Netlink,
        owner_tag: &str,
        alias_set: bool,
        filter: Option<&OwnedFd>,
        bring_up: bool,
    ) -> Result<(), NetError> {
        let (host, len, host_name) = (self.net.host(), self.net.prefix_len(), &self.name.host);
        let mut steps = vec![
            Step::new(address_message(self.host_index, host, len), NLM_F_CREATE | NLM_F_EXCL)
                .what(format!("RTM_NEWADDR {host}/{len} on {host_name}")),
            Step::new(no_ipv6_addresses_message(self.host_index), 0)
                .what(format!("RTM_SETLINK {host_name} addrgenmode none"))
                .tolerate(Errno::EAFNOSUPPORT),
        ];
        if !alias_set {
            steps.push(
                Step::new(alias_message(self.host_index, owner_tag), 0)
                    .what(format!("RTM_SETLINK {host_name} alias")),
            );
        }
        if let Some(prog) = filter {
            steps.push(
                Step::new(filter::qdisc_message(self.host_index), NLM_F_CREATE | NLM_F_EXCL)
                    .what(format!("RTM_NEWQDISC ingress on {host_name}")),
            );
            steps.push(
                Step::new(filter::filter_message(self.host_index, prog), NLM_F_CREATE | NLM_F_EXCL)
                    .what(format!("RTM_NEWTFILTER bpf (host end only) on {host_name} ingress")),
            );
        }
        if bring_up {
            // Last: the filter is in place before anything can pass.
            steps.push(
                Step::new(set_up_message(self.host_index), 0).what(format!("RTM_SETLINK {host_name} up")),
            );
        }
        run(nl, steps)
    }

    /// From a socket inside the namespace, in one datagram: the container end up with its
    /// address and default route, and `lo` up.
    fn configure_container(&self, inside: &mut Netlink) -> Result<(), NetError> {
        let (host, container, len) = (self.net.host(), self.net.container(), self.net.prefix_len());
        let (peer, container_name) = (self.container_index, &self.name.container);
        run(
            inside,
            vec![
                Step::new(no_ipv6_addresses_message(peer), 0)
                    .what(format!("RTM_SETLINK {container_name} addrgenmode none"))
                    .tolerate(Errno::EAFNOSUPPORT),
                Step::new(set_up_message(peer), 0).what(format!("RTM_SETLINK {container_name} up")),
                Step::new(address_message(peer, container, len), NLM_F_CREATE | NLM_F_EXCL)
                    .what(format!("RTM_NEWADDR {container}/{len} on {container_name}")),
                Step::new(default_route_message(peer, host), NLM_F_CREATE | NLM_F_EXCL)
                    .what(format!("RTM_NEWROUTE default via {host} dev {container_name}")),
                Step::new(set_up_message(LOOPBACK_INDEX), 0).what("RTM_SETLINK lo up".to_owned()),
            ],
        )
    }

    /// The host end's name.
    pub fn host_name(&self) -> &str {
        &self.name.host
    }

    /// Both names.
    pub fn name(&self) -> &VethName {
        &self.name
    }

    /// The host end's interface index.
    pub fn host_index(&self) -> u32 {
        self.host_index
    }

    /// The network it was created for.
    pub fn network(&self) -> &NetworkSpec {
        &self.net
    }

    /// Traffic counters of the host end: rx is what the container sent, tx what it was sent.
    /// One `RTM_GETSTATS` for the 64-bit link counters on this thread's host socket. Read them
    /// before the container's network namespace goes: the pair goes with it.
    pub fn stats(&self) -> Result<NetStats, NetError> {
        let fail = |source| NetError::Stats { name: self.name.host.clone(), source };
        let mut msg = StatsMessage::default();
        msg.header.ifindex = self.host_index;
        msg.header.filter_mask = StatsFilterMask::Link64;
        let answer =
            self.on_host_side(|nl| Ok(nl.request(RouteNetlinkMessage::GetStats(msg), 0)))?.map_err(fail)?;
        answer
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewStats(s) if s.header.ifindex == self.host_index => {
                    s.attributes.iter().find_map(|a| match a {
                        StatsAttribute::Link64(c) => Some(NetStats {
                            rx_bytes: c.rx_bytes,
                            tx_bytes: c.tx_bytes,
                            rx_packets: c.rx_packets,
                            tx_packets: c.tx_packets,
                        }),
                        _ => None,
                    })
                }
                _ => None,
            })
            .ok_or_else(|| {
                fail(super::NetlinkError::Decode("the answer had no 64-bit link counters".to_owned()))
            })
    }

    /// Leaves the pair to the kernel: it disappears with the container's network namespace.
    /// Does not wait (a synchronous delete costs about 30 ms).
    pub fn release(self) {}

    /// Deletes the pair now and waits for the kernel to finish (error paths). Already gone is
    /// fine.
    pub fn delete(self) -> Result<(), NetError> {
        self.on_host_side(|nl| nl.delete_link(self.host_index)).map(drop)
    }

    /// Whether the host end is in the run's network namespace (rootless), not on the host.
    pub fn in_run_namespace(&self) -> bool {
        self.run.is_some()
    }

    /// Runs `f` with a socket where the host end is: the run's namespace, or the host.
    fn on_host_side<T>(&self, f: impl FnOnce(&mut Netlink) -> Result<T, NetError>) -> Result<T, NetError> {
        match &self.run {
            Some(run) => f(&mut run.lock().unwrap_or_else(PoisonError::into_inner)),
            None => with_host(f),
        }
    }
}

/// The container's traffic stays in its subnet even on a host that forwards IPv4 (Docker hosts,
/// CI runners): the kernel forwards a packet only if its *ingress* device allows it, so the host
/// end never passes the container's packets on. (A sysctl write: netlink's devconf attribute
/// would rewrite every other setting of the device with it.)
/// The host end's ingress filter program for `access`, loaded. Outside the host's user namespace
/// the "host" end is in a container's own network namespace, and the kernel refuses the
/// filter's program there: none is needed.
fn host_filter(access: HostAccess, net: &NetworkSpec, host_name: &str) -> Result<Option<OwnedFd>, NetError> {
    Ok(match access {
        HostAccess::HostEnd if crate::preflight::in_initial_user_namespace() => {
            Some(filter::load(net.host(), host_name)?)
        }
        HostAccess::HostEnd | HostAccess::All => None,
    })
}

/// A veth pair made ahead of need, for the next container with a network: its peer in a fresh
/// network namespace of the pool, both ends down and without addresses (nothing routes to it,
/// nothing passes), IPv6 address generation off on the host end, forwarding off, the alias of
/// this process. [`Veth::configure_ready`] makes it a container's; dropped unconfigured, it is
/// deleted.
#[derive(Debug)]
pub(crate) struct ReadyPair {
    name: VethName,
    host_index: u32,
    container_index: u32,
    alias_set: bool,
    /// Delete the pair when dropped (until configured).
    armed: bool,
}

impl ReadyPair {
    /// Makes the pair, its peer `veth{id}c` in `netns`, under a name no link has now.
    pub(crate) fn make(netns: BorrowedFd<'_>, owner_tag: &str) -> Result<ReadyPair, NetError> {
        let name = VethName::next();
        let (host_index, container_index, alias_set) =
            with_host(|nl| create_pair(nl, netns, &name, owner_tag, false))?;
        let mut pair = ReadyPair { name, host_index, container_index, alias_set, armed: true };
        let mut steps = vec![Step::new(no_ipv6_addresses_message(pair.host_index), 0)
            .what(format!("RTM_SETLINK {} addrgenmode none", pair.name.host))
            .tolerate(Errno::EAFNOSUPPORT)];
        // The alias now, not at configuration: a sweep tells a dead owner's pair by it.
        if !alias_set {
            steps.push(
                Step::new(alias_message(pair.host_index, owner_tag), 0)
                    .what(format!("RTM_SETLINK {} alias", pair.name.host)),
            );
        }
        with_host(|nl| run(nl, steps))?;
        pair.alias_set = true;
        no_forwarding(&pair.name.host)?;
        Ok(pair)
    }

    /// Both names (the container's id is the pair's).
    pub(crate) fn name(&self) -> &VethName {
        &self.name
    }
}

impl Drop for ReadyPair {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a pair left here goes with its namespace, and a dead owner's with the
            // next run's sweep.
            let _ = with_host(|nl| nl.delete_link(self.host_index));
        }
    }
}

fn no_forwarding(host_name: &str) -> Result<(), NetError> {
    let path = format!("/proc/sys/net/ipv4/conf/{host_name}/forwarding");
    std::fs::write(&path, "0").map_err(|source| NetError::Sysctl { path, source })
}

/// One request makes the pair with the peer inside `netns` and the host end up; a second, in
/// the same datagram, reads back the host end's index, its peer's index (`IFLA_LINK`) and
/// whether the alias took (6.18 ignores it on creation).
fn create_pair(
    nl: &mut Netlink,
    netns: BorrowedFd<'_>,
    name: &VethName,
    owner_tag: &str,
    up: bool,
) -> Result<(u32, u32, bool), NetError> {
    let alias = format!("{ALIAS_PREFIX}{owner_tag}");
    // The peer cannot be brought up here: veth links the two ends only after configuring the
    // peer, so opening it fails with ENOTCONN. It comes up from inside the namespace.
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName(name.container.clone()));
    peer.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));

    let mut create = LinkMessage::default();
    if up {
        create.header.flags = LinkFlags::Up;
        create.header.change_mask = LinkFlags::Up;
    }
    create.attributes.push(LinkAttribute::IfName(name.host.clone()));
    create.attributes.push(LinkAttribute::IfAlias(alias.clone()));
    create.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));

    let mut get = LinkMessage::default();
    get.attributes.push(LinkAttribute::IfName(name.host.clone()));

    let what = || {
        format!("RTM_NEWLINK veth {} with peer {} in {}", name.host, name.container, netns::describe(netns))
    };
    let mut answers = nl
        .batch(vec![
            (RouteNetlinkMessage::NewLink(create), NLM_F_CREATE | NLM_F_EXCL),
            (RouteNetlinkMessage::GetLink(get), 0),
        ])
        .map_err(|e| nl.error(what(), e))?
        .into_iter();
    let (created, read) = (answers.next().expect("two answers"), answers.next().expect("two answers"));
    if let Err(e) = created {
        if e.errno() == Some(Errno::EEXIST) {
            let on_host = nl.link_index(&name.host).ok().flatten().is_some();
            let taken = if on_host { &name.host } else { &name.container };
            return Err(NetError::NameTaken { name: taken.clone(), in_container: !on_host });
        }
        return Err(nl.error(what(), e));
    }
    let link = read.ok().and_then(|msgs| {
        msgs.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        })
    });
    let Some(link) = link else {
        // Created but unreadable: do not leave it behind.
        let index = nl.link_index(&name.host);
        if let Ok(Some(index)) = index {
            let _ = nl.delete_link(index);
        }
        return Err(nl.error(
            format!("RTM_GETLINK {}", name.host),
            super::NetlinkError::Decode("the new link could not be read back".to_owned()),
        ));
    };
    let host_index = link.header.index;
    let peer_index = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(index) => Some(*index),
        _ => None,
    });
    let alias_set = link.attributes.iter().any(|a| matches!(a, LinkAttribute::IfAlias(s) if *s == alias));
    match peer_index {
        Some(peer) => Ok((host_index, peer, alias_set)),
        None => {
            let _ = nl.delete_link(host_index);
            Err(nl.error(
                format!("RTM_GETLINK {}", name.host),
                super::NetlinkError::Decode("the new veth does not name its peer (IFLA_LINK)".to_owned()),
            ))
        }
    }
}

/// One request of a batch: what it is for error messages, and an errno that is no failure.
pub(super) struct Step {
    msg: RouteNetlinkMessage,
    flags: u16,
    what: String,
    tolerate: Option<Errno>,
}

impl Step {
    pub(super) fn new(msg: RouteNetlinkMessage, flags: u16) -> Step {
        Step { msg, flags, what: String::new(), tolerate: None }
    }
    pub(super) fn what(mut self, what: String) -> Step {
        self.what = what;
        self
    }
    pub(super) fn tolerate(mut self, errno: Errno) -> Step {
        self.tolerate = Some(errno);
        self
    }
}

/// Sends `steps` in one datagram; the first that failed (in order) is the error.
pub(super) fn run(nl: &mut Netlink, steps: Vec<Step>) -> Result<(), NetError> {
    let mut described = Vec::with_capacity(steps.len());
    let mut requests = Vec::with_capacity(steps.len());
    for step in steps {
        requests.push((step.msg, step.flags));
        described.push((step.what, step.tolerate));
    }
    let answers = nl.batch(requests).map_err(|e| nl.error(described[0].0.clone(), e))?;
    for (answer, (what, tolerate)) in answers.into_iter().zip(described) {
        match answer {
            Ok(_) => {}
            Err(e) if e.errno().is_some() && e.errno() == tolerate => {}
            Err(e) => return Err(nl.error(what, e)),
        }
    }
    Ok(())
}

/// `RTM_SETLINK` with IPv6 `addrgenmode none`: no link-local address, so no DAD, router
/// solicitations or MLD reports that would show up in the traffic counters of a test that sends
/// nothing. (`EAFNOSUPPORT` where IPv6 is off: nothing to quiet.)
pub(super) fn no_ipv6_addresses_message(index: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![
        AfSpecInet6::AddrGenMode(In6AddrGenMode::None),
    ])]));
    RouteNetlinkMessage::SetLink(msg)
}

pub(super) fn address_message(index: u32, ip: Ipv4Addr, prefix_len: u8) -> RouteNetlinkMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(ip.into()));
    msg.attributes.push(AddressAttribute::Address(ip.into()));
    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    msg.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(u32::from(ip) | host_bits)));
    RouteNetlinkMessage::NewAddress(msg)
}

fn default_route_message(index: u32, gateway: Ipv4Addr) -> RouteNetlinkMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.kind = RouteType::Unicast;
    msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    msg.attributes.push(RouteAttribute::Oif(index));
    RouteNetlinkMessage::NewRoute(msg)
}

fn alias_message(index: u32, owner_tag: &str) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::IfAlias(format!("{ALIAS_PREFIX}{owner_tag}")));
    RouteNetlinkMessage::SetLink(msg)
}

/// Deletes every veth of the host whose alias is `cvtest owner=<tag>` and whose owner is dead
/// (`owner_alive(tag)` is false); returns how many it deleted. Links without such an alias are
/// never touched, nor those of a live owner. Synchronous (about 30 ms a link), so not for the
/// critical path; a pair that vanishes meanwhile is not counted and not an error.
pub fn sweep_stale_links(mut owner_alive: impl FnMut(&str) -> bool) -> Result<usize, NetError> {
    with_host(|nl| {
        let mut req = LinkMessage::default();
        req.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]));
        let links =
            nl.dump(RouteNetlinkMessage::GetLink(req)).map_err(|e| nl.error("RTM_GETLINK dump (veth)", e))?;
        let mut stale: Vec<(u32, String)> = Vec::new();
        // A link we cannot decode is not provably ours: leave it.
        for link in links.into_iter().flatten() {
            let RouteNetlinkMessage::NewLink(link) = link else { continue };
            let is_veth = link.attributes.iter().any(|a| match a {
                LinkAttribute::LinkInfo(infos) => {
                    infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)))
                }
                _ => false,
            });
            let tag = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfAlias(alias) => alias.strip_prefix(ALIAS_PREFIX),
                _ => None,
            });
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            });
            if let (true, Some(tag)) = (is_veth, tag) {
                if !owner_alive(tag) {
                    stale.push((
                        link.header.index,
                        name.unwrap_or_else(|| format!("index {}", link.header.index)),
                    ));
                }
            }
        }
        if stale.is_empty() {
            return Ok(0);
        }
        let requests = stale.iter().map(|(index, _)| (super::netlink::delete_message(*index), 0)).collect();
        let answers = nl.batch(requests).map_err(|e| nl.error("RTM_DELLINK of stale veths", e))?;
        let mut deleted = 0;
        for (answer, (_, name)) in answers.into_iter().zip(&stale) {
            match answer {
                Ok(_) => deleted += 1,
                Err(e) if e.errno() == Some(Errno::ENODEV) => {}
                Err(e) => return Err(nl.error(format!("RTM_DELLINK {name} (stale)"), e)),
            }
        }
        Ok(deleted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_differ() {
        let a = VethName::from_parts(4_194_304, FIVE_DIGITS - 1);
        assert_eq!(a.host(), "veth2hwcgzzzzz");
        assert_eq!(a.container(), "veth2hwcgzzzzzc");
        assert!(a.container().len() <= IFNAME_MAX);
        let b = VethName::from_parts(1, 0);
        assert_eq!((b.host(), b.container(), b.id()), ("veth000010", "veth000010c", "000010"));
        // Fixed-width pid: pid 1 counter 10 must not equal pid 10 counter 0 and the like.
        assert_ne!(VethName::from_parts(1, 36), VethName::from_parts(36, 1));
        assert_ne!(VethName::from_parts(1, 0), VethName::from_parts(0, 1));
    }

    #[test]
    fn next_never_repeats() {
        let names: std::collections::HashSet<_> = (0..1000).map(|_| VethName::next()).collect();
        assert_eq!(names.len(), 1000);
    }
}
