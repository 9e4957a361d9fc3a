//! What a container is made of: capabilities, limits, network, root filesystem.

use std::ops::BitOr;
use std::path::PathBuf;

use cvtest_spec::{
    parse_cpus, Capabilities, CpuQuota, CpuWeight, MemoryLimit, NetworkSpec, ParseError, PidsLimit,
    DEFAULT_CPU_WEIGHT, DEFAULT_MEMORY, DEFAULT_PIDS,
};

/// Which parts of isolation a container gets, as in containerv's `set_caps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caps(u8);

impl Caps {
    /// A cgroup with limits, and the peaks read from it.
    pub const CGROUPS: Caps = Caps(1);
    /// A veth link into the container's network namespace (when a network is set). Every
    /// container has its own network namespace with `lo` up, whatever its caps.
    pub const NETWORK: Caps = Caps(2);
    /// A private mount namespace with the root filesystem of [`Rootfs`], fresh /proc, /dev, /sys.
    pub const FILESYSTEM: Caps = Caps(4);
    /// A PID namespace with a reaping PID 1; the whole tree dies with the container.
    pub const PROCESS_CONTROL: Caps = Caps(8);
    /// A private IPC namespace.
    pub const IPC: Caps = Caps(16);
    pub const ALL: Caps = Caps(31);
    pub const NONE: Caps = Caps(0);

    pub fn contains(self, other: Caps) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Caps {
    type Output = Caps;
    fn bitor(self, rhs: Caps) -> Caps {
        Caps(self.0 | rhs.0)
    }
}

impl Default for Caps {
    fn default() -> Self {
        Caps::ALL
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
    /// The host's root, read-only, with a private writable /tmp and /dev/shm, fresh /proc, /dev
    /// and /sys, and these host directories bind-mounted writable at the same paths.
    Host { writable: Vec<PathBuf> },
    /// An explicit root directory, as containerv's `create(rootfs, ...)`: it becomes `/` (by
    /// pivot_root), with fresh /proc, /dev, /sys and a private /tmp.
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

/// Everything [`crate::Container::create`] needs. Built like containerv's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub caps: Caps,
    pub limits: Limits,
    pub network: Option<NetworkSpec>,
    pub rootfs: Rootfs,
    pub hostname: Option<String>,
    /// The Linux capabilities the container's main process keeps (its bounding, permitted,
    /// effective and inheritable sets; the ambient set is cleared). Default:
    /// [`Capabilities::DEFAULT`], which cannot mount, load modules, set the clock, trace other
    /// processes or make device nodes. Ignored when [`Options::privileged`].
    pub capabilities: Capabilities,
    /// Keep every capability the caller has, and leave the container's /proc as the kernel
    /// mounts it (no read-only /proc/sys, no masked files): what cvtest did before it confined
    /// tests. A privileged process can undo the read-only root. Default: false.
    ///
    /// As root, a privileged container is real root (no user namespace); rootless it stays in
    /// its user namespace, with every capability there.
    pub privileged: bool,
    /// As root, who the container's root is on the host (see [`Options::map_root_to`]).
    pub(crate) map_root_to: Option<crate::MappedOwner>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            caps: Caps::default(),
            limits: Limits::default(),
            network: None,
            rootfs: Rootfs::default(),
            hostname: None,
            capabilities: Capabilities::DEFAULT,
            privileged: false,
            map_root_to: None,
        }
    }
}

impl Options {
    /// All caps, default limits, no veth, the host's root read-only, the main process confined
    /// to [`Capabilities::DEFAULT`] with a hardened /proc.
    pub fn new() -> Self {
        Options::default()
    }

    /// Privileged: the main process keeps every capability and /proc is not hardened (see
    /// [`Options::privileged`]).
    pub fn set_privileged(&mut self, privileged: bool) -> &mut Self {
        self.privileged = privileged;
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

    /// Adds capabilities to those the main process keeps: names as `#[cv_test(caps = ...)]`
    /// takes them, `"NET_ADMIN,SYS_PTRACE"` (with or without `CAP_`, any case).
    pub fn add_caps(&mut self, names: &str) -> Result<&mut Self, ParseError> {
        self.capabilities = self.capabilities | names.parse::<Capabilities>()?;
        Ok(self)
    }

    /// Sets exactly the capabilities the main process keeps.
    pub fn capabilities(&mut self, capabilities: Capabilities) -> &mut Self {
        self.capabilities = capabilities;
        self
    }

    pub fn set_caps(&mut self, caps: Caps) -> &mut Self {
        self.caps = caps;
        self
    }

    /// containerv's `set_cgroup_limits(memory_max, cpu_weight, pids_max)`, in the one syntax.
    pub fn set_cgroup_limits(
        &mut self,
        memory_max: &str,
        cpu_weight: &str,
        pids_max: &str,
    ) -> Result<&mut Self, ParseError> {
        self.limits.memory = memory_max.parse()?;
        self.limits.cpu_weight = cpu_weight.parse()?;
        self.limits.pids = pids_max.parse()?;
        Ok(self)
    }

    pub fn memory(&mut self, m: MemoryLimit) -> &mut Self {
        self.limits.memory = m;
        self
    }
    pub fn pids(&mut self, p: PidsLimit) -> &mut Self {
        self.limits.pids = p;
        self
    }
    pub fn cpu_weight(&mut self, w: CpuWeight) -> &mut Self {
        self.limits.cpu_weight = w;
        self
    }
    /// A CPU quota such as "0.5", or "max" for none.
    pub fn cpus(&mut self, cpus: &str) -> Result<&mut Self, ParseError> {
        self.limits.cpus = parse_cpus(cpus)?;
        Ok(self)
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
    pub fn network_cidr(&mut self, cidr: &str) -> Result<&mut Self, ParseError> {
        self.network = Some(cidr.parse()?);
        Ok(self)
    }

    pub fn network(&mut self, net: Option<NetworkSpec>) -> &mut Self {
        self.network = net;
        self
    }

    pub fn rootfs(&mut self, rootfs: Rootfs) -> &mut Self {
        self.rootfs = rootfs;
        self
    }

    pub fn hostname(&mut self, name: &str) -> Result<&mut Self, ParseError> {
        self.hostname = Some(cvtest_spec::parse_hostname(name)?);
        Ok(self)
    }
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
        assert!(o.caps.contains(Caps::CGROUPS | Caps::NETWORK));
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
}
