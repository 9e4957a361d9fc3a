//! Setup failing halfway: a cgroup creation refused, a veth name already taken, a controller
//! missing. The result must be a clean error, with whatever was already made undone. Provoked
//! only on things this suite creates: a cgroup name filled in advance, a parent cgroup with a
//! smaller CPU quota, links with the names a runner will pick, a private mount namespace without
//! the pids hierarchy.

use std::os::fd::AsFd;
use std::time::Duration;

use cvtest::test_support::{CgroupVersion, Hierarchy};
use cvtest::test_support::{Veth, VethName};
use cvtest::NetError;
use libtest_mimic::{Completion, Failed};

use super::host::{ip, link_index, links_in, own_cgroup_dirs, Baseline, TestDir, TestLink, TestNetns};
use super::run::{rendezvous, Invocation, Prelude};
use super::{note, CLEANUP_TIMEOUT};

fn v1() -> Result<bool, Failed> {
    Ok(Hierarchy::detect().map_err(|e| format!("{e}"))?.version() == CgroupVersion::V1)
}

/// The name of the first test's cgroup is taken (in the last hierarchy cvtest creates it in):
/// that test is an ERROR naming the cgroup, the directories made before it in other hierarchies
/// are removed again, and the other tests run.
pub fn cgroup_name_taken() -> Result<Completion, Failed> {
    let base = Baseline::capture();
    let rdv = rendezvous();
    let run =
        Invocation::new(&["-j", "1", "--exact", "faults::small_a", "faults::small_b", "faults::small_c"])
            .env("RELIABILITY_DIR", rdv.path())
            .prelude(Prelude::Stopped)
            .start()?;
    let dirs = own_cgroup_dirs();
    // The last hierarchy a container's cgroup is made in (so the others are made first and must
    // be undone); containers with a PID namespace skip the v1 freezer hierarchy.
    let last = dirs
        .iter()
        .rev()
        .find(|d| !d.components().any(|c| c.as_os_str() == "freezer"))
        .ok_or("no cgroup hierarchy")?;
    // Sequence 0 is the runner's preflight container; 1 is the first test's.
    let taken = TestDir { path: last.join(format!("{}1", run.owner.cgroup_prefix())), cgroup: true };
    std::fs::create_dir(&taken.path).map_err(|e| format!("mkdir {}: {e}", taken.path.display()))?;
    run.resume();
    let done = run.finish(Duration::from_secs(600))?;
    done.check_events_complete()?;
    done.expect_code(100)?;
    let tests = done.tests();
    let errors: Vec<_> = tests.iter().filter(|t| t["status"] == "error").collect();
    let passed = tests.iter().filter(|t| t["status"] == "pass").count();
    done.check(errors.len() == 1 && passed == 2, "one ERROR, two PASS")?;
    let message = errors[0]["message"].as_str().unwrap_or("");
    let path = taken.path.display().to_string();
    done.check(
        message.contains("failed to create cgroup") && message.contains(&path) && message.contains("exists"),
        &format!("the error names the cgroup {path} and the cause: {message:?}"),
    )?;
    let left = base.leaks(&done.owner);
    let others: Vec<_> = left.cgroups.iter().filter(|c| **c != path).collect();
    done.check(others.is_empty(), &format!("partial cgroups left: {others:?}"))?;
    drop(taken);
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    note(&format!("cgroup name taken: {message}"));
    Ok(Completion::Completed)
}

/// The runner runs alone below a parent cgroup made here, which refuses what cvtest asks for:
///
/// - cgroup v1: the parent's CPU quota is half a CPU; a test asking for one CPU cannot get it
///   (the kernel refuses a child quota above its parent's, after the directories and the other
///   limits are written): that test is an ERROR naming the file, the other test runs.
/// - cgroup v2: the parent allows one descendant (`cgroup.max.descendants`), which the runner's
///   supervisor leaf takes (no-internal-processes rule); the first container is refused: a setup
///   error (102) naming the cgroup.
///
/// Either way nothing of the runner's is left below the parent.
pub fn cgroup_creation_refused() -> Result<Completion, Failed> {
    if !v1()? {
        return descendants_refused();
    }
    let cpu_dir = own_cgroup_dirs()
        .into_iter()
        .find(|d| d.join("cpu.cfs_quota_us").exists())
        .ok_or("no v1 cpu hierarchy with CFS quotas")?;
    let parent = TestDir { path: cpu_dir.join(format!("cvrel-quota-{}", std::process::id())), cgroup: true };
    std::fs::create_dir(&parent.path).map_err(|e| format!("mkdir {}: {e}", parent.path.display()))?;
    std::fs::write(parent.path.join("cpu.cfs_period_us"), "100000")?;
    std::fs::write(parent.path.join("cpu.cfs_quota_us"), "50000")?;
    let mut base = Baseline::capture();
    base.extra_cgroup_dirs.push(parent.path.clone());
    let rdv = rendezvous();
    let run = Invocation::new(&["-j", "1", "--exact", "faults::wants_one_cpu", "faults::small_a"])
        .env("RELIABILITY_DIR", rdv.path())
        .prelude(Prelude::Stopped)
        .start()?;
    std::fs::write(parent.path.join("cgroup.procs"), run.pid().to_string())?;
    run.resume();
    let done = run.finish(Duration::from_secs(600))?;
    done.check_events_complete()?;
    done.expect_code(100)?;
    let t = done.test("faults::wants_one_cpu")?;
    let message = t["message"].as_str().unwrap_or("");
    done.check(
        t["status"] == "error" && message.contains("cpu.cfs_quota_us") && message.contains("100000"),
        "ERROR naming cpu.cfs_quota_us and the value",
    )?;
    done.check(done.test("faults::small_a")?["status"] == "pass", "the other test runs")?;
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    note(&format!("cpu quota refused: {message}"));
    Ok(Completion::Completed)
}

/// Links named as the runner's first veths exist before it starts: it skips those names, its
/// test passes, and the links are untouched.
pub fn veth_names_taken_are_skipped() -> Result<Completion, Failed> {
    let base = Baseline::capture();
    let rdv = rendezvous();
    let run = Invocation::new(&["-j", "1", "--exact", "faults::small_networked"])
        .env("RELIABILITY_DIR", rdv.path())
        .prelude(Prelude::Stopped)
        .start()?;
    let mut squatters = Vec::new();
    for n in 0..4 {
        let name = run.owner.veth_name(n);
        ip(&["link", "add", &name, "type", "bridge"])?;
        let link = TestLink(name);
        let index = link_index(None, &link.0).ok_or("squatter link vanished")?;
        squatters.push((link, index));
    }
    run.resume();
    let done = run.finish(Duration::from_secs(600))?;
    done.check_events_complete()?;
    done.expect_code(0)?;
    done.check(done.test("faults::small_networked")?["status"] == "pass", "PASS despite taken names")?;
    for (link, index) in &squatters {
        done.check(link_index(None, &link.0) == Some(*index), &format!("{} untouched", link.0))?;
    }
    drop(squatters);
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    Ok(Completion::Completed)
}

/// Library level: `Veth::create` when the container end's name is taken inside the namespace,
/// and when the host end's name is taken on the host. Each is `NameTaken` naming the link and
/// where; the half made (the host end, its address and route) is gone; the squatters untouched.
pub fn veth_create_name_taken() -> Result<Completion, Failed> {
    let ns = TestNetns::create("vn")?;
    let fd = std::fs::File::open(ns.path())?;
    let net: cvtest::NetworkSpec = "10.182.1.2/30".parse().map_err(|e| format!("{e}"))?;
    let tag = cvtest::test_support::owner_tag();

    let name = VethName::next();
    ip(&["-n", &ns.name, "link", "add", name.container(), "type", "bridge"])?;
    let inside = link_index(Some(&ns.name), name.container());
    let err = match Veth::create(fd.as_fd(), &net, &name, tag) {
        Err(NetError::NameTaken { name: n, in_container: true }) if n == name.container() => {
            NetError::NameTaken { name: n, in_container: true }
        }
        other => {
            return Err(
                format!("want NameTaken in the container for {}, got {other:?}", name.container()).into()
            )
        }
    };
    if link_index(None, name.host()).is_some() {
        return Err(format!("the host end {} was left behind", name.host()).into());
    }
    if route_exists("10.182.1.0/30") {
        return Err("a host route for 10.182.1.0/30 was left behind".into());
    }
    if link_index(Some(&ns.name), name.container()) != inside || links_in(&ns.name).len() != 2 {
        return Err(format!("the namespace changed: {:?}", links_in(&ns.name)).into());
    }
    let first = err.to_string();

    let name = VethName::next();
    ip(&["link", "add", name.host(), "type", "bridge"])?;
    let squatter = TestLink(name.host().to_owned());
    let on_host = link_index(None, name.host());
    match Veth::create(fd.as_fd(), &net, &name, tag) {
        Err(NetError::NameTaken { name: n, in_container: false }) if n == name.host() => {}
        other => return Err(format!("want NameTaken on the host for {}, got {other:?}", name.host()).into()),
    }
    if link_index(None, name.host()) != on_host || route_exists("10.182.1.0/30") {
        return Err(format!("the host's {} was changed, or a route was left", name.host()).into());
    }
    if links_in(&ns.name).iter().any(|l| l == name.container()) {
        return Err(format!("the container end {} was left in the namespace", name.container()).into());
    }
    drop(squatter);
    note(&format!("veth name taken in the container: {first}"));
    Ok(Completion::Completed)
}

fn route_exists(prefix: &str) -> bool {
    let out = std::process::Command::new("ip").args(["-j", "route", "show", "table", "all", prefix]).output();
    let v: serde_json::Value =
        out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or(serde_json::Value::Null);
    v.as_array().is_some_and(|a| !a.is_empty())
}

/// A controller cvtest needs is missing. cgroup v1: the runner starts in a private mount
/// namespace where the pids hierarchy is not mounted. cgroup v2: our cgroup was not given the
/// pids controller (the v2 VM leg of scripts/reliability.sh starts us so). The runner stops
/// before any test with a setup error (102) naming the controller; nothing is created.
pub fn controller_missing() -> Result<Completion, Failed> {
    let prelude = if v1()? {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let pids_mount = mountinfo
            .lines()
            .filter_map(|l| l.split_once(" - "))
            .find(|(_, post)| {
                post.starts_with("cgroup ")
                    && post.split(' ').nth(2).is_some_and(|o| o.split(',').any(|x| x == "pids"))
            })
            .and_then(|(pre, _)| pre.split(' ').nth(4))
            .ok_or("no v1 pids hierarchy mounted")?
            .to_owned();
        Prelude::HideMount(pids_mount.into())
    } else {
        let own = own_cgroup_dirs().pop().ok_or("no cgroup v2 directory")?;
        let controllers = std::fs::read_to_string(own.join("cgroup.controllers"))?;
        if controllers.split_whitespace().any(|c| c == "pids") {
            return Ok(Completion::ignored_with(format!(
                "cgroup v2 and {} offers pids: run under scripts/reliability.sh's VM leg without it",
                own.display()
            )));
        }
        Prelude::None
    };
    let base = Baseline::capture();
    let rdv = rendezvous();
    let done = Invocation::new(&["-j", "1", "--exact", "faults::small_a"])
        .env("RELIABILITY_DIR", rdv.path())
        .prelude(prelude)
        .run()?;
    done.expect_code(102)?;
    done.check(
        done.stderr.contains("pids") && done.stderr.contains("not available"),
        "the error names the missing pids controller",
    )?;
    done.check(done.tests().is_empty(), "no test ran")?;
    base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    let line = done.stderr.lines().filter(|l| l.contains("pids")).collect::<Vec<_>>().join(" / ");
    note(&format!("pids controller missing: {line}"));
    Ok(Completion::Completed)
}

fn descendants_refused() -> Result<Completion, Failed> {
    let dirs = own_cgroup_dirs();
    let [own] = dirs.as_slice() else { return Err(format!("cgroup v2 with {} own dirs", dirs.len()).into()) };
    let parent = TestDir { path: own.join(format!("cvrel-desc-{}", std::process::id())), cgroup: true };
    std::fs::create_dir(&parent.path).map_err(|e| format!("mkdir {}: {e}", parent.path.display()))?;
    std::fs::write(parent.path.join("cgroup.max.descendants"), "1")?;
    let mut base = Baseline::capture();
    base.extra_cgroup_dirs.push(parent.path.clone());
    let rdv = rendezvous();
    let run = Invocation::new(&["-j", "1", "--exact", "faults::small_a"])
        .env("RELIABILITY_DIR", rdv.path())
        .prelude(Prelude::Stopped)
        .start()?;
    std::fs::write(parent.path.join("cgroup.procs"), run.pid().to_string())?;
    run.resume();
    let done = run.finish(Duration::from_secs(600))?;
    done.expect_code(102)?;
    let path = parent.path.display().to_string();
    done.check(
        done.stderr.contains("failed to create cgroup") && done.stderr.contains(&path),
        &format!("the error names a cgroup below {path}"),
    )?;
    let supervisor = parent.path.join(format!("{}supervisor", done.owner.cgroup_prefix()));
    let left_supervisor = supervisor.exists();
    let result = base.wait_clean(&done.owner, CLEANUP_TIMEOUT);
    // Whatever the verdict, leave nothing: the runner is gone, its leaf is empty.
    let _ = std::fs::remove_dir(&supervisor);
    drop(parent);
    result?;
    let line =
        done.stderr.lines().find(|l| l.contains("failed to create cgroup")).unwrap_or_default().to_owned();
    note(&format!("cgroup.max.descendants refused (supervisor leaf left: {left_supervisor}): {line}"));
    Ok(Completion::Completed)
}
