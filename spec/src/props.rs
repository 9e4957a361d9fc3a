//! Properties of the parsers, checked on any input.
//!
//! Shared by the cargo-fuzz targets in `fuzz/` (built with the `fuzzing` feature) and by the
//! generated-input unit tests at the bottom of this file, so the fuzzer and `cargo test` hold the
//! parsers to exactly the same rules. Not an API: every function panics when a property breaks.
//!
//! For every parser:
//! - no input panics; a refusal names the right kind of value (and the input, where it is one
//!   string);
//! - whatever is accepted is within the documented range;
//! - the canonical form of an accepted value (its `Display`, [`format_duration`], the JSON form)
//!   parses back to the same value.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::{
    format_duration, parse_bool, parse_cpus, parse_duration, parse_hostname, Capabilities, CpuQuota,
    CpuWeight, MemoryLimit, NetworkSpec, ParseError, PidsLimit, SetError, TestSettings, ValueKind,
    CAPABILITY_NAMES, SETTINGS_KEYS,
};

fn check_refusal(e: &ParseError, kinds: &[ValueKind], input: Option<&str>) {
    assert!(kinds.contains(&e.kind), "refusal of kind {:?}, expected one of {kinds:?}: {e}", e.kind);
    if let Some(input) = input {
        assert_eq!(e.input, input, "the refusal does not quote the input: {e}");
    }
    let msg = e.to_string();
    assert!(!e.reason.is_empty() && msg.contains(e.kind.accepted()), "unclear refusal: {msg}");
}

/// `MemoryLimit`: at least [`MemoryLimit::MIN_BYTES`] or "max"; `Display` parses back.
pub fn memory(input: &str) {
    match input.parse::<MemoryLimit>() {
        Err(e) => check_refusal(&e, &[ValueKind::Memory], Some(input)),
        Ok(v) => {
            assert_eq!(v == MemoryLimit::Max, input.trim().eq_ignore_ascii_case("max"), "{input:?} -> {v:?}");
            memory_value(v);
        }
    }
}

/// A memory limit: its `Display` is a fixed point of parse ∘ display from the floor up, and below
/// the floor (only the library's raw `Bytes` can hold such a value) the parser refuses it.
pub fn memory_value(v: MemoryLimit) {
    let text = v.to_string();
    match v {
        MemoryLimit::Bytes(b) if b < MemoryLimit::MIN_BYTES => {
            let e = text.parse::<MemoryLimit>().expect_err("a limit below the floor was accepted");
            check_refusal(&e, &[ValueKind::Memory], Some(&text));
        }
        _ => assert_eq!(text.parse::<MemoryLimit>(), Ok(v), "{v:?} displays as {text:?}"),
    }
}

/// `PidsLimit`: at least 1 or "max"; `Display` parses back.
pub fn pids(input: &str) {
    match input.parse::<PidsLimit>() {
        Err(e) => check_refusal(&e, &[ValueKind::Pids], Some(input)),
        Ok(v) => pids_value(v),
    }
}

pub fn pids_value(v: PidsLimit) {
    if let PidsLimit::Count(c) = v {
        assert!(c >= 1, "a pids limit of 0 was accepted");
    }
    let text = v.to_string();
    assert_eq!(text.parse::<PidsLimit>(), Ok(v), "{v:?} displays as {text:?}");
}

/// `CpuWeight`: 1 to 10000; `Display` parses back; the v1 shares stay in the kernel's range.
pub fn cpu_weight(input: &str) {
    match input.parse::<CpuWeight>() {
        Err(e) => check_refusal(&e, &[ValueKind::CpuWeight], Some(input)),
        Ok(w) => {
            assert!((1..=10000).contains(&w.get()), "weight {} accepted", w.get());
            assert_eq!(w.to_string().parse::<CpuWeight>(), Ok(w));
            assert_eq!(CpuWeight::new(u64::from(w.get())), Ok(w));
            // cgroup v1 cpu.shares accepts 2 to 262144.
            assert!((2..=262_144).contains(&w.to_v1_shares()), "{w:?} -> {} shares", w.to_v1_shares());
        }
    }
}

/// `parse_cpus` and `CpuQuota`: "max" is no quota, anything else at least 0.01 CPU; the two
/// parsers agree; `Display` parses back.
pub fn cpus(input: &str) {
    let quota = input.parse::<CpuQuota>();
    match parse_cpus(input) {
        Err(e) => {
            check_refusal(&e, &[ValueKind::Cpus], Some(input));
            assert!(quota.is_err(), "CpuQuota accepts {input:?} but parse_cpus does not");
        }
        Ok(None) => {
            assert!(input.trim().eq_ignore_ascii_case("max"), "{input:?} read as no quota");
            assert!(quota.is_err(), "CpuQuota accepts {input:?}, which is no quota");
        }
        Ok(Some(q)) => {
            assert_eq!(quota, Ok(q), "CpuQuota and parse_cpus disagree on {input:?}");
            cpu_quota_value(q);
        }
    }
}

pub fn cpu_quota_value(q: CpuQuota) {
    assert!(q.millicpus() >= 10, "quota {q:?} below 0.01 CPU");
    assert_eq!(q.quota_us(), u64::from(q.millicpus()) * CpuQuota::PERIOD_US / 1000);
    let text = q.to_string();
    assert_eq!(parse_cpus(&text), Ok(Some(q)), "{q:?} displays as {text:?}");
    assert_eq!(CpuQuota::from_millicpus(q.millicpus()), Ok(q));
}

/// `parse_duration`: accepts exactly what [`duration_reference`] accepts, with the same value;
/// positive; [`format_duration`] parses back to the same duration.
pub fn duration(input: &str) {
    let parsed = parse_duration(input);
    let expected = duration_reference(input);
    assert_eq!(parsed.as_ref().ok(), expected.as_ref(), "{input:?}: parse_duration gave {parsed:?}");
    match parsed {
        Err(e) => check_refusal(&e, &[ValueKind::Duration], Some(input)),
        Ok(d) => duration_value(d),
    }
}

/// What `parse_duration` should accept, computed another way: the trimmed input is one or more
/// `<number><unit>` parts, a number being digits with at most one '.' and at most 9 decimals,
/// a unit one of ms, s, m, min, h; the sum, in exact rational arithmetic, must be a positive
/// whole number of nanoseconds no larger than `u64::MAX`.
fn duration_reference(input: &str) -> Option<Duration> {
    let s = input.trim();
    let mut total: u128 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        rest = tail;
        let unit_ns: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if frac.contains('.') || (int.is_empty() && frac.is_empty()) || frac.len() > 9 {
            return None;
        }
        // num = digits / 10^decimals, as one integer over a power of ten.
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None; // far above u64::MAX nanoseconds in any unit
        }
        let numerator: u128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        let scaled = numerator.checked_mul(unit_ns)?;
        let denominator = 10u128.pow(frac.len() as u32);
        if scaled % denominator != 0 {
            return None; // finer than a nanosecond
        }
        total += scaled / denominator;
        if total > u128::from(u64::MAX) {
            return None;
        }
    }
    (total > 0).then(|| Duration::from_nanos(total as u64))
}

pub fn duration_value(d: Duration) {
    assert!(!d.is_zero(), "a zero duration was accepted");
    let text = format_duration(d);
    assert_eq!(parse_duration(&text), Ok(d), "{d:?} formats as {text:?}");
}

/// `NetworkSpec::from_cidr` (and `FromStr` when no host is given).
pub fn network(cidr: &str, host: Option<&str>) {
    let parsed = NetworkSpec::from_cidr(cidr, host);
    if host.is_none() {
        assert_eq!(cidr.parse::<NetworkSpec>(), parsed, "FromStr and from_cidr disagree on {cidr:?}");
    }
    match parsed {
        Err(e) => {
            let kinds: &[ValueKind] =
                if host.is_some() { &[ValueKind::Cidr, ValueKind::HostAddress] } else { &[ValueKind::Cidr] };
            check_refusal(
                &e,
                kinds,
                (e.kind == ValueKind::Cidr).then_some(cidr).filter(|_| !cidr_parts_ok(cidr)),
            );
        }
        Ok(n) => network_value(n),
    }
}

/// Whether the text is a syntactically good CIDR, so a refusal of kind `Cidr` may quote its
/// normal form ("10.0.0.0/24" for " 10.0.0.0/24 ") rather than the input itself.
fn cidr_parts_ok(cidr: &str) -> bool {
    cidr.trim().split_once('/').is_some_and(|(a, l)| a.parse::<Ipv4Addr>().is_ok() && l.parse::<u8>().is_ok())
}

/// `NetworkSpec::from_parts`, containerv's (address, netmask, host) form.
pub fn network_parts(container: &str, netmask: &str, host: &str) {
    match NetworkSpec::from_parts(container, netmask, host) {
        Err(e) => check_refusal(
            &e,
            &[ValueKind::Ipv4, ValueKind::Netmask, ValueKind::HostAddress, ValueKind::Cidr],
            None,
        ),
        Ok(n) => network_value(n),
    }
}

/// `NetworkSpec::new` from typed parts.
pub fn network_typed(container: u32, prefix_len: u8, host: u32) {
    match NetworkSpec::new(Ipv4Addr::from(container), prefix_len, Ipv4Addr::from(host)) {
        Err(e) => check_refusal(&e, &[ValueKind::Cidr, ValueKind::HostAddress], None),
        Ok(n) => {
            assert_eq!(
                (u32::from(n.container()), n.prefix_len(), u32::from(n.host())),
                (container, prefix_len, host)
            );
            network_value(n);
        }
    }
}

/// An accepted network: prefix 1 to 30; container and host in one subnet, distinct, neither the
/// network nor the broadcast address; every way of writing it parses back to it.
pub fn network_value(n: NetworkSpec) {
    let len = n.prefix_len();
    assert!((1..=30).contains(&len), "prefix /{len} accepted");
    let mask = u32::MAX << (32 - u32::from(len));
    assert_eq!(u32::from(n.netmask()), mask);
    let (c, h, net) = (u32::from(n.container()), u32::from(n.host()), u32::from(n.network()));
    let bcast = net | !mask;
    assert_eq!(net & !mask, 0, "{n:?}: network address has host bits");
    assert_eq!(c & mask, net, "{n:?}: container outside its subnet");
    assert_eq!(h & mask, net, "{n:?}: host outside the subnet");
    assert_ne!(c, h, "{n:?}: host is the container");
    for (name, a) in [("container", c), ("host", h)] {
        assert!(a != net && a != bcast, "{n:?}: {name} is the network or broadcast address");
    }
    assert!(n.overlaps(&n));

    let (cidr, host) = (n.to_string(), n.host().to_string());
    assert_eq!(NetworkSpec::from_cidr(&cidr, Some(&host)), Ok(n), "{n:?} displays as {cidr:?}@{host:?}");
    assert_eq!(NetworkSpec::from_parts(&n.container().to_string(), &n.netmask().to_string(), &host), Ok(n));
    assert_eq!(NetworkSpec::new(n.container(), len, n.host()), Ok(n));
    // Without a host, the default host end is valid too.
    let default =
        cidr.parse::<NetworkSpec>().unwrap_or_else(|e| panic!("{cidr:?} refused without a host: {e}"));
    assert_eq!((default.container(), default.prefix_len()), (n.container(), len));
    if default != n {
        network_value(default);
    }
    // The JSON form.
    settings_value(&TestSettings { network: Some(crate::NetworkSetting::Fixed(n)), ..Default::default() });
}

/// `Capabilities`: accepts exactly comma-separated known names (any case, with or without
/// `CAP_`, blanks around them) or nothing at all; `Display` parses back.
pub fn capabilities(input: &str) {
    let known = |name: &str| {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
        CAPABILITY_NAMES.contains(&bare.as_str())
    };
    let expected = input.trim().is_empty() || input.split(',').all(known);
    match input.parse::<Capabilities>() {
        Err(e) => {
            check_refusal(&e, &[ValueKind::Capabilities], Some(input));
            assert!(!expected, "{input:?} refused: {e}");
        }
        Ok(c) => {
            assert!(expected, "{input:?} accepted as {c}");
            capabilities_value(c);
        }
    }
}

pub fn capabilities_value(c: Capabilities) {
    assert_eq!(c.bits() >> CAPABILITY_NAMES.len(), 0, "{c:?} has bits past the last capability");
    let text = c.to_string();
    assert_eq!(text.parse::<Capabilities>(), Ok(c), "{c:?} displays as {text:?}");
}

/// `TestSettings` from JSON: every accepted field is one its parser accepts, and the JSON that
/// `TestSettings` writes reads back to the same settings.
pub fn settings_json(bytes: &[u8]) {
    if let Ok(t) = serde_json::from_slice::<TestSettings>(bytes) {
        settings_value(&t);
    }
}

pub fn settings_value(t: &TestSettings) {
    let TestSettings {
        memory,
        pids,
        cpu_weight: weight,
        cpus,
        network,
        host_access,
        timeout,
        hostname,
        privileged,
        caps,
    } = t;
    if let Some(m) = memory {
        memory_value(*m);
    }
    if let Some(p) = pids {
        pids_value(*p);
    }
    if let Some(w) = weight {
        cpu_weight(&w.to_string());
    }
    if let Some(Some(q)) = cpus {
        cpu_quota_value(*q);
    }
    if let Some(n) = network.and_then(|n| n.fixed()) {
        let (cidr, host) = (n.to_string(), n.host().to_string());
        assert_eq!(NetworkSpec::from_cidr(&cidr, Some(&host)), Ok(n));
    }
    if let Some(d) = timeout {
        duration_value(*d);
    }
    if let Some(h) = hostname {
        assert_eq!(parse_hostname(h).as_ref(), Ok(h), "settings hold a hostname the parser refuses");
    }
    if let Some(p) = privileged {
        assert_eq!(parse_bool(&p.to_string()), Ok(*p));
    }
    if let Some(a) = host_access {
        assert_eq!(a.to_string().parse::<crate::HostAccess>(), Ok(*a));
    }
    if let Some(c) = caps {
        capabilities_value(*c);
    }
    let json = serde_json::to_string(t).unwrap_or_else(|e| panic!("{t:?} does not serialize: {e}"));
    let back: TestSettings = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{t:?} wrote {json}, which does not read back: {e}"));
    assert_eq!(&back, t, "{json}");
    assert_eq!(&t.over(&TestSettings::default()), t);
    assert_eq!(&TestSettings::default().over(t), t);
}

/// `TestSettings::set` fed `key=value` lines: unknown keys (only) are refused as such, and the
/// result is valid settings that round-trip through JSON.
pub fn settings_set(input: &str) {
    let mut t = TestSettings::default();
    let mut pending_host = None;
    for line in input.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let before = t.clone();
        match t.set(key, value, &mut pending_host) {
            Ok(()) => {}
            Err(SetError::UnknownKey(k)) => {
                assert!(!SETTINGS_KEYS.contains(&key) && k == key, "key {key:?} refused as unknown");
            }
            Err(SetError::Value(e)) => {
                assert!(SETTINGS_KEYS.contains(&key), "unknown key {key:?} got a value error: {e}");
                assert_eq!(t, before, "a refused {key} changed the settings");
            }
        }
    }
    settings_value(&t);
}

#[cfg(test)]
mod tests {
    //! The properties above, on generated inputs: a fixed-seed generator, so failures repeat.
    use super::*;

    /// splitmix64: tiny, good enough to spread inputs, and deterministic.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
        /// A number whose size is spread over all magnitudes, not just near u64::MAX.
        fn number(&mut self) -> u64 {
            let bits = self.below(65) as u32;
            if bits == 0 {
                0
            } else {
                self.next() >> (64 - bits)
            }
        }
        fn digits(&mut self, max_len: u64) -> String {
            (0..self.below(max_len + 1)).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
        }
        /// Text built from the given fragments, numbers and stray characters.
        fn text(&mut self, fragments: &[&str]) -> String {
            let mut s = String::new();
            for _ in 0..self.below(6) {
                match self.below(8) {
                    0..=2 => s.push_str(self.pick(fragments)),
                    3 | 4 => s.push_str(&self.number().to_string()),
                    5 => s.push_str(&self.digits(25)),
                    6 => {
                        s.push_str(self.pick(&[" ", ".", "-", "+", "/", "@", "\t", "\u{a0}", "é", "\0", "0"]))
                    }
                    _ => s.push_str(&self.number().to_string()[..1]),
                }
            }
            s
        }
    }

    const N: usize = 20_000;

    #[test]
    fn memory_properties() {
        let mut g = Gen(1);
        let frags = ["K", "M", "G", "T", "k", "m", "Ki", "MiB", "B", "b", "max", "MAX", "X", "iB", "0"];
        for _ in 0..N {
            memory(&g.text(&frags));
            let b = g.number();
            if b > 0 {
                memory_value(MemoryLimit::Bytes(b));
            }
            // Whole units near the top of the range.
            let unit = g.pick(&["K", "M", "G", "T"]);
            memory(&format!("{}{unit}", g.number() >> g.below(41)));
        }
        memory_value(MemoryLimit::Max);
        memory_value(MemoryLimit::Bytes(u64::MAX));
        memory_value(MemoryLimit::Bytes(!((1 << 40) - 1))); // the most whole terabytes
    }

    #[test]
    fn pids_and_weight_properties() {
        let mut g = Gen(2);
        for _ in 0..N {
            let s = g.text(&["max", "Max", "0", "1", " "]);
            pids(&s);
            cpu_weight(&s);
            let c = g.number();
            if c > 0 {
                pids_value(PidsLimit::Count(c));
            }
        }
        for w in 0..=10_001u64 {
            cpu_weight(&w.to_string());
            assert_eq!(CpuWeight::new(w).is_ok(), (1..=10000).contains(&w));
        }
        pids_value(PidsLimit::Max);
    }

    #[test]
    fn cpus_properties() {
        let mut g = Gen(3);
        for _ in 0..N {
            cpus(&g.text(&[".", "max", "0.", ".5", "1.25", "0.01", "0.009"]));
            cpus(&format!("{}.{}", g.digits(11), g.digits(4)));
            let m = g.number() as u32;
            if m >= 10 {
                cpu_quota_value(CpuQuota::from_millicpus(m).unwrap());
            }
        }
        cpu_quota_value(CpuQuota::from_millicpus(u32::MAX).unwrap());
        cpus(&format!("{}.295", u32::MAX / 1000));
        cpus(&format!("{}.296", u32::MAX / 1000));
    }

    #[test]
    fn duration_properties() {
        let mut g = Gen(4);
        let units = ["ms", "s", "m", "min", "h"];
        for _ in 0..N {
            duration(&g.text(&["ms", "s", "m", "min", "h", "us", ".", "1.5", "0.", ".25"]));
            // Sums of well-formed parts, with and without fractions.
            let parts: String = (0..1 + g.below(3))
                .map(|_| {
                    let frac = if g.below(2) == 0 { String::new() } else { format!(".{}", g.digits(10)) };
                    format!("{}{frac}{}", g.number() >> g.below(64), g.pick(&units))
                })
                .collect();
            duration(&parts);
            duration_value(Duration::from_nanos(g.number().max(1)));
            duration_value(Duration::from_millis((g.number() >> 20).max(1)));
        }
        duration_value(Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn network_properties() {
        let mut g = Gen(5);
        for _ in 0..N {
            let (c, h) = (g.next() as u32, g.next() as u32);
            let len = g.below(34) as u8;
            let near = |a: u32, g: &mut Gen| a ^ (g.next() as u32 >> (32 - u32::from(len.clamp(1, 32))));
            let h = if g.below(4) == 0 { h } else { near(c, &mut g) };
            network_typed(c, len, h);
            let (ca, ha) = (Ipv4Addr::from(c), Ipv4Addr::from(h));
            network(&format!("{ca}/{len}"), None);
            network(&format!("{ca}/{len}"), Some(&ha.to_string()));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
            network_parts(
                &ca.to_string(),
                &Ipv4Addr::from(mask ^ (g.below(2) as u32)).to_string(),
                &ha.to_string(),
            );
            let frags = ["10.0.0.2", "/", "/24", "/30", "/31", "/0", "255", ".", "10.0.0", "@", " "];
            network(&g.text(&frags), g.below(2).eq(&0).then(|| g.text(&frags)).as_deref());
            network_parts(&g.text(&frags), &g.text(&frags), &g.text(&frags));
        }
        // Every prefix length at the edges of the address space.
        for len in 0..=32u8 {
            for c in [0, 1, 2, 0x7fff_ffff, 0x8000_0001, u32::MAX - 1, u32::MAX] {
                network_typed(c, len, c ^ 1);
                network(&format!("{}/{len}", Ipv4Addr::from(c)), None);
            }
        }
    }

    #[test]
    fn capabilities_properties() {
        let mut g = Gen(7);
        let mut frags: Vec<&str> = CAPABILITY_NAMES.to_vec();
        frags.extend(["cap_", "CAP_", "net_admin", ",", ", ", ",,", "ALL", "Sys_Ptrace", " "]);
        for _ in 0..N {
            capabilities(&g.text(&frags));
            let names: Vec<&str> =
                (0..g.below(5)).map(|_| g.pick(&frags[..CAPABILITY_NAMES.len()])).collect();
            capabilities(&names.join(","));
            capabilities_value(Capabilities::from_bits(g.next()));
        }
    }

    #[test]
    fn settings_properties() {
        let mut g = Gen(6);
        let lines = [
            "memory=512M",
            "memory=0",
            "pids=max",
            "pids=64",
            "cpu_weight=200",
            "cpu_weight=0",
            "cpus=max",
            "cpus=0.5",
            "network=10.0.0.2/24",
            "network=10.0.0.0/24",
            "host=10.0.0.7",
            "host=10.0.1.7",
            "timeout=1m30s",
            "timeout=1.5m",
            "hostname=box",
            "hostname=-bad",
            "privileged=true",
            "privileged=false",
            "privileged=yes",
            "caps=NET_ADMIN,cap_sys_time",
            "caps=",
            "caps=NET_ADMN",
            "memroy=1G",
            "",
            "=",
        ];
        let json_frags = [
            "{",
            "}",
            "\"memory\":\"1G\"",
            "\"pids\":\"0\"",
            "\"cpus\":\"max\"",
            "\"cpus\":null",
            ",",
            "\"network\":\"10.0.0.2/24@10.0.0.9\"",
            "\"network\":\"10.0.0.2/24\"",
            "\"timeout\":\"2m\"",
            "\"hostname\":\"a.b\"",
            "\"hostname\":\"-x\"",
            "\"hostname\":\"\"",
            "\"cpu_weight\":\"7\"",
            "\"privileged\":\"true\"",
            "\"privileged\":true",
            "\"caps\":\"NET_RAW,SYS_ADMIN\"",
            "\"caps\":\"\"",
            "\"caps\":\"all\"",
            "\"x\":1",
        ];
        for _ in 0..N {
            let input: Vec<&str> = (0..g.below(6)).map(|_| g.pick(&lines)).collect();
            settings_set(&input.join("\n"));
            let mut json = String::from("{");
            for i in 0..g.below(5) {
                if i > 0 {
                    json.push(',');
                }
                json.push_str(g.pick(&json_frags[2..]));
            }
            json.push('}');
            settings_json(json.as_bytes());
            settings_json(g.text(&json_frags).as_bytes());
        }
    }
}
