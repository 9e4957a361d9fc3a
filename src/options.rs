//! What a container is made of: isolation, limits, network, root filesystem, capabilities.

use std::ops::BitOr;
use std::path::PathBuf;

use cvtest_spec::{
    parse_cpus, Capabilities, CpuList, CpuQuota, CpuWeight, HostAccess, MemoryLimit, NetworkSpec, ParseError,
    PidsLimit, TestSettings, DEFAULT_CPU_WEIGHT, DEFAULT_MEMORY, DEFAULT_PIDS,
};

/// Which parts of isolation a container gets, as in containerv's `set_caps` (not to be confused
/// with [`Capabilities`], the Linux capabilities its main process keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isolation(u8);

impl Isolation {
    /// A cgroup with limits, and the peaks read from it.
    pub const CGROUPS: Isolation = Isolation(1);
    /// A veth link into the container's network namespace (when a network is set). Every
    /// container has its own network namespace with `lo` up, whatever its isolation.
    pub const NETWORK: Isolation = Isolation(2);
    /// A private mount namespace with the root filesystem of [`Rootfs`], fresh /proc, /dev, /sys.
    pub const FILESYSTEM: Isolation = Isolation(4);
    /// A PID namespace with a reaping PID 1; the whole tree dies with the container.
    pub const PROCESS_CONTROL: Isolation = Isolation(8);
    /// A private IPC namespace.
    pub const IPC: Isolation = Isolation(16);
    pub const ALL: Isolation = Isolation(31);
    pub const NONE: Isolation = Isolation(0);

    pub fn contains(self, other: Isolation) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Isolation {
    type Output = Isolation;
    fn bitor(self, rhs: Isolation) -> Isolation {
        Isolation(self.0 | rhs.0)
    }
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation::ALL
    }
}

/// Resolved cgroup limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    pub memory: MemoryLimit,
    pub cpu_weight: CpuWeight,
    pub pids: PidsLimit,
    /// A CFS quota; `None` means no quota.
    pub cpus: Option<CpuQuota>,
}

impl Default for Limits {
    /// containerv's defaults: 1G memory, cpu weight 100, 256 pids, no quota.
    fn default() -> Self {
        Limits { memory: DEFAULT_MEMORY, cpu_weight: DEFAULT_CPU_WEIGHT, pids: DEFAULT_PIDS, cpus: None }
    }
}

/// The root filesystem a container sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// The host's root, read-only, with a private writable /tmp, /dev/shm and /run (and
    /// /var/run where it is not a symlink to /run), fresh /proc, /dev and /sys, and these host
    /// directories bind-mounted writable at the same paths.
    Host { writable: Vec<PathBuf> },
    /// An explicit root directory, as containerv's `create(rootfs, ...)`: it becomes `/` (by
    /// pivot_root), with fresh /proc, /dev, /sys and a private /tmp and /run.
    Dir(PathBuf),
}

impl Default for Rootfs {
    fn default() -> Self {
        Rootfs::Host { writable: Vec::new() }
    }
}

/// Where a spawned process's stdout or stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stdio {
    #[default]
    Inherit,
    Null,
    /// Kept in memory, up to `limit` bytes; past that the middle is dropped and the kept output
    /// carries a truncation marker.
    Capture {
        limit: usize,
    },
}

/// Everything [`crate::Container::create`] needs. Built like containerv's options; every
/// setter validates, so an `Options` is always one `create` can try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    isolation: Isolation,
    limits: Limits,
    network: Option<NetworkSpec>,
    /// `network = "auto"`: when `network` is `None`, a free /30 of this pool is leased at
    /// create (see [`crate::lease`]); [`crate::Container::network`] tells which.
    auto_network: Option<crate::lease::NetworkPool>,
    rootfs: Rootfs,
    /// Host directories seen through a throw-away writable layer (see
    /// [`Options::set_overlay_dirs`]).
    overlay_dirs: Vec<PathBuf>,
    hostname: Option<String>,
    capabilities: Capabilities,
    privileged: bool,
    /// With a network, what of the host the container reaches: by default
    /// ([`HostAccess::HostEnd`]) only its veth's host end, every other packet it sends to the
    /// host is dropped on arrival; [`HostAccess::All`] lets it reach every address of the host.
    host_access: HostAccess,
    /// As root, who the container's root is on the host (see [`Options::map_root_to`]).
    map_root_to: Option<crate::MappedOwner>,
    /// Whether the container may reuse a network namespace (see [`Options::set_reuse_netns`]).
    reuse_netns: bool,
    /// Whether the process's background thread does its housekeeping (see
    /// [`Options::set_background`]).
    background: bool,
    /// The CPUs the container's processes start on (see [`Options::set_cpu_affinity`]).
    cpu_affinity: Option<CpuList>,
}

impl Default for Options {
    /// The one place defaults live: all isolation, [`Limits::default`], no veth, the host's
    /// root read-only, [`Capabilities::DEFAULT`], not privileged.
    fn default() -> Self {
        Options {
            isolation: Isolation::default(),
            limits: Limits::default(),
            network: None,
            auto_network: None,
            rootfs: Rootfs::default(),
            overlay_dirs: Vec::new(),
            hostname: None,
            capabilities: Capabilities::DEFAULT,
            privileged: false,
            host_access: HostAccess::HostEnd,
            map_root_to: None,
            reuse_netns: false,
            background: false,
            cpu_affinity: None,
        }
    }
}

impl Options {
    /// All isolation, default limits, no veth, the host's root read-only, the main process
    /// confined to [`Capabilities::DEFAULT`] with a hardened /proc.
    pub fn new() -> Self {
        Options::default()
    }

    /// The options of a test's container: its settings over the defaults (a setting not given
    /// keeps [`Options::default`]'s value; `caps` are added to [`Capabilities::DEFAULT`]). The
    /// one mapping from test settings to a container, used by `#[cv_test]` and `cargo cvtest`:
    /// a new setting is wired here. The root stays the host's with nothing writable (the
    /// caller says what is: [`Options::set_rootfs`]) but `HOME`, seen through a throw-away
    /// layer ([`Options::overlay_dirs`]; where `HOME` is an existing directory other than `/`).
    pub fn for_test(settings: &TestSettings) -> Result<Options, ParseError> {
        let TestSettings {
            memory,
            pids,
            cpu_weight,
            cpus,
            network,
            host_access,
            // Not a container's option: the caller waits that long.
            timeout: _,
            hostname,
            privileged,
            caps,
        } = settings;
        let mut options = Options::new();
        options.overlay_dirs = home_overlay().to_vec();
        let limits = &mut options.limits;
        limits.memory = memory.unwrap_or(limits.memory);
        limits.pids = pids.unwrap_or(limits.pids);
        limits.cpu_weight = cpu_weight.unwrap_or(limits.cpu_weight);
        limits.cpus = cpus.unwrap_or(limits.cpus);
        match network {
            None => {}
            Some(cvtest_spec::NetworkSetting::Fixed(net)) => {
                options.set_network_spec(Some(*net));
            }
            // The pool comes from `CVTEST_NET_POOL` (else the default one).
            Some(cvtest_spec::NetworkSetting::Auto) => {
                options.set_network_auto(crate::lease::NetworkPool::from_env()?);
            }
        }
        options.set_host_access(host_access.unwrap_or_default());
        if let Some(name) = hostname {
            options.set_hostname(name)?;
        }
        options.set_privileged(privileged.unwrap_or(false));
        options.set_capabilities(Capabilities::DEFAULT | caps.unwrap_or_default());
        Ok(options)
    }

    /// Which parts of isolation the container gets.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    pub fn set_isolation(&mut self, isolation: Isolation) -> &mut Self {
        self.isolation = isolation;
        self
    }

    /// What of the host a container with a network reaches (see [`HostAccess`]).
    pub fn set_host_access(&mut self, access: HostAccess) -> &mut Self {
        self.host_access = access;
        self
    }

    /// As root, maps the container's root (uid and gid 0 in its user namespace) to this host
    /// user and group. Default: `CVTEST_MAP_ROOT_TO`, else `SUDO_UID`/`SUDO_GID`, else the owner
    /// of the working directory when it is not root; with none of these, or `uid` 0, the
    /// container is real root as before. Rootless, root is always the caller; privileged, real
    /// root.
    pub fn map_root_to(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.map_root_to = Some(crate::MappedOwner { uid, gid });
        self
    }

    /// As root, who the container's root is on the host, when set by [`Options::map_root_to`].
    pub(crate) fn mapped_root_owner(&self) -> Option<crate::MappedOwner> {
        self.map_root_to
    }

    /// What of the host a container with a network reaches.
    pub fn host_access(&self) -> HostAccess {
        self.host_access
    }

    /// The cgroup limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn set_limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// containerv's `set_cgroup_limits(memory_max, cpu_weight, pids_max)`, in the one syntax.
    pub fn set_cgroup_limits(
        &mut self,
        memory_max: &str,
        cpu_weight: &str,
        pids_max: &str,
    ) -> Result<&mut Self, ParseError> {
        let memory = memory_max.parse()?;
        let cpu_weight = cpu_weight.parse()?;
        let pids = pids_max.parse()?;
        self.limits = Limits { memory, cpu_weight, pids, ..self.limits };
        Ok(self)
    }

    pub fn set_memory(&mut self, m: MemoryLimit) -> &mut Self {
        self.limits.memory = m;
        self
    }

    pub fn set_pids(&mut self, p: PidsLimit) -> &mut Self {
        self.limits.pids = p;
        self
    }

    pub fn set_cpu_weight(&mut self, w: CpuWeight) -> &mut Self {
        self.limits.cpu_weight = w;
        self
    }

    /// A CPU quota such as "0.5", or "max" for none.
    pub fn set_cpus(&mut self, cpus: &str) -> Result<&mut Self, ParseError> {
        self.limits.cpus = parse_cpus(cpus)?;
        Ok(self)
    }

    /// The veth's addresses, when the container has one.
    pub fn network(&self) -> Option<&NetworkSpec> {
        self.network.as_ref()
    }

    /// containerv's `set_network(container_ip, netmask, host_ip)`.
    pub fn set_network(
        &mut self,
        container_ip: &str,
        netmask: &str,
        host_ip: &str,
    ) -> Result<&mut Self, ParseError> {
        self.network = Some(NetworkSpec::from_parts(container_ip, netmask, host_ip)?);
        Ok(self)
    }

    /// The network as a CIDR, "10.0.0.2/24"; the host end is the first other usable address.
    pub fn set_network_cidr(&mut self, cidr: &str) -> Result<&mut Self, ParseError> {
        self.network = Some(cidr.parse()?);
        Ok(self)
    }

    /// The network, already parsed (a [`NetworkSpec`] is valid by construction); `None`: no veth.
    pub fn set_network_spec(&mut self, net: Option<NetworkSpec>) -> &mut Self {
        self.network = net;
        self.auto_network = None;
        self
    }

    /// `network = "auto"`: a free /30 of `pool` (clears a fixed network).
    pub fn set_network_auto(&mut self, pool: crate::lease::NetworkPool) -> &mut Self {
        self.network = None;
        self.auto_network = Some(pool);
        self
    }

    /// The pool of `network = "auto"`, when set (and no fixed network is).
    pub fn network_auto(&self) -> Option<crate::lease::NetworkPool> {
        self.auto_network
    }

    pub fn rootfs(&self) -> &Rootfs {
        &self.rootfs
    }

    /// The root filesystem; its directories are checked (and made canonical) by `create`.
    pub fn set_rootfs(&mut self, rootfs: Rootfs) -> &mut Self {
        self.rootfs = rootfs;
        self
    }

    /// Host directories the container sees through a throw-away writable layer, as podman's
    /// `:O` volumes: it reads what the host has there and may write, and what it writes stays
    /// in a fresh tmpfs of its own (charged to its cgroup) and goes with it. Nothing reaches the
    /// host's directory, and a unix socket there cannot be connected to (overlayfs refuses
    /// `connect()` through it: an ssh `ControlMaster` or Docker Desktop socket in a home
    /// directory is out of reach). Mounts below such a directory are kept, read-only (or
    /// writable where they are writable directories).
    ///
    /// Only with [`Rootfs::Host`] and [`Isolation::FILESYSTEM`]; a directory at or below a
    /// writable one, or below one the container gets fresh (`/tmp`, `/run`, ...), is left as it
    /// is, and so is one the container's mapped root (as root, [`Options::map_root_to`]) may
    /// not search. Where the kernel refuses the overlay (no overlayfs; in a user namespace, a
    /// kernel before 5.11 or a mount below the directory), the directory stays read-only and
    /// [`crate::Container::overlay_refused`] says why. `cargo cvtest` and `#[cv_test]` give
    /// the test's `HOME` this way. Checked (and made canonical) by `create`.
    pub fn overlay_dirs(&self) -> &[PathBuf] {
        &self.overlay_dirs
    }

    /// Sets [`Options::overlay_dirs`].
    pub fn set_overlay_dirs(&mut self, dirs: Vec<PathBuf>) -> &mut Self {
        self.overlay_dirs = dirs;
        self
    }

    /// The container's hostname; `cvtest-<id>` when `None`.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    /// Sets the hostname, checked as `#[cv_test(hostname = ...)]` checks it.
    pub fn set_hostname(&mut self, name: &str) -> Result<&mut Self, ParseError> {
        self.hostname = Some(cvtest_spec::parse_hostname(name)?);
        Ok(self)
    }

    /// The Linux capabilities the container's main process keeps (its bounding, permitted,
    /// effective and inheritable sets; the ambient set is cleared). Default:
    /// [`Capabilities::DEFAULT`], which cannot mount, load modules, set the clock, trace other
    /// processes or make device nodes. Ignored when [`Options::privileged`].
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Adds capabilities to those the main process keeps: names as `#[cv_test(caps = ...)]`
    /// takes them, `"NET_ADMIN,SYS_PTRACE"` (with or without `CAP_`, any case).
    pub fn add_caps(&mut self, names: &str) -> Result<&mut Self, ParseError> {
        self.capabilities = self.capabilities | names.parse::<Capabilities>()?;
        Ok(self)
    }

    /// Sets exactly the capabilities the main process keeps.
    pub fn set_capabilities(&mut self, capabilities: Capabilities) -> &mut Self {
        self.capabilities = capabilities;
        self
    }

    /// Keep every capability the caller has, and leave the container's /proc as the kernel
    /// mounts it (no read-only /proc/sys, no masked files): what cvtest did before it confined
    /// tests. A privileged process can undo the read-only root. Default: false.
    pub fn privileged(&self) -> bool {
        self.privileged
    }

    pub fn set_privileged(&mut self, privileged: bool) -> &mut Self {
        self.privileged = privileged;
        self
    }

    /// Let the container have a network namespace an earlier container of this process had,
    /// when nothing in it can change one: no network, not privileged, capabilities within
    /// [`Capabilities::DEFAULT`] (so no `CAP_NET_ADMIN`), real root without a user namespace,
    /// a PID namespace. It goes back to the process's pool at destroy only if it looks exactly
    /// as fresh from inside: no socket left (TIME_WAIT included), no traffic counted, the same
    /// links, addresses and routes; otherwise it is discarded. Any other container gets a new
    /// namespace as always. Saves making and tearing down a namespace per container (the
    /// largest kernel cost of one). Default: false; `cargo cvtest` turns it on; the
    /// environment's `CVTEST_NETNS_POOL=0` turns it off for the whole process.
    pub fn reuse_netns(&self) -> bool {
        self.reuse_netns
    }

    pub fn set_reuse_netns(&mut self, reuse: bool) -> &mut Self {
        self.reuse_netns = reuse;
        self
    }

    /// Whether a thread of this process does the container's housekeeping ahead of need and
    /// behind it: its cgroup made before [`crate::Container::create`] asks (only the limits are
    /// written then), and after [`crate::Container::destroy`] has emptied the cgroup (every
    /// process of the container is gone before destroy returns, as always) the cgroup's removal
    /// and a pooled network namespace's check. The same kernel work, off the path from one
    /// container to the next. The process calls [`crate::release_own_cgroup`] before it exits,
    /// which finishes that work and removes the cgroups made ahead (else the next cvtest run's
    /// sweep removes them). Default: false; `cargo cvtest` turns it on; the environment's
    /// `CVTEST_BACKGROUND=0` turns it off for the whole process.
    ///
    /// On cgroup v1 the thread also recycles the emptied cgroup of a confined container
    /// (capabilities within [`Capabilities::DEFAULT`]: nothing in it could change the cgroup's
    /// settings) for a later container of the process whose memory limit is at least 64 MiB:
    /// its peaks and counters start again (memory high-water mark, CPU time, OOM kills; a new
    /// pids directory, as `pids.peak` cannot be reset), only the limits that differ are
    /// written, and it is removed instead when more than 1 MiB is still charged to it. The
    /// memory peak then counts what was still charged (kernel objects, the per-CPU charge
    /// batches): up to 1 MiB more than in a new cgroup. `CVTEST_CGROUP_REUSE=0` turns that off.
    pub fn background(&self) -> bool {
        self.background
    }

    pub fn set_background(&mut self, background: bool) -> &mut Self {
        self.background = background;
        self
    }

    /// The CPUs the container's processes run on: its init is given this CPU affinity before
    /// the command starts, and everything the command starts inherits it (as `taskset -c` or
    /// podman's `--cpuset-cpus` would place it; `std::thread::available_parallelism` inside
    /// counts these CPUs). A placement, not a limit: a process may widen its own affinity
    /// again. Spawning fails with [`crate::SpawnError::Affinity`] when none of them is online
    /// and allowed to this process. Default: `None`, wherever the caller may run.
    /// `cargo cvtest` gives each worker's containers that worker's share of the CPUs.
    pub fn cpu_affinity(&self) -> Option<&CpuList> {
        self.cpu_affinity.as_ref()
    }

    pub fn set_cpu_affinity(&mut self, cpus: Option<CpuList>) -> &mut Self {
        self.cpu_affinity = cpus;
        self
    }
}

/// `HOME`, as a test's throw-away layer ([`Options::for_test`]), where it is an absolute path to
/// an existing directory other than `/` and `CVTEST_HOME` is not `read-only`. Read once per
/// process.
fn home_overlay() -> &'static [PathBuf] {
    static HOME: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        if std::env::var_os("CVTEST_HOME").is_some_and(|v| v == "read-only") {
            return Vec::new();
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        home.filter(|h| h.is_absolute() && h.is_dir() && h.as_path() != std::path::Path::new("/"))
            .into_iter()
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_containerv() {
        let o = Options::new();
        assert_eq!(o.limits.memory, MemoryLimit::Bytes(1 << 30));
        assert_eq!(o.limits.cpu_weight.get(), 100);
        assert_eq!(o.limits.pids, PidsLimit::Count(256));
        assert!(o.isolation.contains(Isolation::CGROUPS | Isolation::NETWORK));
        assert_eq!(o.capabilities, Capabilities::DEFAULT);
        assert!(!o.privileged);
    }

    #[test]
    fn add_caps_adds_to_the_default() {
        let mut o = Options::new();
        o.add_caps("net_admin,CAP_SYS_PTRACE").unwrap();
        assert!(o.capabilities.contains(Capabilities::DEFAULT));
        assert_eq!(o.capabilities, Capabilities::DEFAULT | "NET_ADMIN,SYS_PTRACE".parse().unwrap());
        let e = o.add_caps("SYS_ADMN").unwrap_err().to_string();
        assert!(e.contains("unknown capability \"SYS_ADMN\"") && e.contains("SYS_ADMIN"), "{e}");
    }

    #[test]
    fn set_cgroup_limits_parses_each_value() {
        let mut o = Options::new();
        o.set_cgroup_limits("512M", "200", "max").unwrap();
        assert_eq!(o.limits.memory, MemoryLimit::Bytes(512 << 20));
        assert_eq!(o.limits.pids, PidsLimit::Max);
        assert!(o.set_cgroup_limits("1X", "1", "1").is_err());
        assert!(o.set_cgroup_limits("1G", "0", "1").is_err());
        assert!(o.set_network("10.0.0.2", "255.255.255.0", "10.0.1.1").is_err());
    }

    #[test]
    fn for_test_lays_settings_over_the_defaults() {
        let mut settings = TestSettings::default();
        let mut o = Options::for_test(&settings).unwrap();
        // HOME (where it is a directory) is a throw-away layer; the rest is the default.
        assert_eq!(o.overlay_dirs(), home_overlay());
        o.set_overlay_dirs(Vec::new());
        assert_eq!(o, Options::default());
        let mut host = None;
        for (key, value) in [("memory", "64M"), ("cpus", "0.5"), ("caps", "net_admin"), ("hostname", "box")] {
            settings.set(key, value, &mut host).unwrap();
        }
        let o = Options::for_test(&settings).unwrap();
        assert_eq!(o.limits().memory, MemoryLimit::Bytes(64 << 20));
        assert_eq!(o.limits().pids, Limits::default().pids);
        assert!(o.limits().cpus.is_some());
        assert_eq!(o.capabilities(), Capabilities::DEFAULT | "NET_ADMIN".parse().unwrap());
        assert_eq!(o.hostname(), Some("box"));
        assert!(!o.privileged());
        settings.set("privileged", "true", &mut host).unwrap();
        assert!(Options::for_test(&settings).unwrap().privileged());
    }

    #[test]
    fn a_failed_setter_changes_nothing() {
        let mut o = Options::new();
        assert!(o.set_cgroup_limits("64M", "0", "1").is_err());
        assert_eq!(o, Options::default());
        assert!(o.set_hostname("bad host").is_err());
        assert_eq!(o.hostname(), None);
    }
}
