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
//!
//! Layers are folded as `cvtest_spec::TestSettings`; the library's `Options::for_test`, the one
//! mapping from settings to a container (the same `#[cv_test]` uses), fills in its defaults. A new
//! settings key is wired in `cvtest-spec` (`TestSettings`, `SETTINGS_KEYS`) and `Options::for_test`;
//! here only [`Effective`]'s `Display` and the JSON `limits` show it.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use cvtest::{Isolation, Limits, Options, ParseError};
use cvtest_spec::{format_duration, Capabilities, HostAccess, NetworkSetting, TestSettings};

use crate::config::Config;
use crate::errors::UsageError;
use crate::expect::Expect;

/// Fully resolved settings of one test: every layer folded, and its container's options made
/// from them by the library's one mapping ([`Options::for_test`]), which fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Effective {
    /// The keys some layer set.
    settings: TestSettings,
    /// The container's options; the runner adds the root.
    options: Options,
}

impl Effective {
    pub(crate) fn from_layers(settings: TestSettings) -> Result<Effective, ParseError> {
        let options = Options::for_test(&settings)?;
        Ok(Effective { settings, options })
    }

    /// The same settings in the explicit no-limits mode: a container without a cgroup, so none
    /// of the limits apply (and the peaks are rusage's).
    pub(crate) fn without_limits(mut self) -> Effective {
        self.options.set_isolation(no_limits_isolation());
        self
    }

    /// Whether the limits are enforced: `false` in the explicit no-limits mode (`--no-limits`,
    /// `CVTEST_LIMITS=off`, `limits = "off"`), where the container has no cgroup.
    pub(crate) fn enforced(&self) -> bool {
        self.options.isolation().contains(Isolation::CGROUPS)
    }

    /// The keys some layer set.
    pub(crate) fn settings(&self) -> &TestSettings {
        &self.settings
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn limits(&self) -> &Limits {
        self.options.limits()
    }

    /// The test's network setting: a fixed subnet, or `auto` (its subnet is leased at create).
    pub(crate) fn network(&self) -> Option<NetworkSetting> {
        self.settings.network
    }

    /// Not a container's option: the runner waits that long.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.settings.timeout
    }

    /// What of the host a container with a network reaches.
    pub(crate) fn host_access(&self) -> HostAccess {
        self.options.host_access()
    }

    /// Every capability, /proc unhardened.
    pub(crate) fn privileged(&self) -> bool {
        self.options.privileged()
    }

    /// The capabilities the settings add to `Capabilities::DEFAULT`.
    pub(crate) fn added_caps(&self) -> Capabilities {
        self.settings.caps.unwrap_or_default()
    }

    /// What the scheduler charges against the memory budget: the limit, or `None` for "max".
    pub(crate) fn memory_bytes(&self) -> Option<u64> {
        self.limits().memory.bytes()
    }
}

impl fmt::Display for Effective {
    /// `memory=1G pids=256 cpu_weight=100 cpus=max network=- timeout=-`, then ` privileged` or
    /// ` caps=+NET_ADMIN` when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limits = self.limits();
        write!(
            f,
            "memory={} pids={} cpu_weight={} cpus={} network={} timeout={}",
            limits.memory,
            limits.pids,
            limits.cpu_weight,
            limits.cpus.map_or_else(|| "max".to_owned(), |c| c.to_string()),
            self.network().map_or_else(|| "-".to_owned(), |n| n.to_string()),
            self.timeout().map_or_else(|| "-".to_owned(), format_duration),
        )?;
        if self.network().is_some() && self.host_access() == HostAccess::All {
            f.write_str(" host_access=all")?;
        }
        if self.privileged() {
            f.write_str(" privileged")?;
        } else if !self.added_caps().is_empty() {
            write!(f, " caps=+{}", self.added_caps())?;
        }
        if !self.enforced() {
            f.write_str(" limits-not-enforced")?;
        }
        Ok(())
    }
}

/// Everything that decides a test's settings, in one place.
#[derive(Debug, Clone)]
pub(crate) struct Resolver {
    pub(crate) config: Config,
    pub(crate) cli: TestSettings,
    pub(crate) force: bool,
    /// `false` in the explicit no-limits mode.
    pub(crate) enforced: bool,
}

impl Resolver {
    /// The effective settings and expectation of one test; an error if its settings do not make
    /// a container's options.
    pub(crate) fn resolve(
        &self,
        package: &str,
        binary_id: &str,
        name: &str,
        cv: Option<&TestSettings>,
    ) -> Result<(Effective, Expect), ParseError> {
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
        let mut effective = Effective::from_layers(s)?;
        if !self.enforced {
            effective = effective.without_limits();
        }
        Ok((effective, expect.unwrap_or_default()))
    }
}

/// The isolation of the explicit no-limits mode: everything but the cgroup.
pub(crate) fn no_limits_isolation() -> Isolation {
    Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC
}

/// Whether the run enforces limits: not with `--no-limits` (`no_limits`), `CVTEST_LIMITS=off`
/// (`env`, the variable's value) or a config's `limits = "off"`, in that order of precedence;
/// `CVTEST_LIMITS=on` overrides the config. Any other value of the variable is a usage error.
pub(crate) fn limits_enforced(
    no_limits: bool,
    env: Option<OsString>,
    config: &Config,
) -> Result<bool, UsageError> {
    if no_limits {
        return Ok(false);
    }
    match env.as_ref().map(|v| v.to_str()) {
        Some(Some("off")) => Ok(false),
        Some(Some("on")) => Ok(true),
        Some(Some("")) | None => Ok(config.limits_enforced().unwrap_or(true)),
        Some(_) => {
            Err(UsageError::LimitsEnv { value: env.unwrap_or_default().to_string_lossy().into_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvtest_spec::{MemoryLimit, PidsLimit, DEFAULT_CPU_WEIGHT};

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
        let (e, _) = r.resolve("p", "p", "plain", None).unwrap();
        assert_eq!(e.limits().cpu_weight, DEFAULT_CPU_WEIGHT);
        // config default (pids) < CLI default (memory, timeout)
        assert_eq!(e.limits().pids, PidsLimit::Count(100));
        assert_eq!(e.limits().memory, mem("256M").unwrap());
        assert_eq!(e.timeout(), Some(Duration::from_secs(5)));
        // config override beats the CLI default
        let (e, _) = r.resolve("p", "p", "a_big_one", None).unwrap();
        assert_eq!(e.limits().memory, mem("2G").unwrap());
        // #[cv_test] beats config overrides
        let cv = TestSettings { memory: mem("64M"), ..Default::default() };
        let (e, _) = r.resolve("p", "p", "a_big_one", Some(&cv)).unwrap();
        assert_eq!(e.limits().memory, mem("64M").unwrap());
        // --force-limits beats everything, for the keys it sets
        let forced = Resolver { force: true, ..r };
        let (e, _) = forced.resolve("p", "p", "a_big_one", Some(&cv)).unwrap();
        assert_eq!(e.limits().memory, mem("256M").unwrap());
        assert_eq!(e.limits().pids, PidsLimit::Count(100));
    }

    #[test]
    fn display_lists_every_limit() {
        let e = Effective::from_layers(TestSettings::default()).unwrap();
        assert_eq!(e.to_string(), "memory=1G pids=256 cpu_weight=100 cpus=max network=- timeout=-");
        assert!(!e.privileged() && e.added_caps().is_empty());
        let caps = TestSettings { caps: Some("SYS_PTRACE,NET_ADMIN".parse().unwrap()), ..Default::default() };
        let e = Effective::from_layers(caps.clone()).unwrap();
        assert!(e.to_string().ends_with(" timeout=- caps=+NET_ADMIN,SYS_PTRACE"), "{e}");
        let r = Resolver {
            config: Config::default(),
            cli: TestSettings::default(),
            force: false,
            enforced: false,
        };
        let (e, _) = r.resolve("p", "p", "t", None).unwrap();
        assert!(!e.enforced() && e.to_string().ends_with(" limits-not-enforced"), "{e}");
        assert!(!e.options().isolation().contains(Isolation::CGROUPS));
        let e = Effective::from_layers(TestSettings { privileged: Some(true), ..caps }).unwrap();
        assert!(e.enforced());
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
        let (e, _) = r.resolve("p", "p", "plain", None).unwrap();
        assert!(!e.privileged() && e.added_caps().to_string() == "NET_RAW", "{e}");
        let (e, _) = r.resolve("p", "p", "mounts_things", None).unwrap();
        assert!(e.privileged(), "{e}");
        let (e, _) = r.resolve("p", "p", "ptrace_it", None).unwrap();
        assert_eq!(e.added_caps().to_string(), "SYS_PTRACE");
        // The attribute beats config: `privileged = false` in #[cv_test] wins over an override.
        let cv = TestSettings { privileged: Some(false), ..Default::default() };
        let (e, _) = r.resolve("p", "p", "mounts_things", Some(&cv)).unwrap();
        assert!(!e.privileged());
    }

    #[test]
    fn flag_beats_env_beats_config() {
        let off = Config::from_toml("limits = \"off\"", "c.toml").unwrap();
        let none = Config::default();
        let env = |v: &str| Some(OsString::from(v));
        assert!(!limits_enforced(true, env("on"), &none).unwrap());
        assert!(!limits_enforced(false, env("off"), &none).unwrap());
        assert!(limits_enforced(false, env("on"), &off).unwrap());
        assert!(!limits_enforced(false, env(""), &off).unwrap());
        assert!(!limits_enforced(false, None, &off).unwrap());
        assert!(limits_enforced(false, None, &none).unwrap());
        let e = limits_enforced(false, env("maybe"), &none).unwrap_err().to_string();
        assert!(e.contains("CVTEST_LIMITS=\"maybe\" is not understood"), "{e}");
    }
}
