//! Refusing a subnet that overlaps a route the host already has.
//!
//! A veth's host end brings a connected route for its subnet. If that subnet overlaps one the
//! host already reaches (its LAN, a VPN, another container's veth), the more specific route would
//! silently divert the host's own traffic. So before anything is created, the host's IPv4 routes
//! are dumped and any overlap with a route other than the default one is refused, naming it.
//!
//! Which routes count: the main table (what the host routes by) and the local table (every
//! address the host owns, even one whose prefix route was removed). Default routes (`/0`) are
//! not clashes: every subnet overlaps them and a connected route is meant to take precedence.
//! Routes in other tables (policy routing) are not considered.
//!
//! The check is only as good as the moment it ran: [`super::Veth::create`] repeats it under a
//! process-wide lock, so two containers of one process cannot both pass it for overlapping
//! subnets. Two *processes* can still race between check and creation; cvtest runners avoid that
//! by giving each container network a distinct subnet.

use std::net::Ipv4Addr;

use cvtest_spec::{subnets_overlap, NetworkSpec};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::{with_host, Netlink};
use super::NetError;

/// `RT_TABLE_LOCAL`: the host's own addresses.
const TABLE_LOCAL: u32 = 255;
/// `RT_TABLE_MAIN`.
const TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// Refuses `net` with [`NetError::RouteClash`] if its subnet overlaps any non-default IPv4 route
/// of the host (main and local tables), naming the route and its interface.
pub fn check_host_routes(net: &NetworkSpec) -> Result<(), NetError> {
    with_host(|nl| check_routes_with(nl, net))
}

pub(crate) fn check_routes_with(nl: &mut Netlink, net: &NetworkSpec) -> Result<(), NetError> {
    let routes = dump_ipv4_routes(nl)?;
    match find_clash(net, &routes) {
        None => Ok(()),
        Some(clash) => Err(NetError::RouteClash {
            subnet: format!("{}/{}", net.network(), net.prefix_len()),
            route: clash.route,
            ifindex: clash.ifindex,
            interface: clash.ifindex.and_then(interface_name),
            ours: clash.ifindex.is_some_and(super::is_released),
        }),
    }
}

/// The destinations of the host's non-default IPv4 routes (main and local tables), for a quick
/// screen of many candidate subnets with one dump (`network = "auto"`).
pub(crate) fn host_ipv4_routes() -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
    let routes = with_host(dump_ipv4_routes)?;
    Ok(routes
        .iter()
        .filter(|r| matches!(table_of(r), TABLE_MAIN | TABLE_LOCAL) && r.header.destination_prefix_length > 0)
        .filter_map(|r| Some((destination(r)?, r.header.destination_prefix_length)))
        .collect())
}

/// Whether `net` overlaps any of `routes` (from [`host_ipv4_routes`]).
pub(crate) fn route_overlaps(net: &NetworkSpec, routes: &[(Ipv4Addr, u8)]) -> bool {
    routes.iter().any(|&(dst, len)| subnets_overlap(dst, len, net.network(), net.prefix_len()))
}

fn dump_ipv4_routes(nl: &mut Netlink) -> Result<Vec<RouteMessage>, NetError> {
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    let answers =
        nl.dump(RouteNetlinkMessage::GetRoute(req)).map_err(|e| nl.error("RTM_GETROUTE dump (IPv4)", e))?;
    let mut routes = Vec::with_capacity(answers.len());
    for answer in answers {
        match answer {
            Ok(RouteNetlinkMessage::NewRoute(route)) => routes.push(route),
            Ok(_) => {}
            // A route we cannot read might be the clashing one: refuse rather than guess.
            Err(reason) => {
                return Err(nl.error(
                    "RTM_GETROUTE dump (IPv4)",
                    super::NetlinkError::Decode(format!("a route could not be decoded: {reason}")),
                ))
            }
        }
    }
    Ok(routes)
}

/// A route that `net` overlaps: how to show it, and its interface if it has one.
#[derive(Debug, PartialEq, Eq)]
struct Clash {
    route: String,
    ifindex: Option<u32>,
}

/// The first route of the main table, then of the local table, that overlaps `net`.
fn find_clash(net: &NetworkSpec, routes: &[RouteMessage]) -> Option<Clash> {
    [TABLE_MAIN, TABLE_LOCAL].into_iter().find_map(|table| {
        routes.iter().filter(|r| table_of(r) == table).find_map(|r| {
            let len = r.header.destination_prefix_length;
            if r.header.address_family != AddressFamily::Inet || len == 0 {
                return None;
            }
            let dst = destination(r)?;
            if !subnets_overlap(dst, len, net.network(), net.prefix_len()) {
                return None;
            }
            let table_name = if table == TABLE_MAIN { "main" } else { "local" };
            let kind = match r.header.kind {
                RouteType::Unicast => String::new(),
                other => format!("{other:?} ").to_lowercase(),
            };
            Some(Clash { route: format!("{kind}{dst}/{len} (table {table_name})"), ifindex: ifindex_of(r) })
        })
    })
}

fn table_of(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn destination(r: &RouteMessage) -> Option<Ipv4Addr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

/// The output interface, or the first next hop's for a multipath route.
fn ifindex_of(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        RouteAttribute::MultiPath(hops) => hops.first().map(|h| h.interface_index),
        _ => None,
    })
}

/// The link's name; `None` when it is gone.
/// `None` also for an empty name: the kernel reports one for a link it is unregistering (seen
/// for a veth whose network namespace went a moment before).
fn interface_name(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index)
        .ok()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(table: u8, kind: RouteType, dst: [u8; 4], len: u8, oif: u32) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.table = table;
        r.header.kind = kind;
        r.header.destination_prefix_length = len;
        if len > 0 {
            r.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::from(dst))));
        }
        r.attributes.push(RouteAttribute::Table(u32::from(table)));
        r.attributes.push(RouteAttribute::Oif(oif));
        r
    }

    fn host_like() -> Vec<RouteMessage> {
        vec![
            route(254, RouteType::Unicast, [0, 0, 0, 0], 0, 4),
            route(255, RouteType::Local, [127, 0, 0, 0], 8, 1),
            route(255, RouteType::Broadcast, [192, 0, 2, 255], 32, 4),
            route(254, RouteType::Unicast, [192, 0, 2, 0], 24, 4),
            route(255, RouteType::Local, [192, 0, 2, 2], 32, 4),
            route(100, RouteType::Unicast, [172, 16, 0, 0], 12, 7),
        ]
    }

    fn spec(cidr: &str) -> NetworkSpec {
        cidr.parse().unwrap()
    }

    #[test]
    fn default_route_is_no_clash() {
        assert_eq!(find_clash(&spec("10.213.0.2/24"), &host_like()), None);
    }

    #[test]
    fn main_table_route_is_named_before_local_ones() {
        let clash = find_clash(&spec("192.0.2.5/24"), &host_like()).unwrap();
        assert_eq!(clash, Clash { route: "192.0.2.0/24 (table main)".into(), ifindex: Some(4) });
    }

    #[test]
    fn wider_subnet_covering_a_route_clashes() {
        let clash = find_clash(&spec("192.0.0.2/16"), &host_like()).unwrap();
        assert_eq!(clash.route, "192.0.2.0/24 (table main)");
    }

    #[test]
    fn local_address_clashes_without_a_main_route() {
        let clash = find_clash(&spec("127.1.0.2/16"), &host_like()).unwrap();
        assert_eq!(clash, Clash { route: "local 127.0.0.0/8 (table local)".into(), ifindex: Some(1) });
    }

    #[test]
    fn other_tables_are_ignored() {
        assert_eq!(find_clash(&spec("172.16.5.2/24"), &host_like()), None);
    }
}
