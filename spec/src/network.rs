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

/// A test's `network` setting: a fixed subnet, or `"auto"` (a free /30 of a pool, taken when
/// the container is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkSetting {
    Fixed(NetworkSpec),
    Auto,
}

impl NetworkSetting {
    /// The fixed network, if it is one.
    pub fn fixed(&self) -> Option<NetworkSpec> {
        match self {
            NetworkSetting::Fixed(n) => Some(*n),
            NetworkSetting::Auto => None,
        }
    }

    /// `"auto"`, or a CIDR with an optional host end.
    pub fn parse(value: &str, host: Option<&str>) -> Result<Self, ParseError> {
        match (value.trim(), host) {
            ("auto", None) => Ok(NetworkSetting::Auto),
            ("auto", Some(h)) => Err(ParseError::new(
                ValueKind::HostAddress,
                h,
                "`host` needs a fixed network: with network = \"auto\" the host end is chosen with the subnet",
            )),
            _ => NetworkSpec::from_cidr(value, host).map(NetworkSetting::Fixed).map_err(|mut e| {
                if e.kind == ValueKind::Cidr {
                    e.kind = ValueKind::Network;
                }
                e
            }),
        }
    }
}

impl fmt::Display for NetworkSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkSetting::Fixed(n) => n.fmt(f),
            NetworkSetting::Auto => f.write_str("auto"),
        }
    }
}

/// The default pool of `network = "auto"`: 198.19.0.0/16, split into /30s (16384 subnets).
pub const DEFAULT_POOL: &str = "198.19.0.0/16";

/// Overrides the pool of `network = "auto"` (a CIDR such as `10.200.0.0/16`).
pub const ENV_POOL: &str = "CVTEST_NET_POOL";

/// The prefix length of the subnets `network = "auto"` hands out: a container and a host end.
pub const AUTO_PREFIX: u8 = 30;

/// Where `network = "auto"` takes subnets from: a block split into /30s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkPool {
    base: Ipv4Addr,
    prefix_len: u8,
}

impl NetworkPool {
    /// The pool of `CVTEST_NET_POOL`, else [`DEFAULT_POOL`].
    pub fn from_env() -> Result<NetworkPool, ParseError> {
        match std::env::var(ENV_POOL) {
            Ok(v) if !v.is_empty() => v.parse(),
            _ => Ok(NetworkPool::default()),
        }
    }

    /// How many subnets it holds.
    pub fn count(&self) -> u64 {
        1u64 << (AUTO_PREFIX - self.prefix_len)
    }

    /// The `i`th subnet: the container at `.2`, the host end at `.1` of the /30.
    pub fn subnet(&self, i: u64) -> NetworkSpec {
        let net = u32::from(self.base) + (i as u32) * 4;
        NetworkSpec::new(Ipv4Addr::from(net + 2), AUTO_PREFIX, Ipv4Addr::from(net + 1))
            .expect("a /30's .2 and .1 are a valid network")
    }
}

impl Default for NetworkPool {
    fn default() -> Self {
        DEFAULT_POOL.parse().expect("the default pool parses")
    }
}

impl std::fmt::Display for NetworkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix_len)
    }
}

impl FromStr for NetworkPool {
    type Err = ParseError;
    /// A CIDR whose prefix length is 1 to 30: `198.19.0.0/16`.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = |why: &str| ParseError::new(ValueKind::Cidr, s, why);
        let (addr, len) = s.trim().split_once('/').ok_or_else(|| err("it has no \"/prefix\""))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("not a dotted IPv4 address"))?;
        let len: u8 = len.parse().map_err(|_| err("not a prefix length"))?;
        if !(1..=AUTO_PREFIX).contains(&len) {
            return Err(err("a pool's prefix length must be 1 to 30 (it is split into /30s)"));
        }
        let mask = u32::MAX << (32 - u32::from(len));
        if u32::from(addr) & !mask != 0 {
            return Err(err("the address has bits set past the prefix: give the pool's network address"));
        }
        Ok(NetworkPool { base: addr, prefix_len: len })
    }
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

    #[test]
    fn pools_parse_and_split_into_30s() {
        let p: NetworkPool = "10.200.0.0/16".parse().unwrap();
        assert_eq!(p.count(), 16384);
        assert_eq!(p.subnet(1).to_string(), "10.200.0.6/30");
        assert_eq!(p.subnet(1).host(), Ipv4Addr::new(10, 200, 0, 5));
        assert_eq!(NetworkPool::default().to_string(), DEFAULT_POOL);
        assert_eq!(p.subnet(0).network(), Ipv4Addr::new(10, 200, 0, 0));
        assert!("10.200.0.1/16".parse::<NetworkPool>().is_err());
        assert!("10.200.0.0/31".parse::<NetworkPool>().is_err());
        assert!("10.200.0.0".parse::<NetworkPool>().is_err());
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
