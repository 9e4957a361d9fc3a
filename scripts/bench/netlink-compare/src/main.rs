//! One container's veth set-up, two ways, alternating in one run:
//! - `direct`: `cvtest`'s `Veth::create` (route check, pair with the peer made inside the
//!   container's network namespace, addresses, alias, routes, `lo` up), synchronous;
//! - `rtnetlink`: the same requests through rtnetlink on a current-thread tokio runtime; the
//!   host connection and runtime made once (`rtnetlink-reused`) or per set-up as a synchronous
//!   library would have to (`rtnetlink-fresh`); the namespace's connection is always new.
//! Each sample is the set-up only; the pair is deleted afterwards, untimed.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use cvtest::test_support::{Veth, VethName};
use futures_util::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let host_ns: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net").expect("own netns").into();
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    let reused = rt.block_on(async { connect() });
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..rounds {
        let net: cvtest::NetworkSpec = format!("10.219.{}.2/24", round % 200).parse().expect("cidr");
        for k in 0..3 {
            let which = (round + k) % 3;
            let netns = new_netns();
            let name = VethName::next();
            let started = Instant::now();
            match which {
                0 => {
                    let veth = Veth::create(netns.as_fd(), &net, &name, cvtest::test_support::owner_tag())
                        .expect("direct set-up");
                    samples[0].push(started.elapsed());
                    veth.delete().expect("delete");
                }
                1 => {
                    let host =
                        rt.block_on(setup(&reused, &host_ns, netns.as_fd(), &net, &name)).expect("rtnetlink");
                    samples[1].push(started.elapsed());
                    rt.block_on(reused.link().del(host).execute()).expect("delete");
                }
                _ => {
                    let rt =
                        tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
                    let host = rt
                        .block_on(async {
                            let handle = connect();
                            let host = setup(&handle, &host_ns, netns.as_fd(), &net, &name).await?;
                            Ok::<_, rtnetlink::Error>((host, handle))
                        })
                        .expect("rtnetlink fresh");
                    samples[2].push(started.elapsed());
                    rt.block_on(host.1.link().del(host.0).execute()).expect("delete");
                }
            }
        }
    }
    println!("{rounds} set-ups each, alternating; microseconds");
    println!("{:<18} {:>8} {:>8} {:>8} {:>8}", "way", "min", "median", "p90", "max");
    for (name, mut s) in ["direct", "rtnetlink-reused", "rtnetlink-fresh"].into_iter().zip(samples) {
        s.sort();
        let us = |d: Duration| d.as_micros();
        let at = |q: f64| s[((s.len() - 1) as f64 * q) as usize];
        println!(
            "{name:<18} {:>8} {:>8} {:>8} {:>8}",
            us(s[0]),
            us(at(0.5)),
            us(at(0.9)),
            us(s[s.len() - 1])
        );
    }
}

/// A host connection on the current runtime.
fn connect() -> Handle {
    let (connection, handle, _) = rtnetlink::new_connection().expect("netlink socket");
    tokio::spawn(connection);
    handle
}

/// A new network namespace, held by its fd: made on a thread that then ends.
fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        // SAFETY: unshare(CLONE_NEWNET) affects only this thread, which ends right after.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET)");
        OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("new netns"))
    })
    .join()
    .expect("netns thread")
}

async fn link_index(handle: &Handle, name: &str) -> Result<u32, rtnetlink::Error> {
    let link = handle.link().get().match_name(name.to_owned()).execute().try_next().await?;
    Ok(link.map(|l| l.header.index).unwrap_or(0))
}

/// What `Veth::create` does, through rtnetlink; returns the host end's index.
async fn setup(
    host: &Handle,
    host_ns: &OwnedFd,
    netns: BorrowedFd<'_>,
    net: &cvtest::NetworkSpec,
    name: &VethName,
) -> Result<u32, rtnetlink::Error> {
    // The route check: every IPv4 route of the host.
    let routes: Vec<_> =
        host.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute().try_collect().await?;
    std::hint::black_box(routes);
    // The pair, its peer made directly inside the namespace.
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(name.container().to_owned())
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let pair = LinkVeth::new(name.host(), name.container())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .up()
        .build();
    host.link().add(pair).execute().await?;
    let index = link_index(host, name.host()).await?;
    host.address().add(index, IpAddr::V4(net.host()), net.prefix_len()).execute().await?;
    host.link()
        .set(
            LinkUnspec::new_with_index(index)
                .alias(format!("cvtest owner={}", cvtest::test_support::owner_tag()))
                .build(),
        )
        .execute()
        .await?;
    // A connection inside the namespace: its socket is made while this thread is in it.
    // SAFETY: setns on this (the runtime's) thread only; it goes back right after.
    assert_eq!(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    let inside = connect();
    // SAFETY: as above, back to the host's namespace.
    assert_eq!(unsafe { libc::setns(host_ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    let peer = link_index(&inside, name.container()).await?;
    inside.link().set(LinkUnspec::new_with_index(peer).up().build()).execute().await?;
    inside.address().add(peer, IpAddr::V4(net.container()), net.prefix_len()).execute().await?;
    inside
        .route()
        .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(net.host()).output_interface(peer).build())
        .execute()
        .await?;
    inside.link().set(LinkUnspec::new_with_index(1).up().build()).execute().await?;
    Ok(index)
}
