//! All `unsafe` and raw syscalls live here, each block with a `// SAFETY:` line. A raw fd becomes
//! an `OwnedFd` on the line it is born.
//!
//! Two kinds of functions:
//! - **child side** (marked "async-signal-safe"): used between clone and exec in
//!   `sandbox/init.rs`. They make raw syscalls through libc's thin wrappers, take `&CStr` and raw
//!   fd numbers, allocate nothing and take no locks. Errors are a bare [`Errno`].
//! - **parent side**: the clone of the container's init, pidfds, waiting.

use std::ffi::{CStr, CString};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use libc::{c_char, c_int, c_uint, c_ulong, c_void, pid_t};
pub(crate) use nix::errno::Errno;

fn check(ret: c_int) -> Result<c_int, Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// A NULL-terminated array of C strings (argv, envp), built in the parent: every string in one
/// buffer (one allocation for an environment, not one per variable), and the pointers to them.
/// Owning the buffer keeps every pointer valid for as long as the array lives; nothing changes
/// the buffer once the pointers are taken.
#[derive(Debug)]
pub(crate) struct CStrArray {
    /// Every string with its NUL, one after another.
    bytes: Vec<u8>,
    /// Where each string starts in `bytes`.
    starts: Vec<usize>,
    /// A pointer to each string, then NULL.
    ptrs: Vec<*const c_char>,
}

impl CStrArray {
    pub(crate) fn new(strings: Vec<CString>) -> Self {
        let mut b = CStrArrayBuilder::with_capacity(
            strings.len(),
            strings.iter().map(|s| s.as_bytes_with_nul().len()).sum(),
        );
        for s in &strings {
            // A CString holds no NUL but its last byte.
            let _ = b.push(&[s.as_bytes()]);
        }
        b.finish()
    }

    /// The strings, without the terminating NULL.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &CStr> {
        self.starts.iter().enumerate().map(|(i, &start)| {
            let end = self.starts.get(i + 1).copied().unwrap_or(self.bytes.len());
            CStr::from_bytes_with_nul(&self.bytes[start..end]).unwrap_or_default()
        })
    }

    fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// Builds a [`CStrArray`] a string at a time.
pub(crate) struct CStrArrayBuilder {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

impl CStrArrayBuilder {
    /// Room for `strings` strings of `bytes` bytes in all (their NULs included).
    pub(crate) fn with_capacity(strings: usize, bytes: usize) -> Self {
        CStrArrayBuilder { bytes: Vec::with_capacity(bytes), starts: Vec::with_capacity(strings) }
    }

    /// Appends one string, the concatenation of `parts`. Refused (nothing appended) if a part
    /// holds a NUL.
    pub(crate) fn push(&mut self, parts: &[&[u8]]) -> Result<(), ()> {
        if parts.iter().any(|p| p.contains(&0)) {
            return Err(());
        }
        self.starts.push(self.bytes.len());
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        self.bytes.push(0);
        Ok(())
    }

    pub(crate) fn finish(self) -> CStrArray {
        let CStrArrayBuilder { bytes, starts } = self;
        let base = bytes.as_ptr();
        let mut ptrs: Vec<*const c_char> =
            starts.iter().map(|&start| base.wrapping_add(start).cast::<c_char>()).collect();
        ptrs.push(ptr::null());
        CStrArray { bytes, starts, ptrs }
    }
}

// ---------------------------------------------------------------------------------------------
// Child side: async-signal-safe.
// ---------------------------------------------------------------------------------------------

/// `_exit(2)`: ends the process without running any Rust or libc exit code. Async-signal-safe.
/// Takes over `fd`, an open route-netlink socket, as a [`netlink_sys::Socket`] (which closes it).
pub(crate) fn netlink_socket(fd: OwnedFd) -> netlink_sys::Socket {
    use std::os::fd::IntoRawFd;
    // SAFETY: `fd` is an open socket that this function owns; the Socket takes it over and
    // closes it.
    unsafe { netlink_sys::Socket::from_raw_fd(fd.into_raw_fd()) }
}

pub(crate) fn exit(code: c_int) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// `mount(2)`. Async-signal-safe.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(opt_ptr(source), target.as_ptr(), opt_ptr(fstype), flags, opt_ptr(data).cast())
    })
    .map(drop)
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
const OPEN_TREE_CLONE: c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x4;

/// `mount_setattr(path, AT_RECURSIVE, {set, clr})`: changes per-mount flags of the whole tree at
/// `path`. Linux 5.12+. Async-signal-safe.
pub(crate) fn mount_setattr_recursive(path: &CStr, set: u64, clr: u64) -> Result<(), Errno> {
    let attr = libc::mount_attr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
    // SAFETY: path is NUL-terminated; attr is a valid mount_attr of the size passed; both
    // outlive the call.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as c_uint,
            &attr as *const libc::mount_attr,
            size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// Whether the kernel has mount_setattr(2) (5.12+). Probed with invalid arguments, so it
/// changes nothing.
pub(crate) fn has_mount_setattr() -> bool {
    // SAFETY: an invalid fd and a NULL path make the kernel fail the call before it touches
    // anything; only the errno matters.
    let ret = unsafe {
        libc::syscall(libc::SYS_mount_setattr, -1, ptr::null::<c_char>(), 0, ptr::null::<c_void>(), 0)
    };
    !(ret == -1 && Errno::last() == Errno::ENOSYS)
}

/// `open_tree(path, OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC)`: a detached copy of the
/// mount tree at `path`, to attach elsewhere later with [`move_mount_to`]. Async-signal-safe.
pub(crate) fn open_tree_clone(path: &CStr) -> Result<OwnedFd, Errno> {
    let flags = OPEN_TREE_CLONE | libc::AT_RECURSIVE as c_uint | libc::O_CLOEXEC as c_uint;
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = check_long(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })?;
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`. Async-signal-safe.
pub(crate) fn move_mount_to(tree: BorrowedFd<'_>, target: &CStr) -> Result<(), Errno> {
    // SAFETY: both paths are NUL-terminated and outlive the call; tree is a live fd.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// `pivot_root(".", ".")` then `umount2(".", MNT_DETACH)`: the current directory becomes `/` and
/// the old root is detached. Async-signal-safe.
pub(crate) fn pivot_root_here() -> Result<(), Errno> {
    // SAFETY: both arguments are NUL-terminated static strings.
    check_long(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })?;
    // SAFETY: the argument is a NUL-terminated static string.
    check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// `unshare(2)`. Async-signal-safe.
pub(crate) fn unshare(flags: c_int) -> Result<(), Errno> {
    // SAFETY: unshare has no memory preconditions.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// `mkdir(2)`. Async-signal-safe.
pub(crate) fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: path is NUL-terminated and outlives the call.
    check(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
}

/// `mknod(path, S_IFCHR | mode, makedev(major, minor))`. Async-signal-safe.
pub(crate) fn mknod_char(path: &CStr, mode: libc::mode_t, major: u32, minor: u32) -> Result<(), Errno> {
    let dev = libc::makedev(major, minor);
    // SAFETY: path is NUL-terminated and outlives the call.
    check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | mode, dev) }).map(drop)
}

/// `symlink(target, link)`. Async-signal-safe.
pub(crate) fn symlink(target: &CStr, link: &CStr) -> Result<(), Errno> {
    // SAFETY: both paths are NUL-terminated and outlive the call.
    check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
}

/// `chdir(2)`. Async-signal-safe.
pub(crate) fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is NUL-terminated and outlives the call.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// `open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)`: a handle on a directory that keeps naming it
/// once something is mounted over it. Async-signal-safe.
pub(crate) fn open_dir_path(path: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
    // SAFETY: open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The owner (uid, gid, as this process's user namespace maps them) and permission bits of
/// the file `fd` names (`fstat`; an `O_PATH` fd will do). Async-signal-safe.
pub(crate) fn owner_and_mode(fd: BorrowedFd<'_>) -> Result<(u32, u32, libc::mode_t), Errno> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fd is open; st is valid for writes of a whole `stat`.
    check(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled st.
    let st = unsafe { st.assume_init() };
    Ok((st.st_uid, st.st_gid, st.st_mode & 0o7777))
}

/// `mkdirat(dir, name, mode)`. Async-signal-safe.
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: dir is open; name is NUL-terminated and outlives the call.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`. Async-signal-safe.
pub(crate) fn chown_at(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> Result<(), Errno> {
    // SAFETY: dir is open; name is NUL-terminated and outlives the call.
    check(unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

/// `umount2(target, MNT_DETACH)`. Async-signal-safe.
pub(crate) fn umount_detach(target: &CStr) -> Result<(), Errno> {
    // SAFETY: target is NUL-terminated and outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// `umask(2)`; returns the previous mask. Async-signal-safe.
pub(crate) fn umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(mask) }
}

/// `sethostname(2)`. Async-signal-safe.
pub(crate) fn sethostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe a live byte slice.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `prctl(PR_SET_NAME)`, the name `ps` shows. Async-signal-safe.
pub(crate) fn set_process_name(name: &CStr) {
    // SAFETY: name is NUL-terminated; the kernel copies at most 16 bytes of it.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// `prctl(PR_CAPBSET_DROP, cap)`: removes `cap` from the bounding set (needs `CAP_SETPCAP`).
/// Async-signal-safe.
pub(crate) fn capbset_drop(cap: c_uint) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number; no memory is involved.
    check(unsafe {
        libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong)
    })
    .map(drop)
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`. Async-signal-safe.
pub(crate) fn clear_ambient_caps() -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer; the unused arguments must be 0.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        )
    })
    .map(drop)
}

/// `struct __user_cap_header_struct` of capset(2).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

/// `struct __user_cap_data_struct`: one of two 32-bit halves of each set (version 3).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `capset(2)` for the calling thread: its effective, permitted and inheritable sets, bit `n`
/// for capability `n`. Each may only shrink (or stay) unless the thread holds `CAP_SETPCAP`
/// for the inheritable set. Async-signal-safe.
pub(crate) fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let half = |shift: u32| CapData {
        effective: (effective >> shift) as u32,
        permitted: (permitted >> shift) as u32,
        inheritable: (inheritable >> shift) as u32,
    };
    let data = [half(0), half(32)];
    // SAFETY: header is a valid cap header and data the two cap data structs that version 3
    // reads; both outlive the call.
    check_long(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) })
        .map(drop)
}

/// `prctl(PR_SET_DUMPABLE, 0)`: other processes of the same user can no longer trace this one
/// or open its memory without `CAP_SYS_PTRACE`. Async-signal-safe.
pub(crate) fn set_not_dumpable() -> Result<(), Errno> {
    // SAFETY: PR_SET_DUMPABLE takes a flag; no memory is involved.
    check(unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong)
    })
    .map(drop)
}

/// Brings `lo` up in the current network namespace (`SIOCSIFFLAGS` with `IFF_UP`); the kernel
/// then gives it 127.0.0.1/8 and ::1. Async-signal-safe.
pub(crate) fn loopback_up() -> Result<(), Errno> {
    // SAFETY: socket has no memory preconditions.
    let sock = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket returned a new fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain old data: all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as c_char;
    }
    ifr.ifr_ifru.ifru_flags = libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads a struct ifreq, which ifr is, and it outlives the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr as *const libc::ifreq) }).map(drop)
}

/// `close_range(first, last, 0)`. Linux 5.9+. Async-signal-safe.
pub(crate) fn close_range(first: c_uint, last: c_uint) -> Result<(), Errno> {
    // SAFETY: closing fds has no memory preconditions; the caller keeps what it still uses.
    check_long(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) }).map(drop)
}

/// Sets or clears `FD_CLOEXEC`. Async-signal-safe.
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> Result<(), Errno> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD takes an int argument; no memory is involved.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) }).map(drop)
}

/// `dup2(src, dst)`; the copy has no `FD_CLOEXEC`. Async-signal-safe.
pub(crate) fn dup2(src: RawFd, dst: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 has no memory preconditions; dst is replaced on purpose.
    check(unsafe { libc::dup2(src, dst) }).map(drop)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a copy numbered `min` or above. Async-signal-safe.
pub(crate) fn dup_at_least(fd: RawFd, min: RawFd) -> Result<RawFd, Errno> {
    // SAFETY: F_DUPFD_CLOEXEC takes an int argument; no memory is involved.
    check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })
}

/// `setpgid(0, 0)`: the calling process leads a new process group. Async-signal-safe.
pub(crate) fn setpgid_self() -> Result<(), Errno> {
    // SAFETY: setpgid has no memory preconditions.
    check(unsafe { libc::setpgid(0, 0) }).map(drop)
}

/// `setsid(2)`: the calling process leads a new session and a new process group, and has no
/// controlling terminal. Async-signal-safe.
pub(crate) fn setsid() -> Result<(), Errno> {
    // SAFETY: setsid has no memory preconditions.
    check(unsafe { libc::setsid() }).map(drop)
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`: the calling thread gets a new anonymous session
/// keyring (empty, linked to nothing), in place of the one it inherited. Async-signal-safe.
pub(crate) fn join_new_session_keyring() -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a NULL name asks for an anonymous keyring; no other memory is involved.
    check_long(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, ptr::null::<c_char>()) })
        .map(drop)
}

/// `kill(2)`. Async-signal-safe.
pub(crate) fn kill(pid: pid_t, sig: c_int) -> Result<(), Errno> {
    // SAFETY: kill has no memory preconditions.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Blocks every signal in the calling thread. Async-signal-safe.
pub(crate) fn block_all_signals() -> Result<(), Errno> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set it is given.
    unsafe { libc::sigfillset(set.as_mut_ptr()) };
    // SAFETY: set was initialised above; the old mask is not wanted.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), ptr::null_mut()) }).map(drop)
}

/// Unblocks every signal in the calling thread. Async-signal-safe.
pub(crate) fn unblock_all_signals() -> Result<(), Errno> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: set was initialised above; the old mask is not wanted.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), ptr::null_mut()) }).map(drop)
}

/// Every signal: the mask [`reset_signal_dispositions`] takes to reset them all.
pub(crate) const ALL_SIGNALS: u64 = u64::MAX;

/// The kernel's `struct sigaction` for `rt_sigaction(2)` (x86_64, aarch64, riscv64: handler,
/// flags, restorer, a 64-bit mask). Called raw because libc's `sigaction` refuses the signals it
/// reserves (32 and 33 in glibc), whose dispositions a process inherits like any other's: an
/// ignored signal 32 of the runner's reached the tests until this.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: c_ulong,
    restorer: usize,
    mask: u64,
}

/// The kernel's signal numbers: 1 to 64.
const KERNEL_SIGNALS: std::ops::RangeInclusive<c_int> = 1..=64;

fn rt_sigaction(
    sig: c_int,
    new: Option<&KernelSigaction>,
    old: Option<&mut KernelSigaction>,
) -> Result<(), Errno> {
    let new = new.map_or(ptr::null(), |n| n as *const KernelSigaction);
    let old = old.map_or(ptr::null_mut(), |o| o as *mut KernelSigaction);
    // SAFETY: `new` and `old` are null or point to a live KernelSigaction, the kernel's layout on
    // the architectures cvtest builds for; 8 is the kernel's sigset size (64 signals).
    check(unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, new, old, 8usize) } as c_int).map(drop)
}

/// The signals whose disposition in this process is not `SIG_DFL`, bit `n - 1` for signal `n`
/// (64 queries; a zygote asks once, since its dispositions never change).
pub(crate) fn non_default_signals() -> u64 {
    let mut mask = 0;
    for sig in KERNEL_SIGNALS {
        let mut old = KernelSigaction::default();
        let queried = rt_sigaction(sig, None, Some(&mut old)).is_ok();
        if !queried || old.handler != libc::SIG_DFL {
            mask |= 1 << (sig - 1);
        }
    }
    mask
}

/// Sets the disposition of every signal in `mask` (bit `n - 1` for signal `n`) to `SIG_DFL`:
/// what a handler or `SIG_IGN` the parent had must not reach the command, libc's reserved
/// signals included. Async-signal-safe.
pub(crate) fn reset_signal_dispositions(mask: u64) {
    let default = KernelSigaction::default();
    for sig in KERNEL_SIGNALS {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || mask & (1 << (sig - 1)) == 0 {
            continue;
        }
        // Cannot fail for a valid signal other than SIGKILL and SIGSTOP.
        let _ = rt_sigaction(sig, Some(&default), None);
    }
}

/// A non-blocking signalfd for `signals`, which the caller keeps blocked. Async-signal-safe.
pub(crate) fn signalfd(signals: &[c_int]) -> Result<OwnedFd, Errno> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    for &sig in signals {
        // SAFETY: set was initialised above.
        unsafe { libc::sigaddset(set.as_mut_ptr(), sig) };
    }
    // SAFETY: set was initialised above and outlives the call.
    let fd = check(unsafe { libc::signalfd(-1, set.as_ptr(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: signalfd returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from a non-blocking signalfd: its number, or `None` when no more are
/// pending. Async-signal-safe.
pub(crate) fn read_signal(fd: RawFd) -> Result<Option<c_int>, Errno> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
    let size = size_of::<libc::signalfd_siginfo>();
    // SAFETY: the buffer is valid for `size` bytes of writes.
    let n = unsafe { libc::read(fd, info.as_mut_ptr().cast(), size) };
    match n {
        -1 if Errno::last() == Errno::EAGAIN => Ok(None),
        -1 => Err(Errno::last()),
        // SAFETY: the kernel filled a whole signalfd_siginfo.
        n if n as usize == size => Ok(Some(unsafe { info.assume_init() }.ssi_signo as c_int)),
        _ => Err(Errno::EIO),
    }
}

/// `read(2)`. Async-signal-safe.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the pointer and length describe a live, writable byte slice.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)`. Async-signal-safe.
pub(crate) fn write(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the pointer and length describe a live byte slice.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// Opens `path` for writing, writes `data`, closes it. Async-signal-safe.
pub(crate) fn write_file(path: &CStr, data: &[u8]) -> Result<(), Errno> {
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    // SAFETY: open returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    write(fd.as_raw_fd(), data).map(drop)
}

/// Creates an empty regular file at `path` (`O_CREAT | O_EXCL`), a mount point for a file.
/// Async-signal-safe.
pub(crate) fn create_file(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = check(unsafe {
        libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, mode)
    })?;
    // SAFETY: open returned a new fd that nothing else owns; dropping it closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// `setresgid(gid, gid, gid)`. Async-signal-safe.
pub(crate) fn set_all_gids(gid: libc::gid_t) -> Result<(), Errno> {
    // SAFETY: setresgid has no memory preconditions. The raw syscall, not libc's wrapper: glibc
    // would broadcast the change to other threads with a signal (there are none here).
    check_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

/// `setresuid(uid, uid, uid)`. Async-signal-safe.
pub(crate) fn set_all_uids(uid: libc::uid_t) -> Result<(), Errno> {
    // SAFETY: setresuid has no memory preconditions; the raw syscall, as in `set_all_gids`.
    check_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

/// `setgroups(0, NULL)`: no supplementary groups. Async-signal-safe.
pub(crate) fn clear_groups() -> Result<(), Errno> {
    // SAFETY: a zero-length list with a NULL pointer is valid; the raw syscall, as in
    // `set_all_gids`.
    check_long(unsafe { libc::syscall(libc::SYS_setgroups, 0, ptr::null::<libc::gid_t>()) }).map(drop)
}

/// Opens `path` read-only (`O_CLOEXEC`), for a namespace file. Async-signal-safe.
pub(crate) fn open_read_only(path: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A route-netlink socket in the calling thread's network namespace. Async-signal-safe.
pub(crate) fn netlink_route_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: socket has no memory preconditions.
    let fd = check(unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
    })?;
    // SAFETY: socket returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setns(fd, nstype)`. Async-signal-safe.
pub(crate) fn setns(fd: RawFd, nstype: c_int) -> Result<(), Errno> {
    // SAFETY: setns has no memory preconditions.
    check(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// `poll(2)`. Async-signal-safe.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: c_int) -> Result<usize, Errno> {
    // SAFETY: the pointer and length describe a live, writable slice of pollfd.
    check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }).map(|n| n as usize)
}

/// Reaps one exited child without blocking: `(pid, raw wait status)`, or `None` when no child
/// has exited. Async-signal-safe.
pub(crate) fn reap_any() -> Result<Option<(pid_t, c_int)>, Errno> {
    let mut status: c_int = 0;
    // SAFETY: status is a valid int to write to.
    match check(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) }) {
        Ok(0) => Ok(None),
        Ok(pid) => Ok(Some((pid, status))),
        Err(e) => Err(e),
    }
}

/// Blocks until `pid` exits and reaps it; returns the raw wait status. Async-signal-safe.
pub(crate) fn reap(pid: pid_t) -> Result<c_int, Errno> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: status is a valid int to write to.
        match check(unsafe { libc::waitpid(pid, &mut status, libc::__WALL) }) {
            Ok(_) => return Ok(status),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `execve(2)`; returns only on failure. Async-signal-safe.
pub(crate) fn execve(program: &CStr, argv: &CStrArray, envp: &CStrArray) -> Errno {
    // SAFETY: program is NUL-terminated; argv and envp are NULL-terminated arrays of pointers to
    // NUL-terminated strings that they own (CStrArray's invariant).
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

/// Stack size of the main process between its clone and its exec.
const MAIN_STACK: usize = 64 * 1024;

struct VforkContext<'a, P, F> {
    plan: &'a P,
    child: fn(&P) -> F,
    failure: Option<F>,
}

extern "C" fn vfork_entry<P, F>(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the VforkContext that `vfork_main` passed; the parent is suspended
    // (CLONE_VFORK) until this process execs or exits, so nothing else touches it.
    let ctx = unsafe { &mut *arg.cast::<VforkContext<'_, P, F>>() };
    ctx.failure = Some((ctx.child)(ctx.plan));
    127
}

/// A fresh anonymous mapping of `size` bytes for a child's stack (the caller unmaps it).
fn map_stack(size: usize) -> Result<*mut c_void, Errno> {
    // SAFETY: an anonymous private mapping; no existing memory is affected.
    let stack = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        Err(Errno::last())
    } else {
        Ok(stack)
    }
}

/// Starts the container's main process: `clone(CLONE_VM | CLONE_VFORK)` on a fresh stack, in
/// which `child` (`sandbox::init::exec_main`) prepares and execs the command, returning only
/// with why it failed. The caller is suspended until the exec succeeded or the child failed and
/// exited; then returns the child's pid and, if it failed, why. The caller must have all
/// signals blocked (so no inherited handler can run in the child before it resets them).
/// Async-signal-safe, and so must `child` be.
pub(crate) fn vfork_main<P, F>(plan: &P, child: fn(&P) -> F) -> Result<(pid_t, Option<F>), Errno> {
    let stack = map_stack(MAIN_STACK)?;
    let mut ctx = VforkContext { plan, child, failure: None };
    // SAFETY: the stack is a fresh mapping of MAIN_STACK bytes and the child gets its top (stacks
    // grow down on every Linux target we build for). With CLONE_VFORK this process is suspended
    // until the child execs or exits, so the child has exclusive use of `ctx`; vfork_entry runs
    // only `child`, which is async-signal-safe, and exits by returning.
    let pid = unsafe {
        libc::clone(
            vfork_entry::<P, F>,
            stack.cast::<u8>().add(MAIN_STACK).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut ctx as *mut VforkContext<'_, P, F>).cast(),
        )
    };
    let err = Errno::last();
    // SAFETY: the mapping is ours and the child no longer runs on it (it exec'd or exited).
    unsafe { libc::munmap(stack, MAIN_STACK) };
    if pid == -1 {
        return Err(err);
    }
    Ok((pid, ctx.failure))
}

// ---------------------------------------------------------------------------------------------
// Parent side.
// ---------------------------------------------------------------------------------------------

/// /dev/null, opened once for the process.
pub(crate) fn dev_null() -> std::io::Result<std::os::fd::BorrowedFd<'static>> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_fd());
    }
    let fd: OwnedFd = std::fs::File::options().read(true).write(true).open("/dev/null")?.into();
    Ok(NULL.get_or_init(|| fd).as_fd())
}

/// `struct clone_args` of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Clones the container's init: `clone3(flags | CLONE_PIDFD)`, into `cgroup` when given
/// (`CLONE_INTO_CGROUP`), with no exit signal (so no SIGCHLD reaches this process and only a
/// `__WALL` wait reaps it). The child runs `child(plan)` (`sandbox::init::run`, async-signal-safe)
/// and never returns here. Returns the
/// child's pid and a pidfd for it. A zygote passes `CLONE_PARENT` in `flags`: the init is then
/// the child of the zygote's parent, and inherits the zygote's exit signal (none, see
/// [`spawn_zygote`]).
pub(crate) fn clone_init<P>(
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
    plan: &P,
    child: fn(&P) -> !,
) -> Result<(pid_t, OwnedFd), Errno> {
    let mut pidfd: c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut c_int as u64,
        ..CloneArgs::default()
    };
    if let Some(cgroup) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.as_raw_fd() as u64;
    }
    // The child starts with every signal blocked, so no handler of this process ever runs in it.
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set it is given.
    unsafe { libc::sigfillset(all.as_mut_ptr()) };
    // SAFETY: all was initialised above; old is written by the call.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr()) } == 0;
    // SAFETY: args is a valid clone_args of the size passed, and pidfd outlives the call. No
    // stack is given, so the child continues on a copy of this stack, like fork. This process
    // may have other threads, so the child may only run async-signal-safe code: it runs
    // `child`, init::run, which is (see sandbox/init.rs), and which ends in _exit and never
    // returns.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, size_of::<CloneArgs>()) };
    let err = Errno::last();
    if ret != 0 && blocked {
        // SAFETY: old was filled by the successful pthread_sigmask above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), ptr::null_mut()) };
    }
    match ret {
        -1 => Err(err),
        0 => child(plan),
        pid => {
            // SAFETY: CLONE_PIDFD made the kernel store a new pidfd that nothing else owns.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok((pid as pid_t, pidfd))
        }
    }
}

/// `bpf(BPF_PROG_LOAD)` of a `BPF_PROG_TYPE_SCHED_CLS` program (a tc classifier): `insns` are
/// the program's 8-byte instructions, `name` at most 15 bytes. The verifier's log is not asked
/// for: the programs are fixed, and a refusal is reported by its errno.
pub(crate) fn bpf_load_sched_cls(insns: &[[u8; 8]], license: &CStr, name: &[u8]) -> Result<OwnedFd, Errno> {
    const BPF_PROG_LOAD: c_int = 5;
    const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
    /// The head of `union bpf_attr` for `BPF_PROG_LOAD`, up to `prog_name`; the kernel takes a
    /// shorter attr than its own as zero-filled.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
    }
    let mut prog_name = [0u8; 16];
    for (dst, src) in prog_name.iter_mut().zip(name.iter().take(15)) {
        *dst = *src;
    }
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
    };
    // SAFETY: attr is a valid BPF_PROG_LOAD attr of the size passed; the instructions and the
    // license it points to outlive the call.
    let fd = check_long(unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, size_of::<ProgLoad>() as c_uint)
    })?;
    // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, fd, 0)`: a copy of the process's fd `fd` in this process (with
/// `FD_CLOEXEC`). Needs ptrace access to it: the same user while it is dumpable, or
/// `CAP_SYS_PTRACE`.
pub(crate) fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_getfd has no memory preconditions.
    let new = check_long(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
    // SAFETY: pidfd_getfd returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new as RawFd) })
}

extern "C" fn exit_at_once(_: *mut c_void) -> c_int {
    0
}

/// Whether this process may make a user namespace: clones a child into a new one that exits at
/// once (`CLONE_VM | CLONE_VFORK`, on a small stack), and reaps it. EPERM in a chroot, with
/// user namespaces off, or over the user's limit.
pub(crate) fn probe_user_namespace() -> Result<(), Errno> {
    const STACK: usize = 16 * 1024;
    let stack = map_stack(STACK)?;
    // SAFETY: the child gets the top of a fresh mapping of STACK bytes and runs only
    // exit_at_once, which touches nothing; with CLONE_VFORK this thread waits until it exited.
    let pid = unsafe {
        libc::clone(
            exit_at_once,
            stack.cast::<u8>().add(STACK).cast(),
            libc::CLONE_NEWUSER | libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            ptr::null_mut(),
        )
    };
    let err = Errno::last();
    // SAFETY: the mapping is ours and the child no longer runs on it (it exited).
    unsafe { libc::munmap(stack, STACK) };
    if pid == -1 {
        return Err(err);
    }
    reap(pid).map(drop)
}

/// The permitted capabilities of the calling thread (`capget(2)`), bit `n` for capability `n`.
pub(crate) fn permitted_caps() -> Result<u64, Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header is a valid cap header; data has room for the two structs version 3
    // writes; both outlive the call.
    check_long(unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) })?;
    Ok(u64::from(data[0].permitted) | u64::from(data[1].permitted) << 32)
}

/// Whether the kernel knows capability `cap` (`prctl(PR_CAPBSET_READ)` fails with EINVAL for
/// numbers past the last one).
pub(crate) fn capability_known(cap: c_uint) -> bool {
    // SAFETY: PR_CAPBSET_READ takes a capability number; no memory is involved.
    unsafe {
        libc::prctl(libc::PR_CAPBSET_READ, cap as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) >= 0
    }
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: c_int) -> Result<(), Errno> {
    // SAFETY: pidfd is a live fd; a NULL siginfo is allowed.
    check_long(unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, ptr::null::<libc::siginfo_t>(), 0)
    })
    .map(drop)
}

/// What the kernel accounted to a reaped process and the descendants it reaped in turn
/// (`waitid`'s rusage, as `wait4` gives it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Usage {
    /// The largest resident set of any one of those processes, in bytes.
    pub(crate) max_rss_bytes: u64,
    pub(crate) user: std::time::Duration,
    pub(crate) system: std::time::Duration,
}

/// [`waitid_pidfd`] that also returns the reaped process's resource usage (the raw syscall has
/// a fifth, rusage, argument that glibc's `waitid` does not pass).
pub(crate) fn waitid_pidfd_usage(
    pidfd: BorrowedFd<'_>,
    nohang: bool,
) -> Result<Option<(c_int, Usage)>, Errno> {
    let mut flags = libc::WEXITED | libc::__WALL;
    if nohang {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: siginfo_t and rusage are plain old data: all zeroes is a valid value.
        let (mut info, mut ru): (libc::siginfo_t, libc::rusage) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: info and ru are valid to write to; pidfd is a live fd; waitid takes these 5 args.
        let r = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::c_long,
                &mut info as *mut libc::siginfo_t,
                flags as libc::c_long,
                &mut ru as *mut libc::rusage,
            )
        };
        if r == -1 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        // SAFETY: waitid filled info; si_pid and si_status are valid for SIGCHLD infos.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_KILLED => status & 0x7f,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => return Err(Errno::EINVAL),
        };
        let time = |tv: libc::timeval| {
            std::time::Duration::from_secs(tv.tv_sec.max(0) as u64)
                + std::time::Duration::from_micros(tv.tv_usec.max(0) as u64)
        };
        let usage = Usage {
            max_rss_bytes: (ru.ru_maxrss.max(0) as u64) * 1024,
            user: time(ru.ru_utime),
            system: time(ru.ru_stime),
        };
        return Ok(Some((raw, usage)));
    }
}

/// `PIDFD_SIGNAL_PROCESS_GROUP` (Linux 6.9): signal the process group of the pidfd's process.
const PIDFD_SIGNAL_PROCESS_GROUP: c_int = 1 << 2;

/// `pidfd_send_signal(pidfd, sig, NULL, PIDFD_SIGNAL_PROCESS_GROUP)`: `sig` to the process
/// group of the process of `pidfd`, which names the group through that process (never a bare
/// number that could be reused). `EINVAL` before Linux 6.9; `ESRCH` once it was reaped.
pub(crate) fn pidfd_signal_group(pidfd: BorrowedFd<'_>, sig: c_int) -> Result<(), Errno> {
    // SAFETY: pidfd is a live fd; a NULL siginfo is allowed.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            ptr::null::<libc::siginfo_t>(),
            PIDFD_SIGNAL_PROCESS_GROUP,
        )
    })
    .map(drop)
}

/// `pidfd_open(pid, 0)`: a pidfd for the process that has `pid` now.
pub(crate) fn pidfd_open(pid: pid_t) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags; no memory is involved.
    let fd = check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process of `pidfd` has exited (its pidfd polls readable then).
pub(crate) fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    !matches!(poll(&mut fds, 0), Ok(0))
}

/// Reaps the process of `pidfd` (`waitid(P_PIDFD, WEXITED | __WALL)`), blocking unless
/// `nohang`. Returns its raw wait status, or `None` if `nohang` and it still runs.
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> Result<Option<c_int>, Errno> {
    let mut flags = libc::WEXITED | libc::__WALL;
    if nohang {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: siginfo_t is plain old data: all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: info is a valid siginfo_t to write to; pidfd is a live fd.
        match check(unsafe { libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, flags) })
        {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        // SAFETY: waitid filled info; si_pid and si_status are valid for SIGCHLD infos.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_KILLED => status & 0x7f,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => return Err(Errno::EINVAL),
        };
        return Ok(Some(raw));
    }
}

// ---------------------------------------------------------------------------------------------
// The zygote (see `crate::zygote`).
// ---------------------------------------------------------------------------------------------

/// What the zygote's process needs between its clone and its exec, prepared by the caller.
struct ZygoteExec<'a> {
    exe: &'a CStr,
    argv: &'a CStrArray,
    envp: &'a CStrArray,
    socket: RawFd,
    null: RawFd,
    /// Where the socket goes; 0, 1 and 2 become `null`, everything above `target` is closed.
    target: RawFd,
    failure: Option<Errno>,
}

extern "C" fn zygote_entry(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the ZygoteExec that `spawn_zygote` passed; the parent thread is suspended
    // (CLONE_VFORK) until this process execs or exits, so nothing else touches it.
    let ctx = unsafe { &mut *arg.cast::<ZygoteExec<'_>>() };
    ctx.failure = Some(exec_zygote(ctx));
    127
}

/// Runs in the zygote's process between clone and exec, sharing the caller's memory:
/// async-signal-safe. Puts `null` on 0, 1, 2 and the socket on `target`, closes every other fd
/// (whatever the caller left inheritable), and execs. Returns only on failure.
fn exec_zygote(ctx: &ZygoteExec<'_>) -> Errno {
    let above = ctx.target + 1;
    // A source on a number about to be replaced is moved out of the way first.
    let lift = |fd: RawFd| if fd < above { dup_at_least(fd, above) } else { Ok(fd) };
    let (socket, null) = match (lift(ctx.socket), lift(ctx.null)) {
        (Ok(s), Ok(n)) => (s, n),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    for fd in 0..3 {
        if let Err(e) = dup2(null, fd) {
            return e;
        }
    }
    if let Err(e) = dup2(socket, ctx.target) {
        return e;
    }
    if let Err(e) = close_range(above as c_uint, c_uint::MAX) {
        return e;
    }
    execve(ctx.exe, ctx.argv, ctx.envp)
}

/// Stack size of the zygote's process between its clone and its exec.
const ZYGOTE_STACK: usize = 64 * 1024;

/// Starts the zygote: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` with **no exit signal**, so
/// that the inits it later clones with `CLONE_PARENT` (which inherit its exit signal) are, like
/// the ones cloned directly, children of this process that send it no SIGCHLD and are never
/// reaped automatically (not even when SIGCHLD is ignored here). The child puts `null` on fds 0,
/// 1, 2 and `socket` on `target`, closes every other fd and execs `exe`. It starts with every
/// signal blocked (the zygote keeps them so). Returns its pid and a pidfd; an exec failure is
/// returned as its errno (the child is reaped).
pub(crate) fn spawn_zygote(
    exe: &CStr,
    argv: &CStrArray,
    envp: &CStrArray,
    socket: BorrowedFd<'_>,
    null: BorrowedFd<'_>,
    target: RawFd,
) -> Result<(pid_t, OwnedFd), Errno> {
    let stack = map_stack(ZYGOTE_STACK)?;
    let mut ctx = ZygoteExec {
        exe,
        argv,
        envp,
        socket: socket.as_raw_fd(),
        null: null.as_raw_fd(),
        target,
        failure: None,
    };
    // No handler of this process may run in the child, which shares its memory.
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set it is given.
    unsafe { libc::sigfillset(all.as_mut_ptr()) };
    // SAFETY: all was initialised above; old is written by the call.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr()) } == 0;
    let mut pidfd: c_int = -1;
    // SAFETY: the stack is a fresh mapping of ZYGOTE_STACK bytes and the child gets its top. With
    // CLONE_VFORK this thread is suspended until the child execs or exits, so the child has
    // exclusive use of `ctx`; zygote_entry runs only exec_zygote, which is async-signal-safe, and
    // exits by returning. The exit signal (the low byte of the flags) is 0. CLONE_PIDFD stores
    // the pidfd at the parent_tid argument, which points to `pidfd` and outlives the call.
    let pid = unsafe {
        libc::clone(
            zygote_entry,
            stack.cast::<u8>().add(ZYGOTE_STACK).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD,
            (&mut ctx as *mut ZygoteExec<'_>).cast(),
            &mut pidfd as *mut c_int,
        )
    };
    let err = Errno::last();
    if blocked {
        // SAFETY: old was filled by the successful pthread_sigmask above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), ptr::null_mut()) };
    }
    // SAFETY: the mapping is ours and the child no longer runs on it (it exec'd or exited).
    unsafe { libc::munmap(stack, ZYGOTE_STACK) };
    if pid == -1 {
        return Err(err);
    }
    // SAFETY: CLONE_PIDFD made the kernel store a new pidfd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    if let Some(errno) = ctx.failure {
        let _ = waitid_pidfd(pidfd.as_fd(), false);
        return Err(errno);
    }
    Ok((pid, pidfd))
}

/// `prctl(PR_SET_PDEATHSIG, sig)`: `sig` arrives when the thread that started this process
/// exits (with the whole process, or alone).
pub(crate) fn set_parent_death_signal(sig: c_int) -> Result<(), Errno> {
    // SAFETY: PR_SET_PDEATHSIG takes an int argument; no memory is involved.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as c_ulong, 0, 0, 0) }).map(drop)
}

/// Takes ownership of `fd`, which this process's parent gave it for its own use (the zygote's
/// socket, named in its environment), if it is an open socket; sets `FD_CLOEXEC` on it.
pub(crate) fn adopt_inherited_socket(fd: RawFd) -> Result<OwnedFd, Errno> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a valid stat buffer to write to.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled st.
    let mode = unsafe { st.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(Errno::ENOTSOCK);
    }
    set_cloexec(fd, true)?;
    // SAFETY: fd is open (fstat succeeded) and, by the contract of the variable that named it,
    // nothing else in this process uses it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The fds of an `SCM_RIGHTS` message just received: new fds that nothing else owns yet.
pub(crate) fn adopt_received_fds(fds: impl IntoIterator<Item = RawFd>) -> Vec<OwnedFd> {
    // SAFETY: the kernel installed each of these fds in this process for this message only;
    // they become owned here, once, on the line they arrive.
    fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect()
}

/// One open-file-description byte-range lock request (`struct flock` for `F_OFD_*`).
fn ofd_flock(kind: c_int, start: u64, len: u64) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (l_pid must be 0 for OFD requests).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    fl
}

/// `fcntl(F_OFD_SETLK)` for a write lock on `[start, start + len)`: `Ok(false)` when another open
/// file description holds an overlapping lock. The lock goes when the last fd of this open file
/// description closes (also when its process dies).
pub(crate) fn ofd_try_lock(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<bool, Errno> {
    let fl = ofd_flock(libc::F_WRLCK, start, len);
    // SAFETY: fl is a valid flock that outlives the call; fd is open.
    match check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `fcntl(F_OFD_GETLK)`: the first lock of another open file description that overlaps
/// `[start, start + len)`, as `(start, len)` (`len` 0: to the end of the file).
pub(crate) fn ofd_conflict(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<Option<(u64, u64)>, Errno> {
    let mut fl = ofd_flock(libc::F_WRLCK, start, len);
    // SAFETY: fl is a valid, writable flock that outlives the call; fd is open.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        Ok(None)
    } else {
        Ok(Some((fl.l_start as u64, fl.l_len as u64)))
    }
}
