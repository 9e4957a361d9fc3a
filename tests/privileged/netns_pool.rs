//! Network namespaces reused between containers (`Options::set_reuse_netns`): default containers
//! get the same one again; one with `CAP_NET_ADMIN` or privileged never gets a pooled one, one
//! with a network only one that no container had, never given back; and a test in a namespace an earlier test had cannot notice that test: a namespace that
//! saw traffic or keeps a socket (TIME_WAIT, an abstract unix name) is discarded, and the next
//! test binds the same TCP port without SO_REUSEADDR, the same abstract name, and finds no
//! socket and no traffic counted.
//!
//! The pool is per process: these trials hold one lock so that their counts are their own.

use std::sync::Mutex;

use cvtest::{Container, NetnsPoolStats, Options, Termination, Zygote};
use libtest_mimic::{Failed, Trial};

use crate::container::{fail, options, text};
use crate::helpers::command;
use crate::support::privileged;

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("netns_pool::default_containers_reuse_one_namespace", reuse_one_namespace),
        privileged("netns_pool::network_net_admin_or_privileged_get_a_fresh_one", fresh_for_the_others),
        privileged("netns_pool::a_next_test_cannot_notice_tcp_time_wait_or_unix_names", cannot_notice),
        privileged("netns_pool::an_idle_abstract_name_leaves_nothing_behind", idle_unix_name),
        privileged("netns_pool::a_namespace_changed_from_outside_is_not_reused", changed_from_outside),
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

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn pooled() -> Options {
    let mut o = options();
    o.set_reuse_netns(true);
    o
}

/// Runs `cmd` in a container of `o` (through `zygote` when given); returns its stdout, after
/// asserting it exited 0.
fn run(o: &Options, cmd: &cvtest::Command, zygote: Option<&mut Zygote>) -> Result<String, Failed> {
    let mut c = Container::create(o).map_err(fail("create"))?;
    match zygote {
        Some(z) => c.spawn_via(z, cmd).map_err(fail("spawn_via"))?,
        None => c.spawn(cmd).map_err(fail("spawn"))?,
    }
    let out = c.wait(Some(std::time::Duration::from_secs(30))).map_err(fail("wait"))?;
    c.destroy().map_err(fail("destroy"))?;
    ensure!(
        out.termination == Termination::Exited(0),
        "{:?}; stdout {}; stderr {}",
        out.termination,
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

/// The container's network namespace as its helper sees it inside: `netns=net:[INODE]
/// cookie=COOKIE`. The inode alone does not identify a namespace over time (the kernel reuses a
/// freed namespace's number at once, as the v2 VM's 6.1 does); the cookie is never reused.
fn netns_of(o: &Options, zygote: Option<&mut Zygote>) -> Result<String, Failed> {
    Ok(run(o, &crate::container::captured(command("pool-netns", &[])), zygote)?.trim().to_owned())
}

fn delta(before: NetnsPoolStats) -> NetnsPoolStats {
    let now = cvtest::netns_pool_stats();
    NetnsPoolStats {
        made: now.made - before.made,
        reused: now.reused - before.reused,
        returned: now.returned - before.returned,
        discarded: now.discarded - before.discarded,
        with_veth: now.with_veth - before.with_veth,
        veths_made_ahead: now.veths_made_ahead - before.veths_made_ahead,
        ready_veths: now.ready_veths - before.ready_veths,
    }
}

fn own_netns() -> String {
    std::fs::read_link("/proc/self/ns/net").map(|p| p.display().to_string()).unwrap_or_default()
}

fn reuse_one_namespace() -> Result<(), Failed> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = cvtest::netns_pool_stats();
    let first = netns_of(&pooled(), None)?;
    ensure!(
        first.starts_with("netns=net:[") && !first.starts_with(&format!("netns={} ", own_netns())),
        "the container's namespace {first:?} is not its own"
    );
    let second = netns_of(&pooled(), None)?;
    let mut zygote = Zygote::start().map_err(fail("start a zygote"))?;
    let via_zygote = netns_of(&pooled(), Some(&mut zygote))?;
    let third = netns_of(&pooled(), None)?;
    ensure!(
        [&second, &via_zygote, &third].iter().all(|n| **n == first),
        "sequential default containers had {first}, {second}, {via_zygote} (zygote), {third}"
    );
    let d = delta(before);
    ensure!(d.reused >= 3 && d.returned >= 4 && d.discarded == 0, "pool counts {d:?}");
    // Without the option, a fresh one each time.
    let plain = netns_of(&options(), None)?;
    ensure!(plain != first, "a container without reuse_netns got the pooled namespace {first}");
    Ok(())
}

fn fresh_for_the_others() -> Result<(), Failed> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pooled_ns = netns_of(&pooled(), None)?;
    let before = cvtest::netns_pool_stats();
    let mut net_admin = pooled();
    net_admin.add_caps("NET_ADMIN").map_err(fail("add NET_ADMIN"))?;
    let mut sys_admin = pooled();
    sys_admin.add_caps("SYS_ADMIN").map_err(fail("add SYS_ADMIN"))?;
    let mut privileged = pooled();
    privileged.set_privileged(true);
    for (what, o) in [("NET_ADMIN", &net_admin), ("SYS_ADMIN", &sys_admin), ("privileged", &privileged)] {
        let ns = netns_of(o, None)?;
        ensure!(ns != pooled_ns, "a container with {what} got the pooled namespace {ns}");
    }
    let d = delta(before);
    ensure!(d == NetnsPoolStats::default(), "the pool was used for them: {d:?}");
    // A container with a veth starts in a namespace of the pool that no container had, and
    // never gives it back: two in a row have two namespaces, neither the pooled one.
    let mut networked = pooled();
    networked.set_network_auto(cvtest::lease::NetworkPool::default());
    let first = netns_of(&networked, None)?;
    let second = netns_of(&networked, None)?;
    ensure!(
        first != pooled_ns && second != pooled_ns && first != second,
        "containers with a veth had {first} and {second}; the pooled one is {pooled_ns}"
    );
    let d = delta(before);
    ensure!(d.with_veth == 2 && d.reused == 0 && d.returned == 0, "pool counts {d:?}");
    // The pooled one is still there for the next default container.
    let again = netns_of(&pooled(), None)?;
    ensure!(again == pooled_ns, "the next default container had {again}, not the pooled {pooled_ns}");
    Ok(())
}

/// Test A leaves a TCP connection in TIME_WAIT on 127.0.0.1:PORT (and had an abstract unix name
/// bound); test B, next in the pool, binds the same port without SO_REUSEADDR and the same name,
/// and finds no socket and no traffic.
fn cannot_notice() -> Result<(), Failed> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let port = "47613";
    let name = format!("cvtest-pool-{}", std::process::id());
    // Warm the pool, so that A gets a namespace that is then offered to B if it were kept.
    let warm = netns_of(&pooled(), None)?;
    let before = cvtest::netns_pool_stats();
    let a = run(&pooled(), &crate::container::captured(command("pool-leave-traces", &[port, &name])), None)?;
    ensure!(a.contains("time_wait=1") && a.lines().any(|l| l == warm), "test A ({warm}): {a}");
    let d = delta(before);
    ensure!(d.reused == 1 && d.discarded == 1 && d.returned == 0, "A's namespace was not discarded: {d:?}");
    let b =
        run(&pooled(), &crate::container::captured(command("pool-look-for-traces", &[port, &name])), None)?;
    ensure!(!b.lines().any(|l| l == warm), "test B got A's namespace ({warm}): {b}");
    ensure!(b.contains("clean"), "test B noticed something: {b}");
    Ok(())
}

/// A test that only binds an abstract unix socket and exits sends nothing: its namespace may go
/// back to the pool (once the kernel freed the socket); the next test binds the same name and
/// sees no socket, in whichever namespace it gets.
fn idle_unix_name() -> Result<(), Failed> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("cvtest-pool-idle-{}", std::process::id());
    let mut same = 0;
    for _ in 0..5 {
        let a = run(&pooled(), &crate::container::captured(command("pool-bind-unix", &[&name])), None)?;
        let b = run(
            &pooled(),
            &crate::container::captured(command("pool-look-for-traces", &["0", &name])),
            None,
        )?;
        ensure!(b.contains("clean"), "after {a}: the next test noticed something: {b}");
        same += usize::from(
            a.lines().find(|l| l.starts_with("netns=")) == b.lines().find(|l| l.starts_with("netns=")),
        );
    }
    ensure!(same > 0, "no namespace was reused after a test that only bound a unix name");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers, run inside the containers.

fn netns_line() -> String {
    format!("netns={} cookie={}", own_netns(), netns_cookie())
}

/// The network namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14): unique for the boot, never
/// reused, unlike the namespace's inode number.
fn netns_cookie() -> u64 {
    let socket = std::os::unix::net::UnixDatagram::unbound().expect("a unix socket");
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt on a socket this function owns, into a local u64 of the length given.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "SO_NETNS_COOKIE: {}", std::io::Error::last_os_error());
    cookie
}

/// Helper mode `pool-netns`: prints the namespace line.
pub fn print_netns() -> i32 {
    println!("{}", netns_line());
    0
}

/// Entries of `/proc/net/FILE` (lines after the header).
fn entries(file: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/net/{file}"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

fn abstract_listener(name: &str) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    std::os::unix::net::UnixListener::bind_addr(&addr)
}

/// Test A: a TCP connection on 127.0.0.1:`port` that the listening side closes first (so the
/// port itself is in TIME_WAIT), an abstract unix name bound, a UDP socket in a SO_REUSEPORT
/// group on the port; prints `time_wait=1` if /proc/net/tcp shows it.
pub fn leave_traces(port: &str, name: &str) -> i32 {
    use std::io::{Read, Write};
    let _unix = abstract_listener(name).expect("bind the abstract name");
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("port"))).expect("listen");
    let mut client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    server.write_all(b"x").expect("write");
    let mut b = [0u8; 1];
    client.read_exact(&mut b).expect("read");
    drop(server);
    drop(listener);
    let _ = client.read(&mut b);
    drop(client);
    let udp = reuseport_udp(port);
    let hex = format!("0100007F:{:04X}", port.parse::<u16>().expect("port"));
    let tw = entries("tcp")
        .iter()
        .any(|l| l.split_whitespace().nth(1) == Some(&hex) && l.split_whitespace().nth(3) == Some("06"));
    println!("{}\ntime_wait={}\nudp={udp}", netns_line(), u8::from(tw));
    0
}

/// A UDP socket bound to 127.0.0.1:`port` with SO_REUSEPORT (a group a later socket could join).
fn reuseport_udp(port: &str) -> bool {
    // SAFETY: plain syscalls on a socket this function owns; the sockaddr is a live local.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let one: libc::c_int = 1;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, (&one as *const libc::c_int).cast(), 4);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.parse::<u16>().expect("port").to_be();
        sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let ok =
            libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32) == 0;
        libc::sendto(
            fd,
            b"x".as_ptr().cast(),
            1,
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of_val(&sa) as u32,
        );
        // Left open: the process's exit closes it.
        ok
    }
}

/// Binds an abstract unix name and exits (nothing sent).
pub fn bind_unix(name: &str) -> i32 {
    let _unix = abstract_listener(name).expect("bind the abstract name");
    println!("{}", netns_line());
    0
}

/// Test B: binds 127.0.0.1:`port` without SO_REUSEADDR (unless `port` is 0) and the abstract
/// `name`, then looks for any socket or counted traffic in its namespace. Prints `clean` or what
/// it found.
pub fn look_for_traces(port: &str, name: &str) -> i32 {
    let mut found = Vec::new();
    // Before anything of ours exists.
    for file in ["tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix", "packet"] {
        let e = entries(file);
        if !e.is_empty() {
            found.push(format!("{file}: {e:?}"));
        }
    }
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    if !sockstat.starts_with("sockets: used 0\n") || !sockstat.contains(" tw 0 ") {
        found.push(format!("sockstat: {sockstat}"));
    }
    for line in entries("dev").iter().skip(1) {
        let counters: Vec<&str> = line.split_whitespace().skip(1).collect();
        if !line.trim_start().starts_with("lo:") || counters.iter().any(|c| *c != "0") {
            found.push(format!("dev: {line}"));
        }
    }
    for (key, values) in snmp_pairs() {
        if matches!(
            key.as_str(),
            "Ip:InReceives"
                | "Ip:OutRequests"
                | "Tcp:ActiveOpens"
                | "Tcp:PassiveOpens"
                | "Udp:InDatagrams"
                | "Udp:OutDatagrams"
        ) && values != "0"
        {
            found.push(format!("snmp {key}={values}"));
        }
    }
    let port: u16 = port.parse().expect("port");
    if port != 0 {
        if let Err(e) = bind_without_reuseaddr(port) {
            found.push(format!("bind 127.0.0.1:{port} without SO_REUSEADDR: {e}"));
        }
    }
    if let Err(e) = abstract_listener(name) {
        found.push(format!("bind @{name}: {e}"));
    }
    println!("{}", netns_line());
    if found.is_empty() {
        println!("clean");
    } else {
        println!("found: {}", found.join("; "));
    }
    0
}

/// `Proto:Field` → value from /proc/net/snmp.
fn snmp_pairs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for pair in lines.chunks(2) {
        if let [names, values] = pair {
            let (proto, names) = names.split_once(':').unwrap_or(("", names));
            let values = values.split_once(':').map_or(*values, |v| v.1);
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                out.push((format!("{proto}:{n}"), v.to_owned()));
            }
        }
    }
    out
}

fn bind_without_reuseaddr(port: u16) -> std::io::Result<()> {
    // SAFETY: plain syscalls on a socket this function owns; the sockaddr is a live local.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let r = libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r == 0 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// A namespace its holder says was changed from outside (a lab linked the test to its switch)
/// is discarded, even when nothing of the change is left in it.
fn changed_from_outside() -> Result<(), Failed> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let warm = netns_of(&pooled(), None)?;
    let before = cvtest::netns_pool_stats();
    let mut c = Container::create(&pooled()).map_err(fail("create"))?;
    c.spawn(&crate::container::captured(command("pool-netns", &[]))).map_err(fail("spawn"))?;
    let out = c.wait(Some(std::time::Duration::from_secs(30))).map_err(fail("wait"))?;
    let used = text(&out.stdout).trim().to_owned();
    ensure!(used == warm, "the container got {used}, not the pooled {warm}");
    c.mark_netns_changed();
    c.destroy().map_err(fail("destroy"))?;
    let d = delta(before);
    ensure!(d.discarded == 1 && d.returned == 0, "pool counts {d:?}");
    let next = netns_of(&pooled(), None)?;
    ensure!(next != warm, "the changed namespace {warm} was reused");
    Ok(())
}
