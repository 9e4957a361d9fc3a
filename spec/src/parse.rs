//! Scalar values: memory sizes, pid counts, CPU weights and quotas, durations.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What kind of value failed to parse; used to say what is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Memory,
    Pids,
    CpuWeight,
    Cpus,
    Cidr,
    /// A test's `network`: a CIDR or `auto`.
    Network,
    Ipv4,
    Netmask,
    HostAddress,
    Duration,
    Hostname,
    Bool,
    Capabilities,
    HostAccess,
    CpuList,
}

impl ValueKind {
    /// A short noun for messages: "memory limit", "CIDR", ...
    pub fn noun(self) -> &'static str {
        match self {
            ValueKind::Memory => "memory limit",
            ValueKind::Pids => "pids limit",
            ValueKind::CpuWeight => "cpu weight",
            ValueKind::Cpus => "cpu quota",
            ValueKind::Cidr => "network",
            ValueKind::Network => "network",
            ValueKind::Ipv4 => "IPv4 address",
            ValueKind::Netmask => "netmask",
            ValueKind::HostAddress => "host address",
            ValueKind::Duration => "duration",
            ValueKind::Hostname => "hostname",
            ValueKind::Bool => "boolean",
            ValueKind::Capabilities => "capability list",
            ValueKind::HostAccess => "host access",
            ValueKind::CpuList => "CPU list",
        }
    }

    /// What the parser accepts for this kind of value.
    pub fn accepted(self) -> &'static str {
        match self {
            ValueKind::Memory => {
                "bytes (\"1048576\"), a number with a binary unit K, M, G or T (\"512M\" = 536870912 bytes; \"Ki\"/\"KiB\" spellings too), at least 1M, or \"max\" for no limit"
            }
            ValueKind::Pids => "a whole number of processes and threads from 1 up, or \"max\" for no limit",
            ValueKind::CpuWeight => "a whole number from 1 to 10000 (100 is the default share)",
            ValueKind::Cpus => {
                "a positive number of CPUs with at most 3 decimals, at least 0.01 (\"0.5\" = half a core, \"2\" = two cores), or \"max\" for no quota"
            }
            ValueKind::Cidr => "an IPv4 address with a prefix length from 1 to 30, such as \"10.0.0.2/24\"",
            ValueKind::Network => {
                "an IPv4 address with a prefix length from 1 to 30, such as \"10.0.0.2/24\", or \"auto\" for a free subnet of the pool"
            }
            ValueKind::Ipv4 => "a dotted IPv4 address such as \"10.0.0.2\"",
            ValueKind::Netmask => {
                "a contiguous dotted netmask from 128.0.0.0 to 255.255.255.252, such as \"255.255.255.0\""
            }
            ValueKind::HostAddress => {
                "an IPv4 address in the container's subnet, other than the container's own, the network and the broadcast address"
            }
            ValueKind::Duration => {
                "a positive duration: a number with a unit ms, s, m or h, or several such (\"500ms\", \"30s\", \"2m\", \"1m30s\", \"1.5s\")"
            }
            ValueKind::Hostname => "1 to 64 characters: letters, digits, '-' and '.', not starting with '-' or '.'",
            ValueKind::Bool => "true or false",
            ValueKind::Capabilities => crate::caps::ACCEPTED,
            ValueKind::CpuList => {
                "CPU numbers from 0 to 1023 and ranges of them, comma-separated, as cpuset and taskset write them (\"0\", \"0-3\", \"0,2,4-7\")"
            }
            ValueKind::HostAccess => {
                "\"host-end\" (the container reaches only its veth's host end) or \"all\" (every address of the host)"
            }
        }
    }
}

/// A value that could not be parsed: what it was, why it was refused, and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} {:?}: {reason}; expected {}", kind.noun(), input, kind.accepted())]
pub struct ParseError {
    pub kind: ValueKind,
    pub input: String,
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(kind: ValueKind, input: &str, reason: impl Into<String>) -> Self {
        ParseError { kind, input: input.to_owned(), reason: reason.into() }
    }
}

/// A memory limit: a number of bytes or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryLimit {
    Max,
    Bytes(u64),
}

impl MemoryLimit {
    /// The smallest limit accepted: 1 MiB. Below it the container's init is killed for lack of
    /// memory before the test starts (measured: 256K fails, 1M runs a trivial test).
    pub const MIN_BYTES: u64 = 1 << 20;

    pub fn bytes(self) -> Option<u64> {
        match self {
            MemoryLimit::Max => None,
            MemoryLimit::Bytes(b) => Some(b),
        }
    }
}

const UNITS: [(char, u64); 4] = [('K', 1 << 10), ('M', 1 << 20), ('G', 1 << 30), ('T', 1 << 40)];

impl FromStr for MemoryLimit {
    type Err = ParseError;
    fn from_str(input: &str) -> Result<Self, ParseError> {
        let err = |reason: &str| ParseError::new(ValueKind::Memory, input, reason);
        let s = input.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(MemoryLimit::Max);
        }
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(digits_end);
        if num.is_empty() {
            return Err(err("it does not start with a number"));
        }
        let n: u64 = num.parse().map_err(|_| err("the number is too large"))?;
        let mult = match unit {
            "" | "B" => 1,
            _ => {
                let mut chars = unit.chars();
                let letter = chars.next().expect("unit is not empty").to_ascii_uppercase();
                let rest = chars.as_str();
                let Some(&(_, m)) = UNITS.iter().find(|(u, _)| *u == letter) else {
                    return Err(err(&format!("unknown unit {unit:?}")));
                };
                if !matches!(rest, "" | "i" | "iB" | "B") {
                    return Err(err(&format!("unknown unit {unit:?}")));
                }
                m
            }
        };
        let bytes = n.checked_mul(mult).ok_or_else(|| err("the size overflows 64 bits"))?;
        if bytes < MemoryLimit::MIN_BYTES {
            return Err(err(&format!(
                "{bytes} bytes is below the smallest limit a container can start under, 1M (1048576 bytes)"
            )));
        }
        Ok(MemoryLimit::Bytes(bytes))
    }
}

impl fmt::Display for MemoryLimit {
    /// The canonical spelling, which parses back to the same value: "max", "512M", "1536K", "1000".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemoryLimit::Max => f.write_str("max"),
            MemoryLimit::Bytes(b) => {
                for &(u, m) in UNITS.iter().rev() {
                    if b % m == 0 {
                        return write!(f, "{}{}", b / m, u);
                    }
                }
                write!(f, "{b}")
            }
        }
    }
}

/// A limit on processes plus threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PidsLimit {
    Max,
    Count(u64),
}

impl PidsLimit {
    pub fn count(self) -> Option<u64> {
        match self {
            PidsLimit::Max => None,
            PidsLimit::Count(c) => Some(c),
        }
    }
}

impl FromStr for PidsLimit {
    type Err = ParseError;
    fn from_str(input: &str) -> Result<Self, ParseError> {
        let s = input.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(PidsLimit::Max);
        }
        let n =
            parse_whole(s).ok_or_else(|| ParseError::new(ValueKind::Pids, input, "not a whole number"))?;
        if n == 0 {
            return Err(ParseError::new(ValueKind::Pids, input, "zero processes cannot run the test"));
        }
        Ok(PidsLimit::Count(n))
    }
}

impl fmt::Display for PidsLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PidsLimit::Max => f.write_str("max"),
            PidsLimit::Count(c) => write!(f, "{c}"),
        }
    }
}

/// A CPU weight from 1 to 10000 (cgroup v2 `cpu.weight`; mapped to `cpu.shares` on v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuWeight(u16);

impl CpuWeight {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 10000;
    pub const DEFAULT: CpuWeight = CpuWeight(100);

    pub fn new(w: u64) -> Result<Self, ParseError> {
        if (Self::MIN as u64..=Self::MAX as u64).contains(&w) {
            Ok(CpuWeight(w as u16))
        } else {
            Err(ParseError::new(ValueKind::CpuWeight, &w.to_string(), "out of range"))
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The cgroup v1 `cpu.shares` equivalent (weight 100 = 1024 shares).
    pub fn to_v1_shares(self) -> u64 {
        (self.0 as u64 * 1024 / 100).max(2)
    }
}

impl FromStr for CpuWeight {
    type Err = ParseError;
    fn from_str(input: &str) -> Result<Self, ParseError> {
        let n = parse_whole(input.trim())
            .ok_or_else(|| ParseError::new(ValueKind::CpuWeight, input, "not a whole number"))?;
        CpuWeight::new(n).map_err(|e| ParseError { input: input.to_owned(), ..e })
    }
}

impl fmt::Display for CpuWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A CPU quota in thousandths of a CPU ("0.5" = 500). `None` where a quota is optional means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuQuota {
    millicpus: u32,
}

impl CpuQuota {
    /// The CFS period cvtest uses, in microseconds.
    pub const PERIOD_US: u64 = 100_000;

    pub fn from_millicpus(millicpus: u32) -> Result<Self, ParseError> {
        if millicpus < 10 {
            return Err(ParseError::new(
                ValueKind::Cpus,
                &format!("{}", millicpus as f64 / 1000.0),
                "below the kernel's minimum quota of 0.01 CPU",
            ));
        }
        Ok(CpuQuota { millicpus })
    }

    pub fn millicpus(self) -> u32 {
        self.millicpus
    }

    /// The quota per [`Self::PERIOD_US`], in microseconds.
    pub fn quota_us(self) -> u64 {
        self.millicpus as u64 * Self::PERIOD_US / 1000
    }
}

/// Parses "0.5", "2", "1.25"; "max" gives `None` (no quota).
pub fn parse_cpus(input: &str) -> Result<Option<CpuQuota>, ParseError> {
    let s = input.trim();
    if s.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    let err = |reason: &str| ParseError::new(ValueKind::Cpus, input, reason);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(err("not a decimal number"));
    }
    if frac.len() > 3 {
        return Err(err("more than 3 decimals"));
    }
    let int: u32 = if int.is_empty() { 0 } else { int.parse().map_err(|_| err("too large"))? };
    let frac_m: u32 = format!("{frac:0<3}").parse().expect("three digits");
    let m = int.checked_mul(1000).and_then(|v| v.checked_add(frac_m)).ok_or_else(|| err("too large"))?;
    if m == 0 {
        return Err(err("a quota of zero CPUs would never run the test"));
    }
    CpuQuota::from_millicpus(m).map(Some).map_err(|e| ParseError { input: input.to_owned(), ..e })
}

impl FromStr for CpuQuota {
    type Err = ParseError;
    /// Like [`parse_cpus`] but "max" is refused: a `CpuQuota` is always a real quota.
    fn from_str(input: &str) -> Result<Self, ParseError> {
        parse_cpus(input)?.ok_or_else(|| ParseError::new(ValueKind::Cpus, input, "\"max\" is no quota here"))
    }
}

impl fmt::Display for CpuQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, m) = (self.millicpus / 1000, self.millicpus % 1000);
        if m == 0 {
            write!(f, "{i}")
        } else {
            let frac = format!("{m:03}");
            write!(f, "{i}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// The longest duration [`parse_duration`] accepts: `u64::MAX` nanoseconds, about 584 years.
pub const MAX_DURATION: Duration = Duration::from_nanos(u64::MAX);

/// Parses a positive duration: "500ms", "30s", "2m", "1h", "1m30s", "1.5s", "1.5m", "0.25ms".
///
/// Exact to the nanosecond: a fraction finer than that ("0.0000001ms") is refused, not rounded,
/// and so is anything above [`MAX_DURATION`].
pub fn parse_duration(input: &str) -> Result<Duration, ParseError> {
    let err = |reason: &str| ParseError::new(ValueKind::Duration, input, reason);
    let too_large =
        || err("it is longer than the longest accepted duration, 5124095h34m33.709551615s (about 584 years)");
    let mut s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    // Nanoseconds, in u128: a fraction times an hour's nanoseconds needs more than 64 bits.
    let mut total: u128 = 0;
    while !s.is_empty() {
        let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, rest) = s.split_at(num_end);
        if num.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_end);
        let unit_ns: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err(&format!("the number {num} has no unit"))),
            _ => return Err(err(&format!("unknown unit {unit:?}"))),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if frac.contains('.') || (int.is_empty() && frac.is_empty()) || frac.len() > 9 {
            return Err(err(&format!("{num:?} is not a number with at most 9 decimals")));
        }
        let int: u128 = match int.trim_start_matches('0') {
            "" => 0,
            // 20 digits are already more nanoseconds than MAX_DURATION in any unit.
            digits if digits.len() > 20 => return Err(too_large()),
            digits => digits.parse().expect("at most 20 ascii digits"),
        };
        let frac_ns = if frac.is_empty() {
            0
        } else {
            // frac / 10^9 of a unit, exactly: at most 999_999_999 * 3.6e12, far inside u128.
            let frac: u128 = format!("{frac:0<9}").parse().expect("nine digits");
            let scaled = frac * unit_ns;
            if scaled % 1_000_000_000 != 0 {
                return Err(err(&format!("{num}{unit} is not a whole number of nanoseconds")));
            }
            scaled / 1_000_000_000
        };
        total += int * unit_ns + frac_ns;
        if total > u128::from(u64::MAX) {
            return Err(too_large());
        }
        s = rest;
    }
    if total == 0 {
        return Err(err("a zero duration"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats a duration in the syntax [`parse_duration`] reads: "30s", "1m30s", "500ms", and
/// "0.25ms" below a millisecond. Every duration up to [`MAX_DURATION`] parses back to itself.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns % 1_000_000 != 0 {
        let frac = format!("{:06}", ns % 1_000_000);
        return format!("{}.{}ms", ns / 1_000_000, frac.trim_end_matches('0'));
    }
    let ms = ns / 1_000_000;
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

fn parse_whole(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_are_binary() {
        assert_eq!("512M".parse(), Ok(MemoryLimit::Bytes(536_870_912)));
        assert_eq!("1G".parse(), Ok(MemoryLimit::Bytes(1 << 30)));
        assert_eq!("2048K".parse(), Ok(MemoryLimit::Bytes(2048 * 1024)));
        assert_eq!("64Mi".parse(), Ok(MemoryLimit::Bytes(64 << 20)));
        assert_eq!("64MiB".parse(), Ok(MemoryLimit::Bytes(64 << 20)));
        assert_eq!("64m".parse(), Ok(MemoryLimit::Bytes(64 << 20)));
        assert_eq!("1048576".parse(), Ok(MemoryLimit::Bytes(1 << 20)));
        assert_eq!("1M".parse(), Ok(MemoryLimit::Bytes(1 << 20)));
        assert_eq!("max".parse(), Ok(MemoryLimit::Max));
    }

    #[test]
    fn memory_rejects_bad_input_with_reason() {
        let e = "1X".parse::<MemoryLimit>().unwrap_err();
        assert_eq!(e.kind, ValueKind::Memory);
        let msg = e.to_string();
        assert!(msg.contains("\"1X\"") && msg.contains("unknown unit") && msg.contains("\"max\""), "{msg}");
        let e = "1000".parse::<MemoryLimit>().unwrap_err();
        assert!(e.to_string().contains("below the smallest limit") && e.to_string().contains("1M"), "{e}");
        for bad in ["", "M", "0", "0M", "5", "1023K", "-1", "1.5G", "99999999999T", "12 M"] {
            assert!(bad.parse::<MemoryLimit>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn memory_display_round_trips() {
        for s in ["512M", "1G", "1536K", "1048577", "max", "3T"] {
            let v: MemoryLimit = s.parse().unwrap();
            assert_eq!(v.to_string(), s);
        }
    }

    #[test]
    fn pids_and_weight_ranges() {
        assert_eq!("64".parse(), Ok(PidsLimit::Count(64)));
        assert_eq!("max".parse(), Ok(PidsLimit::Max));
        assert!("0".parse::<PidsLimit>().is_err());
        assert!("x".parse::<PidsLimit>().is_err());
        assert_eq!("1".parse::<CpuWeight>().unwrap().get(), 1);
        assert_eq!("10000".parse::<CpuWeight>().unwrap().get(), 10000);
        let e = "0".parse::<CpuWeight>().unwrap_err();
        assert!(e.to_string().contains("1 to 10000"), "{e}");
        assert!("10001".parse::<CpuWeight>().is_err());
        assert_eq!(CpuWeight::DEFAULT.to_v1_shares(), 1024);
    }

    #[test]
    fn cpus_quota() {
        assert_eq!(parse_cpus("0.5").unwrap().unwrap().quota_us(), 50_000);
        assert_eq!(parse_cpus("2").unwrap().unwrap().quota_us(), 200_000);
        assert_eq!(parse_cpus(".25").unwrap().unwrap().millicpus(), 250);
        assert_eq!(parse_cpus("max").unwrap(), None);
        for bad in ["0", "0.001", "1.2345", "abc", "", ".", "-1", "1.2.3"] {
            assert!(parse_cpus(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_cpus("1.250").unwrap().unwrap().to_string(), "1.25");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "30", "0s", "10x", "s", "1..5s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        for d in ["30s", "2m", "1m30s", "500ms", "1h"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    /// Bug found by the fuzzer (".07h3m", within a second): a fraction of a minute or an hour
    /// ("1.5m") was refused as "too large", because fraction × unit overflowed 64 bits.
    #[test]
    fn duration_fractions_of_minutes_and_hours() {
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0.5m").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration(".07h3m").unwrap(), Duration::from_secs(252 + 180));
        assert_eq!(parse_duration("0.999999999h").unwrap(), Duration::from_nanos(3_599_999_996_400));
    }

    /// Bug found by the property tests: below a millisecond `format_duration` rounded down, so
    /// "0.5ms" formatted as "0ms" (which is refused) and "1.0000001s" lost its 100 ns.
    #[test]
    fn duration_below_a_millisecond_round_trips() {
        for (text, ns) in [("0.5ms", 500_000), ("0.000001ms", 1), ("1000.0001ms", 1_000_000_100)] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d, Duration::from_nanos(ns));
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(parse_duration("1.0000001s").unwrap(), Duration::from_nanos(1_000_000_100));
        // Finer than a nanosecond is refused, not silently rounded (to zero, here).
        let e = parse_duration("0.0000001ms").unwrap_err();
        assert!(e.reason.contains("whole number of nanoseconds"), "{e}");
        assert!(parse_duration("1.0000001ms").is_err());
    }

    /// Bug: several parts could add up past u64 nanoseconds ("5124095h5124095h"), which
    /// `format_duration` then wrote as hours that no longer parsed.
    #[test]
    fn duration_has_a_maximum_that_round_trips() {
        let max = parse_duration("5124095h34m33.709551615s").unwrap();
        assert_eq!(max, MAX_DURATION);
        assert_eq!(parse_duration(&format_duration(max)), Ok(max));
        for over in [
            "5124095h34m33.709551616s",
            "5124095h5124095h",
            "18446744073709551616ms",
            "99999999999999999999999h",
        ] {
            let e = parse_duration(over).unwrap_err();
            assert!(e.reason.contains("longest accepted duration"), "{over}: {e}");
        }
        assert_eq!(parse_duration("000000000000000000000000001s").unwrap(), Duration::from_secs(1));
    }

    #[test]
    fn cpu_lists_parse_and_print_as_taskset_does() {
        let l: CpuList = "0-3,6, 8-9,2".parse().unwrap();
        assert_eq!(l.cpus(), &[0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(l.to_string(), "0-3,6,8-9");
        assert_eq!("5".parse::<CpuList>().unwrap().cpus(), &[5]);
        assert_eq!(CpuList::new([3, 1, 2, 1]).unwrap().to_string(), "1-3");
        for bad in ["", "x", "3-1", "0-1024", "1024", "1,,2", "-1"] {
            let e = bad.parse::<CpuList>().unwrap_err();
            assert_eq!(e.kind, ValueKind::CpuList, "{bad:?}");
        }
        assert!(CpuList::new([]).is_err());
        assert!(CpuList::new([CpuList::LIMIT]).is_err());
    }
}

/// A non-empty set of CPU numbers, each below [`CpuList::LIMIT`]: where a container's processes
/// run. Written and parsed as cpuset and `taskset -c` write it: `"0-3,6"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// The kernel's `CPU_SETSIZE`: the CPUs a glibc `cpu_set_t` can name.
    pub const LIMIT: usize = 1024;

    /// The list of these CPUs (sorted, each once), or an error when there is none or one is
    /// at or above [`CpuList::LIMIT`].
    pub fn new(cpus: impl IntoIterator<Item = usize>) -> Result<CpuList, ParseError> {
        let mut v: Vec<usize> = cpus.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        let list = CpuList(v);
        let err = |reason: &str| Err(ParseError::new(ValueKind::CpuList, &list.to_string(), reason));
        match list.0.last() {
            None => err("it names no CPU"),
            Some(&last) if last >= Self::LIMIT => err("a CPU number is too large"),
            Some(_) => Ok(list),
        }
    }

    /// The CPUs, ascending.
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end += 1;
            }
            let sep = if start == self.0[0] { "" } else { "," };
            if end == start {
                write!(f, "{sep}{start}")?;
            } else {
                write!(f, "{sep}{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl FromStr for CpuList {
    type Err = ParseError;
    fn from_str(input: &str) -> Result<Self, ParseError> {
        let err = |reason: &str| ParseError::new(ValueKind::CpuList, input, reason);
        let number = |s: &str| {
            s.trim().parse::<usize>().map_err(|_| err(&format!("{:?} is not a CPU number", s.trim())))
        };
        let mut cpus = Vec::new();
        for part in input.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (number(a)?, number(b)?);
                    if a > b {
                        return Err(err(&format!("the range {a}-{b} runs backwards")));
                    }
                    if b >= CpuList::LIMIT {
                        return Err(err(&format!("CPU {b} is at or above {}", CpuList::LIMIT)));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(number(part)?),
            }
        }
        CpuList::new(cpus).map_err(|e| err(&e.reason))
    }
}
