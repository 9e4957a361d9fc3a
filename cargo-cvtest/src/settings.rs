//! The effective settings of each test, and the precedence that decides them.
//!
//! Lowest first; each layer sets only the keys it names:
//!
//! 1. library defaults (memory 1G, cpu weight 100, pids 256, no CPU quota, no network, no timeout,
//!    not privileged, no capability added to the default set);
//! 2. config defaults: `[workspace.metadata.cvtest]` < `.config/cvtest.toml` < `[package.metadata.cvtest]`;
//! 3. the CLI's `--memory`, `--pids`, `--cpu-weight`, `--cpus`, `--network`, `--timeout`;
//! 4. config overrides that match the test (same file order);
//! 5. the test's own `#[cv_test(...)]` values;
//! 6. with `--force-limits`, the CLI's values again, over everything.
//!
//! General before specific: a per-test rule beats a default wherever it is written, and a test's
//! own attribute beats config. `--force-limits` exists to reproduce a failure under tighter limits.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use cvtest_spec::{
    format_duration, Capabilities, CpuQuota, CpuWeight, MemoryLimit, NetworkSpec, PidsLimit, TestSettings,
    DEFAULT_CPU_WEIGHT, DEFAULT_MEMORY, DEFAULT_PIDS,
};

use crate::cli::LimitArgs;
use crate::config::Config;

/// What a test is expected to end as. A test that ends as expected counts as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Expect {
    #[default]
    Pass,
    /// Exit non-zero or die by a signal (not OOM, not timeout).
    Fail,
    Oom,
    Timeout,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Pass => "pass",
            Expect::Fail => "fail",
            Expect::Oom => "oom",
            Expect::Timeout => "timeout",
        }
    }
}

impl FromStr for Expect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pass" => Ok(Expect::Pass),
            "fail" => Ok(Expect::Fail),
            "oom" => Ok(Expect::Oom),
            "timeout" => Ok(Expect::Timeout),
            _ => Err(format!("invalid expect {s:?}; expected one of pass, fail, oom, timeout")),
        }
    }
}

/// Fully resolved settings of one test.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Effective {
    pub memory: MemoryLimit,
    pub pids: PidsLimit,
    pub cpu_weight: CpuWeight,
    pub cpus: Option<CpuQuota>,
    pub network: Option<NetworkSpec>,
    pub timeout: Option<Duration>,
    pub hostname: Option<String>,
    /// Every capability, /proc unhardened.
    pub privileged: bool,
    /// Capabilities added to `Capabilities::DEFAULT`.
    pub caps: Capabilities,
    /// Whether the limits are enforced: `false` in the explicit no-limits mode (`--no-limits`,
    /// `CVTEST_LIMITS=off`, `limits = "off"`), where the container has no cgroup.
    pub enforced: bool,
}

impl Effective {
    fn from_layers(s: &TestSettings) -> Effective {
        Effective {
            memory: s.memory.unwrap_or(DEFAULT_MEMORY),
            pids: s.pids.unwrap_or(DEFAULT_PIDS),
            cpu_weight: s.cpu_weight.unwrap_or(DEFAULT_CPU_WEIGHT),
            cpus: s.cpus.flatten(),
            network: s.network,
            timeout: s.timeout,
            hostname: s.hostname.clone(),
            privileged: s.privileged.unwrap_or(false),
            caps: s.caps.unwrap_or(Capabilities::NONE),
            enforced: true,
        }
    }

    pub fn limits(&self) -> cvtest::Limits {
        cvtest::Limits { memory: self.memory, cpu_weight: self.cpu_weight, pids: self.pids, cpus: self.cpus }
    }

    /// What the scheduler charges against the memory budget: the limit, or `None` for "max".
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory.bytes()
    }
}

impl fmt::Display for Effective {
    /// `memory=1G pids=256 cpu_weight=100 cpus=max network=- timeout=-`, then ` privileged` or
    /// ` caps=+NET_ADMIN` when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory={} pids={} cpu_weight={} cpus={} network={} timeout={}",
            self.memory,
            self.pids,
            self.cpu_weight,
            self.cpus.map_or_else(|| "max".to_owned(), |c| c.to_string()),
            self.network.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            self.timeout.map_or_else(|| "-".to_owned(), format_duration),
        )?;
        if self.privileged {
            f.write_str(" privileged")?;
        } else if !self.caps.is_empty() {
            write!(f, " caps=+{}", self.caps)?;
        }
        if !self.enforced {
            f.write_str(" limits-not-enforced")?;
        }
        Ok(())
    }
}

/// The CLI's limit flags as a settings layer.
pub fn cli_layer(args: &LimitArgs) -> TestSettings {
    TestSettings {
        memory: args.memory,
        pids: args.pids,
        cpu_weight: args.cpu_weight,
        cpus: args.cpus.map(|c| c.0),
        network: args.network,
        timeout: args.timeout,
        ..TestSettings::default()
    }
}

/// Everything that decides a test's settings, in one place.
#[derive(Debug, Clone)]
pub struct Resolver {
    pub config: Config,
    pub cli: TestSettings,
    pub force: bool,
    /// `false` in the explicit no-limits mode.
    pub enforced: bool,
}

impl Resolver {
    /// The effective settings and expectation of one test.
    pub fn resolve(
        &self,
        package: &str,
        binary_id: &str,
        name: &str,
        cv: Option<&TestSettings>,
    ) -> (Effective, Expect) {
        let (overrides, expect) = self.config.overrides(package, binary_id, name);
        let mut s = self.config.defaults(package);
        s = self.cli.over(&s);
        s = overrides.over(&s);
        if let Some(cv) = cv {
            s = cv.over(&s);
        }
        if self.force {
            s = self.cli.over(&s);
        }
        let mut effective = Effective::from_layers(&s);
        effective.enforced = self.enforced;
        (effective, expect.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(s: &str) -> Option<MemoryLimit> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn precedence_is_as_documented() {
        let config = Config::from_toml(
            "memory = \"512M\"\npids = \"100\"\ntimeout = \"10s\"\n[[overrides]]\nfilter = \"big\"\nmemory = \"2G\"\n",
            "c.toml",
        )
        .unwrap();
        let cli =
            TestSettings { memory: mem("256M"), timeout: Some(Duration::from_secs(5)), ..Default::default() };
        let r = Resolver { config, cli: cli.clone(), force: false, enforced: true };

        // library defaults where nobody sets a key
        let (e, _) = r.resolve("p", "p", "plain", None);
        assert_eq!(e.cpu_weight, DEFAULT_CPU_WEIGHT);
        // config default (pids) < CLI default (memory, timeout)
        assert_eq!(e.pids, PidsLimit::Count(100));
        assert_eq!(e.memory, mem("256M").unwrap());
        assert_eq!(e.timeout, Some(Duration::from_secs(5)));
        // config override beats the CLI default
        let (e, _) = r.resolve("p", "p", "a_big_one", None);
        assert_eq!(e.memory, mem("2G").unwrap());
        // #[cv_test] beats config overrides
        let cv = TestSettings { memory: mem("64M"), ..Default::default() };
        let (e, _) = r.resolve("p", "p", "a_big_one", Some(&cv));
        assert_eq!(e.memory, mem("64M").unwrap());
        // --force-limits beats everything, for the keys it sets
        let forced = Resolver { force: true, ..r };
        let (e, _) = forced.resolve("p", "p", "a_big_one", Some(&cv));
        assert_eq!(e.memory, mem("256M").unwrap());
        assert_eq!(e.pids, PidsLimit::Count(100));
    }

    #[test]
    fn display_lists_every_limit() {
        let e = Effective::from_layers(&TestSettings::default());
        assert_eq!(e.to_string(), "memory=1G pids=256 cpu_weight=100 cpus=max network=- timeout=-");
        assert!(!e.privileged && e.caps.is_empty());
        let caps = TestSettings { caps: Some("SYS_PTRACE,NET_ADMIN".parse().unwrap()), ..Default::default() };
        let e = Effective::from_layers(&caps);
        assert!(e.to_string().ends_with(" timeout=- caps=+NET_ADMIN,SYS_PTRACE"), "{e}");
        let r = Resolver {
            config: Config::default(),
            cli: TestSettings::default(),
            force: false,
            enforced: false,
        };
        let (e, _) = r.resolve("p", "p", "t", None);
        assert!(!e.enforced && e.to_string().ends_with(" limits-not-enforced"), "{e}");
        let e = Effective::from_layers(&TestSettings { privileged: Some(true), ..caps });
        assert!(e.to_string().ends_with(" timeout=- privileged"), "{e}");
    }

    #[test]
    fn privileged_and_caps_from_config_and_attribute() {
        let config = Config::from_toml(
            "caps = \"NET_RAW\"\n[[overrides]]\nfilter = \"mounts\"\nprivileged = true\n\
             [[overrides]]\nfilter = \"ptrace\"\ncaps = \"SYS_PTRACE\"\n",
            "c.toml",
        )
        .unwrap();
        let r = Resolver { config, cli: TestSettings::default(), force: false, enforced: true };
        let (e, _) = r.resolve("p", "p", "plain", None);
        assert!(!e.privileged && e.caps.to_string() == "NET_RAW", "{e}");
        let (e, _) = r.resolve("p", "p", "mounts_things", None);
        assert!(e.privileged, "{e}");
        let (e, _) = r.resolve("p", "p", "ptrace_it", None);
        assert_eq!(e.caps.to_string(), "SYS_PTRACE");
        // The attribute beats config: `privileged = false` in #[cv_test] wins over an override.
        let cv = TestSettings { privileged: Some(false), ..Default::default() };
        let (e, _) = r.resolve("p", "p", "mounts_things", Some(&cv));
        assert!(!e.privileged);
    }
}
