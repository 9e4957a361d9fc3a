//! Host safety: the host's network is as before a full run (checked in `load`), a container's
//! traffic stays in its subnet, containers see neither the host's processes nor each other's,
//! and a test cannot write outside its writable directories.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use libtest_mimic::{Completion, Failed};

use super::host::{ip, Baseline, TestDir, TestNetns};
use super::run::{rendezvous, Finished, Invocation};
use super::{note, CLEANUP_TIMEOUT};

fn run_tests(names: &[&str], jobs: &str, env: &[(&str, String)]) -> Result<Finished, Failed> {
    let base = Baseline::capture();
    let rdv = rendezvous();
    let mut args = vec!["-j", jobs, "--exact"];
    args.extend_from_slice(names);
    let mut inv = Invocation::new(&args).env("RELIABILITY_DIR", rdv.path());
    for (k, v) in env {
        inv = inv.env(k, v);
    }
    let done = inv.run()?;
    done.check_events_complete()?;
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    Ok(done)
}

pub fn sees_only_itself() -> Result<Completion, Failed> {
    let done = run_tests(&["safety::sees_only_itself"], "1", &[])?;
    done.expect_code(0)?;
    Ok(Completion::Completed)
}

/// Two tests at the same time: the host sees both, neither sees the other.
pub fn peers_cannot_see_each_other() -> Result<Completion, Failed> {
    let base = Baseline::capture();
    let rdv = rendezvous();
    let mut run = Invocation::new(&["-j", "2", "--exact", "safety::peer_a", "safety::peer_b"])
        .env("RELIABILITY_DIR", rdv.path())
        .start()?;
    for f in ["peer_a.ready", "peer_b.ready"] {
        run.wait_for_file(&rdv.path().join(f), Duration::from_secs(300))?;
    }
    // A test process: the fixture's binary with the test's name as an argument.
    let fixture = super::run::target_dir();
    let host_sees = |name: &str| {
        let name = format!("safety::{name}");
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
            let raw = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
            args.first()
                .is_some_and(|a| std::path::Path::new(&*String::from_utf8_lossy(a)).starts_with(&fixture))
                && args.contains(&name.as_bytes())
        })
    };
    let both = host_sees("peer_a") && host_sees("peer_b");
    std::fs::write(rdv.path().join("driver.seen"), b"")?;
    let done = run.finish(Duration::from_secs(300))?;
    done.check(both, "the host sees both peers running at once")?;
    done.check_events_complete()?;
    done.expect_code(0)?;
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    Ok(Completion::Completed)
}

/// A host directory outside the writable ones, with a file in it.
fn outside_dir() -> Result<TestDir, Failed> {
    // /tmp and /var/tmp are private in containers: put it where the host's root shows through,
    // in the target dir but not in the fixtures' (which their tests may write).
    let fixtures = crate::support::fixture_target_dir();
    let target = fixtures.parent().expect("the target dir");
    let path = target.join(format!("cvtest-rel-outside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path)?;
    std::fs::write(path.join("keep.me"), b"original")?;
    Ok(TestDir { path, cgroup: false })
}

fn outside_unchanged(dir: &TestDir) -> Result<(), Failed> {
    let names: Vec<String> = std::fs::read_dir(&dir.path)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let keep = std::fs::read(dir.path.join("keep.me")).unwrap_or_default();
    if names != ["keep.me"] || keep != b"original" {
        return Err(
            format!("a container changed {}: {names:?}, keep.me = {keep:?}", dir.path.display()).into()
        );
    }
    Ok(())
}

pub fn writes_stay_inside() -> Result<Completion, Failed> {
    let outside = outside_dir()?;
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let nonce = format!("{}-{}", std::process::id(), since_epoch.as_nanos());
    let base = Baseline::capture();
    let rdv = rendezvous();
    let done = Invocation::new(&["-j", "1", "--exact", "safety::writes_stay_inside"])
        .env("RELIABILITY_DIR", rdv.path())
        .env("RELIABILITY_OUTSIDE", &outside.path)
        .env("RELIABILITY_NONCE", &nonce)
        .run()?;
    done.check_events_complete()?;
    done.expect_code(0)?;
    outside_unchanged(&outside)?;
    for dir in ["/tmp", "/var/tmp"] {
        let host_tmp = std::path::Path::new(dir).join(format!("cvtest-rel-probe-{nonce}"));
        done.check(!host_tmp.exists(), &format!("the container's {dir} is its own"))?;
    }
    done.check(rdv.path().join("inside.ok").exists(), "the writable directory was writable")?;
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    Ok(Completion::Completed)
}

/// The test's `HOME` (the runner's) is a throw-away layer: its writes there stay in the
/// container, and a unix socket listening there on the host cannot be reached through it (an
/// ssh `ControlMaster`, a Docker Desktop socket).
pub fn home_is_a_throwaway_layer() -> Result<Completion, Failed> {
    use std::os::unix::fs::PermissionsExt;
    let home = std::path::PathBuf::from(std::env::var_os("HOME").ok_or("HOME is not set")?);
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let nonce = format!("{}-{}", std::process::id(), since_epoch.as_nanos());
    let socket = home.join(format!(".cvtest-rel-{nonce}.sock"));
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .map_err(|e| format!("bind {}: {e}", socket.display()))?;
    // Not blind: the host reaches it.
    let reached = std::os::unix::net::UnixStream::connect(&socket).is_ok();
    let mode = std::fs::metadata(&home)?.permissions().mode() & 0o7777;
    let base = Baseline::capture();
    let rdv = rendezvous();
    let result = Invocation::new(&["-j", "1", "--exact", "safety::home_is_throwaway"])
        .env("RELIABILITY_DIR", rdv.path())
        .env("RELIABILITY_NONCE", &nonce)
        .env("RELIABILITY_HOME_SOCKET", &socket)
        .env("RELIABILITY_HOME_MODE", mode.to_string())
        .run();
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    let done = result?;
    done.check(reached, "the host connects to its own socket (else the check would be blind)")?;
    done.check_events_complete()?;
    done.expect_code(0)?;
    done.check(rdv.path().join("home.ok").exists(), "the test ran to its end")?;
    for name in [format!("cvtest-rel-probe-{nonce}"), format!("cvtest-rel-dir-{nonce}")] {
        done.check(!home.join(&name).exists(), &format!("the test's {name} stayed out of the host's HOME"))?;
    }
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    note(&format!(
        "the test wrote in HOME ({}), none of it reached the host, and its socket refused",
        home.display()
    ));
    Ok(Completion::Completed)
}

/// A hostile test, root in its own mount namespace, tries to remount the read-only root
/// writable and to write outside the writable directories: refused (it lacks CAP_SYS_ADMIN), and
/// nothing appears on the host. Was finding 1 (docs/RELIABILITY.md).
pub fn remount_refused() -> Result<Completion, Failed> {
    let outside = outside_dir()?;
    let base = Baseline::capture();
    let rdv = rendezvous();
    let done = Invocation::new(&["-j", "1", "--exact", "safety::remount_refused"])
        .env("RELIABILITY_DIR", rdv.path())
        .env("RELIABILITY_OUTSIDE", &outside.path)
        .run()?;
    done.check_events_complete()?;
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    let escaped = outside.path.join("escaped").exists();
    let t = done.test("safety::remount_refused")?;
    done.check(
        !escaped,
        &format!("the container wrote {} on the host", outside.path.join("escaped").display()),
    )?;
    if t["status"] != "pass" {
        return Err(format!(
            "the hostile test did not end as refused: {} {} {}",
            t["status"],
            t["stdout"].as_str().unwrap_or(""),
            t["stderr"].as_str().unwrap_or("")
        )
        .into());
    }
    done.expect_code(0)?;
    outside_unchanged(&outside)?;
    note("a test's remount of the host's root was refused (EPERM) and nothing was written outside");
    Ok(Completion::Completed)
}

/// A test's capabilities follow its settings, from every front end: the default set by default,
/// plus `caps` from a config override or from the attribute (through the settings dump), all
/// with `privileged` from a config override; non-namespaced kernel knobs and block devices are
/// refused by default.
pub fn capabilities_follow_settings() -> Result<Completion, Failed> {
    let names = [
        "safety::capabilities_default",
        "safety::capabilities_added",
        "safety::capabilities_privileged",
        "safety::capabilities_from_attribute",
        "safety::kernel_knobs_refused",
    ];
    let done = run_tests(&names, "2", &[])?;
    for name in names {
        let t = done.test(name)?;
        done.check(
            t["status"] == "pass",
            &format!("{name} passed: {} {}", t["status"], t["stderr"].as_str().unwrap_or("")),
        )?;
    }
    done.expect_code(0)?;
    Ok(Completion::Completed)
}

/// A second namespace on another subnet (10.181.1.0/30), linked to the host and reachable from
/// it, cannot be reached from a container on 10.181.0.0/30.
pub fn subnet_isolation() -> Result<Completion, Failed> {
    let ns = TestNetns::create("other")?;
    let host_end = format!("cvrh{}", std::process::id());
    let ns_end = format!("cvrb{}", std::process::id());
    ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end, "netns", &ns.name])?;
    ip(&["addr", "add", "10.181.1.2/30", "dev", &host_end])?;
    ip(&["link", "set", &host_end, "up"])?;
    ip(&["-n", &ns.name, "addr", "add", "10.181.1.1/30", "dev", &ns_end])?;
    ip(&["-n", &ns.name, "link", "set", &ns_end, "up"])?;
    ip(&["-n", &ns.name, "route", "add", "default", "via", "10.181.1.2"])?;
    // From the host the other namespace answers (a RST from its port 9): it is reachable.
    let other: SocketAddr = "10.181.1.1:9".parse().expect("address");
    match TcpStream::connect_timeout(&other, Duration::from_secs(3)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        r => {
            return Err(format!(
                "the host cannot reach the other namespace ({r:?}): the check would be blind"
            )
            .into())
        }
    }
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let done = run_tests(&["safety::subnet_stays_inside"], "1", &[])?;
    done.expect_code(0)?;
    drop(ns);
    note(&format!("subnet isolation held with net.ipv4.ip_forward = {}", forward.trim()));
    Ok(Completion::Completed)
}

/// What the fixture's `terminal_out_of_reach` types if it can.
const INJECTED: &str = "cvtest-injected";

/// `s` in single quotes for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `cargo cvtest` under a pseudo-terminal (`script`, as a developer runs it in a terminal): the
/// test has no controlling terminal and no fd of it, and nothing it types reaches the terminal.
/// Issue 11, item 1.
pub fn terminal_out_of_reach() -> Result<Completion, Failed> {
    let inv = Invocation::new(&["-j", "1", "--exact", "safety::terminal_out_of_reach"]);
    let runner = inv.command();
    let mut line = String::from("tty; exec");
    for part in std::iter::once(runner.get_program()).chain(runner.get_args()) {
        line.push(' ');
        line.push_str(&sh_quote(&part.to_string_lossy()));
    }
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    for (k, v) in runner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run script (util-linux): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let terminal = text.lines().next().unwrap_or_default().trim().to_owned();
    if !terminal.starts_with("/dev/pts/") {
        return Err(format!("the runner did not run on a terminal (tty said {terminal:?}):\n{text}").into());
    }
    if text.contains(INJECTED) {
        return Err(format!("the test's input reached the terminal {terminal}:\n{text}").into());
    }
    let test = text
        .lines()
        // stderr's progress lines share the terminal: an event starts at its first `{`.
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l[l.find('{')?..].trim()).ok())
        .find(|v| v["type"] == "test" && v["name"] == "safety::terminal_out_of_reach")
        .ok_or_else(|| format!("no test event in the terminal's output:\n{text}"))?;
    if test["status"] != "pass" {
        return Err(format!(
            "the hostile test did not end as refused: {} {}",
            test["status"],
            test["stderr"].as_str().unwrap_or("")
        )
        .into());
    }
    if !out.status.success() {
        return Err(format!("script/cargo-cvtest ended with {}:\n{text}", out.status).into());
    }
    note(&format!("a test run on {terminal} had no controlling terminal and injected nothing"));
    Ok(Completion::Completed)
}

/// `keyctl(2)` with up to four arguments.
fn keyctl(op: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> libc::c_long {
    // SAFETY: the operations used take integers and pointers to NUL-terminated strings that
    // outlive the call.
    unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, c, d) }
}

/// A listener under the host's /run and a key in the session keyring the runner inherits: the
/// tests find neither. Issue 11, items 2 and 3.
pub fn run_and_keys_hidden() -> Result<Completion, Failed> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    const KEYCTL_INVALIDATE: libc::c_long = 21;
    const KEY_SPEC_SESSION_KEYRING: i32 = -3;
    let pid = std::process::id();
    let socket = std::path::PathBuf::from(format!("/run/cvtest-hostile-{pid}.sock"));
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .map_err(|e| format!("bind {}: {e}", socket.display()))?;
    // A session keyring of this thread's own (the runner is forked from it), with the key.
    let ring = std::ffi::CString::new(format!("cvtest-rel-{pid}")).expect("no NUL");
    let joined = keyctl(KEYCTL_JOIN_SESSION_KEYRING, ring.as_ptr() as usize, 0, 0, 0);
    if joined < 0 {
        return Err(format!("join a session keyring: {}", std::io::Error::last_os_error()).into());
    }
    let description = format!("cvtest-rel-secret-{pid}");
    let c_description = std::ffi::CString::new(description.clone()).expect("no NUL");
    let payload = b"the runner's secret";
    // SAFETY: NUL-terminated type and description; the payload is valid for its length.
    let id = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            c_description.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_SESSION_KEYRING,
        )
    };
    if id <= 0 {
        return Err(format!("add_key: {}", std::io::Error::last_os_error()).into());
    }
    let done = run_tests(
        &["safety::run_socket_hidden", "safety::session_keyring_fresh"],
        "2",
        &[
            ("RELIABILITY_RUN_SOCKET", socket.display().to_string()),
            ("RELIABILITY_KEY_DESCRIPTION", description),
            ("RELIABILITY_KEY_ID", id.to_string()),
        ],
    );
    keyctl(KEYCTL_INVALIDATE, id as usize, 0, 0, 0);
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    let done = done?;
    for name in ["safety::run_socket_hidden", "safety::session_keyring_fresh"] {
        let t = done.test(name)?;
        done.check(
            t["status"] == "pass",
            &format!("{name} passed: {} {}", t["status"], t["stderr"].as_str().unwrap_or("")),
        )?;
    }
    done.expect_code(0)?;
    Ok(Completion::Completed)
}

/// Another address of the host (10.181.4.2, on a veth into a namespace this test makes) with a
/// server on 0.0.0.0: a test with a network reaches its host end but not that address; with
/// `host_access = "all"` it does. Issue 11, item 4.
pub fn host_addresses_filtered() -> Result<Completion, Failed> {
    let ns = TestNetns::create("hostaddr")?;
    let host_end = format!("cvrh{}", std::process::id());
    let ns_end = format!("cvrn{}", std::process::id());
    ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end, "netns", &ns.name])?;
    let _link = super::host::TestLink(host_end.clone());
    ip(&["addr", "add", "10.181.4.2/30", "dev", &host_end])?;
    ip(&["link", "set", &host_end, "up"])?;
    let server = std::net::TcpListener::bind("0.0.0.0:0")?;
    let other = format!("10.181.4.2:{}", server.local_addr()?.port());
    // Not blind: the host reaches it.
    TcpStream::connect_timeout(&other.parse().expect("an address"), Duration::from_secs(3))
        .map_err(|e| format!("the host cannot reach its own {other}: {e}"))?;
    let names = ["safety::host_address_refused", "safety::host_address_open"];
    let done = run_tests(&names, "2", &[("RELIABILITY_OTHER_HOST", other.clone())])?;
    drop(server);
    for name in names {
        let t = done.test(name)?;
        done.check(
            t["status"] == "pass",
            &format!("{name} passed: {} {}", t["status"], t["stderr"].as_str().unwrap_or("")),
        )?;
    }
    done.expect_code(0)?;
    drop(ns);
    note(&format!("{other} was unreachable by default and reachable with host_access = \"all\""));
    Ok(Completion::Completed)
}
