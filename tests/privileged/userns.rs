//! User namespaces: rootless containers (this binary run as an unprivileged user) and root
//! mode's mapped root.
//!
//! - `rootless::*` run as a user without capabilities (`setpriv --reuid=65534 --regid=65534
//!   --clear-groups BIN rootless::`); as root they report themselves ignored, and
//!   `userns::rootless_suite_as_nobody` runs them that way. Until delegated cgroups land they
//!   run without the `CGROUPS` part of isolation.
//! - `userns::*` run as root: the test's root is mapped to an unprivileged owner.
//!
//! The workload is this binary in the `userns` helper mode, which prints one `key=value` line
//! per check.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use cvtest::{Capabilities, Container, Isolation, Options, Rootfs, Stdio, Termination, Zygote};
use libtest_mimic::{Completion, Failed, Trial};

use crate::helpers::command;

pub fn trials() -> Vec<Trial> {
    vec![
        rootless("rootless::namespaces_mounts_and_caps", rootless_namespaces_mounts_and_caps),
        rootless("rootless::network_reaches_its_host_end", rootless_network_reaches_its_host_end),
        rootless("rootless::zygote_clones_rootless_inits", rootless_zygote_clones_inits),
        with_userns("userns::zygote_clones_mapped_root_inits", mapped_root_via_zygote),
        with_userns("userns::mapped_root_cannot_use_root_only_files", mapped_root_cannot_use_root_only_files),
        with_userns("userns::privileged_keeps_real_root", privileged_keeps_real_root),
        with_userns("userns::rootless_suite_as_nobody", rootless_suite_as_nobody),
    ]
}

/// A trial for an unprivileged user; as root, or where the kernel refuses user namespaces, it
/// reports itself ignored.
fn rootless(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return Ok(Completion::ignored_with(
                "a rootless test runs as an unprivileged user (userns::rootless_suite_as_nobody runs it so)",
            ));
        }
        if let Some(why) = no_user_namespaces() {
            return Ok(Completion::ignored_with(why));
        }
        f().map(|()| Completion::Completed)
    })
}

/// A root trial that needs user namespaces; ignored with the reason where the kernel refuses
/// them (the default v2 VM runs its command in a chroot, where `CLONE_NEWUSER` is EPERM).
pub(crate) fn with_userns(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        if let Some(why) = crate::support::missing_privileges().or_else(no_user_namespaces) {
            return Ok(Completion::ignored_with(why));
        }
        f().map(|()| Completion::Completed)
    })
}

/// Why this process cannot make a user namespace (`unshare -U true` fails), or `None`.
pub(crate) fn no_user_namespaces() -> Option<String> {
    match std::process::Command::new("unshare").args(["-U", "true"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "the kernel refuses user namespaces here (in a chroot?): unshare -U: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare to probe user namespaces: {e}")),
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {{
        let ok: bool = $cond;
        if !ok {
            return Err(Failed::from(format!($($msg)+)));
        }
    }};
}

/// Isolation without cgroups: this host's cgroups are v1, which cannot be delegated.
fn no_cgroups() -> Isolation {
    Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC
}

/// Runs the `userns` helper in a container of `opts` and returns its report.
fn probe(opts: &Options, args: &[&str]) -> Result<(Container, BTreeMap<String, String>), Failed> {
    probe_via(None, opts, args)
}

/// [`probe`], the init cloned by `zygote` when given.
fn probe_via(
    zygote: Option<&mut Zygote>,
    opts: &Options,
    args: &[&str],
) -> Result<(Container, BTreeMap<String, String>), Failed> {
    let mut c = Container::create(opts).map_err(|e| format!("create: {}", cvtest_chain(&e)))?;
    let mut cmd = command("userns", args);
    cmd.stdout(Stdio::Capture { limit: 1 << 16 }).stderr(Stdio::Capture { limit: 1 << 16 });
    let spawned = match zygote {
        Some(z) => c.spawn_via(z, &cmd),
        None => c.spawn(&cmd),
    };
    spawned.map_err(|e| format!("spawn: {}", cvtest_chain(&e)))?;
    let out = c.wait(Some(Duration::from_secs(60))).map_err(|e| format!("wait: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.termination == Termination::Exited(0),
        "helper ended {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.termination,
        String::from_utf8_lossy(&out.stderr)
    );
    let report =
        stdout.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    Ok((c, report))
}

fn cvtest_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn expect(report: &BTreeMap<String, String>, key: &str, want: &str) -> Result<(), Failed> {
    let got = report.get(key).map(String::as_str).unwrap_or("<missing>");
    ensure!(got == want, "{key}: expected {want}, got {got}\nreport: {report:#?}");
    Ok(())
}

fn tempdir() -> Result<tempfile::TempDir, Failed> {
    tempfile::Builder::new().prefix("cvtest-userns").tempdir().map_err(|e| Failed::from(e.to_string()))
}

/// A directory the container sees (read-only) at the same path: not under its private /tmp.
fn visible_tempdir() -> Result<tempfile::TempDir, Failed> {
    tempfile::Builder::new()
        .prefix("cvtest-userns")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .map_err(|e| Failed::from(e.to_string()))
}

fn rootless_namespaces_mounts_and_caps() -> Result<(), Failed> {
    let dir = tempdir()?;
    let mut opts = Options::new();
    opts.set_isolation(no_cgroups()).set_rootfs(Rootfs::Host { writable: vec![dir.path().to_owned()] });
    let dirs = dir.path().to_str().expect("utf-8 temp dir");
    let (c, report) = probe(&opts, &[dirs, "/nonexistent", "/nonexistent"])?;
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    ensure!(c.is_rootless(), "not rootless as uid {uid}");
    ensure!(
        c.mapped_owner() == Some(cvtest::MappedOwner { uid, gid }),
        "root is mapped to {:?}",
        c.mapped_owner()
    );
    // Root of its own user namespace, which maps exactly the caller.
    expect(&report, "uid", "0")?;
    expect(&report, "gid", "0")?;
    expect(&report, "uid_map", &format!("0 {uid} 1"))?;
    expect(&report, "setgroups", "deny")?;
    // PID, UTS, network namespaces, a fresh /proc of its own.
    expect(&report, "pid", "2")?;
    expect(&report, "init", "cvtest-init")?;
    expect(&report, "hostname", &format!("cvtest-{}", c.id()))?;
    expect(&report, "interfaces", "lo")?;
    expect(&report, "lo", "up")?;
    // The host's root read-only, /sys read-only, the writable dir writable, /tmp private.
    expect(&report, "write_etc", &libc::EROFS.to_string())?;
    expect(&report, "sys", "sysfs,ro")?;
    expect(&report, "write_tmp", "ok")?;
    expect(&report, "writable", "ok")?;
    // /dev: the host's nodes bound (no mknod in a user namespace), devpts of its own.
    expect(&report, "dev_null", "ok")?;
    expect(&report, "dev_zero", "0000")?;
    expect(&report, "dev_urandom", "ok")?;
    expect(&report, "ptmx", "ok")?;
    // Hardened /proc, capabilities cut to the default set.
    expect(&report, "proc_sys", "ro")?;
    let kcore =
        if Path::new("/proc/kcore").exists() { "masked".to_owned() } else { libc::ENOENT.to_string() };
    expect(&report, "kcore", &kcore)?;
    expect(&report, "cap_eff", &format!("{:x}", Capabilities::DEFAULT.bits()))?;
    expect(&report, "cap_bnd", &format!("{:x}", Capabilities::DEFAULT.bits()))?;
    // Unmapped ids do not exist in the namespace.
    expect(&report, "chown_other", &libc::EINVAL.to_string())?;
    // What it wrote belongs to the caller outside.
    let made = std::fs::metadata(dir.path().join("from-container")).map_err(|e| e.to_string())?;
    ensure!(made.uid() == uid && made.gid() == gid, "written as {}:{}", made.uid(), made.gid());
    c.destroy().map_err(|e| e.to_string())?;
    // Without a PID namespace (the kernel refuses a fresh /proc then: the host's is bound) or
    // without a filesystem of its own: still set up, still hardened.
    for caps in [Isolation::FILESYSTEM | Isolation::IPC, Isolation::PROCESS_CONTROL, Isolation::NONE] {
        let mut opts = Options::new();
        opts.set_isolation(caps);
        let (c, report) = probe(&opts, &["/nonexistent", "/nonexistent", "/nonexistent"])?;
        expect(&report, "uid", "0")?;
        expect(&report, "proc_sys", "ro")?;
        expect(&report, "cap_eff", &format!("{:x}", Capabilities::DEFAULT.bits()))?;
        c.destroy().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn rootless_network_reaches_its_host_end() -> Result<(), Failed> {
    network_reaches_its_host_end(None)
}

/// A zygote clones the inits (user namespace, maps, the run's network namespace) as well.
fn rootless_zygote_clones_inits() -> Result<(), Failed> {
    let mut z = Zygote::start().map_err(|e| e.to_string())?;
    network_reaches_its_host_end(Some(&mut z))?;
    let mut opts = Options::new();
    opts.set_isolation(no_cgroups());
    let (_c, report) = probe_via(Some(&mut z), &opts, &["/nonexistent", "/nonexistent", "/nonexistent"])?;
    expect(&report, "uid", "0")?;
    expect(&report, "dev_null", "ok")?;
    ensure!(z.lost().is_none(), "the zygote was lost: {:?}", z.lost());
    Ok(())
}

fn mapped_root_via_zygote() -> Result<(), Failed> {
    let mut z = Zygote::start().map_err(|e| e.to_string())?;
    let mut opts = Options::new();
    opts.map_root_to(NOBODY, NOBODY);
    let (_c, report) = probe_via(Some(&mut z), &opts, &["/nonexistent", "/nonexistent", "/nonexistent"])?;
    expect(&report, "uid_map", &format!("0 {NOBODY} 1"))?;
    expect(&report, "groups", "")?;
    expect(&report, "dev_zero", "0000")?;
    ensure!(z.lost().is_none(), "the zygote was lost: {:?}", z.lost());
    Ok(())
}

fn network_reaches_its_host_end(zygote: Option<&mut Zygote>) -> Result<(), Failed> {
    let mut opts = Options::new();
    // Any subnet: the host end is in the run's own namespace, not on the host.
    opts.set_isolation(no_cgroups()).set_network_cidr("10.231.7.2/24").map_err(|e| e.to_string())?;
    let mut c = Container::create(&opts).map_err(|e| format!("create: {}", cvtest_chain(&e)))?;
    let mut cmd = command("net-reach", &["10.231.7.1", "10.231.7.2"]);
    cmd.stdout(Stdio::Capture { limit: 1 << 16 }).stderr(Stdio::Capture { limit: 1 << 16 });
    let spawned = match zygote {
        Some(z) => c.spawn_via(z, &cmd),
        None => c.spawn(&cmd),
    };
    spawned.map_err(|e| format!("spawn: {}", cvtest_chain(&e)))?;
    let out = c.wait(Some(Duration::from_secs(60))).map_err(|e| format!("wait: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.termination == Termination::Exited(0),
        "net-reach ended {:?}\n{stdout}\n{}",
        out.termination,
        String::from_utf8_lossy(&out.stderr)
    );
    for want in ["address=10.231.7.2/24", "echo_reply=10.231.7.1", "tcp=refused", "outside=unreachable"] {
        ensure!(stdout.lines().any(|l| l == want), "no {want} in\n{stdout}");
    }
    let stats = out.peaks.net.ok_or("no traffic counters for the veth")?;
    ensure!(stats.rx_packets >= 2 && stats.tx_packets >= 2, "host end counted {stats:?}");
    ensure!(
        cvtest::test_support::Netlink::open()
            .and_then(|mut nl| nl.link_index(c.veth_host_name().unwrap_or("none")))
            .map_err(|e| e.to_string())?
            .is_none(),
        "the host end is on the host"
    );
    c.destroy().map_err(|e| e.to_string())?;
    Ok(())
}

/// The owner of root-mode containers in these tests: nobody.
const NOBODY: u32 = 65534;

fn mapped_root_cannot_use_root_only_files() -> Result<(), Failed> {
    let secrets = visible_tempdir()?;
    std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let secret = secrets.path().join("secret");
    std::fs::write(&secret, "root only").map_err(|e| e.to_string())?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    let socket = secrets.path().join("socket");
    let listener = std::os::unix::net::UnixListener::bind(&socket).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    let writable = tempdir()?;
    chown(writable.path(), NOBODY, NOBODY)?;

    let mut opts = Options::new();
    opts.set_rootfs(Rootfs::Host { writable: vec![writable.path().to_owned()] }).map_root_to(NOBODY, NOBODY);
    let args = [
        writable.path().to_str().expect("utf-8"),
        secret.to_str().expect("utf-8"),
        socket.to_str().expect("utf-8"),
    ];
    let (c, report) = probe(&opts, &args)?;
    ensure!(!c.is_rootless(), "root made a rootless container");
    ensure!(
        c.mapped_owner() == Some(cvtest::MappedOwner { uid: NOBODY, gid: NOBODY }),
        "{:?}",
        c.mapped_owner()
    );
    expect(&report, "uid", "0")?;
    expect(&report, "uid_map", &format!("0 {NOBODY} 1"))?;
    expect(&report, "groups", "")?;
    expect(&report, "read_secret", &libc::EACCES.to_string())?;
    expect(&report, "connect_secret", &libc::EACCES.to_string())?;
    expect(&report, "writable", "ok")?;
    expect(&report, "setuid", "ok")?;
    // What it wrote belongs to the mapped owner: a setuid bit on it makes nobody's binary.
    for name in ["from-container", "setuid"] {
        let meta = std::fs::metadata(writable.path().join(name)).map_err(|e| e.to_string())?;
        ensure!(meta.uid() == NOBODY && meta.gid() == NOBODY, "{name} is {}:{}", meta.uid(), meta.gid());
    }
    c.destroy().map_err(|e| e.to_string())?;
    drop(listener);
    // A writable directory the mapped owner may not write: refused at create, saying so.
    let roots = visible_tempdir()?;
    let mut opts = Options::new();
    opts.set_rootfs(Rootfs::Host { writable: vec![roots.path().to_owned()] }).map_root_to(NOBODY, NOBODY);
    match Container::create(&opts) {
        Err(e @ cvtest::CreateError::NotWritableByMappedRoot { .. }) => {
            ensure!(e.to_string().contains("CVTEST_MAP_ROOT_TO"), "{e}");
        }
        other => return Err(format!("a root-owned writable dir for nobody: {other:?}").into()),
    }
    Ok(())
}

fn privileged_keeps_real_root() -> Result<(), Failed> {
    let secrets = visible_tempdir()?;
    let secret = secrets.path().join("secret");
    std::fs::write(&secret, "root only").map_err(|e| e.to_string())?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    let mut opts = Options::new();
    opts.set_privileged(true).map_root_to(NOBODY, NOBODY);
    let (c, report) = probe(&opts, &["/nonexistent", secret.to_str().expect("utf-8"), "/nonexistent"])?;
    ensure!(c.mapped_owner().is_none(), "a privileged container has a user namespace");
    expect(&report, "uid_map", "0 0 4294967295")?;
    expect(&report, "read_secret", "ok")?;
    Ok(())
}

/// The `rootless::` trials, run by this binary as nobody (its path must be reachable for
/// nobody: the worktree and target dir are world-readable here and in the VM).
fn rootless_suite_as_nobody() -> Result<(), Failed> {
    let Ok(setpriv) = which("setpriv") else {
        return Err("setpriv (util-linux) is missing".into());
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["rootless::", "--test-threads=1"])
        .current_dir("/")
        .env("TMPDIR", "/tmp")
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("3 passed") && stdout.contains("0 ignored"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).ok_or(())
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), Failed> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: c is a NUL-terminated path that outlives the call.
    let r = unsafe { libc::chown(c.as_ptr(), uid, gid) };
    ensure!(r == 0, "chown {}: {}", path.display(), std::io::Error::last_os_error());
    Ok(())
}

/// The `userns` helper: `WRITABLE SECRET SOCKET`, each may be a path that does not exist.
pub fn userns_probe(writable: &str, secret: &str, socket: &str) -> i32 {
    let errno = |e: std::io::Error| e.raw_os_error().map_or_else(|| e.to_string(), |c| c.to_string());
    let show = |k: &str, v: String| println!("{k}={v}");
    let result = |r: std::io::Result<()>| r.map_or_else(errno, |()| "ok".to_owned());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default()
    };
    show("uid", field("Uid:").split_whitespace().next().unwrap_or("").to_owned());
    show("gid", field("Gid:").split_whitespace().next().unwrap_or("").to_owned());
    show("groups", field("Groups:"));
    let one_line = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(errno)
    };
    show("uid_map", one_line("/proc/self/uid_map"));
    show("setgroups", one_line("/proc/self/setgroups"));
    show("pid", std::process::id().to_string());
    show("init", one_line("/proc/1/comm"));
    show(
        "hostname",
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
    );
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    show("interfaces", names.join(","));
    let flags = std::fs::read_to_string("/sys/class/net/lo/flags").unwrap_or_default();
    let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).is_ok_and(|f| f & 1 == 1);
    show("lo", if up { "up" } else { "down" }.to_owned());
    show("write_etc", result(std::fs::write("/etc/cvtest-userns-probe", b"x")));
    show("write_tmp", result(std::fs::write("/tmp/cvtest-userns-probe", b"x")));
    let sys = nix::sys::statfs::statfs("/sys");
    let sys_ro = nix::sys::statvfs::statvfs("/sys")
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let is_sysfs = sys.is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC);
    show("sys", format!("{},{}", if is_sysfs { "sysfs" } else { "other" }, if sys_ro { "ro" } else { "rw" }));
    show("dev_null", result(std::fs::write("/dev/null", b"x")));
    let mut zero = [1u8; 2];
    let z = std::fs::File::open("/dev/zero").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut zero));
    show("dev_zero", z.map_or_else(errno, |()| format!("{:02x}{:02x}", zero[0], zero[1])));
    let mut rnd = [0u8; 8];
    show(
        "dev_urandom",
        result(
            std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut rnd)),
        ),
    );
    show("ptmx", result(std::fs::OpenOptions::new().read(true).write(true).open("/dev/ptmx").map(drop)));
    let proc_sys = nix::sys::statvfs::statvfs("/proc/sys")
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    show("proc_sys", if proc_sys { "ro" } else { "rw" }.to_owned());
    let kcore = std::fs::metadata("/proc/kcore").map(|m| m.rdev() == nix::sys::stat::makedev(1, 3));
    show(
        "kcore",
        match kcore {
            Ok(true) => "masked".to_owned(),
            Ok(false) => "visible".to_owned(),
            Err(e) => errno(e),
        },
    );
    show("cap_eff", format!("{:x}", u64::from_str_radix(&field("CapEff:"), 16).unwrap_or(u64::MAX)));
    show("cap_bnd", format!("{:x}", u64::from_str_radix(&field("CapBnd:"), 16).unwrap_or(u64::MAX)));
    let made = Path::new(writable).join("from-container");
    show("writable", result(std::fs::write(&made, b"hello")));
    let c = CString::new(made.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: c is a NUL-terminated path that outlives the call.
    let chowned = unsafe { libc::chown(c.as_ptr(), 1, 1) };
    show("chown_other", if chowned == 0 { "ok".to_owned() } else { errno(std::io::Error::last_os_error()) });
    let suid = Path::new(writable).join("setuid");
    let made_suid = std::fs::write(&suid, b"#!/bin/sh\n")
        .and_then(|()| std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)));
    show("setuid", result(made_suid));
    show("read_secret", result(std::fs::read(secret).map(drop)));
    show("connect_secret", result(std::os::unix::net::UnixStream::connect(socket).map(drop)));
    0
}

/// The `net-reach` helper: `HOST CONTAINER`. Prints the container end's address, whether the
/// host end answers an ICMP echo and a TCP SYN (with a reset: nothing listens there), and
/// whether an address outside the subnet is reachable.
pub fn net_reach(host: &str, container: &str) -> i32 {
    let host: std::net::Ipv4Addr = host.parse().expect("host address");
    let addrs = nix::ifaddrs::getifaddrs().map(|a| a.collect::<Vec<_>>()).unwrap_or_default();
    for a in &addrs {
        let (Some(addr), Some(mask)) = (a.address.as_ref(), a.netmask.as_ref()) else { continue };
        if let (Some(ip), Some(mask)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            if ip.ip().to_string() == container {
                println!("address={}/{}", ip.ip(), u32::from(mask.ip()).count_ones());
            }
        }
    }
    match echo(host) {
        Ok(from) => println!("echo_reply={from}"),
        Err(e) => println!("echo_reply=error {e}"),
    }
    let tcp = std::net::TcpStream::connect_timeout(&(host, 9).into(), Duration::from_secs(5));
    match tcp {
        Ok(_) => println!("tcp=connected"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => println!("tcp=refused"),
        Err(e) => println!("tcp=error {e}"),
    }
    let outside = std::net::TcpStream::connect_timeout(&([192, 0, 2, 1], 80).into(), Duration::from_secs(2));
    match outside {
        Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) || e.kind() == std::io::ErrorKind::TimedOut => {
            println!("outside=unreachable")
        }
        other => println!("outside={other:?}"),
    }
    0
}

/// One ICMP echo over a raw socket (`CAP_NET_RAW`, in the container's own namespace); returns
/// who answered.
fn echo(to: std::net::Ipv4Addr) -> std::io::Result<std::net::Ipv4Addr> {
    use std::net::UdpSocket;
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket that nothing else owns. A UdpSocket gives send_to/recv_from
    // with timeouts on any datagram socket.
    let sock: UdpSocket = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Echo request: type 8, code 0, checksum, id, sequence.
    let mut packet = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'c', b'v'];
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    sock.send_to(&packet, (to, 0))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        // An IPv4 header, then ICMP: type 0 is an echo reply.
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if n > ihl && buf[ihl] == 0 {
            if let std::net::SocketAddr::V4(v4) = from {
                return Ok(*v4.ip());
            }
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 =
        data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
