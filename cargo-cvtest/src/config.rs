//! Config files: `[workspace.metadata.cvtest]`, `.config/cvtest.toml` at the workspace root, and
//! `[package.metadata.cvtest]`, in that order (later wins). Each holds default limits and a list of
//! per-test overrides:
//!
//! ```toml
//! [package.metadata.cvtest]
//! memory = "512M"          # any key of cvtest_spec::SETTINGS_KEYS; numbers are accepted too
//! timeout = "60s"
//! caps = "NET_ADMIN"       # capabilities added to the default set
//!
//! [[package.metadata.cvtest.overrides]]
//! filter = "hog_small"     # substring of the test name (or `test = "exact::name"`)
//! binary = "my-crate"      # optional: only tests of this binary id
//! package = "my-crate"     # optional, workspace-level files only
//! memory = "32M"
//! expect = "oom"           # pass (default) | fail | oom | timeout
//! privileged = true        # every capability, /proc unhardened (a boolean, or "true")
//! ```
//!
//! A workspace-level table may also say `limits = "off"` (or `false`): the whole run goes without
//! cgroup limits, on purpose, as `--no-limits` does; `"on"` (or `true`, the default) enforces them.
//!
//! Runner keys (see [`crate::policy`]): `retries = 2`, `slow_timeout = "30s"` and
//! `terminate_after = 3` at the top level (a default for every test) and in overrides (per test);
//! and profiles, in workspace-level tables only, which may also say `fail_fast`, `junit`,
//! `status_level` and `final_status_level`:
//!
//! ```toml
//! [profile.default]
//! slow_timeout = "60s"
//! [profile.ci]             # --profile ci, or CVTEST_PROFILE=ci; inherits from default
//! retries = 2
//! fail_fast = false
//! junit = "target/cvtest/junit.xml"   # relative to the workspace root
//! ```
//!
//! Values are parsed by `cvtest-spec` only. A bad key or value is a usage error naming the file,
//! the table and what is accepted.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use cvtest_spec::{parse_duration, SetError, TestSettings, SETTINGS_KEYS};
use serde_json::Value;

use crate::build::Workspace;
use crate::errors::UsageError;
use crate::expect::Expect;
use crate::leak::LeakPolicy;
use crate::policy::{PolicyKeys, StatusLevel, STATUS_LEVELS};

/// Keys of an override besides the settings keys.
const OVERRIDE_KEYS: &[&str] =
    &["filter", "test", "binary", "package", "expect", "leak", "retries", "slow_timeout", "terminate_after"];
/// Keys of a top-level table besides the settings keys.
const TOP_KEYS: &[&str] =
    &["overrides", "leak", "limits", "profile", "retries", "slow_timeout", "terminate_after"];
/// Keys of a `[profile.NAME]` table.
const PROFILE_KEYS: &[&str] = &[
    "retries",
    "slow_timeout",
    "terminate_after",
    "fail_fast",
    "junit",
    "status_level",
    "final_status_level",
];
/// The profile every other one inherits from (and the one used when none is selected).
pub(crate) const DEFAULT_PROFILE: &str = "default";

/// All config layers of a workspace, lowest first.
#[derive(Debug, Default, Clone)]
pub(crate) struct Config {
    layers: Vec<Layer>,
}

/// A `[profile.NAME]` table.
#[derive(Debug, Clone)]
struct Profile {
    name: String,
    keys: PolicyKeys,
}

/// No profile of that name in any config file.
#[derive(Debug, thiserror::Error)]
#[error("no profile named {name:?} in the config; defined: {defined} (profiles are [profile.NAME] tables in .config/cvtest.toml or [workspace.metadata.cvtest.profile.NAME])")]
pub(crate) struct UnknownProfile {
    pub(crate) name: String,
    pub(crate) defined: String,
}

#[derive(Debug, Clone)]
struct Layer {
    /// Only for tests of this package (a `[package.metadata.cvtest]` layer).
    package: Option<String>,
    defaults: TestSettings,
    /// `leak = "pass" | "fail"` for every test of the layer.
    leak: Option<LeakPolicy>,
    overrides: Vec<Override>,
    /// `limits = "off" | "on"` (workspace-level tables only).
    limits: Option<bool>,
    /// Runner keys for every test of the layer (`retries`, `slow_timeout`, `terminate_after`).
    policy: PolicyKeys,
    /// `[profile.NAME]` tables (workspace-level tables only).
    profiles: Vec<Profile>,
}

/// A per-test rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Override {
    pub(crate) matcher: NameMatch,
    pub(crate) binary: Option<String>,
    pub(crate) package: Option<String>,
    pub(crate) settings: TestSettings,
    pub(crate) expect: Option<Expect>,
    pub(crate) leak: Option<LeakPolicy>,
    /// `retries`, `slow_timeout`, `terminate_after` for the tests it matches.
    pub(crate) policy: PolicyKeys,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameMatch {
    Substring(String),
    Exact(String),
}

impl NameMatch {
    fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Substring(s) => name.contains(s.as_str()),
            NameMatch::Exact(s) => name == s,
        }
    }
}

impl Config {
    /// Reads every config source of the workspace.
    pub(crate) fn load(ws: &Workspace) -> Result<Config, UsageError> {
        let mut layers = Vec::new();
        let manifest = ws.root().join("Cargo.toml");
        if let Some(v) = ws.metadata.workspace_metadata.get("cvtest") {
            layers.push(parse_layer(v, &format!("{manifest} [workspace.metadata.cvtest]"), None)?);
        }
        let file = ws.root().join(".config").join("cvtest.toml");
        if let Some(v) = read_toml(file.as_std_path())? {
            layers.push(parse_layer(&v, file.as_str(), None)?);
        }
        for pkg in &ws.metadata.packages {
            if let Some(v) = pkg.metadata.get("cvtest") {
                let origin = format!("{} [package.metadata.cvtest]", pkg.manifest_path);
                layers.push(parse_layer(v, &origin, Some(pkg.name.to_string()))?);
            }
        }
        Ok(Config { layers })
    }

    /// Reads the config files of one package without `cargo metadata` (for `cargo-cvtest wrap`
    /// and `cargo-cvtest runner`, which run once per test): `[workspace.metadata.cvtest]` of
    /// `root`'s `Cargo.toml`, `root/.config/cvtest.toml`, and `[package.metadata.cvtest]` of the
    /// package whose manifest is in `package_dir`. A missing file is no layer.
    pub fn load_files(root: &Path, package: &str, package_dir: &Path) -> Result<Config, UsageError> {
        let mut layers = Vec::new();
        let root_manifest = root.join("Cargo.toml");
        let root_toml = read_toml(&root_manifest)?;
        let workspace_meta = root_toml.as_ref().and_then(|v| v.pointer("/workspace/metadata/cvtest"));
        if let Some(v) = workspace_meta {
            let origin = format!("{} [workspace.metadata.cvtest]", root_manifest.display());
            layers.push(parse_layer(v, &origin, None)?);
        }
        let file = root.join(".config").join("cvtest.toml");
        if let Some(v) = read_toml(&file)? {
            layers.push(parse_layer(&v, &file.display().to_string(), None)?);
        }
        let manifest = package_dir.join("Cargo.toml");
        let package_toml = if manifest == root_manifest { root_toml } else { read_toml(&manifest)? };
        if let Some(v) = package_toml.as_ref().and_then(|v| v.pointer("/package/metadata/cvtest")) {
            let origin = format!("{} [package.metadata.cvtest]", manifest.display());
            layers.push(parse_layer(v, &origin, Some(package.to_owned()))?);
        }
        Ok(Config { layers })
    }

    /// Parses one layer from a TOML string.
    #[cfg(test)]
    pub(crate) fn from_toml(text: &str, origin: &str) -> Result<Config, UsageError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| UsageError::Config {
            origin: origin.to_owned(),
            message: format!("not valid TOML: {}", e.message()),
        })?;
        let v = serde_json::to_value(table).expect("TOML converts to JSON");
        Ok(Config { layers: vec![parse_layer(&v, origin, None)?] })
    }

    /// Config defaults for a test of `package`, all layers folded (later wins).
    pub(crate) fn defaults(&self, package: &str) -> TestSettings {
        self.applicable(package).fold(TestSettings::default(), |acc, l| l.defaults.over(&acc))
    }

    /// Config overrides that match this test, folded (later wins), and its expected outcome.
    pub(crate) fn overrides(
        &self,
        package: &str,
        binary_id: &str,
        name: &str,
    ) -> (TestSettings, Option<Expect>) {
        let mut settings = TestSettings::default();
        let mut expect = None;
        for o in self.applicable(package).flat_map(|l| &l.overrides) {
            let pkg_ok = o.package.as_deref().map_or(true, |p| p == package);
            let bin_ok = o.binary.as_deref().map_or(true, |b| b == binary_id);
            if pkg_ok && bin_ok && o.matcher.matches(name) {
                settings = o.settings.over(&settings);
                expect = o.expect.or(expect);
            }
        }
        (settings, expect)
    }

    /// Whether leftover processes fail this test: the defaults' `leak`, then matching
    /// overrides', later wins.
    pub(crate) fn leak(&self, package: &str, binary_id: &str, name: &str) -> LeakPolicy {
        let mut leak = LeakPolicy::default();
        for l in self.applicable(package) {
            leak = l.leak.unwrap_or(leak);
        }
        for o in self.applicable(package).flat_map(|l| &l.overrides) {
            let pkg_ok = o.package.as_deref().map_or(true, |p| p == package);
            let bin_ok = o.binary.as_deref().map_or(true, |b| b == binary_id);
            if pkg_ok && bin_ok && o.matcher.matches(name) {
                leak = o.leak.unwrap_or(leak);
            }
        }
        leak
    }

    /// The runner keys of profile `selected` (the default profile when `None`): the top-level keys,
    /// then `[profile.default]`, then the selected one; later files win within each.
    pub(crate) fn profile(&self, selected: Option<&str>) -> Result<PolicyKeys, UnknownProfile> {
        let workspace = || self.layers.iter().filter(|l| l.package.is_none());
        let named = |name: &str| {
            workspace()
                .flat_map(|l| &l.profiles)
                .filter(|p| p.name == name)
                .fold(PolicyKeys::default(), |acc, p| p.keys.over(&acc))
        };
        if let Some(name) = selected.filter(|n| *n != DEFAULT_PROFILE) {
            if !workspace().flat_map(|l| &l.profiles).any(|p| p.name == name) {
                let mut defined: Vec<&str> =
                    workspace().flat_map(|l| &l.profiles).map(|p| p.name.as_str()).collect();
                defined.push(DEFAULT_PROFILE);
                defined.sort_unstable();
                defined.dedup();
                return Err(UnknownProfile { name: name.to_owned(), defined: defined.join(", ") });
            }
        }
        let top = workspace().fold(PolicyKeys::default(), |acc, l| l.policy.over(&acc));
        let mut keys = named(DEFAULT_PROFILE).over(&top);
        if let Some(name) = selected.filter(|n| *n != DEFAULT_PROFILE) {
            keys = named(name).over(&keys);
        }
        Ok(keys)
    }

    /// The runner keys of a test of `package`: its package's top-level keys, then the overrides
    /// that match it (later wins). Over the profile's, under the CLI's.
    pub(crate) fn policy_overrides(&self, package: &str, binary_id: &str, name: &str) -> PolicyKeys {
        let mut keys = PolicyKeys::default();
        for l in self.applicable(package).filter(|l| l.package.is_some()) {
            keys = l.policy.over(&keys);
        }
        for o in self.applicable(package).flat_map(|l| &l.overrides) {
            let pkg_ok = o.package.as_deref().map_or(true, |p| p == package);
            let bin_ok = o.binary.as_deref().map_or(true, |b| b == binary_id);
            if pkg_ok && bin_ok && o.matcher.matches(name) {
                keys = o.policy.over(&keys);
            }
        }
        keys
    }

    /// Whether the config enforces limits (`limits = "on" | "off"`), if it says; later wins.
    pub(crate) fn limits_enforced(&self) -> Option<bool> {
        self.layers.iter().rev().find_map(|l| l.limits)
    }

    fn applicable<'a>(&'a self, package: &'a str) -> impl Iterator<Item = &'a Layer> + 'a {
        self.layers.iter().filter(move |l| l.package.as_deref().map_or(true, |p| p == package))
    }
}

fn read_toml(path: &Path) -> Result<Option<Value>, UsageError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(UsageError::ReadConfig { path: path.to_owned(), source }),
    };
    let table: toml::Table =
        text.parse().map_err(|e| UsageError::ParseConfig { path: path.to_owned(), source: Box::new(e) })?;
    Ok(Some(serde_json::to_value(table).expect("TOML converts to JSON")))
}

fn err(origin: &str, message: impl Into<String>) -> UsageError {
    UsageError::Config { origin: origin.to_owned(), message: message.into() }
}

fn parse_layer(v: &Value, origin: &str, package: Option<String>) -> Result<Layer, UsageError> {
    let obj = v.as_object().ok_or_else(|| err(origin, "expected a table"))?;
    let mut defaults = TestSettings::default();
    let mut host = None;
    let mut overrides = Vec::new();
    let mut leak = None;
    let mut limits = None;
    let mut policy = PolicyKeys::default();
    let mut profiles = Vec::new();
    for (key, value) in obj {
        if set_policy_key(&mut policy, key, value, origin)? {
            continue;
        }
        if key == "profile" {
            if package.is_some() {
                return Err(err(origin, "profiles are for the whole run: define [profile.NAME] in .config/cvtest.toml or [workspace.metadata.cvtest.profile.NAME]"));
            }
            let table = value
                .as_object()
                .ok_or_else(|| err(origin, "`profile` must be a table of profiles, such as [profile.ci]"))?;
            for (name, p) in table {
                profiles.push(parse_profile(name, p, &format!("{origin} [profile.{name}]"))?);
            }
        } else if key == "leak" {
            leak = Some(parse_leak(value, origin)?);
        } else if key == "limits" {
            if package.is_some() {
                return Err(err(origin, "`limits` is for the whole run: set it in [workspace.metadata.cvtest] or .config/cvtest.toml"));
            }
            limits = Some(match value {
                Value::Bool(b) => *b,
                Value::String(s) if s == "on" => true,
                Value::String(s) if s == "off" => false,
                _ => {
                    return Err(err(
                        origin,
                        format!("`limits` is \"on\" or \"off\" (or true / false), not {value}"),
                    ))
                }
            });
        } else if key == "overrides" {
            let arr = value.as_array().ok_or_else(|| {
                err(origin, "`overrides` must be an array of tables ([[...overrides]] in TOML)")
            })?;
            for (i, o) in arr.iter().enumerate() {
                overrides.push(parse_override(o, &format!("{origin} overrides[{i}]"), package.is_some())?);
            }
        } else {
            set_key(&mut defaults, key, value, &mut host, origin, false)?;
        }
    }
    Ok(Layer { package, defaults, leak, overrides, limits, policy, profiles })
}

fn parse_leak(value: &Value, origin: &str) -> Result<LeakPolicy, UsageError> {
    let text =
        value.as_str().ok_or_else(|| err(origin, "`leak` must be a string: leak = \"pass\" or \"fail\""))?;
    text.parse::<LeakPolicy>().map_err(|e| err(origin, e.to_string()))
}

fn parse_override(v: &Value, origin: &str, in_package: bool) -> Result<Override, UsageError> {
    let obj = v.as_object().ok_or_else(|| err(origin, "expected a table"))?;
    let mut settings = TestSettings::default();
    let mut host = None;
    let (mut filter, mut test, mut binary, mut package, mut expect) = (None, None, None, None, None);
    let mut leak = None;
    let mut policy = PolicyKeys::default();
    for (key, value) in obj {
        if set_policy_key(&mut policy, key, value, origin)? {
            continue;
        }
        let text = || {
            value.as_str().map(str::to_owned).ok_or_else(|| err(origin, format!("`{key}` must be a string")))
        };
        match key.as_str() {
            "filter" => filter = Some(text()?),
            "test" => test = Some(text()?),
            "binary" => binary = Some(text()?),
            "package" if in_package => {
                return Err(err(
                    origin,
                    "`package` is only for workspace-level config; this table is already per package",
                ))
            }
            "package" => package = Some(text()?),
            "leak" => leak = Some(parse_leak(value, origin)?),
            "expect" => {
                let t = text()?;
                expect = Some(t.parse::<Expect>().map_err(|e| err(origin, e.to_string()))?);
            }
            _ => set_key(&mut settings, key, value, &mut host, origin, true)?,
        }
    }
    let matcher = match (filter, test) {
        (Some(f), None) => NameMatch::Substring(f),
        (None, Some(t)) => NameMatch::Exact(t),
        (Some(_), Some(_)) => {
            return Err(err(origin, "give either `filter` (substring) or `test` (exact name), not both"))
        }
        (None, None) => {
            return Err(err(origin, "an override needs `filter = \"substring\"` or `test = \"exact::name\"`"))
        }
    };
    Ok(Override { matcher, binary, package, settings, expect, leak, policy })
}

fn set_key(
    s: &mut TestSettings,
    key: &str,
    value: &Value,
    host: &mut Option<String>,
    origin: &str,
    is_override: bool,
) -> Result<(), UsageError> {
    let text = match value {
        Value::String(t) => t.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) if key == "privileged" => b.to_string(),
        _ if key == "privileged" => {
            return Err(err(origin, format!("`{key}` must be true or false, such as {key} = true")))
        }
        _ => {
            return Err(err(origin, format!("`{key}` must be a string or a number, such as {key} = \"...\"")))
        }
    };
    s.set(key, &text, host).map_err(|e| match e {
        SetError::UnknownKey(_) => {
            let mut valid: Vec<&str> = SETTINGS_KEYS.to_vec();
            if is_override {
                valid.extend(OVERRIDE_KEYS);
            } else {
                valid.extend(TOP_KEYS);
            }
            err(origin, format!("unknown key `{key}`; valid keys are: {}", valid.join(", ")))
        }
        SetError::Value(p) => err(origin, format!("`{key}`: {p}")),
    })
}

/// Sets `key` if it is a per-test runner key (`retries`, `slow_timeout`, `terminate_after`);
/// whether it was one.
fn set_policy_key(keys: &mut PolicyKeys, key: &str, value: &Value, origin: &str) -> Result<bool, UsageError> {
    match key {
        "retries" => {
            let n = value.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                err(origin, format!("`retries` must be a whole number of retries, 0 or more, such as retries = 2, not {value}"))
            })?;
            keys.retries = Some(n);
        }
        "slow_timeout" => {
            let text = value.as_str().ok_or_else(|| {
                err(origin, format!("`slow_timeout` must be a duration string, such as slow_timeout = \"30s\", not {value}"))
            })?;
            let d = parse_duration(text).map_err(|e| err(origin, format!("`slow_timeout`: {e}")))?;
            keys.slow_timeout = Some(d);
        }
        "terminate_after" => {
            let n = value.as_u64().and_then(|n| u32::try_from(n).ok()).and_then(NonZeroU32::new).ok_or_else(|| {
                err(origin, format!("`terminate_after` must be a whole number of slow periods, 1 or more, such as terminate_after = 3, not {value}"))
            })?;
            keys.terminate_after = Some(n);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_profile(name: &str, v: &Value, origin: &str) -> Result<Profile, UsageError> {
    let obj = v.as_object().ok_or_else(|| err(origin, "expected a table"))?;
    let mut keys = PolicyKeys::default();
    for (key, value) in obj {
        if set_policy_key(&mut keys, key, value, origin)? {
            continue;
        }
        let level = |value: &Value| -> Result<StatusLevel, UsageError> {
            let text = value
                .as_str()
                .ok_or_else(|| err(origin, format!("`{key}` must be a string, one of {STATUS_LEVELS}")))?;
            text.parse::<StatusLevel>().map_err(|e| err(origin, format!("`{key}`: {e}")))
        };
        match key.as_str() {
            "fail_fast" => {
                let b = value
                    .as_bool()
                    .ok_or_else(|| err(origin, format!("`fail_fast` must be true or false, not {value}")))?;
                keys.fail_fast = Some(b);
            }
            "junit" => {
                let p = value.as_str().ok_or_else(|| {
                    err(origin, "`junit` must be a path string, such as junit = \"target/cvtest/junit.xml\"")
                })?;
                keys.junit = Some(PathBuf::from(p));
            }
            "status_level" => keys.status_level = Some(level(value)?),
            "final_status_level" => keys.final_status_level = Some(level(value)?),
            _ => {
                return Err(err(
                    origin,
                    format!("unknown key `{key}` in a profile; valid keys are: {}", PROFILE_KEYS.join(", ")),
                ))
            }
        }
    }
    Ok(Profile { name: name.to_owned(), keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use cvtest_spec::MemoryLimit;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml(
            "memory = \"512M\"\npids = 64\n[[overrides]]\nfilter = \"hog\"\nmemory = \"32M\"\nexpect = \"oom\"\n\
             [[overrides]]\ntest = \"exact::one\"\ncpus = 0.5\n",
            "t.toml",
        )
        .unwrap();
        let d = c.defaults("p");
        assert_eq!(d.memory, Some(MemoryLimit::Bytes(512 << 20)));
        assert_eq!(d.pids, Some(cvtest_spec::PidsLimit::Count(64)));
        let (o, e) = c.overrides("p", "p", "mem::hog_small");
        assert_eq!(o.memory, Some(MemoryLimit::Bytes(32 << 20)));
        assert_eq!(e, Some(Expect::Oom));
        let (o, e) = c.overrides("p", "p", "exact::one");
        assert!(o.cpus.is_some() && o.memory.is_none() && e.is_none());
        let (o, _) = c.overrides("p", "p", "exact::one_more");
        assert!(o.cpus.is_none());
    }

    #[test]
    fn network_auto_in_config() {
        let c = Config::from_toml(
            "network = \"auto\"\n[[overrides]]\nfilter = \"fixed\"\nnetwork = \"10.9.0.2/24\"",
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.defaults("p").network, Some(cvtest_spec::NetworkSetting::Auto));
        let (o, _) = c.overrides("p", "p", "fixed::one");
        assert_eq!(o.network.and_then(|n| n.fixed()).map(|n| n.to_string()).as_deref(), Some("10.9.0.2/24"));
        let e = Config::from_toml("network = \"autox\"", "x.toml").unwrap_err().to_string();
        assert!(e.contains("or \"auto\" for a free subnet"), "{e}");
    }

    #[test]
    fn limits_off_is_a_run_wide_key() {
        assert_eq!(Config::from_toml("", "x.toml").unwrap().limits_enforced(), None);
        assert_eq!(Config::from_toml("limits = \"off\"", "x.toml").unwrap().limits_enforced(), Some(false));
        assert_eq!(Config::from_toml("limits = true", "x.toml").unwrap().limits_enforced(), Some(true));
        let e = Config::from_toml("limits = \"no\"", "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("\"on\" or \"off\""), "{e}");
    }

    #[test]
    fn bad_config_names_origin_key_and_accepted() {
        let e = Config::from_toml("memroy = \"1G\"", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml: unknown key `memroy`; valid keys are: memory"), "{e}");
        let e = Config::from_toml("memory = \"1X\"", "x.toml").unwrap_err().to_string();
        assert!(e.contains("`memory`: invalid memory limit \"1X\"") && e.contains("\"max\""), "{e}");
        let e = Config::from_toml("[[overrides]]\nmemory = \"1G\"", "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml overrides[0]") && e.contains("filter"), "{e}");
        let e = Config::from_toml("[[overrides]]\nfilter = \"a\"\nexpect = \"boom\"", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pass, fail, oom, timeout"), "{e}");
        let e = Config::from_toml("timeout = true", "x.toml").unwrap_err().to_string();
        assert!(e.contains("`timeout` must be a string"), "{e}");
        let e = Config::from_toml("privileged = []", "x.toml").unwrap_err().to_string();
        assert!(e.contains("`privileged` must be true or false"), "{e}");
        let e = Config::from_toml("privileged = \"yes\"", "x.toml").unwrap_err().to_string();
        assert!(e.contains("`privileged`: invalid boolean \"yes\"") && e.contains("true or false"), "{e}");
        let e = Config::from_toml("[[overrides]]\nfilter = \"a\"\ncaps = \"NET_ADMIN,SYS_ADMN\"", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.toml overrides[0]: `caps`: invalid capability list \"NET_ADMIN,SYS_ADMN\": unknown capability \"SYS_ADMN\"")
                && e.contains("SYS_ADMIN"),
            "{e}"
        );
    }

    #[test]
    fn profiles_inherit_from_default_and_the_top_level() {
        let c = Config::from_toml(
            "retries = 1\nslow_timeout = \"10s\"\n[profile.default]\nterminate_after = 2\nstatus_level = \"fail\"\n\
             [profile.ci]\nretries = 3\nfail_fast = false\njunit = \"out/junit.xml\"\n\
             [[overrides]]\nfilter = \"flaky\"\nretries = 5\nslow_timeout = \"1s\"\n",
            "x.toml",
        )
        .unwrap();
        let d = c.profile(None).unwrap();
        assert_eq!((d.retries, d.slow_timeout), (Some(1), Some(Duration::from_secs(10))));
        assert_eq!(d.terminate_after.map(NonZeroU32::get), Some(2));
        assert_eq!((d.status_level, d.fail_fast), (Some(StatusLevel::Fail), None));
        assert_eq!(c.profile(Some("default")).unwrap(), d);
        let ci = c.profile(Some("ci")).unwrap();
        assert_eq!((ci.retries, ci.fail_fast), (Some(3), Some(false)));
        assert_eq!(ci.junit.as_deref(), Some(Path::new("out/junit.xml")));
        assert_eq!((ci.terminate_after, ci.status_level), (d.terminate_after, d.status_level), "inherited");
        let o = c.policy_overrides("p", "p", "a_flaky_one");
        assert_eq!((o.retries, o.slow_timeout), (Some(5), Some(Duration::from_secs(1))));
        assert_eq!(c.policy_overrides("p", "p", "steady"), PolicyKeys::default());
        let e = c.profile(Some("nightly")).unwrap_err().to_string();
        assert!(e.contains("no profile named \"nightly\"") && e.contains("defined: ci, default"), "{e}");
        // Without any profile table, the default profile still exists.
        assert!(Config::default().profile(Some("default")).is_ok());
    }

    #[test]
    fn bad_runner_keys_say_what_is_accepted() {
        let e = Config::from_toml("[profile.ci]\nretires = 2", "x.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("x.toml [profile.ci]: unknown key `retires` in a profile; valid keys are: retries"),
            "{e}"
        );
        let e = Config::from_toml("retries = -1", "x.toml").unwrap_err().to_string();
        assert!(e.contains("`retries` must be a whole number"), "{e}");
        let e = Config::from_toml("terminate_after = 0", "x.toml").unwrap_err().to_string();
        assert!(e.contains("1 or more"), "{e}");
        let e = Config::from_toml("slow_timeout = \"5\"", "x.toml").unwrap_err().to_string();
        assert!(e.contains("`slow_timeout`: "), "{e}");
        let e = Config::from_toml("[profile.ci]\nstatus_level = \"loud\"", "x.toml").unwrap_err().to_string();
        assert!(e.contains("none, fail, retry, slow, leak, pass, skip, all"), "{e}");
        let e = Config::from_toml("memroy = 1", "x.toml").unwrap_err().to_string();
        assert!(e.contains("overrides, leak, limits, profile, retries"), "{e}");
        // Profiles are run-wide: not in a package's table.
        let v = serde_json::json!({ "profile": { "ci": { "retries": 1 } } });
        let e = parse_layer(&v, "Cargo.toml [package.metadata.cvtest]", Some("p".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("profiles are for the whole run"), "{e}");
    }

    #[test]
    fn the_readme_config_snippets_parse() {
        let readme = include_str!("../README.md");
        let blocks: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split_once("```").map(|(body, _)| body))
            .filter(|b| b.starts_with("# .config/cvtest.toml"))
            .collect();
        assert!(blocks.len() >= 2, "the README's .config/cvtest.toml snippets");
        for b in &blocks {
            Config::from_toml(b, "README.md").unwrap_or_else(|e| panic!("{e}\n{b}"));
        }
        let profiles = blocks.iter().find(|b| b.contains("[profile.ci]")).expect("the profiles snippet");
        let ci = Config::from_toml(profiles, "README.md").unwrap().profile(Some("ci")).unwrap();
        assert_eq!((ci.retries, ci.fail_fast), (Some(2), Some(false)));
        assert_eq!(ci.slow().and_then(|s| s.limit()), Some(Duration::from_secs(300)), "5 x 60s");
    }
}
