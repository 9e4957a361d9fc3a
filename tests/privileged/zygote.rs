//! Containers whose inits a zygote clones (`Container::spawn_via`): the init is still the
//! caller's child, in its cgroup (v1: it joins itself; v2: `CLONE_INTO_CGROUP` by the zygote),
//! with the same pipes; a lost zygote makes spawns direct; zygote and containers die with their
//! owner; nothing is left.
//!
//! How a test tells who cloned an init: a process cloned without exec shows its parent's
//! arguments, so an init cloned by a zygote has the command line `cvtest-zygote`, and one cloned
//! directly has this test binary's.

use std::time::{Duration, Instant};

use cvtest::{Command, Container, CpuList, Options, Rootfs, SpawnError, Stdio, Termination, Zygote};
use libtest_mimic::{Failed, Trial};

use crate::container::{
    assert_gone, captured, fail, footprint, options, sh, start_owner, sweep_as_a_new_runner, text,
    token_running, unique_token, OwnerReport,
};
use crate::helpers::command;
use crate::support::{privileged, privileged_unless};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("zygote::holds_nothing_but_its_socket_and_ends_when_dropped", holds_nothing_and_ends),
        privileged("zygote::clones_inits_that_are_the_callers_children", clones_the_callers_children),
        privileged("zygote::one_zygote_per_thread_in_parallel", one_per_thread_in_parallel),
        privileged("zygote::a_lost_zygote_falls_back_to_direct_clones", lost_zygote_falls_back),
        privileged("zygote::commands_start_with_default_signal_dispositions", default_dispositions),
        privileged("zygote::a_paused_spawn_starts_its_command_only_on_resume", paused_until_resumed),
        privileged("zygote::a_bounded_zygote_clones_only_what_its_bounding_set_holds", bounded_zygote),
        privileged("zygote::the_oom_killer_spares_the_init_where_it_can_be_told", init_oom_score),
        privileged("zygote::containers_run_on_the_cpus_they_are_given", run_on_the_cpus_given),
        privileged("zygote::a_placed_container_gets_more_cpus_while_it_runs", widen_while_running),
        privileged_unless("zygote::dies_with_its_owner_and_so_do_its_containers", dies_with_its_owner),
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

const ZYGOTE_CMDLINE: &[u8] = b"cvtest-zygote\0";

/// `/proc/<pid>/stat` after the command name: state, ppid, ...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn ppid_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Running (not a zombie, not gone).
fn running(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

fn cmdline_of(pid: i32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

/// Who cloned the init of `c` (it must run): `true` for a zygote. Also checks it is this
/// process's child and sits in the container's cgroup.
fn check_init(c: &Container) -> Result<bool, Failed> {
    let init = c.init_pid().ok_or("no init pid")?;
    let me = std::process::id() as i32;
    ensure!(
        ppid_of(init) == Some(me),
        "the init {init} is a child of {:?}, not of this process ({me})",
        ppid_of(init)
    );
    let cgroups =
        std::fs::read_to_string(format!("/proc/{init}/cgroup")).map_err(fail("read the init's cgroup"))?;
    for dir in c.cgroup_paths() {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        ensure!(cgroups.contains(&format!("/{name}\n")), "the init is not in {}:\n{cgroups}", dir.display());
    }
    Ok(cmdline_of(init) == ZYGOTE_CMDLINE)
}

fn linger(token: &str) -> Command {
    let mut cmd = command("linger", &[token]);
    cmd.stdout(Stdio::Null).stderr(Stdio::Null);
    cmd
}

/// Kills a running container, checks that it ended by that SIGKILL, destroys it and checks that
/// nothing of it is left.
fn kill_and_check_gone(mut c: Container) -> Result<(), Failed> {
    let fp = footprint(&c);
    c.kill_handle().kill();
    let killed = c.wait(Some(Duration::from_secs(30))).map_err(fail("wait"))?;
    ensure!(killed.termination == Termination::Signaled(libc::SIGKILL), "{:?}", killed.termination);
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)
}

/// Runs `cmd` in a new container through `zygote`, checks who cloned the init (`by_zygote`),
/// and that nothing is left after destroy.
fn run_via(
    zygote: &mut Zygote,
    opts: &Options,
    cmd: &Command,
    by_zygote: bool,
) -> Result<cvtest::Outcome, Failed> {
    let mut c = Container::create(opts).map_err(fail("create"))?;
    let token = unique_token("zy");
    // A lingering process first: the init is inspected while it runs.
    c.spawn_via(zygote, &linger(&token)).map_err(fail("spawn"))?;
    let zygote_cloned = check_init(&c)?;
    ensure!(zygote_cloned == by_zygote, "cloned by the zygote: {zygote_cloned}, expected {by_zygote}");
    kill_and_check_gone(c)?;
    ensure!(!token_running(&token), "the lingering process outlived its container");

    let mut c = Container::create(opts).map_err(fail("create"))?;
    c.spawn_via(zygote, cmd).map_err(fail("spawn"))?;
    let fp = footprint(&c);
    let out = c.wait(Some(Duration::from_secs(60))).map_err(fail("wait"))?;
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------

fn holds_nothing_and_ends() -> Result<(), Failed> {
    let z = Zygote::start().map_err(fail("start"))?;
    let pid = z.pid();
    let me = std::process::id() as i32;
    ensure!(ppid_of(pid) == Some(me), "the zygote is a child of {:?}", ppid_of(pid));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ensure!(comm == "cvtest-zygote\n", "comm {comm:?}");
    ensure!(cmdline_of(pid) == ZYGOTE_CMDLINE, "cmdline {:?}", text(&cmdline_of(pid)));
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(fail("read its fds"))?
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().parse().unwrap_or(-1);
            (n, std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default())
        })
        .collect();
    fds.sort();
    let shape: Vec<(i32, bool)> =
        fds.iter().map(|(n, t)| (*n, t == "/dev/null" || t.starts_with("socket:"))).collect();
    ensure!(
        shape == [(0, true), (1, true), (2, true), (3, true)] && fds[3].1.starts_with("socket:"),
        "the zygote holds {fds:?}"
    );
    // Every signal blocked (SIGKILL and SIGSTOP cannot be).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let blocked = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).map(str::trim).unwrap_or_default();
    let mask = u64::from_str_radix(blocked, 16).unwrap_or(0);
    let must = (1u64 << (libc::SIGINT - 1)) | (1 << (libc::SIGTERM - 1)) | (1 << (libc::SIGHUP - 1));
    ensure!(mask & must == must, "SigBlk {blocked}");
    drop(z);
    ensure!(stat_fields(pid).is_none(), "the zygote {pid} is still there after drop: {:?}", stat_fields(pid));
    Ok(())
}

/// The processes in the cgroup `cg` once it holds any (on v1 the init joins its cgroups itself,
/// its first act), waiting at most 10 s.
fn procs_once_joined(cg: &std::path::Path) -> Vec<i32> {
    let read = || -> Vec<i32> {
        std::fs::read_to_string(cg.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut procs = read();
    while procs.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        procs = read();
    }
    procs
}

/// Whether `pid` is a live (not zombie) `cvtest-init`.
fn init_alive(pid: i32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let zombie = stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z"));
    comm == "cvtest-init\n" && !zombie
}

/// `spawn_paused_via` (how `cargo cvtest` prepares a worker's next test while the current one
/// runs): the init is cloned into the container's cgroup, but the command starts only on
/// `resume`; a paused container destroyed leaves nothing; `resume` without a paused spawn is
/// an error, as is a second spawn.
fn paused_until_resumed() -> Result<(), Failed> {
    let mut z = Zygote::start().map_err(fail("start"))?;
    let me = std::process::id() as i32;
    let token = unique_token("paused");
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    let paused = c.resume();
    ensure!(matches!(paused, Err(SpawnError::NotPaused)), "resume before any spawn: {paused:?}");
    c.spawn_paused_via(&mut z, &linger(&token)).map_err(fail("spawn paused"))?;
    let again = c.spawn_via(&mut z, &linger(&token));
    ensure!(matches!(again, Err(SpawnError::AlreadySpawned)), "a second spawn: {again:?}");
    // Its cgroup holds the init alone, our child (other trials run beside this one: the
    // container's own cgroup tells its init apart). Without cgroups, only the command is checked.
    let cgroups = c.cgroup_paths();
    let mut init = None;
    for cg in &cgroups {
        let procs = procs_once_joined(cg);
        ensure!(procs.len() == 1, "{} holds {procs:?} while paused, expected the init alone", cg.display());
        ensure!(
            !matches!(init, Some(i) if i != procs[0]),
            "the cgroups hold different processes: {init:?}, {procs:?}"
        );
        init = Some(procs[0]);
    }
    if let Some(pid) = init {
        ensure!(init_alive(pid) && ppid_of(pid) == Some(me), "process {pid} is not our init");
    }
    // The init's setup is done in about a millisecond; the command still must not start.
    std::thread::sleep(Duration::from_millis(300));
    ensure!(!token_running(&token), "the command started before resume");
    c.resume().map_err(fail("resume"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !token_running(&token) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    ensure!(token_running(&token), "the command did not start after resume");
    kill_and_check_gone(c)?;

    // Destroyed paused: the init is killed and reaped, the cgroup removed, the command never ran.
    let token = unique_token("paused-dropped");
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    c.spawn_paused_via(&mut z, &linger(&token)).map_err(fail("spawn paused"))?;
    let cgroups = c.cgroup_paths();
    let inits: Vec<i32> = cgroups.first().map(|cg| procs_once_joined(cg)).unwrap_or_default();
    c.destroy().map_err(fail("destroy paused"))?;
    for cg in &cgroups {
        ensure!(!cg.exists(), "cgroup {} of a paused container still exists", cg.display());
    }
    for pid in inits {
        ensure!(!init_alive(pid), "the init {pid} of a destroyed paused container is still there");
    }
    ensure!(!token_running(&token), "the command of a destroyed paused container ran");
    Ok(())
}

/// The zygote (this test binary: the Rust runtime ignores SIGPIPE) resets in each init only the
/// dispositions it changed; the command must still start with none ignored, whichever way its
/// init was cloned, libc's reserved signals included (where the caller ignores signal 32, as here).
fn default_dispositions() -> Result<(), Failed> {
    let status_line = |out: &cvtest::Outcome, key: &str| -> Option<u64> {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    let mut cmd = Command::new("/bin/cat");
    cmd.arg("/proc/self/status").stdout(Stdio::Capture { limit: 1 << 16 });
    let mut z = Zygote::start().map_err(fail("start"))?;
    let zygote_status = std::fs::read_to_string(format!("/proc/{}/status", z.pid())).unwrap_or_default();
    let zygote_ignored = zygote_status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    // What the test stands on: the zygote does ignore SIGPIPE.
    ensure!(
        zygote_ignored.is_some_and(|m| m & (1 << (libc::SIGPIPE - 1)) != 0),
        "the zygote ignores {zygote_ignored:x?}, expected SIGPIPE among them"
    );
    let out = run_via(&mut z, &options(), &cmd, true)?;
    ensure!(out.termination == Termination::Exited(0), "{:?}", out.termination);
    ensure!(
        status_line(&out, "SigIgn:") == Some(0),
        "the command ignores {:x?}",
        status_line(&out, "SigIgn:")
    );
    // The same cloned directly (every signal reset).
    let mut direct = Container::create(&options()).map_err(fail("create"))?;
    direct.spawn(&cmd).map_err(fail("spawn"))?;
    let d = direct.wait(Some(Duration::from_secs(60))).map_err(fail("wait"))?;
    direct.destroy().map_err(fail("destroy"))?;
    ensure!(
        status_line(&d, "SigIgn:") == Some(0),
        "cloned directly, the command ignores {:x?}",
        status_line(&d, "SigIgn:")
    );
    ensure!(
        status_line(&out, "SigBlk:") == Some(0),
        "the command blocks {:x?}",
        status_line(&out, "SigBlk:")
    );
    Ok(())
}

fn clones_the_callers_children() -> Result<(), Failed> {
    let mut z = Zygote::start().map_err(fail("start"))?;
    let mut opts = options();
    opts.set_network_cidr("10.0.21.2/24").map_err(fail("cidr"))?;
    // Output through the pipes passed to the zygote, the exit status through the status pipe.
    let out = run_via(&mut z, &opts, &sh("echo hello; echo oops >&2; exit 3"), true)?;
    ensure!(out.termination == Termination::Exited(3), "{:?}", out.termination);
    ensure!(
        out.stdout == b"hello\n" && out.stderr == b"oops\n",
        "{:?} {:?}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The PID namespace and the peaks read from the cgroup.
    let out = run_via(&mut z, &options(), &captured(command("pidns", &[])), true)?;
    let stdout = text(&out.stdout);
    ensure!(out.termination == Termination::Exited(0), "{:?} {stdout}", out.termination);
    ensure!(stdout.contains("pid=2\n") && stdout.contains("procs=[1, 2]"), "{stdout}");
    if std::env::var_os("CVTEST_TEST_NO_CGROUPS").is_none() {
        ensure!(out.peaks.memory_bytes.is_some() && out.peaks.pids.is_some(), "{:?}", out.peaks);
    }
    // The same plan through the zygote and directly: the same capabilities (the capability plan
    // crossed the wire) and the same mounts (masked paths included).
    let probe = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; wc -l < /proc/self/mountinfo";
    let via = run_via(&mut z, &options(), &sh(probe), true)?;
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    c.spawn(&sh(probe)).map_err(fail("spawn"))?;
    let direct = c.wait(Some(Duration::from_secs(60))).map_err(fail("wait"))?;
    c.destroy().map_err(fail("destroy"))?;
    let bounding = |status: &str| status.lines().find_map(|l| l.strip_prefix("CapBnd:\t")).map(str::to_owned);
    let ours = bounding(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    let kept = bounding(&text(&via.stdout));
    ensure!(
        via.termination == Termination::Exited(0)
            && via.stdout == direct.stdout
            && kept.is_some()
            && kept != ours,
        "through the zygote:\n{}\ndirectly:\n{}",
        text(&via.stdout),
        text(&direct.stdout)
    );
    // An exec failure and a setup failure (of an explicit root: its mount plan crossed the
    // wire) come back as such.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(fail("tempdir"))?;
    let bogus = dir.path().join("not-a-program");
    std::fs::write(&bogus, b"\x7fELF garbage").map_err(fail("write"))?;
    std::fs::set_permissions(&bogus, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(fail("chmod"))?;
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    let err = c.spawn_via(&mut z, &Command::new(&bogus)).err();
    ensure!(
        matches!(&err, Some(SpawnError::Exec { source, .. }) if source.raw_os_error() == Some(libc::ENOEXEC)),
        "{err:?}"
    );
    c.destroy().map_err(fail("destroy"))?;
    let root = tempfile::tempdir().map_err(fail("tempdir"))?;
    std::fs::write(root.path().join("proc"), b"not a dir").map_err(fail("write"))?;
    std::fs::create_dir(root.path().join("bin")).map_err(fail("mkdir"))?;
    std::fs::copy("/bin/true", root.path().join("bin/true")).map_err(fail("copy"))?;
    let mut opts = options();
    opts.set_rootfs(Rootfs::Dir(root.path().to_owned()));
    let mut c = Container::create(&opts).map_err(fail("create"))?;
    let fp = footprint(&c);
    let err = c.spawn_via(&mut z, &Command::new("/bin/true")).err();
    ensure!(
        matches!(&err, Some(e @ SpawnError::Setup { .. }) if e.to_string().contains("mounting proc on /proc")),
        "{err:?}"
    );
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)?;
    ensure!(z.lost().is_none(), "lost: {:?}", z.lost());
    Ok(())
}

/// A zygote started with a bounding set of only the default capabilities
/// (`Zygote::start_bounded`, as `cargo cvtest` starts its workers' when no test keeps more):
/// the zygote's own set is cut; a default container it clones ends with exactly the bounding
/// set, effective and permitted sets of one cloned directly (its init had nothing left to
/// drop); a container that keeps more (`NET_ADMIN`), or a privileged one, is cloned directly
/// with its own sets; one in a user namespace (where the set is full again) is cloned by the
/// zygote and still ends with the default set.
fn bounded_zygote() -> Result<(), Failed> {
    use cvtest_spec::Capabilities;
    let field = |status: &str, key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    let ours = field(&std::fs::read_to_string("/proc/self/status").unwrap_or_default(), "CapBnd:");
    let mut z = Zygote::start_bounded(Capabilities::DEFAULT).map_err(fail("start bounded"))?;
    let zygote_status = std::fs::read_to_string(format!("/proc/{}/status", z.pid())).unwrap_or_default();
    let zygote_bounding = field(&zygote_status, "CapBnd:");
    ensure!(
        zygote_bounding == ours.map(|o| o & Capabilities::DEFAULT.bits()),
        "the zygote's bounding set {zygote_bounding:x?}, ours {ours:x?}"
    );
    let probe = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status";
    let direct = |opts: &Options| -> Result<Vec<u8>, Failed> {
        let mut c = Container::create(opts).map_err(fail("create"))?;
        c.spawn(&sh(probe)).map_err(fail("spawn"))?;
        let out = c.wait(Some(Duration::from_secs(60))).map_err(fail("wait"))?;
        c.destroy().map_err(fail("destroy"))?;
        ensure!(out.termination == Termination::Exited(0), "directly: {:?}", out.termination);
        Ok(out.stdout)
    };
    let mut net_admin = options();
    net_admin.add_caps("NET_ADMIN").map_err(fail("caps"))?;
    let mut privileged = options();
    privileged.set_privileged(true);
    let mut in_userns = options();
    in_userns.map_root_to(65534, 65534);
    for (what, opts, by_zygote) in [
        ("default", options(), true),
        ("NET_ADMIN", net_admin, false),
        ("privileged", privileged, false),
        ("user namespace", in_userns, true),
    ] {
        let via = run_via(&mut z, &opts, &sh(probe), by_zygote)?;
        let expected = direct(&opts)?;
        ensure!(
            via.termination == Termination::Exited(0) && via.stdout == expected,
            "{what}: through the bounded zygote:\n{}\ndirectly:\n{}",
            text(&via.stdout),
            text(&expected)
        );
        let bounding = field(&text(&via.stdout), "CapBnd:");
        let default = ours.map(|o| o & Capabilities::DEFAULT.bits());
        ensure!(
            (what == "default" || what == "user namespace") == (bounding == default),
            "{what}: bounding set {bounding:x?}, the default one {default:x?}"
        );
    }
    ensure!(z.lost().is_none(), "lost: {:?}", z.lost());
    Ok(())
}

/// The init asks the OOM killer to spare it (`oom_score_adj` -1000: a killed init would lose
/// the exit status) where it can: the caller holds `CAP_SYS_RESOURCE`. Otherwise it leaves its
/// score as the caller's (the write would fail). The main process keeps the caller's score
/// either way, cloned by a zygote or directly.
fn init_oom_score() -> Result<(), Failed> {
    let adj = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).map(|s| s.trim().to_owned())
    };
    let ours = adj("self").map_err(fail("our oom_score_adj"))?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let expected_init = if effective & (1 << 24) != 0 { "-1000".to_owned() } else { ours.clone() };
    let mut z = Zygote::start().map_err(fail("start"))?;
    for by_zygote in [true, false] {
        let token = unique_token("oom");
        let mut c = Container::create(&options()).map_err(fail("create"))?;
        if by_zygote {
            c.spawn_via(&mut z, &linger(&token)).map_err(fail("spawn via"))?;
        } else {
            c.spawn(&linger(&token)).map_err(fail("spawn"))?;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !token_running(&token) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let init = c.init_pid().ok_or("no init")?;
        let children =
            std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
        let main = children.split_whitespace().next().ok_or("the init has no child")?.to_owned();
        let (init_adj, main_adj) = (adj(&init.to_string()), adj(&main));
        kill_and_check_gone(c)?;
        ensure!(
            init_adj.as_deref().ok() == Some(expected_init.as_str())
                && main_adj.as_deref().ok() == Some(ours.as_str()),
            "by the zygote {by_zygote}: the init's score {init_adj:?} (expected {expected_init}), the main \
             process's {main_adj:?} (expected ours, {ours})"
        );
    }
    Ok(())
}

fn one_per_thread_in_parallel() -> Result<(), Failed> {
    let worker = |n: usize| -> Result<(), Failed> {
        let mut z = Zygote::start().map_err(fail("start"))?;
        for i in 0..4 {
            let word = format!("w{n}c{i}");
            let out = run_via(&mut z, &options(), &sh(&format!("echo {word}")), true)?;
            ensure!(out.stdout == format!("{word}\n").as_bytes(), "{word}: {:?}", text(&out.stdout));
        }
        ensure!(z.lost().is_none(), "lost: {:?}", z.lost());
        Ok(())
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|n| s.spawn(move || worker(n))).collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
    })
}

fn lost_zygote_falls_back() -> Result<(), Failed> {
    let mut z = Zygote::start().map_err(fail("start"))?;
    let zpid = z.pid();
    let out = run_via(&mut z, &options(), &sh("echo via-zygote"), true)?;
    ensure!(out.stdout == b"via-zygote\n", "{:?}", text(&out.stdout));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(zpid), nix::sys::signal::SIGKILL)
        .map_err(fail("kill"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(zpid) {
        ensure!(Instant::now() < deadline, "the zygote survived SIGKILL");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The next spawns clone directly, and still work.
    let mut opts = options();
    opts.set_network_cidr("10.0.22.2/24").map_err(fail("cidr"))?;
    let out = run_via(&mut z, &opts, &sh("echo direct"), false)?;
    ensure!(
        out.termination == Termination::Exited(0) && out.stdout == b"direct\n",
        "{:?} {:?}",
        out.termination,
        text(&out.stdout)
    );
    let why = z.lost().map(ToString::to_string).ok_or("the zygote is not marked lost")?;
    ensure!(why.contains(&format!("the zygote (pid {zpid}) died (signal 9)")), "lost because: {why}");
    ensure!(stat_fields(zpid).is_none(), "the dead zygote {zpid} was not reaped");
    Ok(())
}

// --- an owner killed with SIGKILL ------------------------------------------------------------

/// Helper mode: start a zygote, spawn a lingering container through it, print the footprint,
/// then wait to be killed.
pub fn own_zygote_container(token: &str) -> i32 {
    let mut z = match Zygote::start() {
        Ok(z) => z,
        Err(e) => {
            println!("zygote failed: {e}");
            return 1;
        }
    };
    let mut opts = Options::new();
    opts.set_network_cidr("10.0.23.2/24").expect("cidr");
    let mut c = match Container::create(&opts) {
        Ok(c) => c,
        Err(e) => {
            println!("create failed: {e}");
            return 1;
        }
    };
    if let Err(e) = c.spawn_via(&mut z, &linger(token)) {
        println!("spawn failed: {e}");
        return 1;
    }
    for p in c.cgroup_paths() {
        println!("cgroup={}", p.display());
    }
    println!("veth={}", c.veth_host_name().unwrap_or_default());
    println!("init={}", c.init_pid().unwrap_or_default());
    println!("zygote={}", z.pid());
    println!("ready");
    std::mem::forget(c);
    std::mem::forget(z);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `Ok(Some(reason))` when this set-up cannot run it (below the root on cgroup v2 a child of
/// this test cannot be a runner).
fn dies_with_its_owner() -> Result<Option<String>, Failed> {
    let token = unique_token("zowner");
    let (mut owner, OwnerReport { cgroups, veth, init, zygote }) =
        match start_owner("own-zygote-container", &token)? {
            Ok(started) => started,
            Err(reason) => return Ok(Some(reason)),
        };
    ensure!(token_running(&token), "the owner's container is not running");
    ensure!(running(zygote), "the owner's zygote is not running");
    ensure!(
        ppid_of(init) == Some(owner.id() as i32),
        "the init's parent is {:?}, not the owner",
        ppid_of(init)
    );
    ensure!(cmdline_of(init) == ZYGOTE_CMDLINE, "the init was not cloned by the zygote");
    owner.kill().map_err(fail("SIGKILL owner"))?;
    owner.wait().map_err(fail("reap owner"))?;
    // The zygote dies with its owner; the container sees its life pipe close and ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    while token_running(&token) || running(zygote) {
        ensure!(
            Instant::now() < deadline,
            "outlived the owner: container {}, zygote {}",
            token_running(&token),
            running(zygote)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sweep_as_a_new_runner()?;
    assert_gone(&crate::container::Footprint {
        cgroups,
        veth: Some(veth).filter(|v| !v.is_empty()),
        init_pid: Some(init),
        netns: None,
    })?;
    Ok(None)
}

/// The CPUs in a `/proc/<pid>/status` text.
fn cpus_allowed(status: &str) -> Option<Vec<usize>> {
    let list: CpuList =
        status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim().parse().ok()?;
    Some(list.cpus().to_vec())
}

/// The threads listed in the container's cgroup (v1 `tasks`, v2 `cgroup.threads`).
fn threads_of(c: &Container) -> Vec<i32> {
    let Some(dir) = c.cgroup_paths().into_iter().next() else { return Vec::new() };
    let text = std::fs::read_to_string(dir.join("tasks"))
        .or_else(|_| std::fs::read_to_string(dir.join("cgroup.threads")))
        .unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn cpus_of(tid: i32) -> Option<Vec<usize>> {
    cpus_allowed(&std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?)
}

/// `AffinityHandle::widen` (what `cargo cvtest` does once a worker runs out of tests): every
/// thread of a placed container still on its CPUs gets the wider set, the init included, so
/// what they start later does too; a process the test placed itself (`taskset`) stays where it
/// is; after destroy there is nothing to move.
fn widen_while_running() -> Result<(), Failed> {
    let ours = cpus_allowed(&std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?)
        .ok_or("no Cpus_allowed_list of our own")?;
    let (first, last) = (ours[0], ours[ours.len() - 1]);
    let mut opts = options();
    let c = Container::create(&opts).map_err(fail("create"))?;
    ensure!(c.affinity_handle().is_none(), "an unplaced container has an affinity handle");
    drop(c);
    if first == last {
        eprintln!("    (one CPU here: nothing to widen to)");
        return Ok(());
    }
    opts.set_cpu_affinity(Some(CpuList::new([first]).map_err(|e| e.to_string())?));
    let mut c = Container::create(&opts).map_err(fail("create"))?;
    let Some(handle) = c.affinity_handle() else {
        ensure!(c.cgroup_paths().is_empty(), "a placed container with a cgroup has no affinity handle");
        eprintln!("    (no cgroup: no thread list to widen)");
        return Ok(());
    };
    ensure!(handle.placed().cpus() == [first], "placed on {:?}", handle.placed());
    let script = format!("taskset -c {last} sleep 60 & sleep 60 & sleep 60 & wait");
    let mut z = Zygote::start().map_err(fail("start"))?;
    c.spawn_via(&mut z, &sh(&script)).map_err(fail("spawn"))?;
    // The init, sh, three sleeps; one of them on `last`, by taskset.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pinned_by_test = loop {
        let tids = threads_of(&c);
        let on_last: Vec<i32> = tids.iter().copied().filter(|&t| cpus_of(t) == Some(vec![last])).collect();
        if tids.len() >= 5 && on_last.len() == 1 {
            break on_last[0];
        }
        ensure!(Instant::now() < deadline, "the container's threads did not all start: {tids:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let all = CpuList::new(ours.iter().copied()).map_err(|e| e.to_string())?;
    let moved = handle.widen(&all);
    ensure!(moved >= 4, "moved {moved} threads, expected the init, sh and two sleeps at least");
    for tid in threads_of(&c) {
        let now = cpus_of(tid);
        if tid == pinned_by_test {
            ensure!(now == Some(vec![last]), "the thread the test placed on [{last}] was moved: {now:?}");
        } else {
            ensure!(now.as_ref() == Some(&ours), "thread {tid} is on {now:?}, expected {ours:?}");
        }
    }
    ensure!(handle.widen(&all) == 0, "a second widen moved threads again");
    let fp = footprint(&c);
    c.kill_handle().kill();
    c.wait(Some(Duration::from_secs(30))).map_err(fail("wait"))?;
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)?;
    ensure!(handle.widen(&all) == 0, "a widen after destroy moved something");
    Ok(())
}

/// `Options::set_cpu_affinity`: the command, cloned by a zygote or directly, runs on exactly the
/// CPUs given (and `nproc` counts them), whatever CPUs the zygote itself runs on
/// (`Zygote::set_cpu_affinity`); CPUs that are not there fail the spawn with
/// `SpawnError::Affinity`, which names them, and leave nothing behind; the container then
/// spawns unplaced (`Container::set_cpu_affinity(None)`) and runs on every CPU.
fn run_on_the_cpus_given() -> Result<(), Failed> {
    let ours = cpus_allowed(&std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?)
        .ok_or("no Cpus_allowed_list of our own")?;
    let (first, last) = (ours[0], ours[ours.len() - 1]);
    let mut z = Zygote::start().map_err(fail("start"))?;
    z.set_cpu_affinity(&CpuList::new([first]).map_err(|e| e.to_string())?)
        .map_err(fail("zygote affinity"))?;
    let zs = std::fs::read_to_string(format!("/proc/{}/status", z.pid())).map_err(|e| e.to_string())?;
    ensure!(
        cpus_allowed(&zs) == Some(vec![first]),
        "the zygote runs on {:?}, expected [{first}]",
        cpus_allowed(&zs)
    );

    let mut opts = options();
    opts.set_cpu_affinity(Some(CpuList::new([last]).map_err(|e| e.to_string())?));
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "grep Cpus_allowed_list /proc/self/status; echo nproc=$(nproc)"]);
    cmd.stdout(Stdio::Capture { limit: 1 << 16 });
    for by_zygote in [true, false] {
        let mut c = Container::create(&opts).map_err(fail("create"))?;
        if by_zygote {
            c.spawn_via(&mut z, &cmd).map_err(fail("spawn via the zygote"))?;
        } else {
            c.spawn(&cmd).map_err(fail("spawn"))?;
        }
        let out = c.wait(Some(Duration::from_secs(60))).map_err(fail("wait"))?;
        c.destroy().map_err(fail("destroy"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(out.termination == Termination::Exited(0), "{:?}: {text}", out.termination);
        ensure!(
            cpus_allowed(&text) == Some(vec![last]),
            "by the zygote {by_zygote}: ran on {text:?}, expected [{last}]"
        );
        ensure!(text.contains("nproc=1"), "by the zygote {by_zygote}: {text:?}, expected nproc=1");
    }

    // Not there: 1023 unless this machine has it.
    if !ours.contains(&1023) {
        opts.set_cpu_affinity(Some(CpuList::new([1023]).map_err(|e| e.to_string())?));
        let mut c = Container::create(&opts).map_err(fail("create"))?;
        let token = unique_token("aff");
        let err = match c.spawn_via(&mut z, &linger(&token)) {
            Ok(()) => return Err("a spawn on CPU 1023 succeeded".into()),
            Err(e) => e,
        };
        ensure!(matches!(err, SpawnError::Affinity { .. }), "the error: {err:?}");
        ensure!(err.to_string().contains("CPUs 1023"), "the message names the CPUs: {err}");
        ensure!(!token_running(&token), "the command of a failed spawn runs");
        // The same container spawns again, unplaced (what `cargo cvtest` falls back to).
        c.set_cpu_affinity(None);
        c.spawn_via(&mut z, &cmd).map_err(fail("spawn again, unplaced"))?;
        let fp = footprint(&c);
        let out = c.wait(Some(Duration::from_secs(60))).map_err(fail("wait"))?;
        c.destroy().map_err(fail("destroy"))?;
        assert_gone(&fp)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(cpus_allowed(&text) == Some(ours.clone()), "unplaced, it ran on {text:?}, expected {ours:?}");
    }
    Ok(())
}
