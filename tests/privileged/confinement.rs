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
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cvtest::{Capabilities, Command, Container, Isolation, Options, Rootfs, Stdio, Termination};
use libtest_mimic::{Failed, Trial};

use crate::helpers::command;
use crate::support::{privileged, privileged_unless};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("confinement::default_test_cannot_escape", default_test_cannot_escape),
        privileged("confinement::default_test_keeps_the_default_set", default_test_keeps_the_default_set),
        privileged("confinement::added_caps_are_kept", added_caps_are_kept),
        privileged("confinement::privileged_keeps_every_capability", privileged_keeps_every_capability),
        privileged("confinement::without_a_filesystem_caps_still_drop", without_a_filesystem_caps_still_drop),
        privileged_unless("confinement::no_controlling_terminal", no_controlling_terminal),
        privileged("confinement::host_run_is_hidden", host_run_is_hidden),
        privileged("confinement::an_overlay_dir_is_a_throwaway_layer", an_overlay_dir_is_a_throwaway_layer),
        crate::userns::with_userns(
            "confinement::an_overlay_dir_in_a_user_namespace",
            an_overlay_dir_in_a_user_namespace,
        ),
        crate::userns::with_userns(
            "confinement::an_overlay_over_a_locked_mount",
            an_overlay_over_a_locked_mount,
        ),
        crate::userns::with_userns(
            "confinement::no_overlay_out_of_the_mapped_roots_reach",
            no_overlay_out_of_the_mapped_roots_reach,
        ),
        privileged("confinement::session_keyring_is_fresh", session_keyring_is_fresh),
        privileged("confinement::host_addresses_beyond_the_host_end", host_addresses_beyond_the_host_end),
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
    // Outside the writable dir, where the host's root shows through (not /tmp or /var/tmp,
    // private inside): beside the writable dir.
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
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

/// `masked` (a file under /dev/null, a directory under an empty read-only tmpfs), `visible`,
/// `absent`.
fn mask_state(path: &str) -> &'static str {
    let Ok(meta) = Path::new(path).symlink_metadata() else { return "absent" };
    if meta.is_dir() {
        let mut fs: libc::statfs = unsafe_zeroed();
        // SAFETY: the path is NUL-terminated; fs is a valid statfs to write to.
        let ok = unsafe { libc::statfs(cstr(Path::new(path)).as_ptr(), &mut fs) } == 0;
        let empty = std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false);
        // Read-only too: one tmpfs masks every directory, bound onto the others.
        let read_only = statvfs_flags(path).is_some_and(|f| f & libc::ST_RDONLY != 0);
        if ok && fs.f_type == libc::TMPFS_MAGIC && empty && read_only {
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

// ---------------------------------------------------------------------------------------------
// Terminal, host sockets, keys, host addresses (issue 11)

/// What the hostile test types into a terminal if it can. Never printed by anything else, so
/// finding it in the terminal's output means it was echoed as input.
const INJECTED: &str = "cvtest-injected";
/// What the driver types into its own terminal: proof that TIOCSTI works here at all.
const CONTROL: &str = "ctl-ok";

/// The key=value lines of `text` (a terminal's output: `\r\n` line ends).
fn parse_report(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs this binary in helper mode `tty-driver` on a new pseudo-terminal, as its controlling
/// terminal (what a shell running `cargo test` has); returns how it ended and everything
/// written to the terminal.
fn run_on_a_terminal() -> Result<(std::process::ExitStatus, String), Failed> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    // SAFETY: posix_openpt has no memory preconditions.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    ensure!(master >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
    // SAFETY: posix_openpt returned a new fd that nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: master is a pty master; name has room for the length passed.
    let ok = unsafe {
        libc::grantpt(master.as_raw_fd()) == 0
            && libc::unlockpt(master.as_raw_fd()) == 0
            && libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) == 0
    };
    ensure!(ok, "grantpt/unlockpt/ptsname_r: {}", std::io::Error::last_os_error());
    // SAFETY: ptsname_r wrote a NUL-terminated string into name.
    let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
    let open_slave = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&slave_path)
            .map_err(|e| Failed::from(format!("open {slave_path}: {e}")))
    };
    use std::os::unix::fs::OpenOptionsExt;
    let mut cmd = std::process::Command::new(std::env::current_exe().map_err(|e| format!("{e}"))?);
    cmd.env(crate::helpers::HELPER_ENV, "tty-driver")
        .stdin(open_slave()?)
        .stdout(open_slave()?)
        .stderr(open_slave()?);
    // SAFETY: between fork and exec the child calls only setsid and ioctl, which are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn the driver: {e}"))?;
    drop(cmd); // our copies of the slave: the master reads EIO once the driver's are gone
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
            0 => break,
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => break, // EIO: every slave fd is closed
        }
    }
    let status = child.wait().map_err(|e| format!("wait for the driver: {e}"))?;
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// A hostile test with the terminal of whoever ran the tests as its stdout and stderr (a
/// library caller's `Stdio::Inherit`; `#[cv_test]` and `cargo cvtest` never give it one): it
/// cannot open `/dev/tty`, inject input with TIOCSTI through any fd, take the terminal as its
/// own, or move the terminal's foreground process group; nothing it types reaches the terminal.
fn no_controlling_terminal() -> Result<Option<String>, Failed> {
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").unwrap_or_default();
    if legacy.trim() == "0" {
        return Ok(Some("dev.tty.legacy_tiocsti = 0: TIOCSTI is refused to everyone here".to_owned()));
    }
    let (status, text) = run_on_a_terminal()?;
    println!("    {}", text.trim().replace("\r\n", " "));
    let r = parse_report(&text);
    // The driver is a child of this test making containers: below the root on cgroup v2 it
    // shares this test's supervisor leaf, where it cannot enable controllers (as for the owner
    // trials in container.rs).
    if let Some(e) = r.get("attack_error").filter(|e| e.contains("cannot enable")) {
        return Ok(Some(format!("a child of this test cannot make containers here: {e}")));
    }
    ensure!(status.success(), "the driver failed ({status}):\n{text}");
    let get =
        |k: &str| r.get(k).map(String::as_str).ok_or_else(|| Failed::from(format!("no {k} in\n{text}")));
    // Not blind: the driver itself could type into its terminal.
    ensure!(get("driver_control")? == "ok", "the driver could not use TIOCSTI itself:\n{text}");
    ensure!(get("driver_stdin")? == CONTROL, "the terminal's input was not just the control line:\n{text}");
    ensure!(!text.contains(INJECTED), "the test's input reached the terminal:\n{text}");
    ensure!(get("open_dev_tty")? == libc::ENXIO.to_string(), "/dev/tty opened:\n{text}");
    ensure!(get("tiocsti_dev_tty")? == libc::ENXIO.to_string(), "TIOCSTI on /dev/tty:\n{text}");
    // fd 1 and 2 are the terminal itself: refused for want of it being the controlling one.
    for fd in ["1", "2"] {
        ensure!(get(&format!("tiocsti:{fd}"))? == libc::EPERM.to_string(), "TIOCSTI on fd {fd}:\n{text}");
    }
    for (k, v) in r.iter().filter(|(k, _)| k.starts_with("tiocsti:")) {
        ensure!(v != "ok", "{k}={v}: input injected\n{text}");
    }
    ensure!(get("steal_ctty")? == libc::EPERM.to_string(), "took the terminal as its own:\n{text}");
    ensure!(get("tcsetpgrp")? == libc::ENOTTY.to_string(), "moved the terminal's foreground group:\n{text}");
    ensure!(get("session_leader_is_init")? == "yes", "the test's session is not the init's:\n{text}");
    Ok(None)
}

/// Helper mode `tty-driver`, on a terminal that is its controlling terminal: types a control
/// line itself, runs `tty-attack` in a default container with the terminal as its stdout and
/// stderr, then reports what its terminal's input holds.
pub fn tty_driver() -> i32 {
    let sti = |fd: libc::c_int, text: &str| -> String {
        for b in text.bytes() {
            // SAFETY: TIOCSTI reads one byte from the pointer, which is valid.
            if unsafe { libc::ioctl(fd, libc::TIOCSTI, &b as *const u8) } < 0 {
                return errno_of(-1);
            }
        }
        "ok".to_owned()
    };
    show("driver_control", sti(0, &format!("{CONTROL}\n")));
    let mut opts = Options::new();
    if std::env::var_os("CVTEST_TEST_NO_CGROUPS").is_some() {
        opts.set_isolation(
            Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC,
        );
    }
    let run = (|| -> Result<cvtest::Outcome, Box<dyn std::error::Error>> {
        let mut c = Container::create(&opts)?;
        let mut cmd = command("tty-attack", &[]);
        cmd.stdout(Stdio::Inherit).stderr(Stdio::Inherit);
        c.spawn(&cmd)?;
        let out = c.wait(Some(Duration::from_secs(60)))?;
        c.destroy()?;
        Ok(out)
    })();
    match run {
        Ok(out) => show("attack_exit", format!("{:?}", out.termination)),
        Err(e) => {
            show("attack_error", e);
            return 1;
        }
    }
    // Whole lines only (canonical mode): the control line, and anything the test typed.
    let mut lines = Vec::new();
    loop {
        let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; timeout 0: what is queued now.
        if unsafe { libc::poll(&mut pfd, 1, 0) } != 1 {
            break;
        }
        let mut buf = [0u8; 256];
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        // Not printed as is: the injected text must appear nowhere unless the kernel echoed it.
        let line = String::from_utf8_lossy(&buf[..n as usize]).trim().to_owned();
        lines.push(if line.contains(INJECTED) { "<the test's input>".to_owned() } else { line });
    }
    show("driver_stdin", lines.join("|"));
    0
}

/// Helper mode `tty-attack`: every way at the terminal it knows, each reported by errno.
pub fn tty_attack() -> i32 {
    let sti = |fd: libc::c_int| -> String {
        for b in format!("{INJECTED}\n").bytes() {
            // SAFETY: TIOCSTI reads one byte from the pointer, which is valid.
            if unsafe { libc::ioctl(fd, libc::TIOCSTI, &b as *const u8) } < 0 {
                return errno_of(-1);
            }
        }
        "ok".to_owned()
    };
    // SAFETY: a NUL-terminated path.
    let tty = unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    show("open_dev_tty", if tty >= 0 { "ok".to_owned() } else { errno_of(-1) });
    show("tiocsti_dev_tty", if tty >= 0 { sti(tty) } else { errno_of(-1) });
    for fd in 0..64 {
        // SAFETY: F_GETFD only asks whether fd is open.
        if fd != tty && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            show(&format!("tiocsti:{fd}"), sti(fd));
        }
    }
    // A session of its own (in a child: the test leads its process group), then the terminal
    // as its controlling one: refused while it is another session's.
    // SAFETY: the child only calls setsid, ioctl and _exit.
    let steal = match unsafe { libc::fork() } {
        // SAFETY: in the forked child: setsid, ioctl and _exit only, all async-signal-safe.
        0 => unsafe {
            if libc::setsid() < 0 {
                libc::_exit(200);
            }
            let r = libc::ioctl(1, libc::TIOCSCTTY, 1);
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            libc::_exit(if r == 0 { 0 } else { errno.clamp(1, 199) })
        },
        pid => {
            let mut status = 0;
            // SAFETY: status is a valid int to write to.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            match libc::WEXITSTATUS(status) {
                0 => "ok".to_owned(),
                200 => "setsid:refused".to_owned(),
                code => code.to_string(),
            }
        }
    };
    show("steal_ctty", steal);
    // A background process group that asks for the terminal's foreground is stopped by
    // SIGTTOU, unless it ignores it: it does, so as to learn whether the call goes through.
    // SAFETY: SIG_IGN for SIGTTOU runs no code of ours.
    unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
    // SAFETY: getpgrp has no preconditions; tcsetpgrp takes an fd and a pgid.
    show("tcsetpgrp", errno_of(unsafe { libc::tcsetpgrp(1, libc::getpgrp()) }.into()));
    // SAFETY: getsid has no memory preconditions.
    let sid = unsafe { libc::getsid(0) };
    show("session_leader_is_init", if sid == 1 { "yes".to_owned() } else { format!("no (sid {sid})") });
    if tty >= 0 {
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(tty) };
    }
    0
}

/// A listener under the host's /run (where Docker, containerd, D-Bus and systemd keep theirs)
/// and one on an abstract address: a default test finds neither. Its /run and /var/run are a
/// fresh tmpfs, nosuid and nodev.
fn host_run_is_hidden() -> Result<(), Failed> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
    let path = Path::new("/run").join(format!("cvtest-hostile-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let name = format!("cvtest-hostile-{}", std::process::id());
    let abstract_addr = UnixAddr::from_abstract_name(name.as_bytes()).map_err(|e| format!("{e}"))?;
    let abstract_listener =
        UnixListener::bind_addr(&abstract_addr).map_err(|e| format!("bind @{name}: {e}"))?;
    // Not blind: the host reaches both.
    let reached = UnixStream::connect(&path).is_ok() && UnixStream::connect_addr(&abstract_addr).is_ok();
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let r =
        run_helper(&options(writable.path()), "host-sockets", &[path.to_str().unwrap_or_default(), &name]);
    drop((listener, abstract_listener));
    let _ = std::fs::remove_file(&path);
    let r = r?;
    println!("    {}", r.text.trim().replace('\n', " "));
    ensure!(reached, "the host itself cannot connect to its listeners: the check would be blind");
    r.expect("connect_run_socket", &libc::ENOENT.to_string())?;
    r.expect("connect_abstract", &libc::ECONNREFUSED.to_string())?;
    r.expect("run_fs", "tmpfs")?;
    r.expect("flags:/run", "nosuid,nodev")?;
    r.expect("run_empty", "yes")?;
    // /var/run: a symlink into the fresh /run, or a fresh tmpfs of its own.
    r.expect("var_run_fs", "tmpfs")?;
    Ok(())
}

/// An overlay directory (as `HOME` is in `cargo cvtest`), outside the writable ones: the test
/// reads the host's files there and writes, nothing reaches the host or the next container, a
/// mount below it stays visible (read-only), and the unix socket listening in it on the host
/// cannot be connected to through the layer. The layer's root has the host directory's mode.
fn an_overlay_dir_is_a_throwaway_layer() -> Result<(), Failed> {
    overlay_case(None, true)
}

/// The same with the container in a user namespace of its own (root mode, mapped to nobody, as
/// rootless): overlayfs there needs `userxattr`, and the layer is made by the namespace's root.
fn an_overlay_dir_in_a_user_namespace() -> Result<(), Failed> {
    overlay_case(Some(65534), false)
}

/// In a user namespace, with a mount below the directory that the namespace inherited (locked:
/// the layer would show what it hides), the kernel refuses the overlay (EINVAL, 6.1 in the
/// systemd VM and 6.18 here): the directory stays the host's, read-only, and the container says
/// why.
fn an_overlay_over_a_locked_mount() -> Result<(), Failed> {
    overlay_case(Some(65534), true)
}

/// A directory the mapped root may not search (root's `0700` home under `sudo`) gets no layer:
/// it would show nothing the test could use, and cost the mount.
fn no_overlay_out_of_the_mapped_roots_reach() -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    std::os::unix::fs::chown(writable.path(), Some(65534), Some(65534))?;
    let open = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let closed = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700))?;
    let mut opts = options(writable.path());
    opts.map_root_to(65534, 65534);
    opts.set_overlay_dirs(vec![open.path().to_owned(), closed.path().to_owned()]);
    let paths = [open.path().to_str().unwrap_or_default(), closed.path().to_str().unwrap_or_default()];
    let r = run_helper(&opts, "mount-types", &paths)?;
    println!("    {}", r.text.trim().replace('\n', " "));
    r.expect(&format!("fs:{}", paths[0]), "overlay")?;
    r.expect(&format!("fs:{}", paths[1]), "none")?;
    Ok(())
}

/// Helper mode `mount-types`: the filesystem type of the topmost mount at each path (`none`
/// when no mount is there).
pub fn mount_types(paths: &[&str]) -> i32 {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for p in paths {
        let top = table.lines().rfind(|l| l.split(' ').nth(4) == Some(*p));
        let fs = top.and_then(|l| l.split(" - ").nth(1)).and_then(|r| r.split(' ').next()).unwrap_or("none");
        show(&format!("fs:{p}"), fs);
    }
    0
}

/// Unmounts the tmpfs the overlay trials mount below their directory on the host.
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn overlay_case(map_to: Option<u32>, submount: bool) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o751))?;
    std::fs::write(d.join("keep.me"), b"original")?;
    std::fs::create_dir(d.join("mnt"))?;
    let _mounted = if submount {
        nix::mount::mount(
            Some("tmpfs"),
            &d.join("mnt"),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=755"),
        )
        .map_err(|e| format!("mount a tmpfs on {}: {e}", d.join("mnt").display()))?;
        Some(HostMount(d.join("mnt")))
    } else {
        None
    };
    std::fs::write(d.join("mnt/mounted"), b"below")?;
    // Refused: a user namespace, and a mount below the directory.
    let refused_here = map_to.is_some() && submount;
    let socket = d.join("agent.sock");
    let listener = UnixListener::bind(&socket).map_err(|e| format!("bind {}: {e}", socket.display()))?;
    let reached = UnixStream::connect(&socket).is_ok();
    let mut opts = options(writable.path());
    opts.set_overlay_dirs(vec![d.to_owned()]);
    if let Some(uid) = map_to {
        // As rootless: the directory and its files belong to the container's root (a file of
        // an owner the namespace does not map cannot be copied up), and so does the socket.
        opts.map_root_to(uid, uid);
        for p in [
            writable.path().to_owned(),
            d.to_owned(),
            d.join("keep.me"),
            d.join("mnt"),
            d.join("mnt/mounted"),
            socket.clone(),
        ] {
            std::os::unix::fs::lchown(&p, Some(uid), Some(uid))?;
        }
    }
    let mode = std::fs::metadata(d)?.permissions().mode() & 0o7777;
    let d_str = d.to_str().unwrap_or_default();
    for round in ["first", "second"] {
        let mut c = Container::create(&opts).map_err(|e| format!("create: {e}"))?;
        let mut cmd: Command = command("overlay", &[d_str]);
        cmd.stdout(Stdio::Capture { limit: 1 << 20 }).stderr(Stdio::Capture { limit: 1 << 20 });
        c.spawn(&cmd).map_err(|e| format!("spawn: {e}"))?;
        let refused = c.overlay_refused();
        let out = c.wait(Some(Duration::from_secs(60))).map_err(|e| format!("wait: {e}"))?;
        c.destroy().map_err(|e| format!("destroy: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let refusal = match (refused_here, refused.as_ref().and_then(std::io::Error::raw_os_error)) {
            (false, None) => false,
            (true, Some(libc::EINVAL)) => true,
            (false, Some(_)) => return Err(format!("the kernel refused the layer: {refused:?}").into()),
            (true, other) => return Err(format!("not refused with EINVAL but {other:?}").into()),
        };
        ensure!(
            out.termination == Termination::Exited(0),
            "{round}: {:?}\n{text}\n{}",
            out.termination,
            String::from_utf8_lossy(&out.stderr)
        );
        println!("    {round}: {}", text.trim().replace('\n', " "));
        let values: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let r = Report { values, text };
        if refusal {
            let erofs = libc::EROFS.to_string();
            r.expect("keep_before", "original")?;
            for key in ["write_keep", "write_new", "mkdir_nested", "remove_keep"] {
                r.expect(key, &erofs)?;
            }
            continue;
        }
        // Every round sees the host's file as it is: the earlier round's write went nowhere.
        r.expect("keep_before", "original")?;
        r.expect("new_before", &libc::ENOENT.to_string())?;
        r.expect("write_keep", "ok")?;
        r.expect("keep_after", "changed")?;
        r.expect("write_new", "ok")?;
        r.expect("mkdir_nested", "ok")?;
        r.expect("remove_keep", "ok")?;
        r.expect("mounted", "below")?;
        // A mount below is cloned from the read-only tree; without one `mnt` is in the layer.
        r.expect("write_mounted", &if submount { libc::EROFS.to_string() } else { "ok".to_owned() })?;
        r.expect("connect_socket", &libc::ECONNREFUSED.to_string())?;
        r.expect("mode", &format!("{mode:o}"))?;
    }
    drop(listener);
    ensure!(reached, "the host cannot connect to its own socket: the check would be blind");
    let mut names: Vec<String> =
        std::fs::read_dir(d)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    ensure!(names == ["agent.sock", "keep.me", "mnt"], "the host's directory changed: {names:?}");
    let below: Vec<_> = std::fs::read_dir(d.join("mnt"))?.flatten().map(|e| e.file_name()).collect();
    ensure!(below == ["mounted"], "the host's mnt changed: {below:?}");
    ensure!(std::fs::read(d.join("keep.me"))? == b"original", "keep.me changed on the host");
    Ok(())
}

/// Helper mode `overlay`: reads and writes in the overlay directory `dir`, and tries its socket.
pub fn overlay_probe(dir: &str) -> i32 {
    use std::os::unix::fs::PermissionsExt;
    let d = Path::new(dir);
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(s) => s,
        Err(e) => e.raw_os_error().unwrap_or(-1).to_string(),
    };
    let status = |r: std::io::Result<()>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.raw_os_error().unwrap_or(-1).to_string(),
    };
    show("keep_before", read(&d.join("keep.me")));
    show("new_before", read(&d.join("new")));
    show("mode", format!("{:o}", std::fs::metadata(d).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0)));
    show("write_keep", status(std::fs::write(d.join("keep.me"), b"changed")));
    show("keep_after", read(&d.join("keep.me")));
    show("write_new", status(std::fs::write(d.join("new"), b"new")));
    show("mkdir_nested", status(std::fs::create_dir_all(d.join("a/b/c"))));
    show("remove_keep", status(std::fs::remove_file(d.join("keep.me"))));
    show("mounted", read(&d.join("mnt/mounted")));
    show("write_mounted", status(std::fs::write(d.join("mnt/x"), b"x")));
    show_io("connect_socket", std::os::unix::net::UnixStream::connect(d.join("agent.sock")).map(drop));
    0
}

/// Helper mode `host-sockets`: connects to the unix socket at `path` and the abstract `name`.
pub fn host_sockets(path: &str, name: &str) -> i32 {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
    show_io("connect_run_socket", UnixStream::connect(path).map(drop));
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
    show_io("connect_abstract", UnixStream::connect_addr(&addr).map(drop));
    let fs_type = |p: &str| {
        let mut fs: libc::statfs = unsafe_zeroed();
        // SAFETY: the path is NUL-terminated; fs is a valid statfs to write to.
        let ok = unsafe { libc::statfs(cstr(Path::new(p)).as_ptr(), &mut fs) } == 0;
        match (ok, fs.f_type) {
            (false, _) => errno_of(-1),
            (true, libc::TMPFS_MAGIC) => "tmpfs".to_owned(),
            (true, other) => format!("{other:x}"),
        }
    };
    show("run_fs", fs_type("/run"));
    show("var_run_fs", fs_type("/var/run"));
    let empty = std::fs::read_dir("/run").map(|mut d| d.next().is_none()).unwrap_or(false);
    show("run_empty", if empty { "yes" } else { "no" });
    let state = match statvfs_flags("/run") {
        Some(f) if f & libc::ST_NOSUID != 0 && f & libc::ST_NODEV != 0 => "nosuid,nodev",
        Some(_) => "suid-or-dev",
        None => "absent",
    };
    show("flags:/run", state);
    0
}

/// `keyctl(2)` with up to four arguments.
fn keyctl(op: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> libc::c_long {
    // SAFETY: each operation used here takes integers and pointers to buffers or NUL-terminated
    // strings that outlive the call, as the callers pass.
    unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, c, d) }
}
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_DESCRIBE: libc::c_long = 6;
const KEYCTL_SEARCH: libc::c_long = 10;
const KEYCTL_READ: libc::c_long = 11;
const KEYCTL_INVALIDATE: libc::c_long = 21;
const KEY_SPEC_SESSION_KEYRING: i32 = -3;

/// The description of a key or keyring (`type;uid;gid;perm;description`), or the errno.
fn describe_key(id: i32) -> String {
    let mut buf = [0u8; 256];
    let n = keyctl(KEYCTL_DESCRIBE, id as usize, buf.as_mut_ptr() as usize, buf.len(), 0);
    if n < 0 {
        return errno_of(n);
    }
    String::from_utf8_lossy(&buf[..(n as usize).min(buf.len())]).trim_end_matches('\0').to_owned()
}

/// A key in the caller's session keyring (the one this thread, which clones the container,
/// has): not findable, not readable from inside, where the container has an empty session
/// keyring of its own.
fn session_keyring_is_fresh() -> Result<(), Failed> {
    // A session keyring of this thread's own, so the key lands nowhere shared.
    let ring = CString::new(format!("cvtest-test-{}", std::process::id())).expect("no NUL");
    let joined = keyctl(KEYCTL_JOIN_SESSION_KEYRING, ring.as_ptr() as usize, 0, 0, 0);
    ensure!(joined >= 0, "join a session keyring: {}", errno_of(joined));
    let description = CString::new(format!("cvtest-secret-{}", std::process::id())).expect("no NUL");
    let payload = b"the runner's secret";
    // SAFETY: NUL-terminated type and description; the payload is valid for its length.
    let id = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            description.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_SESSION_KEYRING,
        )
    };
    ensure!(id > 0, "add_key: {}", errno_of(id));
    let id = id as i32;
    // Not blind: this thread finds and reads it.
    let found = keyctl(
        KEYCTL_SEARCH,
        KEY_SPEC_SESSION_KEYRING as usize,
        c"user".as_ptr() as usize,
        description.as_ptr() as usize,
        0,
    );
    let mut buf = [0u8; 64];
    let read = keyctl(KEYCTL_READ, id as usize, buf.as_mut_ptr() as usize, buf.len(), 0);
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let r = run_helper(
        &options(writable.path()),
        "keyring",
        &[description.to_str().unwrap_or_default(), &id.to_string()],
    );
    keyctl(KEYCTL_INVALIDATE, id as usize, 0, 0, 0);
    let r = r?;
    println!("    {}", r.text.trim().replace('\n', " "));
    ensure!(
        found == libc::c_long::from(id) && read == payload.len() as libc::c_long,
        "this thread cannot find or read its own key (search {found}, read {read})"
    );
    r.expect("search_session", &libc::ENOKEY.to_string())?;
    let read_inside = r.get("read_by_id")?;
    ensure!(read_inside == libc::EACCES.to_string(), "read_by_id={read_inside}\n{}", r.text);
    let session = r.get("session_keyring")?;
    ensure!(
        session.starts_with("keyring;") && session.ends_with(";_ses"),
        "the container's session keyring is not a fresh anonymous one: {session}"
    );
    Ok(())
}

/// Helper mode `keyring`: looks for the key `description` from its session keyring, and reads
/// the key `id` directly.
pub fn keyring(description: &str, id: &str) -> i32 {
    let description = CString::new(description).expect("no NUL");
    let found = keyctl(
        KEYCTL_SEARCH,
        KEY_SPEC_SESSION_KEYRING as usize,
        c"user".as_ptr() as usize,
        description.as_ptr() as usize,
        0,
    );
    show("search_session", errno_of(found));
    let mut buf = [0u8; 64];
    let id: i32 = id.parse().expect("a key id");
    let read = keyctl(KEYCTL_READ, id as usize, buf.as_mut_ptr() as usize, buf.len(), 0);
    show("read_by_id", errno_of(read));
    show("session_keyring", describe_key(KEY_SPEC_SESSION_KEYRING));
    0
}

/// This process's owner tag, as the library writes it on its veths (pid and start time), so
/// that a sweep leaves the neighbour's pair alone while this process lives.
fn owner_tag() -> String {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let start = after_comm.split(' ').nth(19).unwrap_or("0");
    format!("{}.{start}", std::process::id())
}

/// A new network namespace, alive as long as the returned fd.
fn new_netns() -> Result<std::os::fd::OwnedFd, Failed> {
    std::thread::spawn(|| -> std::io::Result<std::os::fd::OwnedFd> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
    })
    .join()
    .map_err(|_| Failed::from("the netns thread panicked"))?
    .map_err(|e| format!("a new network namespace: {e}").into())
}

/// Another address of the host (10.197.1.1, the host end of a veth into a namespace this test
/// makes), with a server on 0.0.0.0: a container on 10.197.0.2/30 reaches its host end but not
/// that address by default, and both with `HostAccess::All`.
fn host_addresses_beyond_the_host_end() -> Result<(), Failed> {
    use std::os::fd::AsFd;
    let neighbour_ns = new_netns()?;
    let spec: cvtest::NetworkSpec = "10.197.1.2/30".parse().map_err(|e| format!("{e}"))?;
    let neighbour = cvtest::test_support::Veth::create_with_access(
        neighbour_ns.as_fd(),
        &spec,
        &cvtest::test_support::VethName::next(),
        cvtest::HostAccess::All,
        &owner_tag(),
    )
    .map_err(|e| {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        Failed::from(msg)
    })?;
    let server = std::net::TcpListener::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    let port = server.local_addr().map_err(|e| format!("{e}"))?.port();
    let host_end = format!("10.197.0.1:{port}");
    let other = format!("10.197.1.1:{port}");
    let writable = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("tempdir: {e}"))?;
    let mut results = Vec::new();
    for access in [cvtest::HostAccess::HostEnd, cvtest::HostAccess::All] {
        let mut opts = options(writable.path());
        opts.set_network_cidr("10.197.0.2/30").map_err(|e| format!("{e}"))?;
        opts.set_host_access(access);
        results.push((access, run_helper(&opts, "reach", &[&host_end, &other])));
    }
    drop(server);
    neighbour.release();
    drop(neighbour_ns);
    for (access, r) in results {
        let r = r?;
        println!("    {access}: {}", r.text.trim().replace('\n', " "));
        r.expect(&format!("connect:{host_end}"), "ok")?;
        let want = match access {
            cvtest::HostAccess::HostEnd => "timeout",
            cvtest::HostAccess::All => "ok",
        };
        r.expect(&format!("connect:{other}"), want)?;
    }
    Ok(())
}

/// Helper mode `reach`: a TCP connection to each address, reported as `ok`, `timeout` (the SYN
/// went unanswered: dropped) or the errno.
pub fn reach(addrs: &[&str]) -> i32 {
    for a in addrs {
        let addr: std::net::SocketAddr = a.parse().expect("an address");
        let result = match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => "ok".to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timeout".to_owned(),
            Err(e) => e.raw_os_error().map_or_else(|| e.to_string(), |c| c.to_string()),
        };
        show(&format!("connect:{a}"), result);
    }
    0
}
