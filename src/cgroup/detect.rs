//! Finding the cgroup hierarchies and this process's own cgroup in each.
//!
//! Version: if the memory controller is bound to a v1 hierarchy (a `N:...memory...:/path` line
//! in `/proc/self/cgroup`), cvtest uses v1 for memory, pids, cpu (required) and cpuacct, freezer
//! (optional) — this includes "hybrid" machines whose cgroup2 mount has no controllers. Otherwise,
//! if a cgroup2 filesystem is mounted, v2. A controller's directory is the mount of its hierarchy
//! plus this process's path in it, taking the mount's root into account (a container sees a
//! subtree mounted at /sys/fs/cgroup).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::v1::{self, V1Layout};
use super::v2::{self, V2Layout};
use super::{fs, Cgroup, CgroupError};
use crate::options::Limits;

/// Which cgroup version the machine runs for the controllers cvtest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The detected hierarchies, and where this process's own cgroup is in each.
#[derive(Debug)]
pub struct Hierarchy {
    pub(crate) layout: Layout,
}

#[derive(Debug)]
pub(crate) enum Layout {
    V1(V1Layout),
    V2(V2Layout),
}

static DETECTED: OnceLock<Hierarchy> = OnceLock::new();
static DETECTING: Mutex<()> = Mutex::new(());
static SEQ: AtomicU64 = AtomicU64::new(0);

impl Hierarchy {
    /// The hierarchies of this process, detected once per process from `/proc/self/mountinfo`
    /// and `/proc/self/cgroup`. An error is not cached: a later call detects again.
    pub fn detect() -> Result<&'static Hierarchy, CgroupError> {
        if let Some(h) = DETECTED.get() {
            return Ok(h);
        }
        let _once = DETECTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(h) = DETECTED.get() {
            return Ok(h);
        }
        let mut h = Hierarchy::detect_at(Path::new("/proc/self"), Path::new("/"))?;
        // Pure v2 in a cgroup that is not ours to divide (shared with other processes, as a
        // login session's or a service's; or, for an ordinary user, not delegated to it): ask
        // systemd for a delegated scope of our own, then detect again. Without systemd, or if it
        // refuses, creating a cgroup later reports what is missing and what to do.
        if let Layout::V2(l) = &h.layout {
            if let Some(manager) = super::delegation::wanted_scope(&l.base) {
                let moved = if super::systemd::systemd_running() {
                    super::systemd::move_into_delegated_scope(manager)
                        .map_err(|e| super::delegation::chain(&e))
                } else {
                    Err("systemd is not the init system here".to_owned())
                };
                match moved {
                    Ok(unit) => {
                        h = Hierarchy::detect_at(Path::new("/proc/self"), Path::new("/"))?;
                        if let Layout::V2(l) = &h.layout {
                            let _ = l.scope.set((manager, unit));
                        }
                    }
                    Err(reason) => {
                        let _ = l.delegation_failed.set(reason);
                    }
                }
            }
        }
        Ok(DETECTED.get_or_init(|| h))
    }

    /// The hierarchies, if [`Hierarchy::detect`] already succeeded in this process (never
    /// detects: a caller cleaning up has nothing to undo otherwise).
    pub fn detected() -> Option<&'static Hierarchy> {
        DETECTED.get()
    }

    /// Detection from `proc_self/mountinfo` and `proc_self/cgroup`, with every mount point
    /// taken relative to `root` (`/` for the real thing; a tempdir in parser tests).
    pub fn detect_at(proc_self: &Path, root: &Path) -> Result<Hierarchy, CgroupError> {
        let mountinfo_path = proc_self.join("mountinfo");
        let cgroup_path = proc_self.join("cgroup");
        let mounts = parse_mountinfo(&mountinfo_path, &fs::read(&mountinfo_path)?)?;
        let lines = parse_proc_cgroup(&cgroup_path, &fs::read(&cgroup_path)?)?;
        let ctx = Ctx { mounts: &mounts, lines: &lines, root, mountinfo: &mountinfo_path };

        let layout = if lines.iter().any(|l| l.id != 0 && l.has("memory")) {
            Layout::V1(ctx.v1()?)
        } else if let Some(base) = ctx.v2()? {
            Layout::V2(V2Layout {
                base,
                features: OnceLock::new(),
                controllers_ready: AtomicBool::new(false),
                enabling: Mutex::new(()),
                delegation_failed: OnceLock::new(),
                scope: OnceLock::new(),
                supervisor: Mutex::new(None),
            })
        } else {
            return Err(CgroupError::NoHierarchy { mountinfo: mountinfo_path });
        };
        Ok(Hierarchy { layout })
    }

    /// Undoes what [`Hierarchy::create`] did to this process's own cgroup, once every container
    /// of this process is destroyed: on v2, if this process moved into its supervisor leaf, the
    /// controllers it enabled are disabled again, it moves back, and the leaf is removed. A
    /// runner calls it at the end of a run so that not even the empty leaf is left. Containers
    /// created afterwards redo the move.
    pub fn release(&self) -> Result<(), CgroupError> {
        // The background thread's cgroups first: made ahead of need, or waiting to be removed.
        if let Some(e) = crate::background::drain().into_iter().next() {
            return Err(e);
        }
        match &self.layout {
            Layout::V1(_) => Ok(()),
            Layout::V2(l) => super::v2::release_supervisor(l),
        }
    }

    /// On v2 in a scope systemd made for this process: empties the scopes of dead runners
    /// beside it (see [`crate::sweep`]). Returns how many.
    pub(crate) fn sweep_dead_scopes(&self) -> Result<usize, CgroupError> {
        match &self.layout {
            Layout::V2(l) if l.scope.get().is_some() => super::systemd::sweep_dead_scopes(&l.base),
            Layout::V1(_) | Layout::V2(_) => Ok(0),
        }
    }

    pub fn version(&self) -> CgroupVersion {
        match self.layout {
            Layout::V1(_) => CgroupVersion::V1,
            Layout::V2(_) => CgroupVersion::V2,
        }
    }

    /// The directory, in each hierarchy used, below which cvtest makes its cgroups: this
    /// process's own cgroup as it was at detection. (On v2 this process may since have moved
    /// itself into a leaf below it, see [`Hierarchy::create`].)
    pub fn own_dirs(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1(l) => l.bases.clone(),
            Layout::V2(l) => vec![l.base.clone()],
        }
    }

    /// Creates `cvtest.<owner tag>.<seq>` directly below the own cgroup in every hierarchy used
    /// and writes `limits`. On any error whatever was made is removed again.
    ///
    /// On v2 the first call enables memory, pids and cpu in the own cgroup's
    /// `cgroup.subtree_control`. cgroup v2 lets a non-root cgroup either hold processes or pass
    /// controllers to children, not both. If this process is the only one in its cgroup, it
    /// moves itself into a leaf `cvtest.<owner tag>.supervisor` below it (a sibling of the
    /// containers' cgroups, so their limits apply to them alone); the leaf is left when the
    /// process exits and a later sweep removes it, as its owner is dead then. If other processes
    /// share the cgroup, the error says to run in a delegated cgroup of its own.
    pub fn create(&self, limits: &Limits) -> Result<Box<dyn Cgroup>, CgroupError> {
        self.create_for(limits, false)
    }

    /// [`Hierarchy::create`] for a container whose processes all live in its own PID namespace:
    /// on v1 it skips the freezer hierarchy (one mkdir and one rmdir fewer per container), as
    /// the death of the namespace's init kills every process in it.
    pub(crate) fn create_for(
        &self,
        limits: &Limits,
        pid_namespace: bool,
    ) -> Result<Box<dyn Cgroup>, CgroupError> {
        self.make(self.wants_freezer(pid_namespace))?.configure(limits)
    }

    /// [`Hierarchy::create_for`], made ahead of need by this process's background thread when it
    /// has one ready (see [`crate::Options::set_background`]); hand it back with
    /// [`Hierarchy::retire`].
    pub(crate) fn take_made(
        &'static self,
        limits: &Limits,
        pid_namespace: bool,
    ) -> Result<Box<dyn Cgroup>, CgroupError> {
        crate::background::take_cgroup(self, limits, self.wants_freezer(pid_namespace))
    }

    /// Empties a cgroup [`Hierarchy::take_made`] gave (kills what is left, waits until nothing
    /// is) and leaves it to the background thread, which recycles it for another container when
    /// `recycle` (nothing in the container could change the cgroup's settings) and the kernel
    /// allow, else removes it; if it cannot be emptied, it is destroyed here, as any other, and
    /// that error returned.
    pub(crate) fn retire(
        &self,
        mut cgroup: Box<dyn Cgroup>,
        pid_namespace: bool,
        recycle: bool,
    ) -> Result<(), CgroupError> {
        let freezer = self.wants_freezer(pid_namespace);
        match cgroup.kill_all(super::fs::DESTROY_TIMEOUT) {
            Ok(()) => crate::background::retire_cgroup(cgroup, freezer, recycle),
            Err(e) => {
                crate::background::forget_cgroup(freezer);
                cgroup.destroy().and(Err(e))
            }
        }
    }

    /// A cgroup's directories, without limits yet ([`Made::configure`] writes them).
    pub(crate) fn make(&self, freezer: bool) -> Result<Made, CgroupError> {
        let name = Hierarchy::next_name();
        match &self.layout {
            Layout::V1(l) => v1::V1Cgroup::make(l, &name, freezer).map(Made::V1),
            Layout::V2(l) => v2::V2Cgroup::make(l, &name).map(Made::V2),
        }
    }

    /// Whether a container's cgroup has a directory in a v1 freezer hierarchy: without a PID
    /// namespace of its own (see `V1Cgroup::kill_all`).
    fn wants_freezer(&self, pid_namespace: bool) -> bool {
        matches!(self.layout, Layout::V1(_)) && !pid_namespace
    }

    /// A new cgroup's name: `cvtest.<owner tag>.<seq>`.
    pub(crate) fn next_name() -> String {
        format!("cvtest.{}.{}", crate::owner::tag(), SEQ.fetch_add(1, Ordering::Relaxed))
    }

    /// A handle on an existing cgroup `name` below the own cgroups (for the sweep), which
    /// kills what is inside and removes it on [`Cgroup::destroy`].
    pub(crate) fn adopt(&self, name: &str) -> Box<dyn Cgroup> {
        match &self.layout {
            Layout::V1(l) => Box::new(v1::V1Cgroup::adopt(l, name)),
            Layout::V2(l) => Box::new(v2::V2Cgroup::adopt(l, name)),
        }
    }
}

/// A cgroup [`Hierarchy::make`] made: its directories, no limits yet.
#[derive(Debug)]
pub(crate) enum Made {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

impl Made {
    /// Writes `limits` (on error the cgroup is removed).
    pub(crate) fn configure(self, limits: &Limits) -> Result<Box<dyn Cgroup>, CgroupError> {
        match self {
            Made::V1(mut cg) => cg.configure(limits).map(|()| Box::new(cg) as Box<dyn Cgroup>),
            Made::V2(mut cg) => cg.configure(limits).map(|()| Box::new(cg) as Box<dyn Cgroup>),
        }
    }

    pub(crate) fn destroy(self) -> Result<(), CgroupError> {
        match self {
            Made::V1(mut cg) => cg.destroy(),
            Made::V2(mut cg) => cg.destroy(),
        }
    }
}

/// One line of `/proc/self/cgroup`: `hierarchy-id:controller-list:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupLine {
    id: u32,
    controllers: Vec<String>,
    path: String,
}

impl CgroupLine {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// A cgroup or cgroup2 mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    /// The directory of the hierarchy that is mounted (not always "/").
    root: String,
    mount_point: String,
    v2: bool,
    super_options: Vec<String>,
}

fn parse_proc_cgroup(path: &Path, text: &str) -> Result<Vec<CgroupLine>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let bad = || CgroupError::Parse {
            path: path.to_owned(),
            reason: format!("expected id:controllers:path, found {line:?}"),
        };
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(cg_path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let id = id.parse().map_err(|_| bad())?;
        let controllers = ctrls.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect();
        out.push(CgroupLine { id, controllers, path: cg_path.to_owned() });
    }
    Ok(out)
}

/// Keeps the cgroup and cgroup2 mounts. Format (proc(5)): `id parent major:minor root
/// mount-point options [optional fields...] - fstype source super-options`.
fn parse_mountinfo(path: &Path, text: &str) -> Result<Vec<CgroupMount>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let bad =
            |what: &str| CgroupError::Parse { path: path.to_owned(), reason: format!("{what} in {line:?}") };
        let (left, right) = line.split_once(" - ").ok_or_else(|| bad("no \" - \" separator"))?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 3 {
            return Err(bad("too few fields"));
        }
        let v2 = match right[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        out.push(CgroupMount {
            root: unescape(left[3]),
            mount_point: unescape(left[4]),
            v2,
            super_options: right[2].split(',').map(str::to_owned).collect(),
        });
    }
    Ok(out)
}

/// A mountinfo path field as text.
fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&crate::mountinfo::unescape(s)).into_owned()
}

/// Where the cgroup at `cg_path` (a path in the hierarchy) is, through `mount`; `None` when that
/// mount shows a part of the hierarchy that does not contain it.
fn dir_in_mount(mount: &CgroupMount, cg_path: &str, root: &Path) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        cg_path.strip_prefix('/')?
    } else if cg_path == mount.root {
        ""
    } else {
        cg_path.strip_prefix(mount.root.as_str())?.strip_prefix('/')?
    };
    // "/.." appears when the process is outside the root of its cgroup namespace.
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    let mut dir = root.join(mount.mount_point.trim_start_matches('/'));
    if !rel.is_empty() {
        dir.push(rel);
    }
    Some(dir)
}

struct Ctx<'a> {
    mounts: &'a [CgroupMount],
    lines: &'a [CgroupLine],
    root: &'a Path,
    mountinfo: &'a Path,
}

impl Ctx<'_> {
    fn v1(&self) -> Result<V1Layout, CgroupError> {
        let mut bases: Vec<PathBuf> = Vec::new();
        let mut index = |dir: PathBuf| match bases.iter().position(|b| *b == dir) {
            Some(i) => i,
            None => {
                bases.push(dir);
                bases.len() - 1
            }
        };
        let memory = index(self.v1_required("memory")?);
        let pids = index(self.v1_required("pids")?);
        let cpu = index(self.v1_required("cpu")?);
        let cpuacct = self.v1_dir("cpuacct").map(&mut index);
        let freezer = self.v1_dir("freezer").map(&mut index);
        Ok(V1Layout { bases, memory, pids, cpu, cpuacct, freezer, features: OnceLock::new() })
    }

    /// The own directory of a v1 controller, if it is bound to a hierarchy that is mounted so
    /// that this process's cgroup is visible.
    fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        let line = self.lines.iter().find(|l| l.id != 0 && l.has(controller))?;
        self.mounts
            .iter()
            .filter(|m| !m.v2 && m.super_options.iter().any(|o| o == controller))
            .find_map(|m| dir_in_mount(m, &line.path, self.root))
    }

    fn v1_required(&self, controller: &'static str) -> Result<PathBuf, CgroupError> {
        if let Some(dir) = self.v1_dir(controller) {
            return Ok(dir);
        }
        Err(match self.lines.iter().find(|l| l.id != 0 && l.has(controller)) {
            None => CgroupError::ControllerMissing {
                controller,
                where_: " as a cgroup v1 hierarchy (the memory controller is on cgroup v1 here)".into(),
                fix: format!(
                    "mount it: mkdir -p /sys/fs/cgroup/{controller} && mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller}, or boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1)"
                ),
            },
            Some(line) => CgroupError::ControllerMissing {
                controller,
                where_: format!(
                    ": no mount in {} shows this process's cgroup {} of the {} hierarchy",
                    self.mountinfo.display(),
                    line.path,
                    line.controllers.join(",")
                ),
                fix: format!("mount that hierarchy (mount -t cgroup -o {controller} cgroup <dir>) so that the process's cgroup is visible"),
            },
        })
    }

    /// The own directory in the unified hierarchy, if one is mounted.
    fn v2(&self) -> Result<Option<PathBuf>, CgroupError> {
        let Some(line) = self.lines.iter().find(|l| l.id == 0) else {
            return Ok(None);
        };
        let mut v2_mounts = self.mounts.iter().filter(|m| m.v2).peekable();
        if v2_mounts.peek().is_none() {
            return Ok(None);
        }
        match v2_mounts.find_map(|m| dir_in_mount(m, &line.path, self.root)) {
            Some(dir) => Ok(Some(dir)),
            None => Err(CgroupError::ControllerMissing {
                controller: "cgroup2",
                where_: format!(
                    ": no cgroup2 mount in {} shows this process's cgroup {}",
                    self.mountinfo.display(),
                    line.path
                ),
                fix: "mount cgroup2 so that the process's own cgroup is visible (in a container: a cgroup namespace, or mount the host's hierarchy)".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/proc/self` with these two files; mount points are below the same tempdir.
    fn detect(mountinfo: &str, cgroup: &str) -> (tempfile::TempDir, Result<Hierarchy, CgroupError>) {
        let dir = tempfile::tempdir().unwrap();
        let proc_self = dir.path().join("proc/self");
        std::fs::create_dir_all(&proc_self).unwrap();
        std::fs::write(proc_self.join("mountinfo"), mountinfo).unwrap();
        std::fs::write(proc_self.join("cgroup"), cgroup).unwrap();
        let h = Hierarchy::detect_at(&proc_self, dir.path());
        (dir, h)
    }

    const HYBRID_MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/ff03
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_uses_v1_with_separate_hierarchies() {
        let (dir, h) = detect(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let h = h.unwrap();
        let r = dir.path();
        assert_eq!(h.version(), CgroupVersion::V1);
        let Layout::V1(l) = &h.layout else { panic!() };
        assert_eq!(l.bases[l.memory], r.join("sys/fs/cgroup/memory/process_api/ff03"));
        assert_eq!(l.bases[l.pids], r.join("sys/fs/cgroup/pids"));
        assert_eq!(l.bases[l.cpu], r.join("sys/fs/cgroup/cpu"));
        assert_eq!(l.bases[l.cpuacct.unwrap()], r.join("sys/fs/cgroup/cpuacct"));
        assert_eq!(l.bases[l.freezer.unwrap()], r.join("sys/fs/cgroup/freezer"));
        assert_eq!(
            h.own_dirs().len(),
            5,
            "the cgroup2 mount without controllers and name=systemd are not used"
        );
    }

    #[test]
    fn co_mounted_cpu_cpuacct_share_one_directory() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let cgroup = "5:pids:/user.slice\n3:memory:/user.slice\n2:cpu,cpuacct:/user.slice\n";
        let (dir, h) = detect(mountinfo, cgroup);
        let h = h.unwrap();
        let Layout::V1(l) = &h.layout else { panic!() };
        assert_eq!(l.cpu, l.cpuacct.unwrap());
        assert_eq!(l.bases[l.cpu], dir.path().join("sys/fs/cgroup/cpu,cpuacct/user.slice"));
        assert_eq!(l.freezer, None);
        assert_eq!(h.own_dirs().len(), 3);
    }

    #[test]
    fn pure_v2() {
        let mountinfo = "\
25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        let (dir, h) = detect(mountinfo, "0::/user.slice/user-0.slice/session-3.scope\n");
        let h = h.unwrap();
        assert_eq!(h.version(), CgroupVersion::V2);
        assert_eq!(
            h.own_dirs(),
            vec![dir.path().join("sys/fs/cgroup/user.slice/user-0.slice/session-3.scope")]
        );
    }

    #[test]
    fn v2_root_cgroup_is_the_mount_point() {
        let (dir, h) = detect("33 32 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/\n");
        assert_eq!(h.unwrap().own_dirs(), vec![dir.path().join("sys/fs/cgroup")]);
    }

    #[test]
    fn a_mount_whose_root_is_not_slash_maps_the_path_below_it() {
        // Inside a container without a cgroup namespace: the host mounted its /docker/abc.
        let mountinfo = "\
1 0 0:1 / / rw - overlay overlay rw
40 1 0:30 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw
";
        let (dir, h) = detect(mountinfo, "0::/docker/abc/tests\n");
        assert_eq!(h.unwrap().own_dirs(), vec![dir.path().join("sys/fs/cgroup/tests")]);
        let (dir, h) = detect(mountinfo, "0::/docker/abc\n");
        assert_eq!(h.unwrap().own_dirs(), vec![dir.path().join("sys/fs/cgroup")]);
        // "/docker/abcdef" is not below "/docker/abc".
        let (_dir, h) = detect(mountinfo, "0::/docker/abcdef\n");
        let err = h.unwrap_err().to_string();
        assert!(err.contains("/docker/abcdef") && err.contains("mountinfo"), "{err}");
        // Outside the root of a cgroup namespace.
        let (_dir, h) = detect("40 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/../other\n");
        assert!(h.is_err());
    }

    #[test]
    fn v1_mount_with_a_nonroot_root_and_escaped_mount_point() {
        let mountinfo = "\
30 25 0:26 /ci /run/my\\040cgroups/mem rw - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
";
        let (dir, h) = detect(mountinfo, "4:memory:/ci/job7\n3:pids:/\n2:cpu:/\n");
        let h = h.unwrap();
        let Layout::V1(l) = &h.layout else { panic!() };
        assert_eq!(l.bases[l.memory], dir.path().join("run/my cgroups/mem/job7"));
        assert_eq!(l.cpuacct, None);
    }

    #[test]
    fn missing_v1_controller_says_what_to_do() {
        let mountinfo = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                         32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let (_dir, h) = detect(mountinfo, "4:memory:/\n1:cpu:/\n0::/\n");
        match h.unwrap_err() {
            e @ CgroupError::ControllerMissing { controller: "pids", .. } => {
                assert!(e.to_string().contains("mount -t cgroup -o pids"), "{e}")
            }
            e => panic!("unexpected {e}"),
        }
        // Bound to a hierarchy that is not mounted.
        let (_dir, h) = detect(mountinfo, "4:memory:/\n3:pids:/a\n1:cpu:/\n");
        let e = h.unwrap_err();
        assert!(matches!(e, CgroupError::ControllerMissing { controller: "pids", .. }), "{e}");
        assert!(e.to_string().contains("/a"), "{e}");
    }

    #[test]
    fn no_cgroup_mounts_is_no_hierarchy() {
        let (_dir, h) = detect("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n");
        assert!(matches!(h.unwrap_err(), CgroupError::NoHierarchy { .. }));
    }

    #[test]
    fn malformed_files_name_themselves() {
        let (_dir, h) = detect("garbage\n", "0::/\n");
        let e = h.unwrap_err().to_string();
        assert!(e.contains("mountinfo") && e.contains("separator"), "{e}");
        let (_dir, h) = detect(HYBRID_MOUNTINFO, "x:memory\n");
        let e = h.unwrap_err().to_string();
        assert!(e.contains("proc/self/cgroup"), "{e}");
    }

    #[test]
    fn unescape_handles_octal_and_plain_backslashes() {
        assert_eq!(unescape("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape("/a\\\\b"), "/a\\\\b");
        assert_eq!(unescape("/x\\04"), "/x\\04");
    }
}
