//! A container's network: its address, the prefix, and the host end's address.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::parse::{ParseError, ValueKind};

/// The veth link of a container: `container/prefix_len` inside, `host/prefix_len` on the host end.
///
/// Always valid once built: both addresses in one subnet, distinct, and neither the network nor
/// the broadcast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkSpec {
    container: Ipv4Addr,
    prefix_len: u8,
    host: Ipv4Addr,
}

impl NetworkSpec {
    /// Parses `"10.0.0.2/24"`; the host end is the first usable address that is not the
    /// container's, unless `host` names one.
    pub fn from_cidr(cidr: &str, host: Option<&str>) -> Result<Self, ParseError> {
        let (container, prefix_len) = parse_cidr(cidr)?;
        let host = match host {
            Some(h) => parse_ipv4(h, ValueKind::HostAddress)?,
            None => {
                let net = u32::from(container) & mask(prefix_len);
                let first = Ipv4Addr::from(net + 1);
                if first == container {
                    Ipv4Addr::from(net + 2)
                } else {
                    first
                }
            }
        };
        Self::build(container, prefix_len, host, host_input(host))
    }

    /// containerv's form: `("10.0.0.2", "255.255.255.0", "10.0.0.1")`.
    pub fn from_parts(container_ip: &str, netmask: &str, host_ip: &str) -> Result<Self, ParseError> {
        let container = parse_ipv4(container_ip, ValueKind::Ipv4)?;
        let prefix_len = parse_netmask(netmask)?;
        let host = parse_ipv4(host_ip, ValueKind::HostAddress)?;
        Self::build(container, prefix_len, host, host_ip.to_owned())
    }

    /// From already-typed parts, with the same validation.
    pub fn new(container: Ipv4Addr, prefix_len: u8, host: Ipv4Addr) -> Result<Self, ParseError> {
        if !(1..=30).contains(&prefix_len) {
            return Err(ParseError::new(
                ValueKind::Cidr,
                &format!("{container}/{prefix_len}"),
                "the prefix length must be 1 to 30 to leave room for two hosts",
            ));
        }
        Self::build(container, prefix_len, host, host.to_string())
    }

    fn build(
        container: Ipv4Addr,
        prefix_len: u8,
        host: Ipv4Addr,
        host_text: String,
    ) -> Result<Self, ParseError> {
        let m = mask(prefix_len);
        let net = u32::from(container) & m;
        let bcast = net | !m;
        let cidr_text = format!("{container}/{prefix_len}");
        let c = u32::from(container);
        if c == net {
            return Err(ParseError::new(
                ValueKind::Cidr,
                &cidr_text,
                format!("{container} is the network address of its subnet"),
            ));
        }
        if c == bcast {
            return Err(ParseError::new(
                ValueKind::Cidr,
                &cidr_text,
                format!("{container} is the broadcast address of its subnet"),
            ));
        }
        let h = u32::from(host);
        let subnet = format!("{}/{prefix_len}", Ipv4Addr::from(net));
        if h & m != net {
            return Err(ParseError::new(
                ValueKind::HostAddress,
                &host_text,
                format!("it is outside the container's subnet {subnet}"),
            ));
        }
        if h == c {
            return Err(ParseError::new(
                ValueKind::HostAddress,
                &host_text,
                "it is the container's own address",
            ));
        }
        if h == net || h == bcast {
            return Err(ParseError::new(
                ValueKind::HostAddress,
                &host_text,
                format!("it is the {} address of {subnet}", if h == net { "network" } else { "broadcast" }),
            ));
        }
        Ok(NetworkSpec { container, prefix_len, host })
    }

    pub fn container(&self) -> Ipv4Addr {
        self.container
    }
    pub fn host(&self) -> Ipv4Addr {
        self.host
    }
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix_len))
    }
    /// The network address of the subnet.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.container) & mask(self.prefix_len))
    }
    /// Whether two subnets share any address (so their links would clash on the host).
    pub fn overlaps(&self, other: &NetworkSpec) -> bool {
        subnets_overlap(self.network(), self.prefix_len, other.network(), other.prefix_len)
    }
}

/// Whether `a/alen` and `b/blen` share any address.
pub fn subnets_overlap(a: Ipv4Addr, alen: u8, b: Ipv4Addr, blen: u8) -> bool {
    let m = mask(alen.min(blen));
    u32::from(a) & m == u32::from(b) & m
}

impl fmt::Display for NetworkSpec {
    /// `10.0.0.2/24` (the host end is given separately by [`NetworkSpec::host`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container, self.prefix_len)
    }
}

impl FromStr for NetworkSpec {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        NetworkSpec::from_cidr(s, None)
    }
}

fn host_input(h: Ipv4Addr) -> String {
    h.to_string()
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - prefix_len as u32)
    }
}

fn parse_ipv4(input: &str, kind: ValueKind) -> Result<Ipv4Addr, ParseError> {
    input.trim().parse::<Ipv4Addr>().map_err(|_| ParseError::new(kind, input, "not a dotted IPv4 address"))
}

fn parse_cidr(input: &str) -> Result<(Ipv4Addr, u8), ParseError> {
    let err = |reason: &str| ParseError::new(ValueKind::Cidr, input, reason);
    let (addr, len) = input.trim().split_once('/').ok_or_else(|| err("it has no \"/prefix\""))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| err(&format!("{addr:?} is not a dotted IPv4 address")))?;
    let len: u8 = len.parse().map_err(|_| err(&format!("{len:?} is not a prefix length")))?;
    if !(1..=30).contains(&len) {
        return Err(err("the prefix length must be 1 to 30 to leave room for two hosts"));
    }
    Ok((addr, len))
}

fn parse_netmask(input: &str) -> Result<u8, ParseError> {
    let m = u32::from(parse_ipv4(input, ValueKind::Netmask)?);
    let len = m.leading_ones();
    if m.count_ones() != len {
        return Err(ParseError::new(ValueKind::Netmask, input, "its one bits are not contiguous"));
    }
    if !(1..=30).contains(&len) {
        return Err(ParseError::new(ValueKind::Netmask, input, "it leaves no room for two hosts"));
    }
    Ok(len as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_picks_first_usable_host() {
        let n: NetworkSpec = "10.0.0.2/24".parse().unwrap();
        assert_eq!(n.host(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(n.container(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        let n: NetworkSpec = "10.0.0.1/24".parse().unwrap();
        assert_eq!(n.host(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(n.to_string(), "10.0.0.1/24");
    }

    #[test]
    fn parts_match_containerv() {
        let n = NetworkSpec::from_parts("10.1.2.3", "255.255.0.0", "10.1.0.1").unwrap();
        assert_eq!(n.prefix_len(), 16);
        assert!(NetworkSpec::from_parts("10.1.2.3", "255.0.255.0", "10.1.0.1").is_err());
    }

    #[test]
    fn rejects_bad_networks() {
        for bad in [
            "10.0.0.0/24",
            "10.0.0.255/24",
            "10.0.0.2",
            "10.0.0.2/31",
            "10.0.0.2/0",
            "10.0.0/24",
            "x/24",
            "10.0.0.2/33",
        ] {
            assert!(bad.parse::<NetworkSpec>().is_err(), "{bad} accepted");
        }
        let e = NetworkSpec::from_cidr("10.0.0.2/24", Some("10.0.1.1")).unwrap_err();
        assert!(e.to_string().contains("outside the container's subnet 10.0.0.0/24"), "{e}");
        assert!(NetworkSpec::from_cidr("10.0.0.2/24", Some("10.0.0.2")).is_err());
        assert!(NetworkSpec::from_cidr("10.0.0.2/24", Some("10.0.0.255")).is_err());
    }

    #[test]
    fn overlap() {
        let a: NetworkSpec = "10.0.0.2/24".parse().unwrap();
        let b: NetworkSpec = "10.0.0.9/16".parse().unwrap();
        let c: NetworkSpec = "10.0.1.2/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&c) && !a.overlaps(&c));
    }
}

/// What of the host a container with a network may reach (`host_access`).
///
/// The host kernel delivers locally a packet addressed to any of the host's addresses, whatever
/// interface it came in on, so without a filter a container reaches every service of the host
/// that listens on `0.0.0.0`. By default a filter on the host end of the veth lets through only
/// IPv4 addressed to the host end itself, and ARP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HostAccess {
    /// `"host-end"`: the host end's address and nothing else of the host.
    #[default]
    HostEnd,
    /// `"all"`: every address of the host (and IPv6), for a test that needs a host service.
    All,
}

impl std::fmt::Display for HostAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostAccess::HostEnd => "host-end",
            HostAccess::All => "all",
        })
    }
}

impl std::str::FromStr for HostAccess {
    type Err = crate::ParseError;

    fn from_str(s: &str) -> Result<HostAccess, crate::ParseError> {
        match s {
            "host-end" => Ok(HostAccess::HostEnd),
            "all" => Ok(HostAccess::All),
            _ => Err(crate::ParseError::new(crate::ValueKind::HostAccess, s, "not host-end or all")),
        }
    }
}
