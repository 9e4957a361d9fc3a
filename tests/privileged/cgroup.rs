//! Cgroups for real: limits read back from the kernel's files, real child processes killed by
//! kill_all, an OOM kill under 64M, a fork storm under pids 16, the sweep of a dead owner's
//! cgroup. Runs on whatever this machine has (v1/hybrid here, pure v2 in the VM).
//!
//! Child processes are this test binary re-executed in a helper mode ([`HELPER_ENV`]), so nothing
//! depends on tools beyond /bin/sleep. Each helper waits for a line on stdin before it does
//! anything, so that it is inside the cgroup before it allocates or forks.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cvtest::test_support::{Cgroup, CgroupStats, CgroupVersion, Hierarchy};
use cvtest::CgroupError;
use cvtest::{CpuWeight, Limits, MemoryLimit, PidsLimit};
use libtest_mimic::{Completion, Failed, Trial};

use crate::support;

/// Selects a helper mode of the test binary: `memhog:<MiB>`, `forkstorm:<n>`, `tree:<n>`.
pub const HELPER_ENV: &str = "CVTEST_CGROUP_TEST_HELPER";

const MIB: u64 = 1 << 20;

pub fn trials() -> Vec<Trial> {
    vec![
        support::cgroups("cgroup::limits_are_written_and_read_back", limits_are_written_and_read_back),
        support::cgroups("cgroup::kill_all_kills_every_process_and_destroy_removes_it", kill_all_and_destroy),
        support::cgroups("cgroup::memory_hog_is_oom_killed_under_64m", memory_hog_is_oom_killed),
        support::cgroups("cgroup::memory_hog_passes_under_max", memory_hog_passes_under_max),
        support::cgroups("cgroup::fork_storm_stops_at_pids_16", fork_storm_stops_at_pids_16),
        support::cgroups("cgroup::sweep_removes_dead_owners_only", sweep_removes_dead_owners_only),
        privileged_unless("cgroup::sweep_removes_what_a_sigkilled_owner_left", sweep_after_sigkill),
        support::cgroups("cgroup::failed_create_leaves_nothing", failed_create_leaves_nothing),
        support::cgroups("cgroup::create_destroy_cycles_leave_nothing", create_destroy_cycles_leave_nothing),
        v2_only("cgroup::v2_controllers_enabled_below_own_cgroup", v2_controllers_enabled),
        Trial::ignorable_test("cgroup::delegated_scope_from_systemd_leaves_nothing", || {
            if let Some(reason) = support::missing_cgroup_delegation() {
                return Ok(Completion::ignored_with(reason));
            }
            if !Path::new("/run/systemd/system").is_dir() {
                return Ok(Completion::ignored_with("systemd is not the init system here"));
            }
            delegated_scope_from_systemd_leaves_nothing().map(|()| Completion::Completed)
        }),
        support::privileged(
            "cgroup::no_limits_container_reports_rusage_peaks",
            no_limits_container_reports_rusage,
        ),
        Trial::ignorable_test("cgroup::not_delegated_says_what_to_do", || {
            if support::missing_privileges().is_none() {
                return Ok(Completion::ignored_with("root may create cgroups anywhere"));
            }
            if support::missing_cgroup_delegation().is_none() {
                return Ok(Completion::ignored_with("a cgroup is delegated to this user here"));
            }
            not_delegated_says_what_to_do().map(|()| Completion::Completed)
        }),
    ]
}

/// Runs the helper mode selected by [`HELPER_ENV`] and exits, if it is set.
pub fn run_helper_if_requested() {
    let Ok(mode) = std::env::var(HELPER_ENV) else { return };
    let (what, n) = mode.split_once(':').expect("helper mode is what:n");
    let n: usize = n.parse().expect("helper count");
    // The gate: the parent has put this process into the cgroup when this line arrives.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("read the gate line");
    match what {
        "memhog" => {
            let mut v: Vec<u8> = Vec::with_capacity(n << 20);
            // Touch every page so that it is charged.
            for _ in 0..(n << 20) / 4096 {
                v.extend_from_slice(&[1u8; 4096]);
            }
            println!("touched {} MiB", v.len() >> 20);
            std::process::exit(0);
        }
        "forkstorm" => {
            let (mut spawned, mut eagain, mut other) = (Vec::new(), 0, Vec::new());
            for _ in 0..n {
                match sleeper() {
                    Ok(c) => spawned.push(c),
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => eagain += 1,
                    Err(e) => other.push(e.to_string()),
                }
            }
            println!("spawned {} eagain {eagain} other {other:?}", spawned.len());
            park_forever();
        }
        "owner" => {
            // A runner that makes a cgroup, starts something in it, and is then SIGKILLed.
            let made = Hierarchy::detect().and_then(|h| h.create(&Limits::default()));
            match made {
                Ok(cg) => {
                    // Never reaped here: this process is SIGKILLed, and init reaps the orphan.
                    let kid = sleeper().expect("spawn sleep").id();
                    cg.add_pid(kid as i32).expect("add_pid");
                    let paths: Vec<String> = cg.paths().iter().map(|p| p.display().to_string()).collect();
                    println!("ok {kid} {}", paths.join(" "));
                    std::mem::forget(cg);
                }
                Err(e) => println!("err {}", chain(&e)),
            }
            park_forever();
        }
        "scope" => {
            // A runner in a cgroup it shares with its parent: cvtest asks systemd for a scope.
            let started = Instant::now();
            let detected = Hierarchy::detect();
            let took = started.elapsed();
            let made = detected.and_then(|h| h.create(&Limits::default()));
            let own = read(Path::new("/proc/self/cgroup"));
            match made.and_then(|mut cg| cg.destroy()) {
                Ok(()) => println!(
                    "ok {} {}",
                    own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("?"),
                    took.as_micros()
                ),
                Err(e) => println!("err {}", chain(&e)),
            }
            std::process::exit(0);
        }
        "tree" => {
            let kids: Vec<String> =
                (0..n).map(|_| sleeper().expect("spawn sleep").id().to_string()).collect();
            println!("{}", kids.join(" "));
            park_forever();
        }
        _ => panic!("unknown helper mode {mode:?}"),
    }
}

fn sleeper() -> std::io::Result<Child> {
    Command::new("/bin/sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// A child process that is killed and reaped when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn park_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

/// A helper child inside `cg`, released; its stdout for the result line.
/// (Its own children die with the cgroup, which every test destroys, also on failure by Drop.)
fn helper_in(cg: &dyn Cgroup, mode: &str) -> Result<(Proc, BufReader<ChildStdout>), Failed> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Proc(
        Command::new(exe)
            .env(HELPER_ENV, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn helper {mode}: {e}"))?,
    );
    let pid = child.id() as i32;
    cg.add_pid(pid).map_err(|e| format!("add_pid({pid}): {}", chain(&e)))?;
    for dir in cg.paths() {
        let procs = read(&dir.join("cgroup.procs"));
        check(
            procs.lines().any(|l| l == pid.to_string()),
            format!("{pid} not in {}: {procs:?}", dir.display()),
        )?;
    }
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(b"go\n").map_err(|e| format!("release helper: {e}"))?;
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    Ok((child, stdout))
}

/// Waits for `child` at most 5 s; past that it is killed and the test fails (never hangs).
fn wait_bounded(child: &mut Child, what: &str) -> Result<ExitStatus, Failed> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait for {what}: {e}"))? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} still ran 5 s later").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn first_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    line.trim().to_owned()
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

fn cg_err(what: &str) -> impl Fn(CgroupError) -> Failed + '_ {
    move |e| format!("{what}: {}", chain(&e)).into()
}

fn check(cond: bool, msg: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg.into().into())
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{}: {e}>", path.display()))
}

/// The one directory of `cg` that has `file` (v1: the hierarchy of that controller).
fn with_file(cg: &dyn Cgroup, file: &str) -> Result<PathBuf, Failed> {
    cg.paths()
        .into_iter()
        .find(|d| d.join(file).exists())
        .ok_or_else(|| format!("no {file} in {:?}", cg.paths()).into())
}

fn expect_file(cg: &dyn Cgroup, file: &str, want: &str) -> Result<(), Failed> {
    let path = with_file(cg, file)?.join(file);
    let got = read(&path);
    check(got.trim() == want, format!("{}: want {want:?}, got {got:?}", path.display()))
}

fn hierarchy() -> Result<&'static Hierarchy, Failed> {
    Hierarchy::detect().map_err(cg_err("detect"))
}

fn limits(memory: MemoryLimit, pids: PidsLimit, weight: u64, cpus: Option<&str>) -> Limits {
    Limits {
        memory,
        pids,
        cpu_weight: CpuWeight::new(weight).expect("weight"),
        cpus: cpus.map(|c| c.parse().expect("cpus")),
    }
}

fn gone(paths: &[PathBuf]) -> Result<(), Failed> {
    let left: Vec<_> = paths.iter().filter(|p| p.exists()).collect();
    check(left.is_empty(), format!("left behind: {left:?}"))
}

/// v1 "no limit" in memory.limit_in_bytes: the page counter's maximum, rounded to a page.
fn v1_unlimited(text: &str) -> bool {
    text.trim().parse::<u64>().is_ok_and(|v| v >= 1 << 62)
}

fn limits_are_written_and_read_back() -> Result<(), Failed> {
    let h = hierarchy()?;
    let mut cg = h
        .create(&limits(MemoryLimit::Bytes(64 * MIB), PidsLimit::Count(16), 200, Some("0.5")))
        .map_err(cg_err("create"))?;
    let paths = cg.paths();
    let name = paths[0].file_name().unwrap().to_str().unwrap().to_owned();
    check(
        name.starts_with(&format!("cvtest.{}.", cvtest::test_support::owner_tag())),
        format!("name {name}"),
    )?;
    for (p, own) in paths.iter().zip(h.own_dirs()) {
        check(
            p.parent() == Some(own.as_path()),
            format!("{} is not directly below {}", p.display(), own.display()),
        )?;
    }
    let sample = cg.sample().map_err(cg_err("sample"))?;
    check(sample.pids == Some(0), format!("empty cgroup sample {sample:?}"))?;
    check(sample.memory_bytes.is_some(), format!("sample {sample:?}"))?;
    let stats = cg.stats().map_err(cg_err("stats"))?;
    check(stats.oom_kills == Some(0) && stats.pids_max_events == Some(0), format!("fresh stats {stats:?}"))?;
    check(stats.cpu_user.is_some() && stats.cpu_system.is_some(), format!("cpu times {stats:?}"))?;

    let mem64 = (64 * MIB).to_string();
    match h.version() {
        CgroupVersion::V1 => {
            check(
                cg.paths().len() >= 3 && cg.clone_into_fd().is_none(),
                "v1: a dir per hierarchy, no clone fd",
            )?;
            expect_file(&*cg, "memory.limit_in_bytes", &mem64)?;
            if with_file(&*cg, "memory.memsw.limit_in_bytes").is_ok() {
                expect_file(&*cg, "memory.memsw.limit_in_bytes", &mem64)?;
            }
            expect_file(&*cg, "pids.max", "16")?;
            expect_file(&*cg, "cpu.shares", "2048")?;
            expect_file(&*cg, "cpu.cfs_quota_us", "50000")?;
            expect_file(&*cg, "cpu.cfs_period_us", "100000")?;

            // Raising: memsw has to go first; lowering: the limit has to go first.
            for m in [256 * MIB, 32 * MIB] {
                let l = limits(MemoryLimit::Bytes(m), PidsLimit::Count(16), 200, Some("0.5"));
                cg.apply_limits(&l).map_err(cg_err("apply_limits"))?;
                expect_file(&*cg, "memory.limit_in_bytes", &m.to_string())?;
                if with_file(&*cg, "memory.memsw.limit_in_bytes").is_ok() {
                    expect_file(&*cg, "memory.memsw.limit_in_bytes", &m.to_string())?;
                }
            }
            cg.apply_limits(&limits(MemoryLimit::Max, PidsLimit::Max, 1, None))
                .map_err(cg_err("apply_limits max"))?;
            for f in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
                if let Ok(d) = with_file(&*cg, f) {
                    let v = read(&d.join(f));
                    check(v1_unlimited(&v), format!("{f} after max: {v:?}"))?;
                }
            }
            expect_file(&*cg, "pids.max", "max")?;
            expect_file(&*cg, "cpu.shares", "10")?;
            expect_file(&*cg, "cpu.cfs_quota_us", "-1")?;
        }
        CgroupVersion::V2 => {
            check(cg.paths().len() == 1 && cg.clone_into_fd().is_some(), "v2: one dir and a clone fd")?;
            expect_file(&*cg, "memory.max", &mem64)?;
            if with_file(&*cg, "memory.swap.max").is_ok() {
                expect_file(&*cg, "memory.swap.max", "0")?;
            }
            expect_file(&*cg, "pids.max", "16")?;
            expect_file(&*cg, "cpu.weight", "200")?;
            expect_file(&*cg, "cpu.max", "50000 100000")?;
            cg.apply_limits(&limits(MemoryLimit::Max, PidsLimit::Max, 10000, None))
                .map_err(cg_err("apply_limits max"))?;
            expect_file(&*cg, "memory.max", "max")?;
            if with_file(&*cg, "memory.swap.max").is_ok() {
                expect_file(&*cg, "memory.swap.max", "max")?;
            }
            expect_file(&*cg, "pids.max", "max")?;
            expect_file(&*cg, "cpu.weight", "10000")?;
            expect_file(&*cg, "cpu.max", "max 100000")?;
        }
    }
    cg.destroy().map_err(cg_err("destroy"))?;
    gone(&paths)?;
    cg.destroy().map_err(cg_err("second destroy"))?;
    // A removed cgroup has no stats: an error naming the file, never a made-up None or 0.
    match cg.stats() {
        Ok(s) => Err(format!("stats of a removed cgroup: {s:?}").into()),
        Err(e) => {
            check(e.to_string().contains(&*paths[0].to_string_lossy()), format!("error without path: {e}"))
        }
    }
}

fn kill_all_and_destroy() -> Result<(), Failed> {
    let mut cg = hierarchy()?.create(&Limits::default()).map_err(cg_err("create"))?;
    let paths = cg.paths();
    let (mut child, mut out) = helper_in(&*cg, "tree:5")?;
    let kids: Vec<i32> = first_line(&mut out).split_whitespace().filter_map(|p| p.parse().ok()).collect();
    check(kids.len() == 5, format!("helper reported {kids:?}"))?;
    for dir in &paths {
        let procs = read(&dir.join("cgroup.procs"));
        for k in &kids {
            check(
                procs.lines().any(|l| l == k.to_string()),
                format!("{k} not in {}: {procs}", dir.display()),
            )?;
        }
    }
    let t = Instant::now();
    cg.kill_all(Duration::from_secs(5)).map_err(cg_err("kill_all"))?;
    let took = t.elapsed();
    let status = wait_bounded(&mut child, "the helper after kill_all")?;
    check(
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL),
        format!("helper ended {status:?}"),
    )?;
    for dir in &paths {
        let procs = read(&dir.join("cgroup.procs"));
        check(procs.trim().is_empty(), format!("after kill_all {} lists {procs:?}", dir.display()))?;
    }
    for k in kids {
        // Reparented to an init that reaps them; until then they may be zombies.
        let state = read(Path::new(&format!("/proc/{k}/stat")));
        let alive = state.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
        check(!alive, format!("grandchild {k} survived: {state}"))?;
    }
    eprintln!("kill_all of 7 processes took {took:?}");
    cg.destroy().map_err(cg_err("destroy"))?;
    gone(&paths)
}

/// A 256 MiB hog in a cgroup with `memory`: how it ended, what it said, the cgroup's stats, and
/// whether the kernel keeps a memory peak. The cgroup is destroyed.
fn run_memhog(memory: MemoryLimit) -> Result<(std::process::ExitStatus, String, CgroupStats, bool), Failed> {
    let mut cg =
        hierarchy()?.create(&limits(memory, PidsLimit::Count(64), 100, None)).map_err(cg_err("create"))?;
    let (mut child, mut out) = helper_in(&*cg, "memhog:256")?;
    let line = first_line(&mut out);
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let stats = cg.stats().map_err(cg_err("stats"))?;
    let kernel_peak = cg.has_peak_counters().memory;
    cg.destroy().map_err(cg_err("destroy"))?;
    Ok((status, line, stats, kernel_peak))
}

fn memory_hog_is_oom_killed() -> Result<(), Failed> {
    let (status, line, stats, kernel_peak) = run_memhog(MemoryLimit::Bytes(64 * MIB))?;
    check(
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL),
        format!("hog under 64M ended {status:?}, said {line:?}"),
    )?;
    check(stats.oom_kills.is_some_and(|n| n >= 1), format!("oom kills {stats:?}"))?;
    check(kernel_peak, "memory peak counter")?;
    let peak = stats.memory_peak.ok_or("no memory peak")?;
    check(!peak.sampled, "kernel peak")?;
    let ratio = peak.value as f64 / (64 * MIB) as f64;
    eprintln!("memory peak under 64M: {} bytes ({ratio:.4} of the limit)", peak.value);
    check((0.95..=1.03).contains(&ratio), format!("peak {} is not within a few % of 64 MiB", peak.value))
}

fn memory_hog_passes_under_max() -> Result<(), Failed> {
    let (status, line, stats, _) = run_memhog(MemoryLimit::Max)?;
    check(
        status.success() && line == "touched 256 MiB",
        format!("hog under max ended {status:?}, said {line:?}"),
    )?;
    check(stats.oom_kills == Some(0), format!("oom kills {stats:?}"))?;
    let peak = stats.memory_peak.ok_or("no memory peak")?.value;
    eprintln!("memory peak of a 256 MiB hog under max: {peak} bytes");
    check(peak >= 256 * MIB, format!("peak {peak} < 256 MiB"))
}

fn fork_storm_stops_at_pids_16() -> Result<(), Failed> {
    let mut cg = hierarchy()?
        .create(&limits(MemoryLimit::Bytes(512 * MIB), PidsLimit::Count(16), 100, None))
        .map_err(cg_err("create"))?;
    let (mut child, mut out) = helper_in(&*cg, "forkstorm:100")?;
    let line = first_line(&mut out);
    let stats = cg.stats().map_err(cg_err("stats"))?;
    let support = cg.has_peak_counters();
    cg.kill_all(Duration::from_secs(5)).map_err(cg_err("kill_all"))?;
    wait_bounded(&mut child, "the fork storm after kill_all")?;
    cg.destroy().map_err(cg_err("destroy"))?;
    // The helper is 1 of the 16; fork #16 must fail with EAGAIN, and every later one too.
    check(line == "spawned 15 eagain 85 other []", format!("helper said {line:?}"))?;
    check(stats.pids_max_events.is_some_and(|n| n >= 1), format!("pids.events max {stats:?}"))?;
    if support.pids {
        let peak = stats.pids_peak.ok_or("pids peak missing though the kernel has it")?;
        check(peak.value == 16 && !peak.sampled, format!("pids peak {peak:?}"))?;
    } else {
        check(stats.pids_peak.is_none(), "no pids.peak: the peak must be None")?;
    }
    Ok(())
}

/// `<pid>.<start>` of a running process.
fn tag_of_pid(pid: u32) -> String {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    let start = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().to_owned();
    let pidns =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(format!("/proc/{pid}/ns/pid")).unwrap());
    format!("{pid}.{start}.{pidns}")
}

fn sweep_removes_dead_owners_only() -> Result<(), Failed> {
    let h = hierarchy()?;
    // A dead owner: a process that ran and was reaped.
    let mine = h.create(&Limits::default()).map_err(cg_err("create"))?;
    let mut dead = sleeper().map_err(|e| e.to_string())?;
    let dead_tag = tag_of_pid(dead.id());
    dead.kill().map_err(|e| e.to_string())?;
    dead.wait().map_err(|e| e.to_string())?;
    // A live owner that is not us.
    let live = Proc(sleeper().map_err(|e| e.to_string())?);
    let live_tag = tag_of_pid(live.id());
    // Something left running in the dead owner's cgroup.
    let mut orphan = Proc(sleeper().map_err(|e| e.to_string())?);

    let dirs = |name: &str| h.own_dirs().into_iter().map(|d| d.join(name)).collect::<Vec<_>>();
    let stale = dirs(&format!("cvtest.{dead_tag}.7"));
    let alive = dirs(&format!("cvtest.{live_tag}.7"));
    let odd = dirs(&format!("cvtest.{dead_tag}"));
    // An older cvtest's name for the same dead owner (no PID namespace in the tag): it cannot be
    // checked, so it is never swept.
    let old_tag = dead_tag.rsplit_once('.').map_or(dead_tag.as_str(), |(old, _)| old);
    let old = dirs(&format!("cvtest.{old_tag}.7"));
    let result = (|| -> Result<(), Failed> {
        for d in stale.iter().chain(&alive).chain(&odd).chain(&old) {
            std::fs::create_dir(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        for d in &stale {
            std::fs::write(d.join("cgroup.procs"), orphan.id().to_string())
                .map_err(|e| format!("move orphan: {e}"))?;
        }
        let n = cvtest::test_support::sweep_stale_cgroups_now().map_err(cg_err("sweep"))?;
        // n can be 0 only if another sweep (a concurrent test's create) got there first.
        eprintln!("sweep removed {n}");
        gone(&stale)?;
        let status = wait_bounded(&mut orphan, "the process in the stale cgroup")?;
        check(
            std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL),
            format!("orphan in the stale cgroup ended {status:?}"),
        )?;
        for d in alive.iter().chain(&odd).chain(&old).chain(&mine.paths()) {
            check(
                d.exists(),
                format!("sweep removed {} (live owner, odd or old name, or ours)", d.display()),
            )?;
        }
        Ok(())
    })();
    for d in stale.iter().chain(&alive).chain(&odd).chain(&old) {
        let _ = std::fs::remove_dir(d);
    }
    drop((orphan, live, mine));
    result
}

/// `Ok(Some(reason))`: this machine's set-up cannot run the test (reported ignored, with why).
fn sweep_after_sigkill() -> Result<Option<String>, Failed> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut owner = Proc(
        Command::new(exe)
            .env(HELPER_ENV, "owner:1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn owner: {e}"))?,
    );
    owner.stdin.take().expect("piped").write_all(b"go\n").map_err(|e| e.to_string())?;
    let line = first_line(&mut BufReader::new(owner.stdout.take().expect("piped")));
    let Some(rest) = line.strip_prefix("ok ") else {
        // Below the root on v2, this test process sits in its supervisor leaf, and a child
        // there cannot enable controllers: that child is not a runner of its own.
        check(line.contains("cannot enable"), format!("owner said {line:?}"))?;
        return Ok(Some(format!("a child of this test cannot be a runner here: {line}")));
    };
    let mut words = rest.split_whitespace();
    let kid: u32 = words.next().and_then(|w| w.parse().ok()).ok_or(format!("owner said {line:?}"))?;
    let paths: Vec<PathBuf> = words.map(PathBuf::from).collect();
    check(paths.iter().all(|p| p.exists()), format!("owner's cgroup {paths:?}"))?;
    owner.kill().map_err(|e| e.to_string())?;
    owner.wait().map_err(|e| e.to_string())?;
    // The sleeper lives on in the dead owner's cgroup until the sweep.
    let alive = |pid: u32| {
        let stat = read(Path::new(&format!("/proc/{pid}/stat")));
        stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
    };
    check(alive(kid), "the owner's child died with it")?;
    cvtest::test_support::sweep_stale_cgroups_now().map_err(cg_err("sweep"))?;
    gone(&paths)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(kid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    check(!alive(kid), format!("{kid} in the swept cgroup still runs"))?;
    Ok(None)
}

fn failed_create_leaves_nothing() -> Result<(), Failed> {
    let h = hierarchy()?;
    // The kernel refuses a pids.max above its PID_MAX_LIMIT (4M) with EINVAL, after the
    // directories were made (and, on v1, the memory limit written).
    let err = match h.create(&limits(MemoryLimit::Bytes(64 * MIB), PidsLimit::Count(1 << 40), 100, None)) {
        Ok(cg) => return Err(format!("create with pids 2^40 succeeded: {:?}", cg.paths()).into()),
        Err(e) => e,
    };
    let CgroupError::Write { path, .. } = &err else {
        return Err(format!("unexpected error {}", chain(&err)).into());
    };
    check(path.ends_with("pids.max"), format!("error path {}", path.display()))?;
    check(err.to_string().contains(&*path.to_string_lossy()), format!("message without path: {err}"))?;
    let name = path.parent().and_then(|p| p.file_name()).unwrap().to_owned();
    gone(&h.own_dirs().into_iter().map(|d| d.join(&name)).collect::<Vec<_>>())
}

fn create_destroy_cycles_leave_nothing() -> Result<(), Failed> {
    let h = hierarchy()?;
    let l = limits(MemoryLimit::Bytes(512 * MIB), PidsLimit::Count(256), 100, None);
    let n = 200;
    let mut made = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        let mut cg = h.create(&l).map_err(cg_err("create"))?;
        made.extend(cg.paths());
        cg.destroy().map_err(cg_err("destroy"))?;
    }
    let each = t.elapsed() / n as u32;
    eprintln!("create + destroy ({:?}, {} dirs): {each:?} each", h.version(), made.len() / n);
    gone(&made)
}

/// On v2 the first create enables memory, pids and cpu in the own cgroup; below the root that
/// needs this process out of it, in its supervisor leaf.
fn v2_controllers_enabled() -> Result<(), Failed> {
    let h = hierarchy()?;
    let cg = h.create(&Limits::default()).map_err(cg_err("create"))?;
    let base = h.own_dirs().remove(0);
    let enabled = read(&base.join("cgroup.subtree_control"));
    for c in ["memory", "pids", "cpu"] {
        check(
            enabled.split_whitespace().any(|e| e == c),
            format!("{c} not in {}: {enabled:?}", base.display()),
        )?;
    }
    let is_root = !base.join("cgroup.type").exists();
    let own = read(Path::new("/proc/self/cgroup"));
    let leaf = format!("cvtest.{}.supervisor", cvtest::test_support::owner_tag());
    if is_root {
        check(!own.contains(&leaf), format!("moved out of the root cgroup needlessly: {own}"))?;
    } else {
        check(own.trim_end().ends_with(&format!("/{leaf}")), format!("not in the supervisor leaf: {own}"))?;
        check(read(&base.join("cgroup.procs")).trim().is_empty(), "the own cgroup still holds processes")?;
    }
    eprintln!("own cgroup {} (root: {is_root}), now {}", base.display(), own.trim());
    drop(cg);
    Ok(())
}

fn privileged_unless(name: &str, f: fn() -> Result<Option<String>, Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        if let Some(reason) = support::missing_cgroup_delegation() {
            return Ok(Completion::ignored_with(reason));
        }
        Ok(match f()? {
            None => Completion::Completed,
            Some(reason) => Completion::ignored_with(reason),
        })
    })
}

fn v2_only(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        if let Some(reason) = support::missing_cgroup_delegation() {
            return Ok(Completion::ignored_with(reason));
        }
        match hierarchy()?.version() {
            CgroupVersion::V2 => f().map(|()| Completion::Completed),
            CgroupVersion::V1 => {
                Ok(Completion::ignored_with("cgroup v2 only; this machine uses v1 for memory"))
            }
        }
    })
}

/// A helper that shares its cgroup with this process (so it may not divide it) asks systemd
/// for a delegated scope: the system manager as root, the user's manager otherwise. It makes and
/// removes a cgroup there, exits, and then neither the scope unit nor its cgroup is left.
fn delegated_scope_from_systemd_leaves_nothing() -> Result<(), Failed> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Proc(
        Command::new(exe)
            .env(HELPER_ENV, "scope:0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the scope helper: {e}"))?,
    );
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(b"go\n").map_err(|e| format!("release helper: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let line = first_line(&mut out);
    let status = wait_bounded(&mut child, "the scope helper")?;
    check(status.success(), format!("helper ended {status:?}"))?;
    let (cgroup, micros) = line
        .strip_prefix("ok ")
        .and_then(|rest| rest.split_once(' '))
        .ok_or_else(|| format!("helper said {line:?}"))?;
    // The helper ends in its scope, or in the supervisor leaf below it.
    let unit = cgroup
        .split('/')
        .find(|c| c.starts_with("cvtest-") && c.ends_with(".scope"))
        .ok_or_else(|| format!("helper {pid} is in {cgroup}, not in a cvtest-*.scope"))?;
    check(unit.contains(&format!("-{pid}.")), format!("scope {unit} is not named for helper {pid}"))?;
    let root = support::missing_privileges().is_none();
    let manager = if root { "system.slice" } else { "user@" };
    check(cgroup.contains(manager), format!("the scope {cgroup} is not under {manager}"))?;
    let scope_dir = PathBuf::from("/sys/fs/cgroup")
        .join(cgroup.trim_start_matches('/').split(unit).next().unwrap_or(""))
        .join(unit);
    // systemd stops the scope when its last process is gone, asynchronously: bounded wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    let load_state = || {
        let mut cmd = Command::new("systemctl");
        if !root {
            cmd.arg("--user");
        }
        cmd.args(["show", "--property=LoadState", "--value", unit])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|e| format!("<systemctl: {e}>"))
    };
    loop {
        let state = load_state();
        if state == "not-found" && !scope_dir.exists() {
            eprintln!(
                "helper {pid} ran in {cgroup} (detect with the D-Bus scope: {micros} µs); the scope is gone"
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "10 s after helper {pid} exited, {unit} has LoadState {state:?} and {} exists: {}",
                scope_dir.display(),
                scope_dir.exists()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// As an ordinary user without a delegated cgroup, creating one fails with the error that says
/// so, what to do, and how to run without limits on purpose.
fn not_delegated_says_what_to_do() -> Result<(), Failed> {
    let made = Hierarchy::detect().and_then(|h| h.create(&Limits::default()));
    match made {
        Ok(_) => Err("a cgroup was made without delegation".into()),
        Err(e @ CgroupError::NotDelegated { .. }) => {
            let text = chain(&e);
            for want in ["may not create cgroups", "--no-limits", "CVTEST_LIMITS=off", "Fix: "] {
                check(text.contains(want), format!("{want:?} not in {text}"))?;
            }
            eprintln!("{text}");
            Ok(())
        }
        Err(e) => Err(format!("not the not-delegated error: {}", chain(&e)).into()),
    }
}

/// A container without cgroups (the explicit no-limits mode): no cgroup is made, a 200 MiB
/// allocation under a 64M "limit" passes, and the outcome says the limits were not enforced and
/// still gives the largest process's RSS and the CPU times, from the init's rusage.
fn no_limits_container_reports_rusage() -> Result<(), Failed> {
    use cvtest::{Container, Isolation, Options, Termination};
    let mut opts = Options::new();
    opts.set_isolation(
        Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC,
    );
    opts.set_limits(limits(MemoryLimit::Bytes(64 * MIB), PidsLimit::Count(16), 100, None));
    let mut c = Container::create(&opts).map_err(|e| format!("create: {}", chain(&e)))?;
    check(c.cgroup_paths().is_empty(), format!("a cgroup was made: {:?}", c.cgroup_paths()))?;
    let bytes = (200 * MIB).to_string();
    c.spawn(&crate::helpers::command("alloc", &[&bytes])).map_err(|e| format!("spawn: {}", chain(&e)))?;
    let outcome = c.wait(Some(Duration::from_secs(60))).map_err(|e| format!("wait: {}", chain(&e)))?;
    c.destroy().map_err(|e| format!("destroy: {}", chain(&e)))?;
    check(outcome.termination == Termination::Exited(0), format!("ended {:?}", outcome.termination))?;
    check(!outcome.limits_enforced, "limits_enforced without a cgroup")?;
    let rss = outcome.peaks.max_rss_bytes.ok_or("no max RSS")?;
    eprintln!("no-limits container: largest RSS {rss} bytes, peaks {:?}", outcome.peaks);
    check(rss >= 200 * MIB, format!("largest RSS {rss} < the 200 MiB allocated"))?;
    check(
        outcome.peaks.memory_bytes.is_none() && outcome.peaks.pids.is_none(),
        "cgroup peaks without a cgroup",
    )?;
    check(outcome.peaks.cpu_total().is_some_and(|t| t > Duration::ZERO), format!("cpu {:?}", outcome.peaks))
}
