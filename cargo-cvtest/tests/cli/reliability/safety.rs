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
    let path = std::env::temp_dir().join(format!("cvtest-rel-outside-{}", std::process::id()));
    // /tmp is private in containers: put it where the host's root shows through.
    let path = std::path::Path::new("/var/tmp").join(path.file_name().expect("a name"));
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
    let host_tmp = std::path::Path::new("/tmp").join(format!("cvtest-rel-probe-{nonce}"));
    done.check(!host_tmp.exists(), "the container's /tmp is its own")?;
    done.check(rdv.path().join("inside.ok").exists(), "the writable directory was writable")?;
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
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
