//! Workloads for containers: this test binary re-run in a helper mode. `CVTEST_TEST_HELPER`
//! names the mode, the arguments follow on the command line. Each prints what the test checks
//! and exits with a code the test asserts on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub const HELPER_ENV: &str = "CVTEST_TEST_HELPER";

/// A command running this binary in helper `mode` with `args`.
pub fn command(mode: &str, args: &[&str]) -> cvtest::Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = cvtest::Command::new(exe);
    cmd.env(HELPER_ENV, mode).args(args.iter().copied());
    cmd
}

/// Runs the helper mode named in the environment, if any, and returns its exit code.
pub fn run_if_requested() -> Option<i32> {
    let mode = std::env::var(HELPER_ENV).ok()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Some(match (mode.as_str(), args.as_slice()) {
        ("alloc", [bytes]) => alloc(bytes.parse().expect("bytes")),
        ("fork", [n]) => fork_many(n.parse().expect("count")),
        ("spin", [ms]) => spin(ms.parse().expect("ms")),
        ("tcp", [addr]) => tcp_client(addr.parse().expect("addr")),
        ("bind", [port, dir, me, other]) => {
            bind_together(port.parse().expect("port"), Path::new(dir), me, other)
        }
        ("pidns", []) => pidns(),
        ("linger", [_token]) => linger(),
        ("own-until-eof", [token]) => crate::owner::own_until_eof(token),
        ("reused-pgid", []) => crate::owner::reused_pgid(),
        ("spew", [bytes]) => spew(bytes.parse().expect("bytes")),
        ("trickle", [lines]) => trickle(lines.parse().expect("lines")),
        ("env", []) => env(),
        ("fs", [host_marker, writable @ ..]) => fs(host_marker, writable),
        ("own-container", [token]) => crate::container::own_container(token),
        ("background", []) => crate::background::helper(),
        ("background-veth", []) => crate::background::veth_helper(),
        ("background-reuse", []) => crate::background::reuse_helper(),
        ("create-once", []) => crate::container::create_once(false),
        ("create-once", ["no-cgroups"]) => crate::container::create_once(true),
        ("own-zygote-container", [token]) => crate::zygote::own_zygote_container(token),
        ("fs-in-container", [host_marker, writable @ ..]) => {
            crate::container::fs_in_container(host_marker, writable)
        }
        ("hold-lease", [cidr]) => crate::lease::hold_lease(cidr),
        ("veth-and-exit", [cidr]) => crate::lease::veth_and_exit(cidr),
        ("probe", []) => crate::confinement::probe(),
        ("userns", [writable, secret, socket]) => crate::userns::userns_probe(writable, secret, socket),
        ("net-reach", [host, container]) => crate::userns::net_reach(host, container),
        ("attack", [outside]) => crate::confinement::attack(Path::new(outside)),
        ("tty-driver", []) => crate::confinement::tty_driver(),
        ("tty-attack", []) => crate::confinement::tty_attack(),
        ("host-sockets", [path, name]) => crate::confinement::host_sockets(path, name),
        ("overlay", [dir]) => crate::confinement::overlay_probe(dir),
        ("mount-types", paths) => crate::confinement::mount_types(paths),
        ("keyring", [description, id]) => crate::confinement::keyring(description, id),
        ("pool-leave-traces", [port, name]) => crate::netns_pool::leave_traces(port, name),
        ("pool-look-for-traces", [port, name]) => crate::netns_pool::look_for_traces(port, name),
        ("pool-bind-unix", [name]) => crate::netns_pool::bind_unix(name),
        ("pool-netns", []) => crate::netns_pool::print_netns(),
        ("reach", addrs) => crate::confinement::reach(addrs),
        _ => {
            eprintln!("unknown helper {mode} {args:?}");
            100
        }
    })
}

/// Allocates `bytes` and touches every page, so the memory is really used.
fn alloc(bytes: usize) -> i32 {
    let mut v = vec![0u8; bytes];
    for i in (0..bytes).step_by(4096) {
        v[i] = 1;
    }
    std::hint::black_box(&v);
    println!("touched {}", v.len());
    0
}

/// Forks `n` children that wait until this process exits; prints how many forks failed with
/// EAGAIN.
fn fork_many(n: usize) -> i32 {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (mut ok, mut eagain, mut other) = (0, 0, 0);
    for _ in 0..n {
        // SAFETY: the child only calls async-signal-safe functions (close, read, _exit).
        match unsafe { libc::fork() } {
            0 => {
                let mut b = [0u8; 1];
                // SAFETY: plain syscalls on fds this process owns.
                unsafe {
                    libc::close(fds[1]);
                    libc::read(fds[0], b.as_mut_ptr().cast(), 1);
                    libc::_exit(0);
                }
            }
            -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) => eagain += 1,
            -1 => other += 1,
            _ => ok += 1,
        }
    }
    // Hold the children a moment so that samplers see them too.
    std::thread::sleep(Duration::from_millis(200));
    println!("forked={ok} eagain={eagain} other={other}");
    0
}

fn spin(ms: u64) -> i32 {
    let end = Instant::now() + Duration::from_millis(ms);
    let mut x = 0u64;
    while Instant::now() < end {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(x);
    0
}

/// Connects to `addr` (retrying while refused: the listener may start after us), sends "ping",
/// expects "pong". Exit 0 on success, 3 when the network is unreachable, 4 otherwise.
fn tcp_client(addr: SocketAddr) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => {
                println!("unreachable: {e}");
                return 3;
            }
            Err(e) => {
                println!("connect failed: {e}");
                return 4;
            }
        }
    };
    let mut reply = [0u8; 4];
    let r = stream.write_all(b"ping").and_then(|()| stream.read_exact(&mut reply));
    match r {
        Ok(()) if &reply == b"pong" => {
            println!("got pong");
            0
        }
        other => {
            println!("exchange failed: {other:?} {reply:?}");
            4
        }
    }
}

/// Binds 127.0.0.1:`port`, announces it with the file `dir/me`, and waits for `dir/other` to
/// prove the other container held the same port at the same time. Exit 2 if bind fails, 3 if
/// the other never showed up.
fn bind_together(port: u16, dir: &Path, me: &str, other: &str) -> i32 {
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            println!("bind failed: {e}");
            return 2;
        }
    };
    std::fs::write(dir.join(me), b"bound").expect("announce");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join(other).exists() {
        if Instant::now() > deadline {
            return 3;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(listener);
    println!("both bound");
    0
}

/// Prints `pid=<own pid>` and `procs=<pids visible in /proc>`.
fn pidns() -> i32 {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    println!("pid={}", std::process::id());
    println!("procs={pids:?}");
    0
}

fn linger() -> i32 {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `lines` short lines to stdout and to stderr, each line its own write (as `eprintln!` does on
/// unbuffered stderr): a reader woken at each would be woken `2 * lines` times.
fn trickle(lines: usize) -> i32 {
    for i in 0..lines {
        let line = format!("line {i}\n");
        std::io::stderr().write_all(line.as_bytes()).unwrap();
        std::io::stdout().lock().write_all(line.as_bytes()).unwrap();
        std::io::stdout().flush().unwrap();
    }
    0
}

fn spew(bytes: usize) -> i32 {
    let chunk = [b'x'; 65536];
    let mut out = std::io::stdout().lock();
    let mut left = bytes;
    let mut first = true;
    while left > 0 {
        let n = left.min(chunk.len());
        if first {
            out.write_all(b"BEGIN").unwrap();
            first = false;
        }
        out.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    out.write_all(b"END").unwrap();
    0
}

fn env() -> i32 {
    println!("container={}", std::env::var("CVTEST_CONTAINER").unwrap_or_default());
    println!(
        "hostname={}",
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
    );
    println!("cwd={}", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default());
    0
}

/// Filesystem checks, one line each: `name=ok|<error kind>`.
fn fs(host_marker: &str, writable: &[&str]) -> i32 {
    let show = |name: &str, r: std::io::Result<()>| match r {
        Ok(()) => println!("{name}=ok"),
        Err(e) => println!("{name}={}", e.raw_os_error().map_or_else(|| e.to_string(), |c| c.to_string())),
    };
    show("write_etc", std::fs::write("/etc/cvtest-probe", b"x"));
    show("write_usr", std::fs::write("/usr/cvtest-probe", b"x"));
    show("write_tmp", std::fs::write("/tmp/cvtest-probe", b"x"));
    show("write_dev_shm", std::fs::write("/dev/shm/cvtest-probe", b"x"));
    if Path::new("/var/tmp").is_dir() {
        show("write_var_tmp", std::fs::write("/var/tmp/cvtest-probe", b"x"));
    }
    show("dev_null", std::fs::write("/dev/null", b"x"));
    show("host_marker_visible", std::fs::metadata(host_marker).map(drop));
    show("proc_self", std::fs::metadata("/proc/self/status").map(drop));
    show("sys_write", std::fs::write("/sys/kernel/cvtest-probe", b"x"));
    for (i, dir) in writable.iter().enumerate() {
        show(&format!("writable{i}"), std::fs::write(Path::new(dir).join("from-container"), b"hello"));
    }
    0
}
