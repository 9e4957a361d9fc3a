//! Veth pairs, routes and netlink, for real. Every test makes its own network namespaces (a
//! short-lived thread unshares one and keeps it alive through an fd) and sends traffic only
//! between those and the host ends of veths it created. Subnets are 10.213.<test>.0/24, one per
//! test, so the tests run in parallel. Each test ends by dropping its namespaces and checking
//! that the kernel removed its pairs.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use cvtest::test_support::{check_host_routes, sweep_stale_links, Netlink, Veth, VethName, ALIAS_PREFIX};
use cvtest::NetError;
use cvtest::NetworkSpec;
use libtest_mimic::{Failed, Trial};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sched::{setns, unshare, CloneFlags};

use crate::support::privileged;

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("net::veth_create_configures_both_ends", veth_create_configures_both_ends),
        privileged("net::tcp_exchange_through_veth_is_counted", tcp_exchange_through_veth_is_counted),
        privileged("net::idle_veth_counts_no_traffic", idle_veth_counts_no_traffic),
        privileged("net::netns_without_veth_cannot_reach_host_end", netns_without_veth_cannot_reach_host_end),
        privileged("net::route_check_refuses_overlaps", route_check_refuses_overlaps),
        privileged("net::release_leaves_pair_to_netns_teardown", release_leaves_pair_to_netns_teardown),
        privileged("net::sweep_deletes_only_dead_owners_links", sweep_deletes_only_dead_owners_links),
        privileged("net::name_taken_is_reported", name_taken_is_reported),
        privileged("net::failed_create_deletes_the_pair", failed_create_deletes_the_pair),
        privileged("net::concurrent_overlapping_creates_admit_one", concurrent_overlapping_creates_admit_one),
        privileged("net::open_in_returns_thread_to_its_netns", open_in_returns_thread_to_its_netns),
        crate::support::privileged_unless(
            "net::containers_never_run_the_module_loader",
            containers_never_run_the_module_loader,
        ),
        privileged("net::bench_create_peer_in_netns_vs_move", bench_create_peer_in_netns_vs_move)
            .with_ignored_flag(true),
    ]
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Failed::from(format!($($msg)+)));
        }
    };
}

/// `?` that keeps the whole error chain: libtest-mimic shows only the outer message.
trait Chain<T> {
    fn chain(self) -> Result<T, Failed>;
}

impl<T, E: std::error::Error> Chain<T> for Result<T, E> {
    fn chain(self) -> Result<T, Failed> {
        self.map_err(|e| {
            let mut msg = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            Failed::from(msg)
        })
    }
}

/// How long the kernel may take to dismantle a network namespace and its veth.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(10);

/// A new network namespace, alive as long as the returned fd.
fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        OwnedFd::from(File::open("/proc/thread-self/ns/net").expect("open /proc/thread-self/ns/net"))
    })
    .join()
    .expect("netns thread")
}

/// Runs `f` on a thread inside `netns`.
fn in_netns<T: Send>(netns: &OwnedFd, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns into the test netns");
            f()
        })
        .join()
        .expect("thread in netns")
    })
}

/// An owner tag any sweeper considers alive: this process's.
fn live_tag() -> String {
    cvtest::test_support::owner_tag().to_owned()
}

fn spec(cidr: &str) -> NetworkSpec {
    cidr.parse().expect("test CIDR")
}

/// Over netlink: as root, `if_nametoindex` of a missing name runs the module loader twice.
fn exists(name: &str) -> bool {
    cvtest::test_support::Netlink::open()
        .expect("a netlink socket")
        .link_index(name)
        .expect("RTM_GETLINK")
        .is_some()
}

/// Waits until no link `name` exists in this namespace; fails after [`TEARDOWN_LIMIT`].
fn wait_gone(name: &str) -> Result<Duration, Failed> {
    let start = Instant::now();
    while exists(name) {
        ensure!(
            start.elapsed() < TEARDOWN_LIMIT,
            "{name} still exists {TEARDOWN_LIMIT:?} after its netns was dropped"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(start.elapsed())
}

/// The IPv4 address, prefix length and flags of `iface` in the calling thread's namespace.
fn ipv4_of(iface: &str) -> Option<(Ipv4Addr, u32, InterfaceFlags)> {
    getifaddrs().expect("getifaddrs").find_map(|a| {
        if a.interface_name != iface {
            return None;
        }
        let addr = a.address?.as_sockaddr_in()?.ip();
        let mask = a.netmask?.as_sockaddr_in()?.ip();
        Some((addr, u32::from(mask).count_ones(), a.flags))
    })
}

/// `(gateway, flags)` of the default route through `iface`, from /proc/thread-self/net/route.
fn default_route_of(iface: &str) -> Option<(Ipv4Addr, u32)> {
    let table = std::fs::read_to_string("/proc/thread-self/net/route").expect("read route table");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() != Some(&iface) || f.get(1) != Some(&"00000000") || f.get(7) != Some(&"00000000") {
            return None;
        }
        let gateway = Ipv4Addr::from(u32::from_str_radix(f[2], 16).ok()?.swap_bytes());
        Some((gateway, u32::from_str_radix(f[3], 16).ok()?))
    })
}

fn veth_create_configures_both_ends() -> Result<(), Failed> {
    let netns = new_netns();
    let net = spec("10.213.1.2/24");
    let tag = live_tag();
    let name = VethName::next();
    let other = VethName::next();
    ensure!(name != other && name.host() != other.host(), "two names in a row are equal: {name:?}");
    ensure!(name.host().len() <= 15 && name.container().len() <= 15, "names too long: {name:?}");
    ensure!(name.host() == format!("veth{}", name.id()), "host end is not veth{{id}}: {name:?}");
    ensure!(name.container() == format!("veth{}c", name.id()), "container end is not veth{{id}}c: {name:?}");

    let veth = Veth::create(netns.as_fd(), &net, &name, &tag).chain()?;
    ensure!(veth.host_name() == name.host(), "host_name {} != {}", veth.host_name(), name.host());

    // Host end: here, up, its address, its alias; the container end is not here.
    let (addr, len, flags) = ipv4_of(name.host()).ok_or("host end has no IPv4 address")?;
    ensure!(addr == Ipv4Addr::new(10, 213, 1, 1) && len == 24, "host end has {addr}/{len}");
    ensure!(flags.contains(InterfaceFlags::IFF_UP), "host end is not up: {flags:?}");
    let alias = std::fs::read_to_string(format!("/sys/class/net/{}/ifalias", name.host()))?;
    ensure!(alias.trim_end() == format!("{ALIAS_PREFIX}{tag}"), "host end alias is {alias:?}");
    ensure!(!exists(name.container()), "container end {} is in the host namespace", name.container());

    // Container end: inside, up, its address, default route via the host end; lo up.
    let container = name.container().to_owned();
    let host = name.host().to_owned();
    let inside = in_netns(&netns, move || {
        (ipv4_of(&container), default_route_of(&container), ipv4_of("lo"), exists(&host))
    });
    let (c_addr, route, lo, host_inside) = inside;
    let (addr, len, flags) = c_addr.ok_or("container end has no IPv4 address in the netns")?;
    ensure!(addr == Ipv4Addr::new(10, 213, 1, 2) && len == 24, "container end has {addr}/{len}");
    ensure!(flags.contains(InterfaceFlags::IFF_UP), "container end is not up: {flags:?}");
    let (gateway, rflags) = route.ok_or("no default route via the container end")?;
    ensure!(gateway == Ipv4Addr::new(10, 213, 1, 1), "default route via {gateway}");
    ensure!(rflags & 0x3 == 0x3, "default route flags {rflags:#x} lack RTF_UP|RTF_GATEWAY");
    let (lo_addr, _, lo_flags) = lo.ok_or("lo has no IPv4 address in the netns")?;
    ensure!(
        lo_addr == Ipv4Addr::LOCALHOST && lo_flags.contains(InterfaceFlags::IFF_UP),
        "lo: {lo_addr} {lo_flags:?}"
    );
    ensure!(!host_inside, "host end {} is inside the netns", name.host());

    veth.release();
    drop(netns);
    wait_gone(name.host())?;
    Ok(())
}

fn tcp_exchange_through_veth_is_counted() -> Result<(), Failed> {
    const UP: usize = 200_000; // container -> host
    const DOWN: usize = 50_000; // host -> container
    let netns = new_netns();
    let name = VethName::next();
    let veth = Veth::create(netns.as_fd(), &spec("10.213.2.2/24"), &name, &live_tag()).chain()?;
    let before = veth.stats().chain()?;

    let listener = TcpListener::bind("10.213.2.1:0")?;
    let port = listener.local_addr()?.port();
    let (peer, local) = std::thread::scope(|s| -> Result<(SocketAddr, SocketAddr), Failed> {
        let server = s.spawn(move || -> std::io::Result<SocketAddr> {
            let (mut conn, peer) = listener.accept()?;
            conn.set_read_timeout(Some(Duration::from_secs(20)))?;
            let mut got = vec![0u8; UP];
            conn.read_exact(&mut got)?;
            if got.iter().enumerate().any(|(i, b)| *b != (i % 251) as u8) {
                return Err(std::io::Error::other("the host received corrupted data"));
            }
            conn.write_all(&vec![7u8; DOWN])?;
            Ok(peer)
        });
        let local = in_netns(&netns, move || -> std::io::Result<SocketAddr> {
            let target = SocketAddr::from((Ipv4Addr::new(10, 213, 2, 1), port));
            let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(10))?;
            conn.set_read_timeout(Some(Duration::from_secs(20)))?;
            let data: Vec<u8> = (0..UP).map(|i| (i % 251) as u8).collect();
            conn.write_all(&data)?;
            let mut back = vec![0u8; DOWN];
            conn.read_exact(&mut back)?;
            if back.iter().any(|b| *b != 7) {
                return Err(std::io::Error::other("the container received corrupted data"));
            }
            conn.local_addr()
        })?;
        let peer = server.join().expect("server thread")?;
        Ok((peer, local))
    })?;
    ensure!(peer.ip() == std::net::IpAddr::V4(Ipv4Addr::new(10, 213, 2, 2)), "listener saw the peer {peer}");
    ensure!(local == peer, "the container's socket is {local}, the listener saw {peer}");

    let after = veth.stats().chain()?;
    let rx = after.rx_bytes - before.rx_bytes;
    let tx = after.tx_bytes - before.tx_bytes;
    println!(
        "    veth {}: rx {rx} B / {} pkts, tx {tx} B / {} pkts",
        name.host(),
        after.rx_packets - before.rx_packets,
        after.tx_packets - before.tx_packets
    );
    ensure!(rx >= UP as u64, "host end received {rx} bytes, the container sent {UP}");
    ensure!(tx >= DOWN as u64, "host end sent {tx} bytes, the container received {DOWN}");
    ensure!(tx < UP as u64, "tx {tx} counts the container's upload: rx and tx are swapped");
    ensure!(after.rx_packets >= before.rx_packets + 3, "rx packets {before:?} -> {after:?}");
    ensure!(after.tx_packets >= before.tx_packets + 2, "tx packets {before:?} -> {after:?}");

    veth.release();
    drop(netns);
    wait_gone(name.host())?;
    Ok(())
}

fn netns_without_veth_cannot_reach_host_end() -> Result<(), Failed> {
    let netns = new_netns();
    let isolated = new_netns();
    let name = VethName::next();
    let veth = Veth::create(netns.as_fd(), &spec("10.213.3.2/24"), &name, &live_tag()).chain()?;
    let listener = TcpListener::bind("10.213.3.1:0")?;
    let target = SocketAddr::from((Ipv4Addr::new(10, 213, 3, 1), listener.local_addr()?.port()));
    let connect = move || TcpStream::connect_timeout(&target, Duration::from_secs(2)).map(drop);

    // Control: through its veth, a namespace reaches the listener.
    in_netns(&netns, connect)
        .map_err(|e| format!("the namespace with a veth cannot connect to {target}: {e}"))?;
    // Without one, it cannot.
    match in_netns(&isolated, connect) {
        Ok(()) => return Err(format!("a namespace without a veth connected to {target}").into()),
        Err(e) => println!("    without a veth: {e}"),
    }

    veth.release();
    drop((netns, isolated));
    wait_gone(name.host())?;
    Ok(())
}

/// The first non-default IPv4 route of the main table, from /proc/net/route: (subnet, iface).
fn a_host_route() -> Option<(Ipv4Addr, u32, String)> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let dst = Ipv4Addr::from(u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes());
        let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
        let len = mask.count_ones();
        (len > 0 && len <= 30 && !f[0].starts_with("veth")).then(|| (dst, len, f[0].to_owned()))
    })
}

fn expect_clash(result: Result<(), NetError>, iface: &str, what: &str) -> Result<(), Failed> {
    match result {
        Err(NetError::RouteClash { interface, route, subnet, ifindex, ours }) => {
            let interface = interface.unwrap_or_default();
            ensure!(interface == iface, "{what}: clash names interface {interface}, expected {iface}");
            ensure!(ifindex.is_some(), "{what}: the clash with {route} has no interface index");
            ensure!(!ours, "{what}: {iface} is live, not a released veth of this process");
            println!("    {what}: {subnet} clashes with {route} on {interface}");
            Ok(())
        }
        other => Err(format!("{what}: expected a route clash naming {iface}, got {other:?}").into()),
    }
}

fn route_check_refuses_overlaps() -> Result<(), Failed> {
    // A subnet of the host's own network (192.0.2.0/24 on eth0 on the CI machine).
    if let Some((dst, len, iface)) = a_host_route() {
        let inside = Ipv4Addr::from(u32::from(dst) + 5);
        let net = NetworkSpec::new(inside, len as u8, Ipv4Addr::from(u32::from(dst) + 6))?;
        expect_clash(check_host_routes(&net), &iface, "host network")?;
    }
    if let Some(eth0) = ipv4_of("eth0").filter(|(a, ..)| *a == Ipv4Addr::new(192, 0, 2, 2)) {
        let _ = eth0;
        expect_clash(check_host_routes(&spec("192.0.2.5/24")), "eth0", "192.0.2.5/24")?;
    }
    // The host's loopback addresses (local table).
    expect_clash(check_host_routes(&spec("127.9.0.2/16")), "lo", "loopback")?;

    // Another live veth of ours: its subnet, or one overlapping it, is refused, also by create.
    let netns = new_netns();
    let name = VethName::next();
    let veth = Veth::create(netns.as_fd(), &spec("10.77.4.2/24"), &name, &live_tag()).chain()?;
    expect_clash(check_host_routes(&spec("10.77.4.130/25")), name.host(), "overlapping live veth")?;
    expect_clash(check_host_routes(&spec("10.77.0.2/16")), name.host(), "wider subnet over a live veth")?;
    let second = new_netns();
    let refused = VethName::next();
    match Veth::create(second.as_fd(), &spec("10.77.4.66/26"), &refused, &live_tag()) {
        Err(NetError::RouteClash { interface: Some(interface), .. }) if interface == name.host() => {}
        other => {
            return Err(format!("create over a live veth's subnet: expected a clash, got {other:?}").into())
        }
    }
    ensure!(!exists(refused.host()), "a refused create left {} behind", refused.host());

    // A free subnet passes.
    check_host_routes(&spec("10.213.5.2/24"))
        .chain()
        .map_err(|e| format!("a free subnet was refused: {}", e.message().unwrap_or_default()))?;

    veth.release();
    drop((netns, second));
    wait_gone(name.host())?;
    Ok(())
}

fn release_leaves_pair_to_netns_teardown() -> Result<(), Failed> {
    let netns = new_netns();
    let name = VethName::next();
    let veth = Veth::create(netns.as_fd(), &spec("10.213.8.2/24"), &name, &live_tag()).chain()?;
    let start = Instant::now();
    veth.release();
    let released = start.elapsed();
    // No synchronous delete: the pair is still there after release...
    ensure!(exists(name.host()), "release deleted {} synchronously", name.host());
    // ...and goes when the namespace does.
    drop(netns);
    let gone = wait_gone(name.host())?;
    println!("    release took {released:?}; the pair was gone {gone:?} after the netns fd closed");
    Ok(())
}

fn sweep_deletes_only_dead_owners_links() -> Result<(), Failed> {
    const DEAD: &str = "999999.1";
    let (dead_ns, live_ns) = (new_netns(), new_netns());
    let (dead, live) = (VethName::next(), VethName::next());
    let tag = live_tag();
    Veth::create(dead_ns.as_fd(), &spec("10.213.6.2/24"), &dead, DEAD).chain()?.release();
    Veth::create(live_ns.as_fd(), &spec("10.213.7.2/24"), &live, &tag).chain()?.release();
    let eth_before: Vec<String> =
        getifaddrs()?.map(|a| a.interface_name).filter(|n| !n.starts_with("veth")).collect();

    let mut seen = Vec::new();
    let swept = sweep_stale_links(|owner| {
        seen.push(owner.to_owned());
        owner != DEAD
    })
    .chain()?;
    println!("    swept {swept}; owners seen: {seen:?}");
    ensure!(seen.iter().any(|o| o == DEAD) || !exists(dead.host()), "the sweep never asked about {DEAD}");
    ensure!(seen.contains(&tag), "the sweep never asked about the live owner {tag}");
    ensure!(!exists(dead.host()), "{} (owner {DEAD}) survived the sweep", dead.host());
    ensure!(exists(live.host()), "{} (live owner) was deleted by the sweep", live.host());
    let eth_after: Vec<String> =
        getifaddrs()?.map(|a| a.interface_name).filter(|n| !n.starts_with("veth")).collect();
    ensure!(eth_before == eth_after, "other links changed: {eth_before:?} -> {eth_after:?}");

    drop((dead_ns, live_ns));
    wait_gone(live.host())?;
    Ok(())
}

fn name_taken_is_reported() -> Result<(), Failed> {
    let (a, b) = (new_netns(), new_netns());
    let name = VethName::next();
    let veth = Veth::create(a.as_fd(), &spec("10.213.9.2/24"), &name, &live_tag()).chain()?;
    veth.release();
    // A veth already carries the subnet, so use a distinct one: only the name clashes.
    match Veth::create(b.as_fd(), &spec("10.213.10.2/24"), &name, &live_tag()) {
        Err(NetError::NameTaken { name: taken, in_container: false }) if taken == name.host() => {}
        other => {
            return Err(
                format!("second create with {}: expected NameTaken, got {other:?}", name.host()).into()
            )
        }
    }
    // The failed create removed nothing of the first pair.
    ensure!(exists(name.host()), "the failed create deleted the existing {}", name.host());
    drop((a, b));
    wait_gone(name.host())?;
    Ok(())
}

fn open_in_returns_thread_to_its_netns() -> Result<(), Failed> {
    let thread_ns =
        || std::fs::metadata("/proc/thread-self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let netns = new_netns();
    let before = thread_ns()?;
    let mut inside = Netlink::open_in(netns.as_fd()).chain()?;
    ensure!(thread_ns()? == before, "open_in left the thread in another network namespace");
    ensure!(inside.netns() != Netlink::open().chain()?.netns(), "both sockets claim {}", inside.netns());

    // The socket works in the namespace it was opened in, not in the thread's.
    let name = VethName::next();
    let veth = Veth::create(netns.as_fd(), &spec("10.213.11.2/24"), &name, &live_tag()).chain()?;
    ensure!(
        inside.link_index(name.container()).chain()?.is_some(),
        "the netns socket does not see {}",
        name.container()
    );
    ensure!(
        inside.link_index(name.host()).chain()?.is_none(),
        "the netns socket sees the host end {}",
        name.host()
    );
    ensure!(
        Netlink::open().chain()?.link_index(name.container()).chain()?.is_none(),
        "the host socket sees {}",
        name.container()
    );

    // A bad fd: a clear error, and the thread stays where it was.
    let not_a_netns = File::open("/proc/self/stat")?;
    match Netlink::open_in(not_a_netns.as_fd()) {
        Err(e @ NetError::Netns { .. }) => println!("    {e}"),
        other => {
            return Err(format!("open_in on a non-netns fd: expected a Netns error, got {other:?}").into())
        }
    }
    ensure!(thread_ns()? == before, "a failed open_in left the thread elsewhere");

    // A socket keeps its namespace alive: close it before expecting the pair to go.
    drop(inside);
    veth.release();
    drop(netns);
    wait_gone(name.host())?;
    Ok(())
}

/// Threads of one process racing to create veths on overlapping subnets: exactly one wins, the
/// others see the winner's route.
fn concurrent_overlapping_creates_admit_one() -> Result<(), Failed> {
    const RACERS: usize = 6;
    let barrier = std::sync::Barrier::new(RACERS);
    let tag = live_tag();
    let results: Vec<(VethName, OwnedFd, Result<Veth, NetError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..RACERS)
            .map(|i| {
                let (barrier, tag) = (&barrier, &tag);
                s.spawn(move || {
                    let netns = new_netns();
                    let name = VethName::next();
                    let net = spec(&format!("10.213.14.{}/24", 10 + i));
                    barrier.wait();
                    let result = Veth::create(netns.as_fd(), &net, &name, tag);
                    (name, netns, result)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("racer")).collect()
    });
    let winners = results.iter().filter(|(_, _, r)| r.is_ok()).count();
    let clashes = results.iter().filter(|(_, _, r)| matches!(r, Err(NetError::RouteClash { .. }))).count();
    let hosts: Vec<String> = results.iter().map(|(n, ..)| n.host().to_owned()).collect();
    let errors: Vec<String> =
        results.iter().filter_map(|(_, _, r)| r.as_ref().err()).map(|e| e.to_string()).collect();
    drop(results);
    for host in &hosts {
        wait_gone(host)?;
    }
    ensure!(
        winners == 1 && clashes == RACERS - 1,
        "{winners} of {RACERS} won, {clashes} clashed: {errors:?}"
    );
    Ok(())
}

/// A step inside the namespace fails (a default route is already there): the error names that
/// step, and the pair made before it is deleted again.
fn failed_create_deletes_the_pair() -> Result<(), Failed> {
    let netns = new_netns();
    let mut inside = Netlink::open_in(netns.as_fd()).chain()?;
    inside.set_up(1).chain()?;
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    route.header.table = RouteHeader::RT_TABLE_MAIN;
    route.header.protocol = RouteProtocol::Boot;
    route.header.scope = RouteScope::Link;
    route.header.kind = RouteType::Unicast;
    route.attributes.push(RouteAttribute::Oif(1));
    inside.request(RouteNetlinkMessage::NewRoute(route), NLM_F_CREATE | NLM_F_EXCL).chain()?;
    drop(inside);

    let name = VethName::next();
    match Veth::create(netns.as_fd(), &spec("10.213.13.2/24"), &name, &live_tag()) {
        Err(e @ NetError::Netlink { .. }) if e.to_string().contains("RTM_NEWROUTE") => {
            println!("    {}", Err::<(), _>(e).chain().unwrap_err().message().unwrap_or_default());
        }
        other => return Err(format!("expected the default route step to fail, got {other:?}").into()),
    }
    ensure!(!exists(name.host()), "the failed create left {} behind", name.host());
    Ok(())
}

/// Prints what each step costs; asserts nothing about time.
fn bench_create_peer_in_netns_vs_move() -> Result<(), Failed> {
    const N: usize = 20;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut nl = Netlink::open().chain()?;
    let mut in_host = Cleanup(Vec::new());
    let (mut in_ns, mut moved, mut full, mut stats, mut sysfs, mut release, mut delete, mut routes) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut names = Vec::new();
    for i in 0..N {
        // (a) one RTM_NEWLINK, peer born in the netns.
        let ns = new_netns();
        let name = VethName::next();
        let t = Instant::now();
        nl.request(veth_message(name.host(), name.container(), Some(&ns)), NLM_F_CREATE | NLM_F_EXCL)
            .chain()?;
        in_ns.push(ms(t.elapsed()));
        names.push((name, ns));

        // (b) pair in the host, then the peer moved into the netns.
        let ns = new_netns();
        let name = VethName::next();
        in_host.0.push(name.host().to_owned());
        let t = Instant::now();
        nl.request(veth_message(name.host(), name.container(), None), NLM_F_CREATE | NLM_F_EXCL).chain()?;
        let peer = nl.link_index(name.container()).chain()?.ok_or("peer not created")?;
        let mut mv = LinkMessage::default();
        mv.header.index = peer;
        mv.attributes.push(LinkAttribute::NetNsFd(std::os::fd::AsRawFd::as_raw_fd(&ns)));
        nl.request(RouteNetlinkMessage::SetLink(mv), 0).chain()?;
        moved.push(ms(t.elapsed()));
        names.push((name, ns));

        // The whole Veth::create (route check, pair, addresses, route, lo), stats, release.
        let ns = new_netns();
        let name = VethName::next();
        let net = spec(&format!("10.213.{}.2/24", 100 + i));
        let t = Instant::now();
        let veth = Veth::create(ns.as_fd(), &net, &name, &live_tag()).chain()?;
        full.push(ms(t.elapsed()));
        let t = Instant::now();
        veth.stats().chain()?;
        stats.push(ms(t.elapsed()));
        let t = Instant::now();
        let mut total = 0u64;
        for counter in ["rx_bytes", "tx_bytes", "rx_packets", "tx_packets"] {
            let path = format!("/sys/class/net/{}/statistics/{counter}", name.host());
            total += std::fs::read_to_string(path)?.trim().parse::<u64>()?;
        }
        std::hint::black_box(total);
        sysfs.push(ms(t.elapsed()));
        let t = Instant::now();
        check_host_routes(&spec("10.214.0.2/24")).chain()?;
        routes.push(ms(t.elapsed()));
        if i % 2 == 0 {
            let t = Instant::now();
            veth.release();
            release.push(ms(t.elapsed()));
            names.push((name, ns));
        } else {
            let t = Instant::now();
            veth.delete().chain()?;
            delete.push(ms(t.elapsed()));
        }
    }
    println!("    median over {N} (ms):");
    println!("      RTM_NEWLINK, peer created in the netns ...... {:.3}", median(in_ns));
    println!("      RTM_NEWLINK in host + move peer to netns .... {:.3}", median(moved));
    println!("      Veth::create (check, pair, addrs, route, lo)  {:.3}", median(full));
    println!("      Veth::stats (RTM_GETSTATS) .................. {:.3}", median(stats));
    println!("      4 sysfs statistics files .................... {:.3}", median(sysfs));
    println!("      check_host_routes ........................... {:.3}", median(routes));
    println!("      Veth::release ............................... {:.4}", median(release));
    println!("      Veth::delete (synchronous) .................. {:.3}", median(delete));
    let hosts: Vec<String> = names.iter().map(|(n, _)| n.host().to_owned()).collect();
    drop(names);
    let t = Instant::now();
    for host in &hosts {
        wait_gone(host)?;
    }
    println!(
        "      teardown of {} netns+veth after fd close ..... {:.1} total",
        hosts.len(),
        ms(t.elapsed())
    );
    Ok(())
}

/// Deletes the named host links still present when dropped: pairs made whole in the host
/// would otherwise outlive a failed benchmark.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut nl) = Netlink::open() else { return };
        for name in &self.0 {
            if let Ok(Some(index)) = nl.link_index(name) {
                let _ = nl.delete_link(index);
            }
        }
    }
}

fn veth_message(host: &str, peer_name: &str, netns: Option<&OwnedFd>) -> RouteNetlinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName(peer_name.to_owned()));
    if let Some(ns) = netns {
        peer.attributes.push(LinkAttribute::NetNsFd(std::os::fd::AsRawFd::as_raw_fd(ns)));
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(host.to_owned()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    RouteNetlinkMessage::NewLink(msg)
}

/// Without IPv6 link-local addresses the pair is silent: a test that sends nothing reports no
/// traffic (with them, DAD and MLD showed ~500 bytes within 2 s).
fn idle_veth_counts_no_traffic() -> Result<(), Failed> {
    let netns = new_netns();
    let name = VethName::next();
    let veth = Veth::create(netns.as_fd(), &spec("10.213.12.2/24"), &name, &live_tag()).chain()?;
    std::thread::sleep(Duration::from_millis(2500));
    let stats = veth.stats().chain()?;
    ensure!(stats == cvtest::NetStats::default(), "an idle veth counted traffic: {stats:?}");
    veth.release();
    drop(netns);
    wait_gone(name.host())?;
    Ok(())
}

/// Making, running and destroying containers (without a network, and with a veth) never asks the
/// kernel to load a module. As root, any ioctl naming a link that does not exist (`if_nametoindex`
/// of a free veth name, say) makes the kernel run `modprobe netdev-<name>` and `modprobe <name>`
/// and wait for both: on a kernel with modules that was two module-loader runs per container
/// (0.4 s in the emulated CI VM). Watched with the `module:module_request` trace event, in a
/// trace instance of this test's own (the machine's tracing is not touched), on tracefs mounted
/// in a mount namespace of one thread of this test.
fn containers_never_run_the_module_loader() -> Result<Option<String>, Failed> {
    use std::sync::mpsc;
    if !std::path::Path::new("/proc/modules").exists() {
        return Ok(Some("this kernel has no module support: it never runs the module loader".to_owned()));
    }
    let instance = format!("/sys/kernel/tracing/instances/cvtest-modules-{}", std::process::id());
    let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
    let (done, done_rx) = mpsc::channel::<()>();
    let tracer = std::thread::spawn(move || -> Result<String, String> {
        use nix::mount::{mount, MsFlags};
        let setup = || -> Result<(), String> {
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                .map_err(|e| format!("making / private: {e}"))?;
            mount(Some("nodev"), "/sys/kernel/tracing", Some("tracefs"), MsFlags::empty(), None::<&str>)
                .map_err(|e| format!("mounting tracefs on /sys/kernel/tracing: {e}"))?;
            std::fs::create_dir(&instance).map_err(|e| format!("mkdir {instance}: {e}"))?;
            let event = format!("{instance}/events/module/module_request/enable");
            std::fs::write(&event, "1").map_err(|e| format!("enabling {event}: {e}"))
        };
        let set_up = setup();
        let failed = set_up.is_err();
        let _ = ready_tx.send(set_up);
        let trace = if failed {
            Err(String::new())
        } else {
            let _ = done_rx.recv();
            std::fs::read_to_string(format!("{instance}/trace"))
                .map_err(|e| format!("reading the trace: {e}"))
        };
        let _ = std::fs::remove_dir(&instance);
        trace
    });
    if let Err(why) = ready.recv().map_err(|e| e.to_string())? {
        let _ = tracer.join();
        return Ok(Some(format!("no module_request trace event here: {why}")));
    }
    // This process's veth names start with `veth` and its pid in base 36.
    let ours = VethName::next_id().host()[..9].to_owned();
    let run = || -> Result<(), Failed> {
        for network in [None, Some("10.213.15.2/24")] {
            let mut opts = crate::container::options();
            if let Some(cidr) = network {
                opts.set_network_cidr(cidr).chain()?;
            }
            let mut c = cvtest::Container::create(&opts).chain()?;
            c.spawn(&cvtest::Command::new("/bin/true")).chain()?;
            let out = c.wait(Some(Duration::from_secs(60))).chain()?;
            ensure!(out.termination.is_success(), "/bin/true in a container: {out:?}");
            c.destroy().chain()?;
        }
        // Waiting for the released veth looks its name up until it has gone.
        ensure!(cvtest::wait_released_veths(TEARDOWN_LIMIT).is_empty(), "the veth was not deleted");
        Ok(())
    };
    let ran = run();
    let _ = done.send(());
    let trace = tracer.join().map_err(|_| "the tracing thread panicked")??;
    ran?;
    let requests: Vec<&str> =
        trace.lines().filter(|l| l.contains("module_request:") && l.contains(ours.as_str())).collect();
    ensure!(
        requests.is_empty(),
        "containers of this process made the kernel load modules:\n{}",
        requests.join("\n")
    );
    Ok(None)
}
