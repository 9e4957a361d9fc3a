//! Per-test settings: what `#[cv_test(...)]` records for a test, what `cargo cvtest` reads back
//! from a built test binary, and what config files and the CLI layer over them.
//!
//! The JSON form keeps every value in the string syntax the parser reads, so a settings dump is
//! readable and parses back to the same values.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::parse::{
    format_duration, parse_cpus, parse_duration, CpuQuota, CpuWeight, MemoryLimit, ParseError, PidsLimit,
};
use crate::{Capabilities, HostAccess, NetworkSetting, NetworkSpec};

/// The keys `#[cv_test]` and config files accept, in the order they are documented.
pub const SETTINGS_KEYS: &[&str] = &[
    "memory",
    "pids",
    "cpu_weight",
    "cpus",
    "network",
    "host",
    "host_access",
    "timeout",
    "hostname",
    "privileged",
    "caps",
];

/// Limits and options of one test. `None` means "not set here": a lower layer (config, CLI
/// defaults, library defaults) decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSettings {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_str")]
    pub memory: Option<MemoryLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_str")]
    pub pids: Option<PidsLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_str")]
    pub cpu_weight: Option<CpuWeight>,
    /// `Some(None)` is an explicit "max" (no quota), overriding a lower layer's quota.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "cpus_str")]
    pub cpus: Option<Option<CpuQuota>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "net_str")]
    /// A fixed subnet or `auto`.
    pub network: Option<NetworkSetting>,
    /// With a network: what of the host the container reaches (only the host end by default).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_str")]
    pub host_access: Option<HostAccess>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dur_str")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hostname_str")]
    pub hostname: Option<String>,
    /// `true`: the test keeps every capability and sees /proc unmasked (no confinement beyond
    /// the namespaces and the read-only root, which it may then undo).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "bool_str")]
    pub privileged: Option<bool>,
    /// Capabilities added to [`Capabilities::DEFAULT`]. Like every key, a value set in a higher
    /// layer replaces a lower layer's (the lists are not merged).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_str")]
    pub caps: Option<Capabilities>,
}

impl TestSettings {
    /// Layers `self` over `lower`: every value set here wins.
    pub fn over(&self, lower: &TestSettings) -> TestSettings {
        TestSettings {
            memory: self.memory.or(lower.memory),
            pids: self.pids.or(lower.pids),
            cpu_weight: self.cpu_weight.or(lower.cpu_weight),
            cpus: self.cpus.or(lower.cpus),
            network: self.network.or(lower.network),
            host_access: self.host_access.or(lower.host_access),
            timeout: self.timeout.or(lower.timeout),
            hostname: self.hostname.clone().or_else(|| lower.hostname.clone()),
            privileged: self.privileged.or(lower.privileged),
            caps: self.caps.or(lower.caps),
        }
    }

    /// Sets one key from its string form, as written in an attribute, a config file or a flag.
    /// `host` needs `network` (or a later `network`) and is kept until then in `pending_host`.
    pub fn set(&mut self, key: &str, value: &str, pending_host: &mut Option<String>) -> Result<(), SetError> {
        match key {
            "memory" => self.memory = Some(value.parse::<_>().map_err(SetError::Value)?),
            "pids" => self.pids = Some(value.parse::<_>().map_err(SetError::Value)?),
            "cpu_weight" => self.cpu_weight = Some(value.parse::<_>().map_err(SetError::Value)?),
            "cpus" => self.cpus = Some(parse_cpus(value)?),
            "network" => self.network = Some(NetworkSetting::parse(value, pending_host.as_deref())?),
            "host" => {
                *pending_host = Some(value.to_owned());
                if let Some(n) = self.network {
                    self.network = Some(NetworkSetting::parse(&n.to_string(), Some(value))?);
                }
            }
            "host_access" => self.host_access = Some(value.parse::<_>().map_err(SetError::Value)?),
            "timeout" => self.timeout = Some(parse_duration(value)?),
            "hostname" => self.hostname = Some(parse_hostname(value)?),
            "privileged" => self.privileged = Some(parse_bool(value)?),
            "caps" => self.caps = Some(value.parse::<Capabilities>()?),
            _ => return Err(SetError::UnknownKey(key.to_owned())),
        }
        Ok(())
    }
}

/// Validates a UTS hostname.
pub fn parse_hostname(input: &str) -> Result<String, ParseError> {
    let ok = !input.is_empty()
        && input.len() <= 64
        && !input.starts_with(['-', '.'])
        && input.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(input.to_owned())
    } else {
        Err(ParseError::new(crate::ValueKind::Hostname, input, "not a valid hostname"))
    }
}

/// `true` or `false`, as a config file, an attribute or a flag writes a switch.
pub fn parse_bool(input: &str) -> Result<bool, ParseError> {
    match input {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ParseError::new(crate::ValueKind::Bool, input, "not true or false")),
    }
}

/// A key that could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("unknown key `{key}`; valid keys are: {valid}", key = .0, valid = SETTINGS_KEYS.join(", "))]
    UnknownKey(String),
    #[error(transparent)]
    Value(#[from] ParseError),
}

macro_rules! string_serde {
    ($modname:ident, $ty:ty, |$v:ident| $to:expr, |$s:ident| $from:expr) => {
        mod $modname {
            use super::*;
            pub fn serialize<S: Serializer>(v: &Option<$ty>, s: S) -> Result<S::Ok, S::Error> {
                match v {
                    Some($v) => s.serialize_str(&$to),
                    None => s.serialize_none(),
                }
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
                let raw: Option<String> = Option::deserialize(d)?;
                raw.map(|$s| $from.map_err(serde::de::Error::custom)).transpose()
            }
        }
    };
}

mod opt_str {
    use super::*;
    use std::fmt::Display;
    use std::str::FromStr;
    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr<Err = ParseError>,
        D: Deserializer<'de>,
    {
        let raw: Option<String> = Option::deserialize(d)?;
        raw.map(|s| s.parse::<T>().map_err(serde::de::Error::custom)).transpose()
    }
}
string_serde!(cpus_str, Option<CpuQuota>, |v| v.map_or_else(|| "max".to_owned(), |q| q.to_string()), |s| {
    parse_cpus(&s)
});
string_serde!(
    net_str,
    NetworkSetting,
    |v| match v {
        NetworkSetting::Fixed(n) => format!("{}@{}", n, n.host()),
        NetworkSetting::Auto => "auto".to_owned(),
    },
    |s| parse_net(&s)
);
string_serde!(dur_str, Duration, |v| format_duration(*v), |s| parse_duration(&s));
string_serde!(hostname_str, String, |v| v.clone(), |s| parse_hostname(&s));
string_serde!(bool_str, bool, |v| v.to_string(), |s| parse_bool(&s));

/// The JSON form of a network: "10.0.0.2/24@10.0.0.1" (the host end after '@'), or a bare CIDR.
fn parse_net(s: &str) -> Result<NetworkSetting, ParseError> {
    match s.split_once('@') {
        Some((cidr, host)) => NetworkSpec::from_cidr(cidr, Some(host)).map(NetworkSetting::Fixed),
        None => NetworkSetting::parse(s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_round_trip_json() {
        let mut t = TestSettings::default();
        let mut host = None;
        t.set("host", "10.9.0.7", &mut host).unwrap();
        t.set("network", "10.9.0.2/24", &mut host).unwrap();
        t.set("memory", "512M", &mut host).unwrap();
        t.set("cpus", "max", &mut host).unwrap();
        t.set("timeout", "1m30s", &mut host).unwrap();
        assert_eq!(t.network.unwrap().fixed().unwrap().host().to_string(), "10.9.0.7");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"memory":"512M","cpus":"max","network":"10.9.0.2/24@10.9.0.7","timeout":"1m30s"}"#
        );
        let back: TestSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn host_access() {
        let mut t = TestSettings::default();
        t.set("host_access", "all", &mut None).unwrap();
        assert_eq!(t.host_access, Some(HostAccess::All));
        let back: TestSettings = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let e = t.set("host_access", "everything", &mut None).unwrap_err().to_string();
        assert!(e.contains("\"host-end\"") && e.contains("\"all\""), "{e}");
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"host_access":"all"}"#);
    }

    #[test]
    fn privileged_and_caps() {
        let mut t = TestSettings::default();
        t.set("privileged", "true", &mut None).unwrap();
        t.set("caps", "cap_sys_ptrace,NET_ADMIN", &mut None).unwrap();
        assert_eq!(t.privileged, Some(true));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"privileged":"true","caps":"NET_ADMIN,SYS_PTRACE"}"#);
        assert_eq!(serde_json::from_str::<TestSettings>(&json).unwrap(), t);
        let e = t.set("privileged", "yes", &mut None).unwrap_err().to_string();
        assert_eq!(e, "invalid boolean \"yes\": not true or false; expected true or false");
        let e = t.set("caps", "NET_ADMN", &mut None).unwrap_err().to_string();
        assert!(e.starts_with("invalid capability list \"NET_ADMN\": unknown capability \"NET_ADMN\"; expected capability names"), "{e}");
        assert!(serde_json::from_str::<TestSettings>(r#"{"caps":"BOGUS"}"#).is_err());
        // A higher layer's list replaces a lower one's.
        let lower = TestSettings { caps: Some("NET_ADMIN".parse().unwrap()), ..Default::default() };
        let upper = TestSettings { caps: Some("SYS_TIME".parse().unwrap()), ..Default::default() };
        assert_eq!(upper.over(&lower).caps.unwrap().to_string(), "SYS_TIME");
        assert_eq!(TestSettings::default().over(&lower).caps, lower.caps);
    }

    #[test]
    fn unknown_key_lists_valid_ones() {
        let e = TestSettings::default().set("memroy", "1G", &mut None).unwrap_err();
        assert!(e.to_string().contains("valid keys are: memory, pids"), "{e}");
        assert!(serde_json::from_str::<TestSettings>(r#"{"memory":"1X"}"#).is_err());
    }

    /// Bug found by the fuzzer: JSON took any string as the hostname ("", "}", "-x"), which
    /// `parse_hostname` and so every other front end refuses.
    #[test]
    fn json_hostname_is_validated() {
        for bad in ["", "}", "-x", ".x", "a b", "\\u00e9"] {
            let json = format!(r#"{{"hostname":"{bad}"}}"#);
            let e = serde_json::from_str::<TestSettings>(&json).unwrap_err();
            assert!(e.to_string().contains("invalid hostname"), "{json}: {e}");
        }
        let t: TestSettings = serde_json::from_str(r#"{"hostname":"box-1.test"}"#).unwrap();
        assert_eq!(t.hostname.as_deref(), Some("box-1.test"));
    }

    #[test]
    fn layering_prefers_upper() {
        let upper = TestSettings { memory: Some(MemoryLimit::Max), ..Default::default() };
        let lower = TestSettings {
            memory: Some(MemoryLimit::Bytes(1)),
            pids: Some(PidsLimit::Count(3)),
            ..Default::default()
        };
        let m = upper.over(&lower);
        assert_eq!(m.memory, Some(MemoryLimit::Max));
        assert_eq!(m.pids, Some(PidsLimit::Count(3)));
    }

    #[test]
    fn network_auto() {
        let mut t = TestSettings::default();
        let mut host = None;
        t.set("network", "auto", &mut host).unwrap();
        assert_eq!(t.network, Some(NetworkSetting::Auto));
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"network":"auto"}"#);
        assert_eq!(serde_json::from_str::<TestSettings>(r#"{"network":"auto"}"#).unwrap(), t);
        let e = t.set("host", "10.0.0.1", &mut host).unwrap_err().to_string();
        assert!(e.contains("needs a fixed network"), "{e}");
        let mut host = Some("10.0.0.1".to_owned());
        assert!(TestSettings::default().set("network", "auto", &mut host).is_err());
    }
}
