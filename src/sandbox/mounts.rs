//! The mount plan, computed in the parent before clone.
//!
//! The init runs the steps in order (`init::run_step`) and reports a failure as the index of the
//! step, which the parent describes with [`Step::describe`]. Everything a step needs (paths as C
//! strings, flags) is here, so the child allocates nothing.
//!
//! [`Rootfs::Host`]: the whole mount tree is made private (nothing propagates back to the host),
//! each writable directory is cloned as a detached tree *before* the host root is made read-only
//! recursively (`mount_setattr`, or a remount of every mount point on kernels before 5.12), then
//! fresh `/proc`, `/sys` (read-only), `/dev` (tmpfs with the usual device nodes, its own devpts
//! and `/dev/shm`), a private `/tmp` and a private `/run` (and `/var/run` where it is not a
//! symlink to `/run`, and `/var/tmp` where it is a directory: writable, as in a Docker or podman
//! container, where a test under nextest finds it writable too) are mounted, and last the writable trees are attached at their own paths,
//! so they stay writable even under `/tmp` or `/run`.
//!
//! [`Rootfs::Dir`]: the directory is bind-mounted onto itself, becomes `/` by `pivot_root`, and
//! gets the same fresh `/proc`, `/sys`, `/dev`, `/tmp` and `/run`.
//!
//! Unless the container is privileged, its `/proc` is then hardened as Docker's is: the kernel
//! knobs that are not namespaced ([`PROC_READ_ONLY`]: `/proc/sys`, `/proc/sysrq-trigger`, ...)
//! are bound onto themselves and remounted read-only, and what leaks the host's state
//! ([`MASKED`]: `/proc/kcore`, `/proc/keys`, `/proc/timer_list`, `/sys/firmware`, ...) is hidden,
//! a file under `/dev/null`, a directory under an empty read-only tmpfs. Only paths this kernel
//! has are in the plan. A confined test cannot undo any of it: unmounting needs
//! `CAP_SYS_ADMIN`.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libc::c_ulong;

use crate::options::Rootfs;
use crate::sys;

/// One step of the plan.
#[derive(Debug)]
pub(crate) enum Step {
    /// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE)`.
    MakePrivate,
    /// The tree at `target` read-only, recursively (`mount_setattr`).
    ReadOnlyTree {
        target: CString,
    },
    /// One mount point read-only (`MS_REMOUNT | MS_BIND | MS_RDONLY`), kernels without
    /// `mount_setattr`. `flags` keeps its other per-mount flags.
    RemountReadOnly {
        target: CString,
        flags: c_ulong,
    },
    /// A detached recursive copy of the tree at `source`, kept in `slot` (`open_tree`).
    CloneTree {
        source: CString,
        slot: usize,
    },
    /// Attaches the tree in `slot` at `target` (`move_mount`).
    AttachTree {
        slot: usize,
        target: CString,
    },
    /// `mount --rbind path path`, so that `path` is a mount point.
    BindSelf {
        path: CString,
    },
    Mount {
        source: &'static CStr,
        target: CString,
        fstype: &'static CStr,
        flags: c_ulong,
        data: Option<&'static CStr>,
    },
    Mkdir {
        path: CString,
        mode: libc::mode_t,
        exist_ok: bool,
    },
    Mknod {
        path: CString,
        major: u32,
        minor: u32,
    },
    /// An empty regular file at `path`, a mount point for a bound device node.
    Touch {
        path: CString,
    },
    Symlink {
        target: &'static CStr,
        link: CString,
    },
    Chdir {
        path: CString,
    },
    /// `pivot_root(".", ".")` and detach the old root.
    PivotRoot,
    /// Hides `target`: a directory under an empty read-only tmpfs, a file under `/dev/null`.
    Mask {
        target: CString,
        dir: bool,
    },
    /// The host directory `target` seen through a throw-away writable layer: its O_PATH fd kept,
    /// a fresh tmpfs mounted on it (`u` and `w` in it, `u` with the owner and mode of the host's
    /// directory), then an overlay of the host's directory (lower, through the fd) and `u`
    /// (upper) on top, hiding the tmpfs. Soft: when the kernel refuses, the tmpfs goes again,
    /// the directory stays the host's (read-only) and the init reports the errno in `Started`.
    /// `userxattr`: in a user namespace, where the kernel allows overlayfs only its `user.`
    /// extended attributes.
    Overlay {
        target: CString,
        userxattr: bool,
    },
    /// Hides the directory `target` under the empty read-only tmpfs already masking `first`
    /// (a bind of it keeps its read-only flags: one tmpfs for every masked directory).
    MaskAs {
        first: CString,
        target: CString,
    },
}

impl Step {
    /// What the step does, for an error message ("failed at {describe}").
    pub(crate) fn describe(&self) -> String {
        let s = |c: &CStr| c.to_string_lossy().into_owned();
        match self {
            Step::MakePrivate => "making the mount tree private".to_owned(),
            Step::ReadOnlyTree { target } => format!("making {} read-only", s(target)),
            Step::RemountReadOnly { target, .. } => format!("remounting {} read-only", s(target)),
            Step::CloneTree { source, .. } => {
                format!("cloning the mount tree of {}", s(source))
            }
            Step::AttachTree { target, .. } => format!("attaching the directory {}", s(target)),
            Step::BindSelf { path } => format!("bind-mounting {} onto itself", s(path)),
            Step::Mount { fstype, target, .. } => format!("mounting {} on {}", s(fstype), s(target)),
            Step::Mkdir { path, .. } => format!("creating directory {}", s(path)),
            Step::Mknod { path, .. } => format!("creating device node {}", s(path)),
            Step::Touch { path } => format!("creating the mount point {}", s(path)),
            Step::Symlink { link, .. } => format!("creating symlink {}", s(link)),
            Step::Chdir { path } => format!("changing directory to {}", s(path)),
            Step::PivotRoot => "pivoting to the new root".to_owned(),
            Step::Overlay { target, .. } => format!("mounting a throw-away layer on {}", s(target)),
            Step::Mask { target, .. } | Step::MaskAs { target, .. } => format!("masking {}", s(target)),
        }
    }
}

/// The steps and the slots for detached trees (filled by the child in its own copy of memory).
#[derive(Default)]
pub(crate) struct MountPlan {
    pub(crate) steps: Vec<Step>,
    pub(crate) slots: Box<[Cell<Option<OwnedFd>>]>,
}

impl std::fmt::Debug for MountPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountPlan").field("steps", &self.steps).field("slots", &self.slots.len()).finish()
    }
}

/// Kernel interfaces a confined container may read but not write: they are not namespaced, so
/// a write would change the host (Docker's read-only paths).
pub(crate) const PROC_READ_ONLY: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// What a confined container may not read: the host's memory, keys, timers, interrupts, firmware
/// tables, energy counters (Docker's masked paths).
pub(crate) const MASKED: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Of [`PROC_READ_ONLY`] and [`MASKED`], those this kernel has.
struct Hardened {
    read_only: Vec<CString>,
    /// With whether each is a directory.
    masked: Vec<(CString, bool)>,
}

/// The hardened paths as this process sees them (the container's fresh /proc and /sys show the
/// same kernel). Looked up once per process.
fn hardened_paths() -> &'static Hardened {
    static PATHS: OnceLock<Hardened> = OnceLock::new();
    PATHS.get_or_init(|| {
        let exists = |p: &&&str| Path::new(p).symlink_metadata().is_ok();
        let c = |p: &str| CString::new(p).unwrap_or_default();
        Hardened {
            read_only: PROC_READ_ONLY.iter().filter(exists).map(|p| c(p)).collect(),
            masked: MASKED.iter().filter(exists).map(|p| (c(p), Path::new(p).is_dir())).collect(),
        }
    })
}

/// The steps that harden /proc and /sys; after /dev (the masks bind its `null`).
fn harden(steps: &mut Vec<Step>) {
    let Hardened { read_only, masked } = hardened_paths();
    for path in read_only {
        steps.push(Step::BindSelf { path: path.clone() });
        steps.push(Step::RemountReadOnly {
            target: path.clone(),
            flags: libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
        });
    }
    let mut first_dir: Option<&CString> = None;
    for (target, dir) in masked {
        match (dir, first_dir) {
            (true, Some(first)) => steps.push(Step::MaskAs { first: first.clone(), target: target.clone() }),
            (true, None) => {
                first_dir = Some(target);
                steps.push(Step::Mask { target: target.clone(), dir: true });
            }
            (false, _) => steps.push(Step::Mask { target: target.clone(), dir: false }),
        }
    }
}

/// Directories the fresh mounts cover (and `/var/run` where it is a directory of its own, see
/// [`covered`]).
const COVERED: [&str; 5] = ["/proc", "/sys", "/dev", "/tmp", "/run"];

/// Of [`COVERED`], those whose mount points the remount fallback leaves alone (the kernel's own
/// filesystems and `/tmp`, as before `/run` was covered: its mounts are remounted read-only
/// like any other, and then hidden).
const NOT_REMOUNTED: [&str; 4] = ["/proc", "/sys", "/dev", "/tmp"];

/// Where the host keeps sockets of its daemons (the Docker and containerd sockets, the D-Bus
/// system bus, systemd's private socket): a fresh tmpfs in the container, so that `connect()`
/// finds none of them. `/var/run` is a symlink to `/run` on most systems; where it is a directory
/// of its own it gets a fresh tmpfs too.
const VAR_RUN: &str = "/var/run";

/// Temporary files that outlive a reboot: writable on the host, so a fresh tmpfs (1777, as
/// `/tmp`) where it is a directory, not the host's read-only one.
const VAR_TMP: &str = "/var/tmp";

/// Which of `/var/run` and `/var/tmp` get a fresh tmpfs: those of `root` that are directories
/// of their own (a symlink points into a fresh mount anyway, or is left alone).
#[derive(Debug, Clone, Copy)]
struct VarDirs {
    run: bool,
    tmp: bool,
}

impl VarDirs {
    fn of(root: &Path) -> Self {
        let is_dir =
            |d: &str| root.join(d.trim_start_matches('/')).symlink_metadata().is_ok_and(|m| m.is_dir());
        VarDirs { run: is_dir(VAR_RUN), tmp: is_dir(VAR_TMP) }
    }
}

/// The directories the fresh mounts cover on the host's root: [`COVERED`], plus `/var/run`
/// and `/var/tmp` where they are directories. Looked up once per process.
fn covered() -> &'static [&'static str] {
    static COVERED_HERE: OnceLock<Vec<&'static str>> = OnceLock::new();
    COVERED_HERE.get_or_init(|| {
        let mut dirs = COVERED.to_vec();
        let var = VarDirs::of(Path::new("/"));
        if var.run {
            dirs.push(VAR_RUN);
        }
        if var.tmp {
            dirs.push(VAR_TMP);
        }
        dirs
    })
}

pub(crate) fn cstring(path: &Path) -> CString {
    // Paths from the filesystem or from `Path` joins of such never contain NUL; the callers
    // validated user-given ones (see `check_path`).
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// A user-given path usable as a C string, or why not.
pub(crate) fn check_path(path: &Path) -> Result<CString, std::io::Error> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path contains a NUL byte"))
}

/// Whether to use `mount_setattr` (Linux 5.12+). `CVTEST_FORCE_REMOUNT=1` makes the plan use
/// the remount fallback of older kernels anyway, so that path is tested on new ones too.
fn has_mount_setattr() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        !force_remount(std::env::var_os("CVTEST_FORCE_REMOUNT").as_deref()) && sys::has_mount_setattr()
    })
}

/// `CVTEST_FORCE_REMOUNT` turns the fallback on only when it is exactly `1` (`0`, empty and
/// anything else leave it off).
fn force_remount(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| v == "1")
}

impl MountPlan {
    /// The plan for `rootfs`. With `filesystem` false the container shares the host's view and
    /// only gets a private mount tree with a fresh `/proc` (its own PID namespace's).
    ///
    /// `Rootfs::Host` writable directories must be absolute and canonical (checked at create).
    ///
    /// `keep_visible` (the working directory, the program): where one of these lies below a
    /// directory the plan covers with a fresh mount (a checkout under `/tmp`, say), it is cloned
    /// from the host *after* the root went read-only and attached over the fresh mount, so the
    /// container still sees it, read-only, unless a writable directory already holds it.
    ///
    /// `harden`: make the kernel knobs of /proc read-only and mask what leaks the host's state
    /// (a confined, not privileged, container).
    #[cfg(test)]
    pub(crate) fn new(rootfs: &Rootfs, filesystem: bool, harden: bool, keep_visible: &[&Path]) -> MountPlan {
        MountPlan::build(rootfs, filesystem, harden, keep_visible, false, true, &[])
    }

    /// [`MountPlan::new`], for a container in its own user namespace when `userns`: there
    /// `mknod` is refused, so `/dev`'s nodes are the host's, each cloned before anything
    /// covers it and attached onto an empty file of the fresh `/dev`.
    ///
    /// `pid_ns`: the container has a PID namespace of its own. Without one, in a user namespace,
    /// the kernel refuses a fresh `/proc` (its PID namespace is not owned by the container's
    /// user namespace): the host's `/proc`, the right view for that PID namespace anyway, is
    /// cloned first and attached in its place.
    ///
    /// `overlay` (canonical, `Rootfs::Host` only): directories shown through a throw-away layer
    /// ([`Step::Overlay`]), after the fresh mounts and before the writable trees are attached
    /// (a workspace in the home directory stays the host's, writable). Those at or below a
    /// writable directory, or below a freshly mounted one, are left out; mounts below one are
    /// cloned from the read-only tree and attached on top again.
    pub(crate) fn build(
        rootfs: &Rootfs,
        filesystem: bool,
        harden: bool,
        keep_visible: &[&Path],
        userns: bool,
        pid_ns: bool,
        overlay: &[PathBuf],
    ) -> MountPlan {
        let mut steps = vec![Step::MakePrivate];
        let host_proc = userns && !pid_ns;
        if !filesystem {
            // The host's view: without a fresh /proc, the host's stays.
            if !host_proc {
                steps.push(proc_mount(""));
            }
            if harden {
                self::harden(&mut steps);
            }
            return MountPlan { steps, slots: Box::default() };
        }
        match rootfs {
            Rootfs::Host { writable } => {
                let overlay = overlay_targets(overlay, writable);
                let mut visible = covered_but_needed(keep_visible, writable);
                if !overlay.is_empty() {
                    visible.extend(with_mount_points(|points| mounts_below(&overlay, writable, points)));
                }
                let devices = writable.len() + visible.len();
                let proc_slot = devices + if userns { DEVICES.len() } else { 0 };
                if userns {
                    clone_devices(&mut steps, devices);
                }
                if host_proc {
                    steps.push(Step::CloneTree { source: c"/proc".to_owned(), slot: proc_slot });
                }
                for (slot, dir) in writable.iter().enumerate() {
                    steps.push(Step::CloneTree { source: cstring(dir), slot });
                }
                if has_mount_setattr() {
                    steps.push(Step::ReadOnlyTree { target: c"/".to_owned() });
                } else {
                    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                    steps.extend(remount_steps(&mountinfo));
                }
                // Cloned from the now read-only tree: read-only clones.
                for (i, dir) in visible.iter().enumerate() {
                    steps.push(Step::CloneTree { source: cstring(dir), slot: writable.len() + i });
                }
                let proc = if host_proc { Proc::Host(proc_slot) } else { Proc::Fresh };
                fresh_mounts(
                    &mut steps,
                    false,
                    userns.then_some(devices),
                    proc,
                    false,
                    VarDirs { run: covered().contains(&VAR_RUN), tmp: covered().contains(&VAR_TMP) },
                );
                if harden {
                    self::harden(&mut steps);
                }
                for dir in overlay {
                    steps.push(Step::Overlay { target: cstring(dir), userxattr: userns });
                }
                // Parents before children, so a writable directory inside a kept-visible one
                // is attached on top of it.
                let mut attach: Vec<(usize, &PathBuf)> =
                    writable.iter().chain(visible.iter()).enumerate().collect();
                attach.sort_by_key(|(_, dir)| dir.components().count());
                for (slot, dir) in attach {
                    mkdirs_under_covered(&mut steps, dir);
                    steps.push(Step::AttachTree { slot, target: cstring(dir) });
                }
                let slots = proc_slot + usize::from(host_proc);
                MountPlan { steps, slots: (0..slots).map(|_| Cell::new(None)).collect() }
            }
            Rootfs::Dir(root) => {
                let proc_slot = if userns { DEVICES.len() } else { 0 };
                if userns {
                    clone_devices(&mut steps, 0);
                }
                if host_proc {
                    steps.push(Step::CloneTree { source: c"/proc".to_owned(), slot: proc_slot });
                }
                steps.push(Step::BindSelf { path: cstring(root) });
                // In a user namespace the kernel allows a fresh /proc (or sysfs) only while one
                // of the host's is fully visible in the mount namespace: before the pivot, then.
                let early_proc = userns && pid_ns;
                let prefix = root.to_string_lossy();
                if early_proc {
                    steps.push(Step::Mkdir {
                        path: cstring(&root.join("proc")),
                        mode: 0o755,
                        exist_ok: true,
                    });
                    steps.push(proc_mount(&prefix));
                }
                if userns {
                    steps.push(Step::Mkdir { path: cstring(&root.join("sys")), mode: 0o755, exist_ok: true });
                    steps.push(sys_mount(&prefix));
                }
                steps.push(Step::Chdir { path: cstring(root) });
                steps.push(Step::PivotRoot);
                steps.push(Step::Chdir { path: c"/".to_owned() });
                let proc = match (host_proc, early_proc) {
                    (true, _) => Proc::Host(proc_slot),
                    (false, true) => Proc::Mounted,
                    (false, false) => Proc::Fresh,
                };
                fresh_mounts(&mut steps, true, userns.then_some(0), proc, userns, VarDirs::of(root));
                if harden {
                    self::harden(&mut steps);
                }
                let slots = proc_slot + usize::from(host_proc);
                MountPlan { steps, slots: (0..slots).map(|_| Cell::new(None)).collect() }
            }
        }
    }
}

fn sys_mount(prefix: &str) -> Step {
    Step::Mount {
        source: c"sysfs",
        target: CString::new(format!("{prefix}/sys")).unwrap_or_default(),
        fstype: c"sysfs",
        flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
    }
}

fn proc_mount(prefix: &str) -> Step {
    Step::Mount {
        source: c"proc",
        target: CString::new(format!("{prefix}/proc")).unwrap_or_default(),
        fstype: c"proc",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
    }
}

/// What [`fresh_mounts`] puts on `/proc`.
#[derive(Debug, Clone, Copy)]
enum Proc {
    /// A fresh proc of the container's PID namespace.
    Fresh,
    /// The host's, cloned into this slot before it was covered (a user namespace without a PID
    /// namespace of its own).
    Host(usize),
    /// Mounted already, and `/sys` too (before the pivot, in a user namespace).
    Mounted,
}

/// The device nodes of the container's `/dev`: name, major, minor.
const DEVICES: [(&str, u32, u32); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Clones the host's device nodes into the slots from `first` on (user namespace).
fn clone_devices(steps: &mut Vec<Step>, first: usize) {
    for (i, (name, _, _)) in DEVICES.iter().enumerate() {
        let source = CString::new(format!("/dev/{name}")).unwrap_or_default();
        steps.push(Step::CloneTree { source, slot: first + i });
    }
}

/// Fresh /proc, /sys (read-only), /dev, /tmp and /run (and /var/run and /var/tmp as `var`
/// says). `create_dirs`: make the four mount points
/// first if missing (an explicit rootfs may lack them). `bound_devices`: the slot of the first
/// cloned host device node (user namespace, see [`clone_devices`]); `None`: `mknod` them.
/// `proc`: what goes on `/proc`; `sys_mounted`: `/sys` is mounted already.
fn fresh_mounts(
    steps: &mut Vec<Step>,
    create_dirs: bool,
    bound_devices: Option<usize>,
    proc: Proc,
    sys_mounted: bool,
    var: VarDirs,
) {
    let c = |s: &str| CString::new(s).unwrap_or_default();
    if create_dirs {
        for dir in COVERED {
            steps.push(Step::Mkdir { path: c(dir), mode: 0o755, exist_ok: true });
        }
    }
    match proc {
        Proc::Host(slot) => steps.push(Step::AttachTree { slot, target: c("/proc") }),
        Proc::Fresh => steps.push(proc_mount("")),
        Proc::Mounted => {}
    }
    if !sys_mounted {
        steps.push(sys_mount(""));
    }
    steps.push(Step::Mount {
        source: c"tmpfs",
        target: c("/dev"),
        fstype: c"tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(c"mode=755,size=1m"),
    });
    for (i, (name, major, minor)) in DEVICES.into_iter().enumerate() {
        let path = c(&format!("/dev/{name}"));
        match bound_devices {
            Some(first) => {
                steps.push(Step::Touch { path: path.clone() });
                steps.push(Step::AttachTree { slot: first + i, target: path });
            }
            None => steps.push(Step::Mknod { path, major, minor }),
        }
    }
    steps.push(Step::Mkdir { path: c("/dev/pts"), mode: 0o755, exist_ok: false });
    steps.push(Step::Mount {
        source: c"devpts",
        target: c("/dev/pts"),
        fstype: c"devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(c"newinstance,ptmxmode=0666,mode=620"),
    });
    steps.push(Step::Symlink { target: c"pts/ptmx", link: c("/dev/ptmx") });
    steps.push(Step::Mkdir { path: c("/dev/shm"), mode: 0o1777, exist_ok: false });
    steps.push(private_tmpfs("/dev/shm", c"mode=1777"));
    for (target, link) in [
        (c"/proc/self/fd", "/dev/fd"),
        (c"/proc/self/fd/0", "/dev/stdin"),
        (c"/proc/self/fd/1", "/dev/stdout"),
        (c"/proc/self/fd/2", "/dev/stderr"),
    ] {
        steps.push(Step::Symlink { target, link: c(link) });
    }
    steps.push(private_tmpfs("/tmp", c"mode=1777"));
    steps.push(private_tmpfs("/run", c"mode=755"));
    if var.run {
        steps.push(private_tmpfs(VAR_RUN, c"mode=755"));
    }
    if var.tmp {
        steps.push(private_tmpfs(VAR_TMP, c"mode=1777"));
    }
}

/// A fresh tmpfs on `target`, `nosuid,nodev`, with `options` (its root's mode).
fn private_tmpfs(target: &str, options: &'static CStr) -> Step {
    Step::Mount {
        source: c"tmpfs",
        target: CString::new(target).unwrap_or_default(),
        fstype: c"tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(options),
    }
}

/// Of `paths`, those below a directory the plan covers with a fresh mount and not inside a
/// writable directory (which stays visible anyway), without duplicates or nested repeats.
fn covered_but_needed(paths: &[&Path], writable: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let covered = covered().iter().any(|c| p.starts_with(c) && *p != Path::new(c));
        if covered && !writable.iter().any(|w| p.starts_with(w)) {
            push_outermost(&mut out, p.to_path_buf());
        }
    }
    out
}

/// Adds `path` to `out`, a set of paths none below another: unless one of them holds it, and
/// in place of those it holds.
fn push_outermost<P: AsRef<Path>>(out: &mut Vec<P>, path: P) {
    if out.iter().any(|o| path.as_ref().starts_with(o)) {
        return;
    }
    out.retain(|o| !o.as_ref().starts_with(&path));
    out.push(path);
}

/// Of the overlay directories, those the plan mounts a layer on: not at or below a writable
/// directory (the host's, writable already), not below a freshly mounted one (not the host's
/// there), not below another of them.
fn overlay_targets<'a>(overlay: &'a [PathBuf], writable: &[PathBuf]) -> Vec<&'a PathBuf> {
    let mut out: Vec<&PathBuf> = Vec::new();
    for dir in overlay {
        if !writable.iter().any(|w| dir.starts_with(w)) && !covered().iter().any(|c| dir.starts_with(c)) {
            push_outermost(&mut out, dir);
        }
    }
    out
}

/// The outermost mount points strictly below an overlay directory and not at or below a
/// writable one: the layer's lower directory shows only its own filesystem, so these are cloned
/// from the read-only tree and attached on top of the layer again.
fn mounts_below(overlay: &[&PathBuf], writable: &[PathBuf], mount_points: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for m in mount_points {
        let below = overlay.iter().any(|o| m.starts_with(o) && m != *o);
        if below && !writable.iter().any(|w| m.starts_with(w)) {
            push_outermost(&mut out, m.clone());
        }
    }
    out
}

/// `f` of this process's mount points (`/proc/self/mountinfo`). Read again only when the mount
/// table changed since: the kernel flags an open mountinfo file for `poll` (`POLLPRI`) at every
/// change of its mount namespace, so an unchanged table costs one `poll`.
fn with_mount_points<T>(f: impl FnOnce(&[PathBuf]) -> T) -> T {
    use std::io::{Read, Seek};
    use std::os::fd::AsFd;
    static TABLE: std::sync::Mutex<Option<(std::fs::File, Vec<PathBuf>)>> = std::sync::Mutex::new(None);
    let parse = |text: &str| -> Vec<PathBuf> {
        text.lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|field| PathBuf::from(std::ffi::OsString::from_vec(crate::mountinfo::unescape(field))))
            .collect()
    };
    let read = |file: &mut std::fs::File| -> Option<Vec<PathBuf>> {
        let mut text = String::new();
        file.rewind().ok()?;
        file.read_to_string(&mut text).ok()?;
        Some(parse(&text))
    };
    let mut table = TABLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((file, points)) = table.as_mut() {
        let mut fds = [nix::poll::PollFd::new(file.as_fd(), nix::poll::PollFlags::POLLPRI)];
        let changed = !matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(0));
        if changed {
            if let Some(fresh) = read(file) {
                *points = fresh;
            }
        }
        return f(points);
    }
    let Ok(mut file) = std::fs::File::open("/proc/self/mountinfo") else { return f(&[]) };
    let points = read(&mut file).unwrap_or_default();
    let out = f(&points);
    *table = Some((file, points));
    out
}

/// A writable directory below a freshly mounted directory (say `/tmp/work`) needs its mount point
/// created in the fresh mount first.
fn mkdirs_under_covered(steps: &mut Vec<Step>, dir: &Path) {
    let Some(covered) = covered().iter().map(Path::new).find(|c| dir.starts_with(c)) else { return };
    let mut path = PathBuf::from(covered);
    for part in dir.strip_prefix(covered).into_iter().flat_map(Path::components) {
        path.push(part);
        steps.push(Step::Mkdir { path: cstring(&path), mode: 0o755, exist_ok: true });
    }
}

/// Remount steps for every mount point in `mountinfo` that the fresh mounts do not cover,
/// parents first (mountinfo order), keeping each one's other per-mount flags.
fn remount_steps(mountinfo: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for line in mountinfo.lines() {
        let mut fields = line.split(' ');
        let (Some(mount_point), Some(options)) = (fields.nth(4), fields.next()) else { continue };
        let mount_point = crate::mountinfo::unescape(mount_point);
        let p = Path::new(std::ffi::OsStr::from_bytes(&mount_point));
        if NOT_REMOUNTED.iter().any(|c| p.starts_with(c)) {
            continue;
        }
        let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        for opt in options.split(',') {
            flags |= match opt {
                "nosuid" => libc::MS_NOSUID,
                "nodev" => libc::MS_NODEV,
                "noexec" => libc::MS_NOEXEC,
                "noatime" => libc::MS_NOATIME,
                "nodiratime" => libc::MS_NODIRATIME,
                "relatime" => libc::MS_RELATIME,
                _ => 0,
            };
        }
        if let Ok(target) = CString::new(mount_point) {
            steps.push(Step::RemountReadOnly { target, flags });
        }
    }
    steps
}

/// The plan as text, one step a line (for tests).
#[cfg(test)]
pub(crate) fn render(plan: &MountPlan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for step in &plan.steps {
        let _ = writeln!(out, "{}", step.describe());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_plan_clones_writable_trees_before_read_only_and_attaches_them_last() {
        let plan = MountPlan::new(
            &Rootfs::Host { writable: vec![PathBuf::from("/tmp/work/a"), PathBuf::from("/srv")] },
            true,
            false,
            &[],
        );
        let text = render(&plan);
        let pos = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} missing from\n{text}"));
        assert!(text.starts_with("making the mount tree private"));
        assert!(pos("cloning the mount tree of /tmp/work/a") < pos("read-only"));
        assert!(pos("mounting tmpfs on /tmp") < pos("creating directory /tmp/work\n"));
        assert!(pos("creating directory /tmp/work/a") < pos("attaching the directory /tmp/work/a"));
        assert!(!text.contains("creating directory /srv"));
        assert_eq!(plan.slots.len(), 2);
    }

    #[test]
    fn an_overlay_goes_on_after_the_hardening_and_before_the_writable_trees() {
        let home = PathBuf::from("/home/u");
        let plan = MountPlan::build(
            &Rootfs::Host { writable: vec![PathBuf::from("/home/u/src/ws")] },
            true,
            true,
            &[],
            false,
            true,
            std::slice::from_ref(&home),
        );
        let text = render(&plan);
        let pos = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} missing from\n{text}"));
        let layer = pos("mounting a throw-away layer on /home/u\n");
        assert!(pos("making / read-only") < layer);
        assert!(pos("masking") < layer);
        assert!(layer < pos("attaching the directory /home/u/src/ws"));
        assert!(matches!(
            plan.steps.iter().find(|s| matches!(s, Step::Overlay { .. })),
            Some(Step::Overlay { userxattr: false, .. })
        ));
        // In a user namespace: `userxattr`.
        let plan = MountPlan::build(&Rootfs::Host { writable: vec![] }, true, true, &[], true, true, &[home]);
        assert!(plan.steps.iter().any(|s| matches!(s, Step::Overlay { userxattr: true, .. })));
    }

    #[test]
    fn overlay_targets_leave_out_writable_fresh_and_nested_directories() {
        let p = |s: &str| PathBuf::from(s);
        let overlay = [p("/home/u"), p("/srv/data"), p("/tmp/h"), p("/home/u/inner"), p("/opt/x")];
        let writable = [p("/srv"), p("/opt/x")];
        let got = overlay_targets(&overlay, &writable);
        assert_eq!(got, [&p("/home/u")]);
        // An outer one given after an inner one replaces it.
        let overlay = [p("/home/u/inner"), p("/home/u")];
        assert_eq!(overlay_targets(&overlay, &[]), [&p("/home/u")]);
    }

    #[test]
    fn mounts_below_an_overlay_are_kept_outermost_first_but_not_writable_ones() {
        let p = |s: &str| PathBuf::from(s);
        let home = p("/home/u");
        let points = [
            p("/"),
            p("/home"),
            p("/home/u"),
            p("/home/u/nfs"),
            p("/home/u/nfs/deep"),
            p("/home/u/ws"),
            p("/home/uv"),
        ];
        let got = mounts_below(&[&home], &[p("/home/u/ws")], &points);
        assert_eq!(got, [p("/home/u/nfs")]);
        // A deeper one seen first gives way to its parent.
        let points = [p("/home/u/nfs/deep"), p("/home/u/nfs")];
        assert_eq!(mounts_below(&[&home], &[], &points), [p("/home/u/nfs")]);
    }

    #[test]
    fn in_a_user_namespace_device_nodes_are_the_hosts_bound() {
        let writable = vec![PathBuf::from("/srv")];
        for rootfs in [Rootfs::Host { writable }, Rootfs::Dir(PathBuf::from("/srv/root"))] {
            let plan = MountPlan::build(&rootfs, true, true, &[], true, true, &[]);
            let text = render(&plan);
            let pos =
                |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} missing from\n{text}"));
            assert!(!text.contains("creating device node"), "{text}");
            for (name, _, _) in DEVICES {
                let clone = pos(&format!("cloning the mount tree of /dev/{name}\n"));
                assert!(clone < pos("mounting tmpfs on /dev\n"), "{text}");
                assert!(
                    pos("mounting tmpfs on /dev\n") < pos(&format!("creating the mount point /dev/{name}\n"))
                );
                assert!(
                    pos(&format!("creating the mount point /dev/{name}\n"))
                        < pos(&format!("attaching the directory /dev/{name}\n"))
                );
            }
            // Cloned while the host's /dev is still in view: before the root goes read-only or
            // away.
            let first_device = pos("cloning the mount tree of /dev/null");
            assert!(
                first_device < text.find("making / read-only").or(text.find("pivoting")).unwrap(),
                "{text}"
            );
            let others = if matches!(rootfs, Rootfs::Host { .. }) { 1 } else { 0 };
            assert_eq!(plan.slots.len(), others + DEVICES.len());
            // The masks bind the container's /dev/null: after it is attached.
            assert!(pos("attaching the directory /dev/null") < pos("masking"), "{text}");
        }
    }

    #[test]
    fn dir_plan_pivots_then_mounts_fresh_filesystems() {
        let plan = MountPlan::new(&Rootfs::Dir(PathBuf::from("/srv/root")), true, false, &[]);
        let text = render(&plan);
        assert!(text.find("pivoting").unwrap() < text.find("mounting proc on /proc").unwrap());
        assert!(text.contains("bind-mounting /srv/root onto itself"));
    }

    #[test]
    fn without_filesystem_only_proc_is_fresh() {
        let plan = MountPlan::new(&Rootfs::default(), false, false, &[]);
        assert_eq!(render(&plan), "making the mount tree private\nmounting proc on /proc\n");
    }

    #[test]
    fn force_remount_only_for_1() {
        use std::ffi::OsStr;
        assert!(force_remount(Some(OsStr::new("1"))));
        for off in [None, Some(""), Some("0"), Some("yes"), Some("true"), Some(" 1")] {
            assert!(!force_remount(off.map(OsStr::new)), "{off:?}");
        }
    }

    #[test]
    fn remount_fallback_keeps_an_escape_past_a_byte_literal() {
        // `\477` is not a byte (0o477 = 319): kept as written instead of overflowing a u8.
        let info = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    31 27 0:31 / /mnt/odd\\477name rw,noexec - ext4 /dev/vdc rw\n";
        let steps = remount_steps(info);
        assert_eq!(steps.len(), 2);
        match &steps[1] {
            Step::RemountReadOnly { target, flags } => {
                assert_eq!(target.as_bytes(), b"/mnt/odd\\477name");
                assert_eq!(*flags & libc::MS_NOEXEC, libc::MS_NOEXEC);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn remount_fallback_keeps_flags_and_skips_covered_mounts() {
        let info = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    22 27 0:21 / /proc rw,nosuid - proc proc rw\n\
                    30 27 0:30 / /mnt/my\\040disk rw,nosuid,nodev - ext4 /dev/vdb rw\n";
        let steps = remount_steps(info);
        assert_eq!(steps.len(), 2);
        match &steps[1] {
            Step::RemountReadOnly { target, flags } => {
                assert_eq!(target.as_bytes(), b"/mnt/my disk");
                assert_eq!(*flags & libc::MS_NOSUID, libc::MS_NOSUID);
                assert_eq!(*flags & libc::MS_RDONLY, libc::MS_RDONLY);
                assert_eq!(*flags & libc::MS_NOEXEC, 0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn needed_paths_under_tmp_are_cloned_read_only_after_the_root_went_read_only() {
        let cwd = Path::new("/tmp/ci/repo");
        let program = Path::new("/tmp/ci/repo/target/debug/deps");
        let elsewhere = Path::new("/srv/x");
        let plan = MountPlan::new(
            &Rootfs::Host {
                writable: vec![PathBuf::from("/tmp/ci/repo/target/tmp"), PathBuf::from("/tmp/w")],
            },
            true,
            false,
            &[program, cwd, elsewhere, Path::new("/tmp/w/sub")],
        );
        let text = render(&plan);
        let pos = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} missing from\n{text}"));
        // Only the cwd (which holds the program's dir) is kept; /srv is not covered, /tmp/w/sub
        // is inside a writable dir.
        assert_eq!(plan.slots.len(), 3, "{text}");
        // The writable dir inside the kept one goes on top of it.
        assert!(
            pos("attaching the directory /tmp/ci/repo\n")
                < pos("attaching the directory /tmp/ci/repo/target/tmp")
        );
        assert!(pos("making / read-only") < pos("cloning the mount tree of /tmp/ci/repo\n"));
        assert!(pos("mounting tmpfs on /tmp") < pos("attaching the directory /tmp/ci/repo"));
        assert!(!text.contains("/srv/x") && !text.contains("/tmp/w/sub") && !text.contains("deps"), "{text}");
    }

    /// What this kernel has of the hardened paths, as the plan would list it.
    fn expected_hardening() -> String {
        let mut out = String::new();
        for p in PROC_READ_ONLY.iter().filter(|p| Path::new(p).exists()) {
            out.push_str(&format!("bind-mounting {p} onto itself\nremounting {p} read-only\n"));
        }
        for p in MASKED.iter().filter(|p| Path::new(p).exists()) {
            out.push_str(&format!("masking {p}\n"));
        }
        out
    }

    #[test]
    fn confined_plans_harden_proc_after_dev() {
        let hardening = expected_hardening();
        assert!(hardening.contains("/proc/sys onto itself"), "this kernel has no /proc/sys? {hardening}");
        for rootfs in [Rootfs::default(), Rootfs::Dir(PathBuf::from("/srv/root"))] {
            let text = render(&MountPlan::new(&rootfs, true, true, &[]));
            let at = text.find(&hardening).unwrap_or_else(|| panic!("no hardening in\n{text}"));
            // The masks bind the container's own /dev/null.
            assert!(text.find("creating device node /dev/null").unwrap() < at, "{text}");
            assert!(text.find("mounting proc on /proc").unwrap() < at, "{text}");
            let plain = render(&MountPlan::new(&rootfs, true, false, &[]));
            assert!(!plain.contains("masking") && !plain.contains("/proc/sys"), "{plain}");
        }
        // Without a filesystem of its own, the container still gets its /proc hardened.
        let text = render(&MountPlan::new(&Rootfs::default(), false, true, &[]));
        assert_eq!(text, format!("making the mount tree private\nmounting proc on /proc\n{hardening}"));
    }

    #[test]
    fn private_tmpfs_mounts_are_nosuid_and_nodev() {
        let plan = MountPlan::new(&Rootfs::default(), true, true, &[]);
        let dirs: &[&str] = if Path::new(VAR_TMP).is_dir() {
            &["/tmp", "/dev/shm", "/run", VAR_TMP]
        } else {
            &["/tmp", "/dev/shm", "/run"]
        };
        for &dir in dirs {
            let flags = plan
                .steps
                .iter()
                .find_map(|s| match s {
                    Step::Mount { target, fstype, flags, .. } if target.as_bytes() == dir.as_bytes() => {
                        assert_eq!(fstype.to_bytes(), b"tmpfs");
                        Some(*flags)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no mount on {dir}"));
            assert_eq!(flags & (libc::MS_NOSUID | libc::MS_NODEV), libc::MS_NOSUID | libc::MS_NODEV, "{dir}");
        }
    }
}
