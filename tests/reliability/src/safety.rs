//! What a container must not see, reach or change.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cvtest::cv_test;

use crate::support::{rendezvous_dir, signal, wait_for};

/// The pids in this container's /proc.
fn visible_pids() -> BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The command lines of every visible process.
fn visible_cmdlines() -> Vec<(u32, Vec<String>)> {
    visible_pids()
        .into_iter()
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            Some((pid, args))
        })
        .collect()
}

/// Only its own init (1) and itself (2) are visible: no host process.
#[test]
fn sees_only_itself() {
    let pids = visible_pids();
    assert_eq!(pids, BTreeSet::from([1, 2]), "processes visible in the container: {:?}", visible_cmdlines());
}

/// Run at the same time as `peer_b` (the driver checks from the host that both run): neither sees
/// the other. It does see itself, so the search is not blind.
#[test]
fn peer_a() {
    peer("peer_a", "peer_b");
}

#[test]
fn peer_b() {
    peer("peer_b", "peer_a");
}

fn peer(me: &str, other: &str) {
    let dir = rendezvous_dir();
    signal(&format!("{me}.ready"));
    let wait = Duration::from_secs(120);
    assert!(wait_for(&dir.join(format!("{other}.ready")), wait), "{other} never started");
    assert!(wait_for(&dir.join("driver.seen"), wait), "the driver never saw both peers run");
    let procs = visible_cmdlines();
    // A test process runs this binary with the test's name as an argument (PID 1, a fork of the
    // runner, carries the runner's command line, which names both).
    let exe = std::env::args().next().unwrap_or_default();
    let sees = |name: &str| {
        let name = format!("safety::{name}");
        procs.iter().any(|(_, args)| args.first() == Some(&exe) && args.contains(&name))
    };
    let (me_seen, other_seen) = (sees(me), sees(other));
    signal(&format!("{me}.done"));
    assert!(wait_for(&dir.join(format!("{other}.done")), wait), "{other} never finished looking");
    assert!(me_seen, "{me} cannot find itself in /proc: {procs:?}");
    assert!(!other_seen, "{me} sees {other}'s process: {procs:?}");
    assert_eq!(visible_pids(), BTreeSet::from([1, 2]), "{procs:?}");
}

/// The directory outside the writable ones that the driver made (`RELIABILITY_OUTSIDE`).
fn outside() -> PathBuf {
    PathBuf::from(std::env::var_os("RELIABILITY_OUTSIDE").expect("RELIABILITY_OUTSIDE is not set"))
}

fn expect_read_only(what: &str, r: std::io::Result<()>) {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
        Err(e) => panic!("{what}: failed, but not as read-only: {e}"),
        Ok(()) => panic!("{what}: succeeded outside the writable directories"),
    }
}

/// Writes outside the writable directories fail with EROFS, everywhere on the host's root; /tmp
/// and /var/tmp are private; the writable directory is writable.
#[test]
fn writes_stay_inside() {
    let nonce = std::env::var("RELIABILITY_NONCE").expect("RELIABILITY_NONCE is not set");
    let out = outside();
    let probe = format!("cvtest-rel-probe-{nonce}");
    for dir in [out.as_path(), Path::new("/etc"), Path::new("/usr"), Path::new("/var/lib"), Path::new("/")] {
        let path = dir.join(&probe);
        expect_read_only(&format!("write {}", path.display()), std::fs::write(&path, b"x"));
        expect_read_only(&format!("mkdir {}", path.display()), std::fs::create_dir(&path));
    }
    let keep = out.join("keep.me");
    expect_read_only("remove keep.me", std::fs::remove_file(&keep));
    expect_read_only("truncate keep.me", std::fs::write(&keep, b""));
    expect_read_only("rename keep.me", std::fs::rename(&keep, out.join("moved")));
    // /tmp is the container's own.
    for dir in ["/tmp", "/var/tmp"] {
        let tmp = Path::new(dir).join(&probe);
        if tmp.parent().is_some_and(Path::is_dir) {
            std::fs::write(&tmp, b"private").unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        }
    }
    // The target dir is writable.
    let inside = rendezvous_dir().join("inside.ok");
    std::fs::write(&inside, b"ok").unwrap_or_else(|e| panic!("write {}: {e}", inside.display()));
}

/// `HOME` is a throw-away layer over the host's: the test reads the host's files there and may
/// write, nothing of it reaches the host (the driver checks), and the unix socket the driver
/// listens on in it cannot be connected to (`RELIABILITY_HOME_SOCKET`).
#[test]
fn home_is_throwaway() {
    use std::os::unix::fs::PermissionsExt;
    let nonce = std::env::var("RELIABILITY_NONCE").expect("RELIABILITY_NONCE is not set");
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"));
    let socket = PathBuf::from(std::env::var_os("RELIABILITY_HOME_SOCKET").expect("no socket"));
    let mode: u32 = std::env::var("RELIABILITY_HOME_MODE").expect("no mode").parse().expect("a mode");
    let seen = std::fs::metadata(&home).expect("HOME").permissions().mode() & 0o7777;
    assert_eq!(seen, mode, "HOME's mode is not the host's");
    // The host's files are there (the driver's socket among them).
    assert!(socket.exists(), "{} is not visible", socket.display());
    let probe = home.join(format!("cvtest-rel-probe-{nonce}"));
    std::fs::write(&probe, b"mine").unwrap_or_else(|e| panic!("write {}: {e}", probe.display()));
    assert_eq!(std::fs::read(&probe).expect("read back"), b"mine");
    let nested = home.join(format!("cvtest-rel-dir-{nonce}/a/b"));
    std::fs::create_dir_all(&nested).unwrap_or_else(|e| panic!("mkdir {}: {e}", nested.display()));
    match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => panic!("connected to the host's {} through HOME", socket.display()),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "connect: {e}"),
    }
    signal("home.ok");
}

/// A hostile test: root in its own mount namespace, it tries to make the host's root writable
/// again (remount, then mount_setattr), then to write outside the writable directories. Both
/// must be refused for want of CAP_SYS_ADMIN, and the write with EROFS.
#[test]
fn remount_refused() {
    let target = outside().join("escaped");
    let mut tried = Vec::new();
    // SAFETY: plain syscalls with valid C strings and null pointers where allowed.
    let (remount, setattr) = unsafe {
        let r = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND,
            std::ptr::null(),
        );
        let remount = result(r);
        tried.push(format!("remount,bind / rw: {remount}"));
        let attr =
            libc::mount_attr { attr_set: 0, attr_clr: libc::MOUNT_ATTR_RDONLY, propagation: 0, userns_fd: 0 };
        let r = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            0x8000, /* AT_RECURSIVE */
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        );
        let setattr = result(r as i32);
        tried.push(format!("mount_setattr / -rdonly recursive: {setattr}"));
        (remount, setattr)
    };
    match std::fs::write(&target, b"escaped") {
        Ok(()) => panic!("wrote {} on the host's root after {tried:?}", target.display()),
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
            println!("the write failed as it should ({e}); tried {tried:?}")
        }
        Err(e) => panic!("the write failed, but not as read-only: {e}; tried {tried:?}"),
    }
    let refused = format!("failed: {}", std::io::Error::from_raw_os_error(libc::EPERM));
    assert_eq!(remount, refused, "the remount was not refused for want of a capability");
    assert_eq!(setattr, refused, "mount_setattr was not refused for want of a capability");
}

/// The test's effective capabilities (`CapEff` of /proc/self/status).
fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff");
    u64::from_str_radix(hex.trim(), 16).expect("hex")
}

const NET_ADMIN: u64 = 1 << 12;
const SYS_PTRACE: u64 = 1 << 19;
const SYS_ADMIN: u64 = 1 << 21;
const MKNOD: u64 = 1 << 27;
/// Docker's default set without MKNOD (cvtest::Capabilities::DEFAULT).
const DEFAULT: u64 = 0xa004_25fb;

/// Nothing set: the default set exactly.
#[test]
fn capabilities_default() {
    assert_eq!(effective_caps(), DEFAULT, "CapEff");
}

/// `caps = "NET_ADMIN"` in a config override (Cargo.toml).
#[test]
fn capabilities_added() {
    assert_eq!(effective_caps(), DEFAULT | NET_ADMIN, "CapEff");
}

/// `privileged = true` in a config override (Cargo.toml): every capability.
#[test]
fn capabilities_privileged() {
    let caps = effective_caps();
    assert_eq!(caps & (SYS_ADMIN | MKNOD | NET_ADMIN), SYS_ADMIN | MKNOD | NET_ADMIN, "CapEff {caps:x}");
}

/// `caps` from the attribute, which the runner reads from the settings dump.
#[cv_test(caps = "SYS_PTRACE")]
fn capabilities_from_attribute() {
    assert_eq!(effective_caps(), DEFAULT | SYS_PTRACE, "CapEff");
}

/// Kernel knobs that are not namespaced, and block devices: refused. (Opened for writing and
/// closed unwritten; the node would be removed at once.)
#[test]
fn kernel_knobs_refused() {
    let open_w = |p: &str| std::fs::OpenOptions::new().write(true).open(p).map(drop);
    let e = open_w("/proc/sys/vm/drop_caches").expect_err("/proc/sys/vm/drop_caches opened for writing");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "/proc/sys/vm/drop_caches: {e}");
    match open_w("/proc/sysrq-trigger") {
        Ok(()) => panic!("/proc/sysrq-trigger opened for writing"),
        // ENOENT: a kernel without magic SysRq.
        Err(e) => assert!(matches!(e.raw_os_error(), Some(libc::EROFS | libc::ENOENT)), "sysrq-trigger: {e}"),
    }
    // SAFETY: a NUL-terminated path.
    let r = unsafe { libc::mknod(c"/dev/cvtest-loop0".as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)) };
    if r == 0 {
        let _ = std::fs::remove_file("/dev/cvtest-loop0");
        panic!("made a block device node in /dev");
    }
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPERM));
}

fn result(r: i32) -> String {
    if r == 0 {
        "succeeded".to_owned()
    } else {
        format!("failed: {}", std::io::Error::last_os_error())
    }
}

/// The address of the other namespace the driver made (another subnet, reachable from the host).
const OTHER_NAMESPACE: &str = "10.181.1.1:9";

/// Its own subnet works (the host end answers), but a namespace on another subnet, which the
/// host itself can reach, cannot be reached from the container.
#[cv_test(network = "10.181.0.2/30")]
fn subnet_stays_inside() {
    let host_end: SocketAddr = "10.181.0.1:9".parse().unwrap();
    match TcpStream::connect_timeout(&host_end, Duration::from_secs(3)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("the host end of the veth should refuse port 9 (proof the link works): {other:?}"),
    }
    let other: SocketAddr = OTHER_NAMESPACE.parse().unwrap();
    match TcpStream::connect_timeout(&other, Duration::from_secs(3)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            panic!("{other} answered (connection refused): traffic left the container's subnet")
        }
        Ok(_) => panic!("connected to {other}: traffic left the container's subnet"),
        Err(e) => println!("{other} is unreachable, as it should be: {e}"),
    }
}

/// What a hostile test types into a terminal if it can (the driver looks for it in the
/// terminal's output, where the kernel would echo it).
const INJECTED: &str = "cvtest-injected";

/// Run under a pseudo-terminal (the driver runs `cargo cvtest` with `script`): the test has no
/// controlling terminal (`/dev/tty` is ENXIO), no fd of it is a terminal, and TIOCSTI through
/// any fd it has injects nothing.
#[test]
fn terminal_out_of_reach() {
    // SAFETY: a NUL-terminated path.
    let tty = unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    let open_error = std::io::Error::last_os_error();
    let mut injected = Vec::new();
    let mut terminals = Vec::new();
    for fd in 0..64 {
        // SAFETY: F_GETFD only asks whether fd is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            continue;
        }
        // SAFETY: isatty takes any fd.
        if unsafe { libc::isatty(fd) } == 1 {
            terminals.push(fd);
        }
        // SAFETY: TIOCSTI reads one byte from a valid pointer.
        if format!("{INJECTED}\n").bytes().all(|b| unsafe { libc::ioctl(fd, libc::TIOCSTI, &b as *const u8) } == 0)
        {
            injected.push(fd);
        }
    }
    assert!(tty < 0, "opened /dev/tty: the test has the runner's terminal as its controlling terminal");
    assert_eq!(open_error.raw_os_error(), Some(libc::ENXIO), "open /dev/tty: {open_error}");
    assert!(terminals.is_empty(), "fds {terminals:?} are terminals");
    assert!(injected.is_empty(), "TIOCSTI went through on fds {injected:?}");
}

/// The unix socket the driver listens on under the host's /run (`RELIABILITY_RUN_SOCKET`): not
/// there, the container's /run is a fresh tmpfs.
#[test]
fn run_socket_hidden() {
    let path = std::env::var("RELIABILITY_RUN_SOCKET").expect("RELIABILITY_RUN_SOCKET is not set");
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(_) => panic!("connected to the host's {path}"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "connect {path}: {e}"),
    }
    let empty = std::fs::read_dir("/run").map(|mut d| d.next().is_none());
    assert!(matches!(empty, Ok(true)), "the container's /run is not empty and fresh: {empty:?}");
}

/// `keyctl(2)` with up to four arguments.
fn keyctl(op: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> libc::c_long {
    // SAFETY: the operations used take integers and pointers to buffers or NUL-terminated
    // strings that outlive the call.
    unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, c, d) }
}

/// The key the driver added to the session keyring the runner inherited
/// (`RELIABILITY_KEY_DESCRIPTION`, `RELIABILITY_KEY_ID`): not findable, not readable.
#[test]
fn session_keyring_fresh() {
    const KEYCTL_SEARCH: libc::c_long = 10;
    const KEYCTL_READ: libc::c_long = 11;
    const KEY_SPEC_SESSION_KEYRING: i32 = -3;
    let description = std::env::var("RELIABILITY_KEY_DESCRIPTION").expect("RELIABILITY_KEY_DESCRIPTION");
    let id: i32 = std::env::var("RELIABILITY_KEY_ID").expect("RELIABILITY_KEY_ID").parse().expect("a key id");
    let description = std::ffi::CString::new(description).expect("no NUL");
    let found = keyctl(
        KEYCTL_SEARCH,
        KEY_SPEC_SESSION_KEYRING as usize,
        c"user".as_ptr() as usize,
        description.as_ptr() as usize,
        0,
    );
    let search_error = std::io::Error::last_os_error();
    let mut buf = [0u8; 64];
    let read = keyctl(KEYCTL_READ, id as usize, buf.as_mut_ptr() as usize, buf.len(), 0);
    let read_error = std::io::Error::last_os_error();
    assert!(found < 0, "found the runner's key {description:?} from the test's session keyring");
    assert_eq!(search_error.raw_os_error(), Some(libc::ENOKEY), "search: {search_error}");
    assert!(read < 0, "read the runner's key: {:?}", String::from_utf8_lossy(&buf));
    assert_eq!(read_error.raw_os_error(), Some(libc::EACCES), "read: {read_error}");
}

/// A TCP connection to another address of the host (`RELIABILITY_OTHER_HOST`, where the driver
/// listens on 0.0.0.0): `Ok(())`, or how it failed.
fn connect_other_host() -> (String, std::io::Result<()>) {
    let addr = std::env::var("RELIABILITY_OTHER_HOST").expect("RELIABILITY_OTHER_HOST is not set");
    let sock: SocketAddr = addr.parse().expect("an address");
    (addr, TcpStream::connect_timeout(&sock, Duration::from_secs(3)).map(drop))
}

/// By default a container reaches its host end and nothing else of the host: the other address
/// gets no answer.
#[cv_test(network = "10.181.2.2/30")]
fn host_address_refused() {
    let port = std::env::var("RELIABILITY_OTHER_HOST").expect("set").rsplit(':').next().unwrap_or("").to_owned();
    let host_end: SocketAddr = format!("10.181.2.1:{port}").parse().expect("an address");
    TcpStream::connect_timeout(&host_end, Duration::from_secs(3)).expect("the host end must answer");
    match connect_other_host() {
        (addr, Ok(())) => panic!("connected to the host's {addr}"),
        (_, Err(e)) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
    }
}

/// `host_access = "all"`: the same address is reachable.
#[cv_test(network = "10.181.3.2/30", host_access = "all")]
fn host_address_open() {
    let (addr, r) = connect_other_host();
    r.unwrap_or_else(|e| panic!("{addr} with host_access = \"all\": {e}"));
}
