//! The background thread (`Options::set_background`): cgroups made ahead of need carry each
//! container's own limits and fresh peaks, every process of a container is gone when its destroy
//! returns, and `release_own_cgroup` leaves no cgroup of the process behind, made ahead or
//! retired, and no container's mount namespace held. Run in a helper process: the check lists every cgroup of its owner, which other
//! trials of this process would disturb.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cvtest::{Command, Container, Options, Stdio, Termination};
use libtest_mimic::{Failed, Trial};

use crate::container::fail;
use crate::helpers;
use crate::support::privileged_unless;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {{
        let ok: bool = $cond;
        if !ok {
            return Err(Failed::from(format!($($msg)+)));
        }
    }};
}

pub fn trials() -> Vec<Trial> {
    vec![
        privileged_unless(
            "background::cgroups_made_ahead_and_removed_behind",
            cgroups_made_ahead_and_removed_behind,
        ),
        privileged_unless("background::veth_pairs_made_ahead_work_and_go", veth_pairs_made_ahead_work_and_go),
        privileged_unless(
            "background::recycled_cgroups_start_fresh_and_only_after_confined_tests",
            recycled_cgroups_start_fresh_and_only_after_confined_tests,
        ),
    ]
}

/// Runs helper `mode` in a process of its own, which must succeed and print `report`; `Some`
/// (why) when a child of this test cannot make containers here.
fn helper_trial(mode: &str, report: &str) -> Result<Option<String>, Failed> {
    let exe = std::env::current_exe().map_err(fail("exe"))?;
    let out = std::process::Command::new(&exe)
        .env(helpers::HELPER_ENV, mode)
        .output()
        .map_err(fail("run the helper"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("cannot enable") {
        return Ok(Some(format!("a child of this test cannot make containers here: {stdout}")));
    }
    ensure!(out.status.success(), "helper failed ({}):\n{stdout}\n{stderr}", out.status);
    ensure!(stdout.contains(report), "no report:\n{stdout}");
    Ok(None)
}

fn veth_pairs_made_ahead_work_and_go() -> Result<Option<String>, Failed> {
    helper_trial("background-veth", "took made ahead: ")
}

/// The host's links whose names start with `prefix`.
fn links_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Helper mode: containers with a veth, the background thread and the pool, one after the
/// other. Each pings its host end over TCP; the second and later take the pair the thread made
/// ahead (it shows on the host, down and with this process's alias, before they are created:
/// their id is its id); after `release_own_cgroup` no link of this process is left on the host.
pub fn veth_helper() -> i32 {
    report("took made ahead", run_veth_helper())
}

/// Prints `what: N` and returns 0, or prints the error and returns 1.
fn report(what: &str, result: Result<usize, String>) -> i32 {
    match result {
        Ok(n) => {
            println!("{what}: {n}");
            0
        }
        Err(e) => {
            println!("{e}");
            1
        }
    }
}

fn run_veth_helper() -> Result<usize, String> {
    let mut opts = Options::new();
    opts.set_background(true)
        .set_reuse_netns(true)
        .set_network_cidr("10.213.16.2/24")
        .map_err(|e| e.to_string())?;
    let host = opts.network().map(|n| n.host()).ok_or("no network")?;
    let prefix = format!("veth{}", &cvtest::test_support::VethName::next_id().id()[..5]);
    let mut used: Vec<String> = Vec::new();
    let mut took = 0;
    for i in 0..4 {
        // After the first container, the thread makes the next one's pair: wait until it shows.
        let ready = if i == 0 {
            None
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let fresh: Vec<String> =
                    links_with(&prefix).into_iter().filter(|l| !used.contains(l)).collect();
                let made = cvtest::netns_pool_stats().veths_made_ahead;
                if let ([one], true) = (fresh.as_slice(), made == i) {
                    break Some(one.clone());
                }
                if Instant::now() > deadline {
                    return Err(format!("container {i}: no pair made ahead within 10 s (links {fresh:?})"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let listener = std::net::TcpListener::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept()?;
            let mut ping = [0u8; 4];
            s.read_exact(&mut ping)?;
            s.write_all(b"pong")
        });
        if let Some(ready) = &ready {
            // Down, and named as this process's (a dead owner's sweep finds it by its alias).
            let read =
                |f: &str| std::fs::read_to_string(format!("/sys/class/net/{ready}/{f}")).unwrap_or_default();
            let (alias, state) = (read("ifalias"), read("operstate"));
            if !alias.starts_with(cvtest::test_support::ALIAS_PREFIX) || state.trim() != "down" {
                return Err(format!("the pair made ahead {ready}: alias {alias:?}, operstate {state:?}"));
            }
        }
        let mut c = Container::create(&opts).map_err(|e| cvtest::error_chain(&e))?;
        let name = format!("veth{}", c.id());
        if let Some(ready) = &ready {
            if *ready != name {
                return Err(format!("container {i} is {name}, not the pair made ahead {ready}"));
            }
            took += 1;
        }
        let cmd = helpers::command("tcp", &[&format!("{host}:{port}")]);
        c.spawn(&cmd).map_err(|e| cvtest::error_chain(&e))?;
        let out = c.wait(Some(Duration::from_secs(60))).map_err(|e| cvtest::error_chain(&e))?;
        if out.termination != Termination::Exited(0) {
            return Err(format!(
                "container {i}: {:?}: {}",
                out.termination,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        server
            .join()
            .map_err(|_| "the server panicked")?
            .map_err(|e| format!("container {i}: server: {e}"))?;
        c.destroy().map_err(|e| cvtest::error_chain(&e))?;
        used.push(name);
    }
    // The last create had the thread make one more: the release deletes it.
    cvtest::release_own_cgroup().map_err(|e| cvtest::error_chain(&e))?;
    let left = cvtest::wait_released_veths(Duration::from_secs(10));
    let links = links_with(&prefix);
    if !left.is_empty() || !links.is_empty() {
        return Err(format!("left after release_own_cgroup: released {left:?}, links {links:?}"));
    }
    Ok(took)
}

/// Below the size a recycled cgroup is given for (64 MiB): these containers always get a new
/// cgroup, made ahead.
const LIMIT: u64 = 48 << 20;

fn cgroups_made_ahead_and_removed_behind() -> Result<Option<String>, Failed> {
    helper_trial("background", "made ahead: ")
}

/// This process's cgroups beside `taken` (one of them): `cvtest.<its owner tag>.<n>` in its
/// parent directory.
fn ours(taken: &Path) -> Vec<PathBuf> {
    let name = taken.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some((tag, _)) = name.rsplit_once('.') else { return Vec::new() };
    let prefix = format!("{tag}.");
    let Some(own) = taken.parent() else { return Vec::new() };
    std::fs::read_dir(own)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
                .collect()
        })
        .unwrap_or_default()
}

/// The memory limit the kernel holds for the cgroup at `dir` (v1 or v2).
fn memory_limit(dirs: &[PathBuf]) -> Option<u64> {
    dirs.iter().find_map(|d| {
        ["memory.limit_in_bytes", "memory.max"]
            .iter()
            .find_map(|f| std::fs::read_to_string(d.join(f)).ok()?.trim().parse().ok())
    })
}

/// Helper mode: five containers with the background thread, checked one by one, then the
/// release. Prints "made ahead: N" and exits 0 when every check held.
pub fn helper() -> i32 {
    report("made ahead", run_helper())
}

fn run_helper() -> Result<usize, String> {
    let mut opts = Options::new();
    opts.set_background(true)
        .set_cgroup_limits(&LIMIT.to_string(), "100", "32")
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("/bin/sh");
    // A little memory of its own, so that its peak says it was counted.
    cmd.args(["-c", "x=$(head -c 2000000 /dev/zero | tr '\\0' a); echo ${#x}"])
        .stdout(Stdio::Capture { limit: 1 << 16 });
    // Every directory of every container (one per hierarchy on cgroup v1).
    let mut taken: Vec<PathBuf> = Vec::new();
    for i in 0..5 {
        let mut c = Container::create(&opts).map_err(|e| cvtest::error_chain(&e))?;
        let dirs = c.cgroup_paths();
        if dirs.is_empty() {
            return Err(format!("container {i} has no cgroup"));
        }
        // Its own limits, whether made ahead or now.
        let limit = memory_limit(&dirs);
        if limit != Some(LIMIT) {
            return Err(format!("container {i}: memory limit {limit:?}, expected {LIMIT}"));
        }
        c.spawn(&cmd).map_err(|e| cvtest::error_chain(&e))?;
        let out = c.wait(Some(Duration::from_secs(60))).map_err(|e| cvtest::error_chain(&e))?;
        if out.termination != Termination::Exited(0) {
            return Err(format!("container {i}: {:?}", out.termination));
        }
        // A fresh cgroup's peak: at least the 2 MB it held, far below the limit.
        let peak = out.peaks.memory_bytes.map(|m| m.value).unwrap_or(0);
        if !(2_000_000..LIMIT).contains(&peak) {
            return Err(format!("container {i}: memory peak {peak}"));
        }
        c.destroy().map_err(|e| cvtest::error_chain(&e))?;
        // Destroy returned: nothing of the container runs, its directory may still be there.
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            if !procs.trim().is_empty() {
                return Err(format!("container {i}: {} still holds {procs:?}", d.display()));
            }
        }
        taken.extend(dirs);
    }
    // The thread makes the next one after every take: one that no container took appears.
    let deadline = Instant::now() + Duration::from_secs(10);
    let made_ahead = loop {
        let ahead = ours(&taken[0]).into_iter().filter(|p| !taken.contains(p)).count();
        if ahead > 0 {
            break ahead;
        }
        if Instant::now() > deadline {
            return Err("no cgroup made ahead within 10 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    cvtest::release_own_cgroup().map_err(|e| cvtest::error_chain(&e))?;
    let left: Vec<PathBuf> = taken.iter().flat_map(|t| ours(t)).collect();
    if !left.is_empty() {
        return Err(format!("left after release_own_cgroup: {left:?}"));
    }
    // The containers' mount namespaces, held so that their inits' exits did not tear them down,
    // went with the thread's jobs.
    let held: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.to_string())?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.display().to_string())
        .filter(|l| l.starts_with("mnt:["))
        .collect();
    if !held.is_empty() {
        return Err(format!("mount namespaces still held after release_own_cgroup: {held:?}"));
    }
    Ok(made_ahead)
}

fn recycled_cgroups_start_fresh_and_only_after_confined_tests() -> Result<Option<String>, Failed> {
    helper_trial("background-reuse", "recycled: ")
}

/// Helper mode: the reuse of cgroups (cgroup v1: a confined container's emptied cgroup serves
/// the next container of the process). Prints "recycled: N" and exits 0 when every check held.
pub fn reuse_helper() -> i32 {
    report("recycled", run_reuse_helper())
}

/// The memory and pids limits the kernel held for the last container [`one`] ran.
static HELD: std::sync::Mutex<(Option<String>, Option<String>)> = std::sync::Mutex::new((None, None));

/// One container of `opts` running the helper `mode`; its cgroup directories and outcome, after
/// its destroy and the background thread's work on it. What the kernel held as its limits while
/// it ran goes to [`HELD`].
fn one(opts: &Options, mode: &str, args: &[&str]) -> Result<(Vec<PathBuf>, cvtest::Outcome), String> {
    let mut c = Container::create(opts).map_err(|e| cvtest::error_chain(&e))?;
    let dirs = c.cgroup_paths();
    if let Ok(mut held) = HELD.lock() {
        *held = (kernel_value(&dirs, "memory.limit_in_bytes"), kernel_value(&dirs, "pids.max"));
    }
    let mut cmd = helpers::command(mode, args);
    cmd.stdout(Stdio::Capture { limit: 1 << 16 });
    c.spawn(&cmd).map_err(|e| cvtest::error_chain(&e))?;
    let out = c.wait(Some(Duration::from_secs(60))).map_err(|e| cvtest::error_chain(&e))?;
    c.destroy().map_err(|e| cvtest::error_chain(&e))?;
    cvtest::test_support::background_settled();
    Ok((dirs, out))
}

/// What the kernel holds in `file` of whichever of `dirs` has it.
fn kernel_value(dirs: &[PathBuf], file: &str) -> Option<String> {
    dirs.iter().find_map(|d| std::fs::read_to_string(d.join(file)).ok()).map(|v| v.trim().to_owned())
}

fn limited(memory: &str, pids: &str) -> Result<Options, String> {
    let mut opts = Options::new();
    opts.set_background(true).set_cgroup_limits(memory, "100", pids).map_err(|e| e.to_string())?;
    Ok(opts)
}

fn run_reuse_helper() -> Result<usize, String> {
    let v1 = cvtest::test_support::Hierarchy::detect().map_err(|e| e.to_string())?.version()
        == cvtest::test_support::CgroupVersion::V1;
    let big = limited("256M", "64")?;
    // The first container charges the helper's executable pages to its cgroup: more than a
    // recycled cgroup may start with, so it is removed (its charges go to the parent).
    one(&big, "alloc", &["1048576"])?;
    // Tests that used much of memory, processes and CPU time (48 MiB, 7 processes, 300 ms), each
    // in the cgroup the one before had when it was recycled; a fork leaves kernel objects
    // charged until an RCU grace period has passed, which can keep its cgroup from recycling.
    let (a_dirs, a) = one(&big, "alloc", &["50331648"])?;
    let (a2_dirs, a2) = one(&big, "fork", &["6"])?;
    let (a3_dirs, a3) = one(&big, "spin", &["300"])?;
    for (what, o) in [("alloc", &a), ("fork", &a2), ("spin", &a3)] {
        if o.termination != Termination::Exited(0) {
            return Err(format!("{what}: {:?}", o.termination));
        }
    }
    // The next container, with other limits: on v1 in the spinner's cgroup, holding its own
    // limits, its peaks its own.
    let small = limited("128M", "16")?;
    let (b_dirs, b) = one(&small, "alloc", &["1048576"])?;
    let mut recycled = 0;
    if v1 {
        if b_dirs != a3_dirs || a_dirs != a3_dirs {
            return Err(format!("not recycled: {a_dirs:?}, then {a3_dirs:?}, then {b_dirs:?}"));
        }
        recycled += 1;
    } else if [&a_dirs, &a2_dirs, &a3_dirs].contains(&&b_dirs) {
        return Err(format!("cgroup v2: {b_dirs:?} served two containers"));
    }
    let peak = b.peaks.memory_bytes.map(|m| m.value).unwrap_or(u64::MAX);
    let pids = b.peaks.pids.map(|m| m.value).unwrap_or(u64::MAX);
    let cpu = b.peaks.cpu_total().unwrap_or(Duration::MAX);
    let (a_peak, a_pids, a_cpu) = (
        a.peaks.memory_bytes.map(|m| m.value).unwrap_or(0),
        a2.peaks.pids.map(|m| m.value).unwrap_or(0),
        a3.peaks.cpu_total().unwrap_or_default(),
    );
    if !(1 << 20..8 << 20).contains(&peak) || a_peak < 48 << 20 {
        return Err(format!("memory peaks: {a_peak} then {peak} (the second allocates 1 MiB)"));
    }
    if pids > 3 || a_pids < 7 {
        return Err(format!("pids peaks: {a_pids} then {pids}"));
    }
    if cpu >= Duration::from_millis(150) || a_cpu < Duration::from_millis(250) {
        return Err(format!("CPU times: {a_cpu:?} then {cpu:?}"));
    }
    let (limit, pids_max) = HELD.lock().map(|h| h.clone()).unwrap_or_default();
    if v1 && (limit.as_deref() != Some("134217728") || pids_max.as_deref() != Some("16")) {
        return Err(format!(
            "the recycled cgroup holds memory {limit:?} and pids {pids_max:?}, not 128M and 16"
        ));
    }
    // An OOM kill, then a container that is not killed: its count starts again.
    let tight = limited("64M", "64")?;
    let (c_dirs, c) = one(&tight, "alloc", &["134217728"])?;
    if c.termination != Termination::OomKilled || c.peaks.oom_kills.unwrap_or(0) < 1 {
        return Err(format!("128 MiB in 64: {:?}, OOM kills {:?}", c.termination, c.peaks.oom_kills));
    }
    let (d_dirs, d) = one(&tight, "alloc", &["1048576"])?;
    if v1 && d_dirs != c_dirs {
        return Err(format!("not recycled after the OOM kill: {c_dirs:?}, then {d_dirs:?}"));
    }
    if d.termination != Termination::Exited(0) || d.peaks.oom_kills != Some(0) {
        return Err(format!("after an OOM kill: {:?}, OOM kills {:?}", d.termination, d.peaks.oom_kills));
    }
    // A privileged container could have changed its cgroup's settings: never recycled. Nor is a
    // cgroup given to a container whose memory limit is below 64 MiB.
    let mut privileged = limited("256M", "64")?;
    privileged.set_privileged(true);
    let (p_dirs, _) = one(&privileged, "alloc", &["1048576"])?;
    let (e_dirs, _) = one(&big, "alloc", &["1048576"])?;
    let (f_dirs, _) = one(&limited("32M", "64")?, "alloc", &["1048576"])?;
    let earlier = [&a_dirs, &a2_dirs, &b_dirs, &c_dirs, &d_dirs, &p_dirs];
    if e_dirs == p_dirs {
        return Err(format!("the privileged container's cgroup {p_dirs:?} served another"));
    }
    if earlier.contains(&&f_dirs) || e_dirs == f_dirs {
        return Err(format!("a container limited to 32 MiB got an earlier container's cgroup {f_dirs:?}"));
    }
    cvtest::release_own_cgroup().map_err(|e| cvtest::error_chain(&e))?;
    let left: Vec<PathBuf> = a_dirs.iter().flat_map(|t| ours(t)).collect();
    if !left.is_empty() {
        return Err(format!("left after release_own_cgroup: {left:?}"));
    }
    if v1 {
        recycled += 1;
    }
    Ok(recycled)
}
