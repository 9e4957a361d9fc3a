//! What a run may leave on the host, and what it must not change.
//!
//! - [`Leaks`]: cgroups named for the runner (`cvtest.<pid>.<start>.*`) below our own cgroups in
//!   every hierarchy cvtest uses; links with the runner's alias or veth-name prefix; processes of
//!   ours (running the fixture's binaries or the runner binary, which the workers' zygotes
//!   (`cvtest-zygote`) and the containers' inits also run, or in a cgroup of the runner);
//!   new mounts where a container mounts things (its mount namespace must not leak back); and
//!   network namespaces, which outlive their processes only through a bind mount (an nsfs mount)
//!   or an open fd (held by a process of ours, so found above). Zombies hold nothing but a pid
//!   and are not counted.
//! - [`NetSnapshot`]: the host's links, addresses and routes (`ip -j`), compared before/after a
//!   run. Veths of other processes come and go on this shared machine; they are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use serde_json::Value;

use super::run;

/// A runner process: its pid, owner tag, and the prefix of its veth names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// `<pid>.<start time>.<pid namespace inode>`, as in its cgroup names and veth aliases.
    pub tag: String,
}

impl Owner {
    /// Reads the start time of `pid` (it must be alive).
    pub fn of(pid: u32) -> Option<Owner> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        let start: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
        let pidns =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(format!("/proc/{pid}/ns/pid")).ok()?);
        Some(Owner { pid, tag: format!("{pid}.{start}.{pidns}") })
    }

    /// Any runner that had `pid` (whatever its start time): for a process already gone.
    pub fn any_with_pid(pid: u32) -> Owner {
        Owner { pid, tag: pid.to_string() }
    }

    /// The prefix of its cgroup names.
    pub fn cgroup_prefix(&self) -> String {
        format!("cvtest.{}.", self.tag)
    }

    /// `veth` + the pid in 5 base-36 digits: every veth name it makes starts so (see
    /// `cvtest::test_support::VethName`).
    pub fn veth_prefix(&self) -> String {
        let mut n = self.pid % 36u32.pow(5);
        let mut digits = Vec::new();
        for _ in 0..5 {
            digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
            n /= 36;
        }
        digits.reverse();
        format!("veth{}", String::from_utf8(digits).expect("ascii"))
    }

    /// The veth name for counter `n` (the n-th container it creates).
    pub fn veth_name(&self, n: u32) -> String {
        let mut n = n;
        let mut digits = Vec::new();
        loop {
            digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
            n /= 36;
            if n == 0 {
                break;
            }
        }
        digits.reverse();
        format!("{}{}", self.veth_prefix(), String::from_utf8(digits).expect("ascii"))
    }
}

/// The directories below which cvtest makes cgroups for a process in our cgroups: our own
/// cgroup in each hierarchy it uses.
pub fn own_cgroup_dirs() -> Vec<PathBuf> {
    cvtest::test_support::Hierarchy::detect().map(|h| h.own_dirs()).unwrap_or_default()
}

/// What was on the host before a run, to tell new things from old.
#[derive(Debug, Clone)]
pub struct Baseline {
    mounts: BTreeSet<String>,
    /// Extra cgroup directories to search (a parent made for one test).
    pub extra_cgroup_dirs: Vec<PathBuf>,
}

impl Baseline {
    pub fn capture() -> Baseline {
        Baseline { mounts: watched_mounts(), extra_cgroup_dirs: Vec::new() }
    }

    /// Everything of `owner` still on the host.
    pub fn leaks(&self, owner: &Owner) -> Leaks {
        let mut l = Leaks::default();
        let prefix = owner.cgroup_prefix();
        for dir in own_cgroup_dirs().iter().chain(&self.extra_cgroup_dirs) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    l.cgroups.push(e.path().display().to_string());
                }
            }
        }
        let alias = format!("{}{}", cvtest::test_support::ALIAS_PREFIX, owner.tag);
        let veth_prefix = owner.veth_prefix();
        for e in std::fs::read_dir("/sys/class/net").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let a = std::fs::read_to_string(e.path().join("ifalias")).unwrap_or_default();
            let a_ours = a.trim() == alias || a.trim().starts_with(&format!("{alias}."));
            if a_ours || name.starts_with(&veth_prefix) {
                let state = std::fs::read_to_string(e.path().join("operstate")).unwrap_or_default();
                l.links.push(format!("{name} (alias {:?}, {})", a.trim(), state.trim()));
            }
        }
        l.processes = our_processes(Some(owner));
        for m in watched_mounts().difference(&self.mounts) {
            l.mounts.push(m.clone());
        }
        l
    }

    /// Waits (at most `timeout`) until nothing of `owner` is left: the kernel removes a veth and
    /// a namespace asynchronously after the last process in it is gone. Returns how long it took.
    pub fn wait_clean(&self, owner: &Owner, timeout: Duration) -> Result<Duration, Failed> {
        let start = Instant::now();
        loop {
            let l = self.leaks(owner);
            if l.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(format!("left behind by runner {} after {timeout:?}:\n{l}", owner.tag).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Leftovers of one runner.
#[derive(Debug, Default)]
pub struct Leaks {
    pub cgroups: Vec<String>,
    pub links: Vec<String>,
    pub processes: Vec<String>,
    pub mounts: Vec<String>,
}

impl Leaks {
    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
            && self.links.is_empty()
            && self.processes.is_empty()
            && self.mounts.is_empty()
    }
}

impl std::fmt::Display for Leaks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  cgroups: {:?}", self.cgroups)?;
        writeln!(f, "  links: {:?}", self.links)?;
        writeln!(f, "  processes: {:?}", self.processes)?;
        write!(f, "  mounts: {:?}", self.mounts)
    }
}

/// Processes of ours: running a binary of the fixture's target dir or the runner binary (a
/// container's init is a fork of the runner or of its zygote, which is the runner re-executed),
/// or inside a cgroup of `owner`, as `pid [state] (comm) cmdline`. Zombies and this process are
/// left out.
pub fn our_processes(owner: Option<&Owner>) -> Vec<String> {
    let fixture = run::target_dir();
    let runner = run::runner_exe();
    let me = std::process::id();
    let cgroup_part = owner.map(|o| format!("/{}", o.cgroup_prefix()));
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
        if state.as_deref() == Some("Z") || state.is_none() {
            continue;
        }
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        let in_cgroup = cgroup_part.as_deref().is_some_and(|p| cgroup.contains(p));
        if exe.starts_with(&fixture) || exe == runner || in_cgroup {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let comm = stat.split_once(" (").and_then(|(_, c)| c.rsplit_once(')')).map_or("", |(c, _)| c);
            found.push(format!(
                "{pid} [{}] ({comm}) {}",
                state.unwrap_or_default(),
                run::truncate(cmd.trim(), 160)
            ));
        }
    }
    found
}

/// Mounts in this (the host's) mount namespace where a container mounts things: `/`, `/proc`,
/// `/sys`, `/dev...`, `/tmp`, and anything below the repository (writable dirs are bind-mounted
/// inside containers), plus nsfs mounts (a network namespace kept alive by a bind mount). As
/// `mount point | fs type | source`.
pub fn watched_mounts() -> BTreeSet<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf();
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(mp), Some(fstype), Some(source)) = (pre.get(4), post.first(), post.get(1)) else {
            continue;
        };
        let watched = matches!(*mp, "/" | "/proc" | "/sys" | "/tmp")
            || mp.starts_with("/dev")
            || Path::new(mp).starts_with(&repo)
            || *fstype == "nsfs" && !mp.contains("cvrel");
        if watched {
            out.insert(format!("{mp} | {fstype} | {source}"));
        }
    }
    out
}

/// The host's network configuration, from `ip -j`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetSnapshot {
    /// By name: the fields that describe a link.
    links: BTreeMap<String, Value>,
    /// By link name: its addresses (lifetimes left out).
    addrs: BTreeMap<String, Vec<String>>,
    /// Every route of every table, IPv4 and IPv6 (expiry left out), with its device.
    routes: Vec<(Option<String>, String)>,
}

fn ip_json(args: &[&str]) -> Result<Vec<Value>, Failed> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("ip {args:?}: bad JSON: {e}"))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

impl NetSnapshot {
    pub fn capture() -> Result<NetSnapshot, Failed> {
        let mut links = BTreeMap::new();
        for l in ip_json(&["-j", "-d", "link", "show"])? {
            let name = l["ifname"].as_str().unwrap_or_default().to_owned();
            let pick = |k: &str| l.get(k).cloned().unwrap_or(Value::Null);
            let kind = l.pointer("/linkinfo/info_kind").cloned().unwrap_or(Value::Null);
            let fields = serde_json::json!({
                "ifindex": pick("ifindex"), "flags": pick("flags"), "mtu": pick("mtu"),
                "operstate": pick("operstate"), "link_type": pick("link_type"), "address": pick("address"),
                "master": pick("master"), "ifalias": pick("ifalias"), "kind": kind,
            });
            links.insert(name, fields);
        }
        let mut addrs = BTreeMap::new();
        for l in ip_json(&["-j", "addr", "show"])? {
            let name = l["ifname"].as_str().unwrap_or_default().to_owned();
            let mut v: Vec<String> = l["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{} {}/{} scope {} {}",
                        a["family"].as_str().unwrap_or(""),
                        a["local"].as_str().unwrap_or(""),
                        a["prefixlen"],
                        a["scope"].as_str().unwrap_or(""),
                        a.get("broadcast").and_then(Value::as_str).unwrap_or("")
                    )
                })
                .collect();
            v.sort();
            addrs.insert(name, v);
        }
        let mut routes = Vec::new();
        for family in ["-4", "-6"] {
            for mut r in ip_json(&["-j", family, "route", "show", "table", "all"])? {
                if let Some(o) = r.as_object_mut() {
                    o.remove("expires");
                }
                let dev = r.get("dev").and_then(Value::as_str).map(str::to_owned);
                routes.push((dev, format!("{family} {r}")));
            }
        }
        routes.sort();
        Ok(NetSnapshot { links, addrs, routes })
    }

    /// The differences from `before`, leaving out links that only one snapshot has and that are
    /// veths of other processes (with their addresses and routes). A link of `owner` left over is
    /// not excused.
    pub fn differences(&self, before: &NetSnapshot, owner: &Owner) -> Vec<String> {
        let mut diffs = Vec::new();
        let is_veth = |v: &Value| v["kind"] == "veth";
        let ours = |name: &str, v: &Value| {
            name.starts_with(&owner.veth_prefix())
                || v["ifalias"].as_str().is_some_and(|a| a.ends_with(&format!("owner={}", owner.tag)))
        };
        // Links in both with the same index are stable; compare their addresses and routes too.
        let mut stable = BTreeSet::new();
        for (name, b) in &before.links {
            match self.links.get(name) {
                Some(a) if a["ifindex"] == b["ifindex"] => {
                    stable.insert(name.clone());
                    if a != b && !is_veth(b) {
                        diffs.push(format!("link {name} changed: {b} -> {a}"));
                    }
                }
                _ if is_veth(b) && !ours(name, b) => {}
                Some(a) => diffs.push(format!("link {name} was replaced: {b} -> {a}")),
                None => diffs.push(format!("link {name} is gone: {b}")),
            }
        }
        for (name, a) in &self.links {
            if !before.links.contains_key(name) && (!is_veth(a) || ours(name, a)) {
                diffs.push(format!("new link {name}: {a}"));
            }
        }
        for name in &stable {
            if before.links[name]["kind"] == "veth" {
                continue;
            }
            let (b, a) = (before.addrs.get(name), self.addrs.get(name));
            if b != a {
                diffs.push(format!("addresses of {name} changed: {b:?} -> {a:?}"));
            }
        }
        let relevant = |routes: &[(Option<String>, String)]| -> BTreeSet<String> {
            routes
                .iter()
                .filter(|(dev, _)| {
                    dev.as_ref().map_or(true, |d| stable.contains(d) && before.links[d]["kind"] != "veth")
                })
                .map(|(_, r)| r.clone())
                .collect()
        };
        let (rb, ra) = (relevant(&before.routes), relevant(&self.routes));
        for r in rb.difference(&ra) {
            diffs.push(format!("route gone: {r}"));
        }
        for r in ra.difference(&rb) {
            diffs.push(format!("new route: {r}"));
        }
        diffs
    }

    pub fn counts(&self) -> String {
        format!(
            "{} links, {} addresses, {} routes",
            self.links.len(),
            self.addrs.values().map(Vec::len).sum::<usize>(),
            self.routes.len()
        )
    }
}

/// How responsive the host is: runs `/bin/true` `n` times and returns the slowest start-to-exit
/// time, or an error if one fails.
pub fn probe_host(n: usize) -> Result<Duration, Failed> {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let status = Command::new("/bin/true")
            .status()
            .map_err(|e| format!("host probe: cannot spawn /bin/true: {e}"))?;
        if !status.success() {
            return Err(format!("host probe: /bin/true ended with {status}").into());
        }
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(worst)
}

/// Runs `ip ARGS`; fails with its stderr.
pub fn ip(args: &[&str]) -> Result<(), Failed> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()).into())
    }
}

/// The index of link `name` in the host's namespace (or in `netns`), if it exists.
pub fn link_index(netns: Option<&str>, name: &str) -> Option<u64> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-j", "link", "show", "dev", name]);
    let out = Command::new("ip").args(&args).output().ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0)?.get("ifindex")?.as_u64()
}

/// The names of the links in `netns`.
pub fn links_in(netns: &str) -> Vec<String> {
    let out = Command::new("ip").args(["-n", netns, "-j", "link", "show"]).output();
    let v: Value = out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or(Value::Null);
    v.as_array().into_iter().flatten().filter_map(|l| l["ifname"].as_str().map(str::to_owned)).collect()
}

/// A named network namespace made for a test (`ip netns add`), deleted (with its links) on drop.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn create(what: &str) -> Result<TestNetns, Failed> {
        let name = format!("cvrel-{what}-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = TestNetns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A link made on the host for a test, deleted on drop.
pub struct TestLink(pub String);

impl Drop for TestLink {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.0]);
    }
}

/// A directory made for a test, removed (with what is inside) on drop. For cgroups, only empty
/// ones are removed (`remove_dir`); `cgroup` says which.
pub struct TestDir {
    pub path: PathBuf,
    pub cgroup: bool,
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if self.cgroup {
            let _ = std::fs::remove_dir(&self.path);
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
