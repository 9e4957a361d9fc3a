//! What a test in a container can do to the host: by default (capabilities cut to
//! `Capabilities::DEFAULT`, /proc hardened) nothing outside its writable directories; with
//! `privileged` everything it could before (every capability, /proc as the kernel mounts it);
//! with added capabilities, those.
//!
//! The workloads are this binary in the `probe` and `attack` helper modes, which print one
//! `key=value` line per check. They never write to a kernel knob: they open them for writing
//! and close them unwritten, or make calls whose capability check comes before anything they
//! would change, with values that change nothing.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use cvtest::{Capabilities, Command, Container, Isolation, Options, Rootfs, Stdio, Termination};
use libtest_mimic::{Failed, Trial};

use crate::helpers::command;
use crate::support::privileged;

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("confinement::default_test_cannot_escape", default_test_cannot_escape),
        privileged("confinement::default_test_keeps_the_default_set", default_test_keeps_the_default_set),
        privileged("confinement::added_caps_are_kept", added_caps_are_kept),
        privileged("confinement::privileged_keeps_every_capability", privileged_keeps_every_capability),
        privileged("confinement::without_a_filesystem_caps_still_drop", without_a_filesystem_caps_still_drop),
    ]
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {{
        let ok: bool = $cond;
        if !ok {
            return Err(Failed::from(format!($($msg)+)));
        }
    }};
}

/// Read-only kernel knobs and masked paths: the library's lists (`sandbox/mounts.rs`), written
/// out again so that a change there has to be made here too.
const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];
const MASKED: [&str; 12] = [
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

fn cap(name: &str) -> u64 {
    Capabilities::named(name).expect("a capability name").bits()
}

// ---------------------------------------------------------------------------------------------
// Driving containers

/// The helper's `key=value` lines.
struct Report {
    values: BTreeMap<String, String>,
    text: String,
}

impl Report {
    fn get(&self, key: &str) -> Result<&str, Failed> {
        self.values.get(key).map(String::as_str).ok_or_else(|| format!("no {key} in\n{}", self.text).into())
    }

    fn expect(&self, key: &str, want: &str) -> Result<(), Failed> {
        let got = self.get(key)?;
        ensure!(got == want, "{key}={got}, expected {want}, in\n{}", self.text);
        Ok(())
    }

    fn hex(&self, key: &str) -> Result<u64, Failed> {
        let v = self.get(key)?;
        u64::from_str_radix(v, 16).map_err(|e| format!("{key}={v}: {e}").into())
    }
}

/// Runs the helper in a container made from `opts`; its report.
fn run_helper(opts: &Options, mode: &str, args: &[&str]) -> Result<Report, Failed> {
    let mut c = Container::create(opts).map_err(|e| format!("create: {e}"))?;
    let mut cmd: Command = command(mode, args);
    cmd.stdout(Stdio::Capture { limit: 1 << 20 }).stderr(Stdio::Capture { limit: 1 << 20 });
    c.spawn(&cmd).map_err(|e| format!("spawn: {e}"))?;
    let out = c.wait(Some(Duration::from_secs(60))).map_err(|e| format!("wait: {e}"))?;
    c.destroy().map_err(|e| format!("destroy: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.termination == Termination::Exited(0), "{:?}\n{text}\n{stderr}", out.termination);
    let values =
        text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    Ok(Report { values, text })
}

/// Options as a test gets them, with a host directory writable so that the write checks can
/// tell "read-only" from "refused everywhere".
fn options(writable: &Path) -> Options {
    let mut o = Options::new();
    if std::env::var_os("CVTEST_TEST_NO_CGROUPS").is_some() {
        o.set_isolation(
            Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC,
        );
    }
    o.set_rootfs(Rootfs::Host { writable: vec![writable.to_owned()] });
    o
}

/// The capabilities of this (the test's) thread, to compare a privileged container with.
fn own_effective() -> Result<u64, Failed> {
    let status = std::fs::read_to_string("/proc/thread-self/status").map_err(|e| format!("status: {e}"))?;
    status_field(&status, "CapEff").ok_or_else(|| "no CapEff".into())
}

/// The masked and read-only paths this host has (the container's /proc shows the same kernel).
fn host_has(path: &str) -> bool {
    Path::new(path).symlink_metadata().is_ok()
}

// ---------------------------------------------------------------------------------------------
// Trials

/// A hostile test in a default container: everything that reached the host before is refused,
/// and nothing appears outside its writable directory.
fn default_test_cannot_escape() -> Result<(), Failed> {
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    // Outside the writable dirs, where the host's root shows through (not /tmp, private inside).
    let outside = tempfile::tempdir_in("/var/tmp").map_err(|e| format!("tempdir: {e}"))?;
    let outside_path = outside.path().to_str().unwrap_or_default();
    let r = run_helper(&options(writable.path()), "attack", &[outside_path])?;
    println!("    {}", r.text.trim().replace('\n', " "));

    let (eperm, eacces, erofs, enoent) = (
        libc::EPERM.to_string(),
        libc::EACCES.to_string(),
        libc::EROFS.to_string(),
        libc::ENOENT.to_string(),
    );
    // Making the root writable again, directly or from a user namespace of its own.
    r.expect("remount_root_rw", &eperm)?;
    r.expect("mount_setattr_root_rw", &eperm)?;
    let userns = r.get("userns_remount_root_rw")?;
    ensure!(userns == eperm || userns.starts_with("unshare:"), "userns_remount_root_rw={userns}\n{}", r.text);
    r.expect("write_outside", &erofs)?;
    let names: Vec<_> = std::fs::read_dir(outside.path()).map_err(|e| format!("{e}"))?.flatten().collect();
    ensure!(names.is_empty(), "the container wrote {names:?} outside its writable directories");
    // Kernel knobs that are not namespaced: opened for writing (never written).
    r.expect("open_drop_caches_for_writing", &erofs)?;
    let sysrq = if host_has("/proc/sysrq-trigger") { &erofs } else { &enoent };
    r.expect("open_sysrq_trigger_for_writing", sysrq)?;
    // Device nodes, modules, the clock.
    r.expect("mknod_block_in_dev", &eperm)?;
    r.expect("mknod_block_in_tmp", &eperm)?;
    // A kernel without module support says ENOSYS to anyone (this test, with every capability,
    // gets EBADF for fd -1 from one with it).
    // SAFETY: an invalid fd and an empty NUL-terminated string: fails before loading anything.
    let here = errno_of(unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) });
    r.expect("finit_module", if here == libc::ENOSYS.to_string() { &here } else { &eperm })?;
    r.expect("adjtimex_set", &eperm)?;
    // Its own init (which holds more than it does until the test runs): not traceable.
    r.expect("ptrace_init", &eperm)?;
    r.expect("open_by_handle_at", &eperm)?;
    let mem = r.get("open_init_mem")?;
    ensure!(mem == eacces || mem == eperm, "open_init_mem={mem}\n{}", r.text);
    ensure!(r.hex("init_cap_eff")? == cap("KILL"), "the init keeps more than CAP_KILL:\n{}", r.text);
    ensure!(
        r.hex("init_cap_bnd")? == Capabilities::DEFAULT.bits(),
        "the init's bounding set is not the test's:\n{}",
        r.text
    );
    // What a test may still do as root: its files, its users, its ports.
    r.expect("chown_in_tmp", "ok")?;
    r.expect("setuid_nobody", "ok")?;
    r.expect("bind_port_80", "ok")?;
    Ok(())
}

/// The default set and nothing else, in every set of the test; /proc hardened; private tmpfs
/// mounts nosuid and nodev.
fn default_test_keeps_the_default_set() -> Result<(), Failed> {
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let r = run_helper(&options(writable.path()), "probe", &[])?;
    let default = Capabilities::DEFAULT.bits();
    for key in ["cap_eff", "cap_prm", "cap_bnd"] {
        ensure!(r.hex(key)? == default, "{key} is not the default set {default:x}:\n{}", r.text);
    }
    for key in ["cap_inh", "cap_amb"] {
        ensure!(r.hex(key)? == 0, "{key} is not empty:\n{}", r.text);
    }
    ensure!(r.hex("cap_eff")? & cap("SYS_ADMIN") == 0, "CAP_SYS_ADMIN kept");
    r.expect("set_lo_mtu", &libc::EPERM.to_string())?;
    for p in READ_ONLY {
        r.expect(&format!("ro:{p}"), if host_has(p) { "ro" } else { "absent" })?;
    }
    for p in MASKED {
        r.expect(&format!("mask:{p}"), if host_has(p) { "masked" } else { "absent" })?;
    }
    r.expect("flags:/tmp", "nosuid,nodev")?;
    r.expect("flags:/dev/shm", "nosuid,nodev")?;
    Ok(())
}

/// `caps = "NET_ADMIN"`: the default set plus NET_ADMIN, and it works (lo's MTU may be set).
fn added_caps_are_kept() -> Result<(), Failed> {
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let mut opts = options(writable.path());
    opts.add_caps("net_admin").map_err(|e| format!("add_caps: {e}"))?;
    let r = run_helper(&opts, "probe", &[])?;
    let want = (Capabilities::DEFAULT | Capabilities::named("NET_ADMIN").unwrap_or_default()).bits();
    ensure!(r.hex("cap_eff")? == want && r.hex("cap_bnd")? == want, "not default + NET_ADMIN:\n{}", r.text);
    ensure!(r.hex("cap_eff")? & cap("SYS_ADMIN") == 0, "CAP_SYS_ADMIN kept");
    r.expect("set_lo_mtu", "ok")?;
    r.expect("ro:/proc/sys", "ro")
}

/// `privileged`: every capability of the caller, /proc unhardened.
fn privileged_keeps_every_capability() -> Result<(), Failed> {
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let mut opts = options(writable.path());
    opts.set_privileged(true);
    let r = run_helper(&opts, "probe", &[])?;
    let own = own_effective()?;
    ensure!(r.hex("cap_eff")? == own, "CapEff {:x}, this test has {own:x}:\n{}", r.hex("cap_eff")?, r.text);
    ensure!(r.hex("cap_eff")? & cap("SYS_ADMIN") != 0, "no CAP_SYS_ADMIN");
    r.expect("set_lo_mtu", "ok")?;
    for p in READ_ONLY.iter().filter(|p| host_has(p)) {
        r.expect(&format!("ro:{p}"), "rw")?;
    }
    for p in MASKED.iter().filter(|p| host_has(p)) {
        r.expect(&format!("mask:{p}"), "visible")?;
    }
    Ok(())
}

/// Without `Isolation::FILESYSTEM` (the host's filesystem, writable) and without a PID namespace,
/// the capabilities still drop.
fn without_a_filesystem_caps_still_drop() -> Result<(), Failed> {
    let mut opts = Options::new();
    opts.set_isolation(Isolation::NETWORK | Isolation::IPC);
    let r = run_helper(&opts, "probe", &[])?;
    ensure!(r.hex("cap_eff")? == Capabilities::DEFAULT.bits(), "not the default set:\n{}", r.text);
    ensure!(r.hex("cap_bnd")? == Capabilities::DEFAULT.bits(), "not the default set:\n{}", r.text);
    r.expect("ro:/proc/sys", "ro")
}

// ---------------------------------------------------------------------------------------------
// Helper modes (in the container)

fn status_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

fn errno_of(ret: libc::c_long) -> String {
    if ret >= 0 {
        "ok".to_owned()
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0).to_string()
    }
}

fn show(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

fn show_io(key: &str, r: std::io::Result<()>) {
    match r {
        Ok(()) => show(key, "ok"),
        Err(e) => show(key, e.raw_os_error().map_or_else(|| e.to_string(), |c| c.to_string())),
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in the path")
}

/// `masked` (a file under /dev/null, a directory under an empty tmpfs), `visible`, `absent`.
fn mask_state(path: &str) -> &'static str {
    let Ok(meta) = Path::new(path).symlink_metadata() else { return "absent" };
    if meta.is_dir() {
        let mut fs: libc::statfs = unsafe_zeroed();
        // SAFETY: the path is NUL-terminated; fs is a valid statfs to write to.
        let ok = unsafe { libc::statfs(cstr(Path::new(path)).as_ptr(), &mut fs) } == 0;
        let empty = std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false);
        if ok && fs.f_type == libc::TMPFS_MAGIC && empty {
            return "masked";
        }
    } else if meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        return "masked";
    }
    "visible"
}

fn unsafe_zeroed<T>() -> T {
    // SAFETY: only used for plain-old-data structs (statfs, statvfs, timex, ifreq), for which
    // all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn statvfs_flags(path: &str) -> Option<libc::c_ulong> {
    let mut v: libc::statvfs = unsafe_zeroed();
    // SAFETY: the path is NUL-terminated; v is a valid statvfs to write to.
    let ok = unsafe { libc::statvfs(cstr(Path::new(path)).as_ptr(), &mut v) } == 0;
    ok.then_some(v.f_flag)
}

/// Sets lo's MTU to what it is (in the container's own network namespace: changes nothing, but
/// needs CAP_NET_ADMIN).
fn set_lo_mtu() -> String {
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return errno_of(-1);
    }
    let mut ifr: libc::ifreq = unsafe_zeroed();
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU and SIOCSIFMTU read and write a struct ifreq, which ifr is.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFMTU, &mut ifr as *mut libc::ifreq) < 0 {
            errno_of(-1)
        } else {
            errno_of(libc::ioctl(fd, libc::SIOCSIFMTU, &ifr as *const libc::ifreq).into())
        }
    };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    result
}

/// Helper mode `probe`: what the test holds and sees; changes nothing.
pub fn probe() -> i32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for (key, field) in [
        ("cap_eff", "CapEff"),
        ("cap_prm", "CapPrm"),
        ("cap_bnd", "CapBnd"),
        ("cap_inh", "CapInh"),
        ("cap_amb", "CapAmb"),
    ] {
        show(key, format!("{:x}", status_field(&status, field).unwrap_or(u64::MAX)));
    }
    show("set_lo_mtu", set_lo_mtu());
    for p in READ_ONLY {
        let state = match statvfs_flags(p) {
            None => "absent",
            Some(f) if f & libc::ST_RDONLY != 0 => "ro",
            Some(_) => "rw",
        };
        show(&format!("ro:{p}"), state);
    }
    for p in MASKED {
        show(&format!("mask:{p}"), mask_state(p));
    }
    for p in ["/tmp", "/dev/shm"] {
        let state = match statvfs_flags(p) {
            Some(f) if f & libc::ST_NOSUID != 0 && f & libc::ST_NODEV != 0 => "nosuid,nodev",
            Some(f) => {
                if f & libc::ST_NOSUID != 0 {
                    "nosuid"
                } else {
                    "suid"
                }
            }
            None => "absent",
        };
        show(&format!("flags:{p}"), state);
    }
    0
}

/// Clears the read-only flag of the whole tree at `/`: the mount_setattr way to a writable root.
fn mount_setattr_root_rw() -> libc::c_long {
    let attr =
        libc::mount_attr { attr_set: 0, attr_clr: libc::MOUNT_ATTR_RDONLY, propagation: 0, userns_fd: 0 };
    // SAFETY: the path is NUL-terminated; attr is a valid mount_attr of the size passed.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    }
}

/// `mount -o remount,bind,rw /`.
fn remount_root_rw() -> libc::c_long {
    // SAFETY: NUL-terminated static path; NULL where allowed.
    unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND,
            std::ptr::null(),
        )
    }
    .into()
}

/// In a forked child: a user namespace of its own (where it has every capability) and a mount
/// namespace owned by it, then the remount. The exit code carries the result.
fn userns_remount_root_rw() -> String {
    // SAFETY: the child makes only raw syscalls and _exits.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain syscalls; the child ends in _exit.
            unsafe {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    libc::_exit(200);
                }
                let r = remount_root_rw();
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                libc::_exit(if r == 0 { 0 } else { errno.clamp(1, 199) })
            }
        }
        -1 => format!("fork:{}", errno_of(-1)),
        pid => {
            let mut status = 0;
            // SAFETY: status is a valid int to write to.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            match libc::WEXITSTATUS(status) {
                0 => "ok".to_owned(),
                200 => "unshare:refused".to_owned(),
                code => code.to_string(),
            }
        }
    }
}

/// `struct file_handle` with room for the largest handle (MAX_HANDLE_SZ).
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: libc::c_int,
    f_handle: [u8; 128],
}

/// The "shocker" way out: with CAP_DAC_READ_SEARCH a file handle opens whatever it names, through
/// any mount of its filesystem (a host file through a writable mount of the same filesystem:
/// writable). Tried on the container's /tmp, a tmpfs (which has file handles wherever the test
/// runs; the host's filesystem may not, as 9p under the VM's overlay does not).
fn open_by_handle_at(dir: &Path) -> String {
    let mut handle = FileHandle { handle_bytes: 128, handle_type: 0, f_handle: [0; 128] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: the path is NUL-terminated; handle has room for handle_bytes; mount_id is an int.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            cstr(dir).as_ptr(),
            &mut handle as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    };
    if r != 0 {
        return format!("name_to_handle_at:{}", errno_of(r));
    }
    // SAFETY: the path is NUL-terminated.
    let root =
        unsafe { libc::open(cstr(dir).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    // SAFETY: root is an fd (or -1, which fails the call); handle was filled by the kernel.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            root,
            &handle as *const FileHandle,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let result = errno_of(fd);
    // SAFETY: closing fds this function opened.
    unsafe {
        if fd >= 0 {
            libc::close(fd as libc::c_int);
        }
        libc::close(root);
    }
    result
}

/// Helper mode `attack`: every way out it knows of, each reported; `outside` is a host
/// directory outside the writable ones.
pub fn attack(outside: &Path) -> i32 {
    show("remount_root_rw", errno_of(remount_root_rw()));
    show("mount_setattr_root_rw", errno_of(mount_setattr_root_rw()));
    show("userns_remount_root_rw", userns_remount_root_rw());
    show_io("write_outside", std::fs::write(outside.join("escaped"), b"escaped"));

    // Opened for writing, closed unwritten.
    let open_w = |p: &str| std::fs::OpenOptions::new().write(true).open(p).map(drop);
    show_io("open_drop_caches_for_writing", open_w("/proc/sys/vm/drop_caches"));
    show_io("open_sysrq_trigger_for_writing", open_w("/proc/sysrq-trigger"));

    let mknod_block = |p: &str| {
        // SAFETY: the path is NUL-terminated.
        let r =
            unsafe { libc::mknod(cstr(Path::new(p)).as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)) };
        let result = errno_of(r.into());
        if r == 0 {
            let _ = std::fs::remove_file(p);
        }
        result
    };
    show("mknod_block_in_dev", mknod_block("/dev/cvtest-blk"));
    show("mknod_block_in_tmp", mknod_block("/tmp/cvtest-blk"));
    // The capability check comes first; with the capability, fd -1 would be EBADF.
    // SAFETY: an invalid fd and an empty NUL-terminated string.
    show("finit_module", errno_of(unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) }));
    // Sets the tick to what it is: EPERM without CAP_SYS_TIME, a no-op with it.
    let mut tx: libc::timex = unsafe_zeroed();
    // SAFETY: tx is a valid timex; modes 0 only reads.
    unsafe { libc::adjtimex(&mut tx) };
    tx.modes = libc::ADJ_TICK;
    // SAFETY: tx is a valid timex holding the current tick.
    show("adjtimex_set", errno_of(unsafe { libc::adjtimex(&mut tx) }.min(0).into()));

    // Its init: traceable? (Seized without stopping it, and let go at once if that worked.)
    // SAFETY: PTRACE_SEIZE takes no pointer data here.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, 1, 0, 0) };
    show("ptrace_init", errno_of(r));
    if r == 0 {
        // SAFETY: detaching a tracee we seized.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, 1, 0, 0) };
    }
    show("open_by_handle_at", open_by_handle_at(Path::new("/tmp")));
    show_io(
        "open_init_mem",
        std::fs::OpenOptions::new().read(true).write(true).open("/proc/1/mem").map(drop),
    );
    // The init drops to CAP_KILL just after the test starts: wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    let init = loop {
        let status = std::fs::read_to_string("/proc/1/status").unwrap_or_default();
        let eff = status_field(&status, "CapEff").unwrap_or(u64::MAX);
        if eff == cap("KILL") || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    show("init_cap_eff", format!("{:x}", status_field(&init, "CapEff").unwrap_or(u64::MAX)));
    show("init_cap_bnd", format!("{:x}", status_field(&init, "CapBnd").unwrap_or(u64::MAX)));

    // What root in a test may still do.
    let file = Path::new("/tmp/cvtest-chown");
    show_io(
        "chown_in_tmp",
        std::fs::write(file, b"x").and_then(|()| std::os::unix::fs::chown(file, Some(1000), Some(1000))),
    );
    // SAFETY: the child only calls setuid and _exit.
    let setuid = match unsafe { libc::fork() } {
        // SAFETY: in the forked child: setuid and _exit are async-signal-safe.
        0 => unsafe { libc::_exit(if libc::setuid(65534) == 0 { 0 } else { 1 }) },
        pid => {
            let mut status = 0;
            // SAFETY: status is a valid int to write to.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WEXITSTATUS(status) == 0 {
                "ok"
            } else {
                "refused"
            }
        }
    };
    show("setuid_nobody", setuid);
    show_io("bind_port_80", std::net::TcpListener::bind("127.0.0.1:80").map(drop));
    0
}
