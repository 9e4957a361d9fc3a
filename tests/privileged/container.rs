//! The container lifecycle for real: namespaces, mounts, cgroup limits and peaks, the veth,
//! timeouts, kills, and that nothing is left behind afterwards.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use cvtest::{Command, Container, Isolation, Options, Rootfs, SpawnError, Stdio, Termination};
use libtest_mimic::{Failed, Trial};

use crate::helpers::{self, command};
use crate::support::{privileged, privileged_unless};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("container::runs_a_command_and_captures_output", runs_a_command_and_captures_output),
        privileged("container::sets_env_hostname_and_cwd", sets_env_hostname_and_cwd),
        privileged("container::pid_namespace_is_private", pid_namespace_is_private),
        privileged("container::background_process_dies_with_the_main_process", background_dies_with_main),
        privileged("container::destroy_kills_a_running_tree", destroy_kills_a_running_tree),
        privileged("container::reduced_caps_still_clean_up", reduced_caps_still_clean_up),
        privileged(
            "container::filesystem_is_read_only_with_private_tmp",
            filesystem_is_read_only_with_private_tmp,
        ),
        privileged("container::read_only_root_by_remounts_on_old_kernels", read_only_root_by_remounts),
        privileged("container::explicit_rootfs_is_pivoted_into", explicit_rootfs_is_pivoted_into),
        privileged("container::missing_program_fails_before_clone", missing_program_fails_before_clone),
        privileged("container::exec_failure_is_reported", exec_failure_is_reported),
        privileged("container::setup_failure_is_reported_and_cleaned", setup_failure_is_reported_and_cleaned),
        privileged("container::timeout_kills_the_container", timeout_kills_the_container),
        privileged("container::kill_handle_kills_from_another_thread", kill_handle_kills_from_another_thread),
        privileged("container::signals_are_forwarded_to_the_main_process", signals_are_forwarded),
        privileged("container::large_output_is_truncated_in_the_middle", large_output_is_truncated),
        privileged("container::output_a_line_at_a_time_is_read_in_full", output_a_line_at_a_time),
        privileged("container::two_containers_bind_the_same_port", two_containers_bind_the_same_port),
        privileged("container::memory_limit_oom_kills", memory_limit_oom_kills),
        privileged("container::memory_max_lets_it_run", memory_max_lets_it_run),
        privileged("container::memory_too_small_to_start_says_so", memory_too_small_to_start),
        privileged("container::pids_limit_refuses_forks", pids_limit_refuses_forks),
        privileged("container::cpu_settings_reach_the_kernel", cpu_settings_reach_the_kernel),
        privileged("container::cpu_quota_throttles", cpu_quota_throttles),
        privileged("container::network_reaches_the_host_end", network_reaches_the_host_end),
        privileged("container::same_subnet_back_to_back", same_subnet_back_to_back),
        privileged_unless("container::dead_owner_state_is_swept", dead_owner_state_is_swept),
        privileged("container::without_privileges_create_is_rootless", without_privileges),
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

/// Maps an error to a failure that shows its whole chain of causes.
pub(crate) fn fail<E: std::error::Error>(what: &str) -> impl FnOnce(E) -> Failed + '_ {
    move |e| {
        let mut msg = format!("{what}: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        Failed::from(msg)
    }
}

/// Default options: every capability, default limits, host root read-only.
pub(crate) fn options() -> Options {
    let mut o = Options::new();
    if std::env::var_os("CVTEST_TEST_NO_CGROUPS").is_some() {
        o.set_isolation(
            Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC,
        );
    }
    o
}

pub(crate) fn captured(mut cmd: Command) -> Command {
    cmd.stdout(Stdio::Capture { limit: 1 << 20 }).stderr(Stdio::Capture { limit: 1 << 20 });
    cmd
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a container leaves on the host while it runs, recorded so that its absence can be
/// checked after destroy.
pub(crate) struct Footprint {
    pub(crate) cgroups: Vec<PathBuf>,
    pub(crate) veth: Option<String>,
    pub(crate) init_pid: Option<i32>,
    pub(crate) netns: Option<u64>,
}

pub(crate) fn footprint(c: &Container) -> Footprint {
    let init_pid = c.init_pid();
    let netns = init_pid.and_then(|p| std::fs::metadata(format!("/proc/{p}/ns/net")).ok()).map(|m| m.ino());
    Footprint { cgroups: c.cgroup_paths(), veth: c.veth_host_name().map(str::to_owned), init_pid, netns }
}

fn netns_inode_of(link: &Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let t = target.to_str()?;
    t.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Nothing of the container is left: no cgroup directory, no veth, no process, and nothing
/// holds its network namespace.
pub(crate) fn assert_gone(fp: &Footprint) -> Result<(), Failed> {
    for cg in &fp.cgroups {
        ensure!(!cg.exists(), "cgroup {} still exists", cg.display());
    }
    if let Some(pid) = fp.init_pid {
        // A zombie runs nothing and holds nothing; an orphaned init waits for the host's init to
        // reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let (comm, state) = stat.split_once(") ").map_or(("", ""), |(c, rest)| (c, rest));
        ensure!(!comm.ends_with("(cvtest-init") || state.starts_with('Z'), "the init (pid {pid}) still runs");
    }
    if let Some(ino) = fp.netns {
        for entry in std::fs::read_dir("/proc").map_err(fail("read /proc"))?.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
                let holder = netns_inode_of(&entry.path().join("ns/net"));
                ensure!(
                    holder != Some(ino),
                    "process {:?} is still in the container's netns",
                    entry.file_name()
                );
            }
        }
        for entry in std::fs::read_dir("/proc/self/fd").map_err(fail("read /proc/self/fd"))?.flatten() {
            ensure!(
                netns_inode_of(&entry.path()) != Some(ino),
                "an fd of ours still holds the container's netns"
            );
        }
    }
    if let Some(veth) = &fp.veth {
        // The kernel removes the pair when the namespace goes, asynchronously.
        let path = Path::new("/sys/class/net").join(veth);
        let deadline = Instant::now() + Duration::from_secs(5);
        while path.exists() {
            ensure!(Instant::now() < deadline, "veth {veth} still exists 5 s after destroy");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// Creates a container, runs `cmd` to the end, destroys it, checks nothing is left.
fn run(opts: &Options, cmd: &Command) -> Result<cvtest::Outcome, Failed> {
    let mut c = Container::create(opts).map_err(fail("create"))?;
    c.spawn(cmd).map_err(fail("spawn"))?;
    let fp = footprint(&c);
    let outcome = c.wait(Some(Duration::from_secs(60))).map_err(fail("wait"))?;
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)?;
    Ok(outcome)
}

pub(crate) fn sh(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    captured(cmd)
}

// ---------------------------------------------------------------------------------------------

fn runs_a_command_and_captures_output() -> Result<(), Failed> {
    let out = run(&options(), &sh("echo hello; echo oops >&2; exit 3"))?;
    ensure!(out.termination == Termination::Exited(3), "termination {:?}", out.termination);
    ensure!(out.stdout == b"hello\n", "stdout {:?}", text(&out.stdout));
    ensure!(out.stderr == b"oops\n", "stderr {:?}", text(&out.stderr));
    ensure!(out.leftover.is_empty(), "nothing was left running: {:?}", out.leftover);
    ensure!(
        out.duration > Duration::ZERO && out.duration < Duration::from_secs(30),
        "duration {:?}",
        out.duration
    );
    Ok(())
}

fn sets_env_hostname_and_cwd() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_hostname("box-under-test").map_err(fail("hostname"))?;
    let mut c = Container::create(&opts).map_err(fail("create"))?;
    let id = c.id().to_owned();
    let mut cmd = captured(command("env", &[]));
    cmd.current_dir("/usr");
    c.spawn(&cmd).map_err(fail("spawn"))?;
    let out = c.wait(None).map_err(fail("wait"))?;
    c.destroy().map_err(fail("destroy"))?;
    let stdout = text(&out.stdout);
    ensure!(out.termination == Termination::Exited(0), "{:?} {stdout}", out.termination);
    ensure!(stdout.contains(&format!("container={id}\n")), "{stdout}");
    ensure!(stdout.contains("hostname=box-under-test\n"), "{stdout}");
    ensure!(stdout.contains("cwd=/usr\n"), "{stdout}");
    ensure!(std::env::var_os("CVTEST_CONTAINER").is_none(), "leaked into the parent");
    Ok(())
}

fn pid_namespace_is_private() -> Result<(), Failed> {
    let out = run(&options(), &captured(command("pidns", &[])))?;
    let stdout = text(&out.stdout);
    ensure!(out.termination == Termination::Exited(0), "{:?} {stdout}", out.termination);
    ensure!(stdout.contains("pid=2\n"), "the main process should be PID 2: {stdout}");
    let procs = stdout.lines().find_map(|l| l.strip_prefix("procs=")).unwrap_or_default();
    ensure!(procs == "[1, 2]", "only the init and the main process may be visible: {procs}");
    Ok(())
}

/// Whether a process with `token` as one of its arguments runs on the host (zombies excluded).
pub(crate) fn token_running(token: &str) -> bool {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
        !zombie
            && std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == token.as_bytes()))
    })
}

/// A token no other process has as an argument: pid, a counter and the time.
pub(crate) fn unique_token(what: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("cvtest-{what}-{}-{n}-{}", std::process::id(), t.as_nanos())
}

fn background_dies_with_main() -> Result<(), Failed> {
    let token = unique_token("bg");
    let exe = std::env::current_exe().map_err(fail("exe"))?;
    let script = format!(
        // Until the child has exec'd, its name is still `sh`: wait for that, so that the
        // leftover's name below is the helper's.
        "{HELPER}=linger {exe} {token} & while [ \"$(cat /proc/$!/comm)\" = sh ]; do :; done; echo started",
        HELPER = helpers::HELPER_ENV,
        exe = exe.display()
    );
    let out = run(&options(), &sh(&script))?;
    ensure!(out.termination == Termination::Exited(0), "{:?}", out.termination);
    ensure!(!token_running(&token), "the background process outlived the container");
    // It was reported as left behind, with its pid in the container and its name, before the
    // container killed it.
    let name: String =
        exe.file_name().map(|n| n.to_string_lossy().chars().take(15).collect()).unwrap_or_default();
    ensure!(
        out.leftover.len() == 1 && out.leftover[0].name == name && out.leftover[0].pid > 2,
        "leftover {:?}, expected one {name:?} with a pid above 2",
        out.leftover
    );
    ensure!(out.leftover[0].host_pid != out.leftover[0].pid, "host pid {:?}", out.leftover[0]);
    Ok(())
}

fn destroy_kills_a_running_tree() -> Result<(), Failed> {
    let token = unique_token("tree");
    let exe = std::env::current_exe().map_err(fail("exe"))?;
    let script = format!(
        "{HELPER}=linger {exe} {token} & {HELPER}=linger {exe} {token}",
        HELPER = helpers::HELPER_ENV,
        exe = exe.display()
    );
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    c.spawn(&sh(&script)).map_err(fail("spawn"))?;
    let fp = footprint(&c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !token_running(&token) {
        if Instant::now() > deadline {
            let out = c.wait(Some(Duration::ZERO)).map_err(fail("wait"))?;
            return Err(format!(
                "the lingering processes never started: {:?} {} {}",
                out.termination,
                text(&out.stdout),
                text(&out.stderr)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    c.destroy().map_err(fail("destroy"))?;
    ensure!(!token_running(&token), "processes survived destroy");
    assert_gone(&fp)
}

/// Without a PID namespace or a private filesystem, the container still ends with its main
/// process: the init kills the main process's group.
fn reduced_caps_still_clean_up() -> Result<(), Failed> {
    let token = unique_token("caps");
    let exe = std::env::current_exe().map_err(fail("exe"))?;
    let script = format!("{}=linger {} {token} & echo pid=$$", helpers::HELPER_ENV, exe.display());
    let mut opts = options();
    opts.set_isolation(Isolation::CGROUPS | Isolation::NETWORK);
    let out = run(&opts, &sh(&script))?;
    let stdout = text(&out.stdout);
    ensure!(out.termination == Termination::Exited(0), "{:?} {stdout}", out.termination);
    let pid: u32 = stdout.trim().strip_prefix("pid=").and_then(|p| p.parse().ok()).ok_or(stdout.clone())?;
    ensure!(pid > 2, "without PROCESS_CONTROL there is no PID namespace, yet the pid is {pid}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while token_running(&token) {
        ensure!(Instant::now() < deadline, "the background process outlived the container");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The `fs` helper in a container whose writable dirs are `writable`; its stdout, checked.
fn check_filesystem(out: &cvtest::Outcome, dirs: &[&Path]) -> Result<(), Failed> {
    let stdout = text(&out.stdout);
    ensure!(
        out.termination == Termination::Exited(0),
        "{:?} {stdout} {}",
        out.termination,
        text(&out.stderr)
    );
    let erofs = libc::EROFS.to_string();
    for (key, want) in [
        ("write_etc", erofs.as_str()),
        ("write_usr", &erofs),
        ("write_tmp", "ok"),
        ("write_dev_shm", "ok"),
        ("dev_null", "ok"),
        ("host_marker_visible", &libc::ENOENT.to_string()),
        ("proc_self", "ok"),
        ("writable0", "ok"),
        ("writable1", "ok"),
    ] {
        ensure!(stdout.contains(&format!("{key}={want}\n")), "expected {key}={want} in:\n{stdout}");
    }
    ensure!(!stdout.contains("sys_write=ok"), "/sys must be read-only:\n{stdout}");
    ensure!(!Path::new("/tmp/cvtest-probe").exists(), "/tmp inside is not private");
    // /var/tmp, where the host has one: writable as on the host (and in Docker), and private.
    if Path::new("/var/tmp").is_dir() {
        ensure!(stdout.contains("write_var_tmp=ok\n"), "expected write_var_tmp=ok in:\n{stdout}");
        ensure!(!Path::new("/var/tmp/cvtest-probe").exists(), "/var/tmp inside is not private");
    }
    for dir in dirs {
        let got = std::fs::read(dir.join("from-container")).map_err(fail("written file"))?;
        ensure!(got == b"hello", "writable dir content {got:?}");
    }
    Ok(())
}

/// A host marker file in /tmp (must stay invisible), a writable dir under /tmp (covered by the
/// container's fresh /tmp) and one under the target dir.
fn filesystem_fixture() -> Result<(tempfile::NamedTempFile, tempfile::TempDir, tempfile::TempDir), Failed> {
    Ok((
        tempfile::NamedTempFile::new_in("/tmp").map_err(fail("marker"))?,
        tempfile::tempdir_in("/tmp").map_err(fail("tempdir"))?,
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(fail("tempdir"))?,
    ))
}

fn filesystem_is_read_only_with_private_tmp() -> Result<(), Failed> {
    let (marker, under_tmp, under_target) = filesystem_fixture()?;
    let mut opts = options();
    opts.set_rootfs(Rootfs::Host {
        writable: vec![under_tmp.path().to_owned(), under_target.path().to_owned()],
    });
    let args = [marker.path(), under_tmp.path(), under_target.path()].map(|p| p.to_str().unwrap_or_default());
    let out = run(&opts, &captured(command("fs", &args)))?;
    check_filesystem(&out, &[under_tmp.path(), under_target.path()])
}

/// Kernels before 5.12 have no `mount_setattr`: the host root is made read-only by remounting
/// each mount point. Forced here (in a helper process, the choice is made once per process).
fn read_only_root_by_remounts() -> Result<(), Failed> {
    let (marker, under_tmp, under_target) = filesystem_fixture()?;
    let exe = std::env::current_exe().map_err(fail("exe"))?;
    let args = [marker.path(), under_tmp.path(), under_target.path()];
    let out = std::process::Command::new(exe)
        .env(helpers::HELPER_ENV, "fs-in-container")
        .env("CVTEST_FORCE_REMOUNT", "1")
        .args(args)
        .output()
        .map_err(fail("helper"))?;
    let outcome = cvtest::Outcome {
        termination: match out.status.code() {
            Some(code) => Termination::Exited(code),
            None => Termination::Signaled(0),
        },
        pids_limit_hit: false,
        peaks: Default::default(),
        limits_enforced: true,
        duration: Duration::ZERO,
        stdout: out.stdout,
        stderr: out.stderr,
        leftover: Vec::new(),
    };
    check_filesystem(&outcome, &[under_tmp.path(), under_target.path()])
}

/// Helper mode: the `fs` helper in a container with these writable dirs; its output passed on.
pub fn fs_in_container(host_marker: &str, writable: &[&str]) -> i32 {
    let mut opts = Options::new();
    // No cgroup: this is about mounts, and a child of the test cannot make cgroups everywhere
    // (cgroup v2 below the root, see dead_owner_state_is_swept).
    opts.set_isolation(
        Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::NETWORK | Isolation::IPC,
    );
    opts.set_rootfs(Rootfs::Host { writable: writable.iter().map(PathBuf::from).collect() });
    let mut args = vec![host_marker];
    args.extend_from_slice(writable);
    match run(&opts, &captured(command("fs", &args))) {
        Ok(out) => {
            print!("{}", text(&out.stdout));
            eprint!("{}", text(&out.stderr));
            match out.termination {
                Termination::Exited(code) => code,
                other => {
                    eprintln!("{other:?}");
                    99
                }
            }
        }
        Err(e) => {
            eprintln!("{}", e.message().unwrap_or("failed"));
            98
        }
    }
}

/// Copies `programs` and the shared libraries `ldd` lists for them into `root`, at the same
/// paths: just enough of a root filesystem to run them.
fn minimal_root(root: &Path, programs: &[&str]) -> Result<(), Failed> {
    let mut files: Vec<PathBuf> = programs.iter().map(PathBuf::from).collect();
    for program in programs {
        let out = std::process::Command::new("ldd").arg(program).output().map_err(fail("ldd"))?;
        for word in text(&out.stdout).split_whitespace() {
            if word.starts_with('/') {
                files.push(PathBuf::from(word));
            }
        }
    }
    for file in files {
        let dest = root.join(file.strip_prefix("/").unwrap_or(&file));
        std::fs::create_dir_all(dest.parent().unwrap_or(root)).map_err(fail("mkdir"))?;
        std::fs::copy(&file, &dest).map_err(fail("copy into the root"))?;
    }
    Ok(())
}

fn explicit_rootfs_is_pivoted_into() -> Result<(), Failed> {
    let root = tempfile::tempdir().map_err(fail("tempdir"))?;
    std::fs::write(root.path().join("marker"), b"inside").map_err(fail("marker"))?;
    let mut opts = options();
    opts.set_rootfs(Rootfs::Dir(root.path().to_owned()));
    // Nothing in the root yet: the missing program is reported before anything is cloned.
    let mut c = Container::create(&opts).map_err(fail("create"))?;
    match c.spawn(&Command::new("/bin/sh")) {
        Err(SpawnError::NotFound { program, .. }) => ensure!(program == Path::new("/bin/sh"), "{program:?}"),
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }
    ensure!(c.init_pid().is_none(), "nothing may have been cloned");
    c.destroy().map_err(fail("destroy"))?;

    minimal_root(root.path(), &["/bin/sh", "/bin/cat"])?;
    let out = run(
        &opts,
        &sh("cat /marker; test -r /proc/1/status && echo ' proc'; test -e /etc/passwd || echo 'no host'; echo x > /tmp/t && cat /tmp/t"),
    )?;
    let stdout = text(&out.stdout);
    ensure!(stdout == "inside proc\nno host\nx\n", "{stdout:?} {}", text(&out.stderr));
    ensure!(!root.path().join("tmp/t").exists(), "/tmp inside the root is not a fresh tmpfs");
    Ok(())
}

fn missing_program_fails_before_clone() -> Result<(), Failed> {
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    match c.spawn(&Command::new("/nonexistent/program")) {
        Err(SpawnError::NotFound { program, .. }) => {
            ensure!(program == Path::new("/nonexistent/program"), "{program:?}")
        }
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }
    ensure!(c.init_pid().is_none(), "nothing may have been cloned");
    match c.spawn(&Command::new("no-such-program-in-path")) {
        Err(SpawnError::NotFound { .. }) => {}
        other => return Err(format!("expected NotFound from PATH, got {other:?}").into()),
    }
    // The container is still usable after a failed spawn.
    let mut ok = Command::new("true");
    ok.stdout(Stdio::Null);
    c.spawn(&ok).map_err(fail("spawn true via PATH"))?;
    let out = c.wait(None).map_err(fail("wait"))?;
    ensure!(out.termination == Termination::Exited(0), "{:?}", out.termination);
    c.destroy().map_err(fail("destroy"))
}

fn exec_failure_is_reported() -> Result<(), Failed> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(fail("tempdir"))?;
    let bogus = dir.path().join("not-a-program");
    std::fs::write(&bogus, b"\x7fELF garbage").map_err(fail("write"))?;
    std::fs::set_permissions(&bogus, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(fail("chmod"))?;
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    match c.spawn(&Command::new(&bogus)) {
        Err(SpawnError::Exec { program, source }) => {
            ensure!(program == bogus, "{program:?}");
            ensure!(source.raw_os_error() == Some(libc::ENOEXEC), "{source}");
        }
        other => return Err(format!("expected Exec error, got {other:?}").into()),
    }
    let fp = footprint(&c);
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)
}

fn setup_failure_is_reported_and_cleaned() -> Result<(), Failed> {
    // A root whose /proc is a file: mounting proc on it fails in the child.
    let root = tempfile::tempdir().map_err(fail("tempdir"))?;
    std::fs::write(root.path().join("proc"), b"not a dir").map_err(fail("write"))?;
    std::fs::create_dir(root.path().join("bin")).map_err(fail("mkdir"))?;
    std::fs::copy("/bin/true", root.path().join("bin/true")).map_err(fail("copy"))?;
    let mut opts = options();
    opts.set_rootfs(Rootfs::Dir(root.path().to_owned()));
    let mut c = Container::create(&opts).map_err(fail("create"))?;
    let fp = footprint(&c);
    match c.spawn(&Command::new("/bin/true")) {
        Err(e @ SpawnError::Setup { .. }) => {
            let msg = e.to_string();
            ensure!(msg.contains("mounting proc on /proc"), "{msg}");
        }
        other => return Err(format!("expected a setup error, got {other:?}").into()),
    }
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)
}

fn timeout_kills_the_container() -> Result<(), Failed> {
    let token = unique_token("timeout");
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    c.spawn(&command("linger", &[&token])).map_err(fail("spawn"))?;
    let fp = footprint(&c);
    let start = Instant::now();
    let out = c.wait(Some(Duration::from_millis(300))).map_err(fail("wait"))?;
    let took = start.elapsed();
    ensure!(out.termination == Termination::TimedOut, "{:?}", out.termination);
    ensure!(took >= Duration::from_millis(300), "returned after {took:?}");
    ensure!(!token_running(&token), "the process survived the timeout");
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)
}

fn kill_handle_kills_from_another_thread() -> Result<(), Failed> {
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    let handle = c.kill_handle();
    handle.kill(); // before spawn: nothing to kill, no harm
    c.spawn(&command("linger", &[&unique_token("kill")])).map_err(fail("spawn"))?;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        handle.kill();
        handle
    });
    let out = c.wait(Some(Duration::from_secs(30))).map_err(fail("wait"))?;
    let handle = killer.join().map_err(|_| Failed::from("killer thread panicked"))?;
    ensure!(out.termination == Termination::Signaled(libc::SIGKILL), "{:?}", out.termination);
    c.destroy().map_err(fail("destroy"))?;
    handle.kill(); // after destroy: still harmless
    Ok(())
}

fn signals_are_forwarded() -> Result<(), Failed> {
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    c.spawn(&command("linger", &[&unique_token("sig")])).map_err(fail("spawn"))?;
    let init = c.init_pid().ok_or("no init pid")?;
    std::thread::sleep(Duration::from_millis(50));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::SIGTERM)
        .map_err(fail("kill"))?;
    let out = c.wait(Some(Duration::from_secs(30))).map_err(fail("wait"))?;
    ensure!(out.termination == Termination::Signaled(libc::SIGTERM), "{:?}", out.termination);
    c.destroy().map_err(fail("destroy"))
}

fn large_output_is_truncated() -> Result<(), Failed> {
    let mut cmd = command("spew", &["104857600"]);
    cmd.stdout(Stdio::Capture { limit: 1 << 20 });
    let out = run(&options(), &cmd)?;
    ensure!(out.termination == Termination::Exited(0), "{:?}", out.termination);
    let s = text(&out.stdout);
    ensure!(s.starts_with("BEGINxxx") && s.ends_with("xxxEND"), "head/tail lost");
    let dropped = 104857600 + 8 - (1 << 20);
    ensure!(s.contains(&format!("\n[... {dropped} bytes truncated ...]\n")), "marker missing");
    ensure!(out.stdout.len() < (1 << 20) + 100, "kept {} bytes", out.stdout.len());
    Ok(())
}

/// Output written a short line at a time, 200,000 lines on each of stdout and stderr (the
/// parent leaves a trickle to gather in the pipes between reads): the command runs to its end,
/// and both outputs are whole where kept (head and tail; the middle past the limit is cut).
fn output_a_line_at_a_time() -> Result<(), Failed> {
    let lines = 200_000;
    let mut cmd = command("trickle", &[&lines.to_string()]);
    cmd.stdout(Stdio::Capture { limit: 1 << 20 }).stderr(Stdio::Capture { limit: 1 << 20 });
    let mut c = Container::create(&options()).map_err(fail("create"))?;
    c.spawn(&cmd).map_err(fail("spawn"))?;
    let fp = footprint(&c);
    let out = c.wait(Some(Duration::from_secs(120))).map_err(fail("wait"))?;
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)?;
    ensure!(out.termination == Termination::Exited(0), "{:?}", out.termination);
    let last = format!("line {}\n", lines - 1);
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let s = text(bytes);
        ensure!(s.starts_with("line 0\nline 1\n") && s.ends_with(&last), "{name}: head or tail lost");
    }
    Ok(())
}

fn two_containers_bind_the_same_port() -> Result<(), Failed> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(fail("tempdir"))?;
    let mut opts = options();
    opts.set_rootfs(Rootfs::Host { writable: vec![dir.path().to_owned()] });
    let d = dir.path().to_str().unwrap_or_default();
    let mut a = Container::create(&opts).map_err(fail("create a"))?;
    let mut b = Container::create(&opts).map_err(fail("create b"))?;
    a.spawn(&captured(command("bind", &["8080", d, "a", "b"]))).map_err(fail("spawn a"))?;
    b.spawn(&captured(command("bind", &["8080", d, "b", "a"]))).map_err(fail("spawn b"))?;
    let (fa, fb) = (footprint(&a), footprint(&b));
    let oa = a.wait(Some(Duration::from_secs(30))).map_err(fail("wait a"))?;
    let ob = b.wait(Some(Duration::from_secs(30))).map_err(fail("wait b"))?;
    a.destroy().map_err(fail("destroy a"))?;
    b.destroy().map_err(fail("destroy b"))?;
    for (name, o) in [("a", &oa), ("b", &ob)] {
        ensure!(o.termination == Termination::Exited(0), "{name}: {:?} {}", o.termination, text(&o.stdout));
    }
    assert_gone(&fa)?;
    assert_gone(&fb)
}

fn memory_limit_oom_kills() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_cgroup_limits("64M", "100", "64").map_err(fail("limits"))?;
    let out = run(&opts, &captured(command("alloc", &["268435456"])))?;
    ensure!(out.termination == Termination::OomKilled, "{:?} {}", out.termination, text(&out.stdout));
    let peak = out.peaks.memory_bytes.ok_or("no memory peak")?.value;
    let limit = 64u64 << 20;
    ensure!(peak <= limit && peak >= limit / 100 * 95, "peak {peak} not within 5% of {limit}");
    ensure!(out.peaks.oom_kills.is_some_and(|n| n >= 1), "oom kills {:?}", out.peaks.oom_kills);
    Ok(())
}

/// Below the parser's 1M floor (the library takes raw bytes): the init itself is OOM-killed
/// during setup, and the error says that, not just "signal 9".
fn memory_too_small_to_start() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_memory(cvtest::MemoryLimit::Bytes(4096));
    let mut c = Container::create(&opts).map_err(fail("create"))?;
    let fp = footprint(&c);
    match c.spawn(&Command::new("/bin/true")) {
        Err(e @ SpawnError::SetupOutOfMemory) => {
            let msg = e.to_string();
            ensure!(msg.contains("lack of memory") && msg.contains("memory limit"), "{msg}");
        }
        other => return Err(format!("expected SetupOutOfMemory, got {other:?}").into()),
    }
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)
}

fn memory_max_lets_it_run() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_cgroup_limits("max", "100", "64").map_err(fail("limits"))?;
    let out = run(&opts, &captured(command("alloc", &["268435456"])))?;
    ensure!(out.termination == Termination::Exited(0), "{:?}", out.termination);
    let peak = out.peaks.memory_bytes.ok_or("no memory peak")?.value;
    ensure!(peak >= 256 << 20, "peak {peak} below 256 MiB");
    ensure!(out.peaks.oom_kills == Some(0), "oom kills {:?}", out.peaks.oom_kills);
    Ok(())
}

fn pids_limit_refuses_forks() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_cgroup_limits("256M", "100", "16").map_err(fail("limits"))?;
    let out = run(&opts, &captured(command("fork", &["100"])))?;
    let stdout = text(&out.stdout);
    ensure!(out.termination == Termination::Exited(0), "{:?} {stdout}", out.termination);
    let eagain: u32 = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("eagain="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no eagain count in {stdout:?}"))?;
    ensure!(eagain > 0, "fork never failed with EAGAIN: {stdout}");
    ensure!(out.pids_limit_hit, "pids_limit_hit not set");
    let peak = out.peaks.pids.ok_or("no pids peak")?;
    println!("    pids peak {peak:?}, memory peak {:?}", out.peaks.memory_bytes);
    ensure!(peak.value == 16, "pids peak {peak:?}, want 16");
    Ok(())
}

fn cpu_settings_reach_the_kernel() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_cgroup_limits("256M", "250", "64").map_err(fail("limits"))?;
    opts.set_cpus("0.5").map_err(fail("cpus"))?;
    let c = Container::create(&opts).map_err(fail("create"))?;
    let paths = c.cgroup_paths();
    let read = |file: &str| -> Option<String> {
        paths.iter().find_map(|p| std::fs::read_to_string(p.join(file)).ok()).map(|s| s.trim().to_owned())
    };
    if let Some(weight) = read("cpu.weight") {
        ensure!(weight == "250", "cpu.weight {weight}");
        let max = read("cpu.max").ok_or("no cpu.max")?;
        let mut it = max.split_whitespace();
        let (quota, period): (u64, u64) = (
            it.next().and_then(|q| q.parse().ok()).unwrap_or(0),
            it.next().and_then(|p| p.parse().ok()).unwrap_or(1),
        );
        ensure!(quota * 1000 / period == 500, "cpu.max {max}");
    } else {
        let shares: u64 =
            read("cpu.shares").ok_or("neither cpu.weight nor cpu.shares")?.parse().map_err(fail("shares"))?;
        ensure!(
            shares == cvtest::CpuWeight::new(250).map_err(fail("weight"))?.to_v1_shares(),
            "cpu.shares {shares}"
        );
        let quota: i64 = read("cpu.cfs_quota_us").ok_or("no cfs quota")?.parse().map_err(fail("quota"))?;
        let period: i64 =
            read("cpu.cfs_period_us").ok_or("no cfs period")?.parse().map_err(fail("period"))?;
        ensure!(quota * 1000 / period == 500, "quota {quota} period {period}");
    }
    let fp = footprint(&c);
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&fp)
}

fn cpu_quota_throttles() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_cpus("0.2").map_err(fail("cpus"))?;
    let out = run(&opts, &command("spin", &["1000"]))?;
    ensure!(out.termination == Termination::Exited(0), "{:?}", out.termination);
    let cpu = out.peaks.cpu_total().ok_or("no cpu time")?;
    // The quota covers the whole run, start-up included: compare with the wall time it took.
    let share = cpu.as_secs_f64() / out.duration.as_secs_f64();
    ensure!(out.duration >= Duration::from_secs(1), "ran only {:?}", out.duration);
    ensure!(
        share <= 0.25 + 0.05,
        "used {cpu:?} of CPU in {:?} under cpus=0.2 ({share:.2} of a core)",
        out.duration
    );
    ensure!(share >= 0.1, "used only {cpu:?} in {:?}: did it spin at all?", out.duration);
    Ok(())
}

fn network_reaches_the_host_end() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_network_cidr("10.0.0.2/24").map_err(fail("network"))?;
    let mut c = Container::create(&opts).map_err(fail("create"))?;
    c.spawn(&captured(command("tcp", &["10.0.0.1:7878"]))).map_err(fail("spawn"))?;
    let fp = footprint(&c);
    // The host end exists now: listen on it.
    let listener = TcpListener::bind((Ipv4Addr::new(10, 0, 0, 1), 7878)).map_err(fail("bind host end"))?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept()?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        s.write_all(b"pong")?;
        Ok(())
    });
    let out = c.wait(Some(Duration::from_secs(30))).map_err(fail("wait"))?;
    ensure!(out.termination == Termination::Exited(0), "{:?} {}", out.termination, text(&out.stdout));
    server.join().map_err(|_| "server panicked")?.map_err(fail("server"))?;
    let net = out.peaks.net.ok_or("no veth counters")?;
    ensure!(net.rx_bytes > 4 && net.tx_bytes > 4 && net.rx_packets > 0 && net.tx_packets > 0, "{net:?}");

    // While that veth still exists, a container without network cannot reach it.
    let mut isolated = Container::create(&options()).map_err(fail("create isolated"))?;
    isolated.spawn(&captured(command("tcp", &["10.0.0.1:7878"]))).map_err(fail("spawn isolated"))?;
    let ifp = footprint(&isolated);
    let iout = isolated.wait(Some(Duration::from_secs(30))).map_err(fail("wait isolated"))?;
    ensure!(iout.termination == Termination::Exited(3), "{:?} {}", iout.termination, text(&iout.stdout));
    ensure!(iout.peaks.net.is_none(), "no veth, no counters");
    isolated.destroy().map_err(fail("destroy isolated"))?;
    c.destroy().map_err(fail("destroy"))?;
    assert_gone(&ifp)?;
    assert_gone(&fp)
}

/// The kernel removes a released veth asynchronously; the next container on the same subnet
/// must not be refused meanwhile, and each gets a fresh pair.
fn same_subnet_back_to_back() -> Result<(), Failed> {
    let mut opts = options();
    opts.set_network_cidr("10.0.7.2/24").map_err(fail("network"))?;
    let mut names = Vec::new();
    for round in 0..3 {
        let mut c = Container::create(&opts).map_err(fail(&format!("create #{round}")))?;
        let mut cmd = Command::new("/bin/true");
        cmd.stdout(Stdio::Null);
        c.spawn(&cmd).map_err(fail(&format!("spawn #{round}")))?;
        let out = c.wait(Some(Duration::from_secs(30))).map_err(fail("wait"))?;
        ensure!(out.termination == Termination::Exited(0), "#{round}: {:?}", out.termination);
        names.push(c.veth_host_name().unwrap_or_default().to_owned());
        c.destroy().map_err(fail(&format!("destroy #{round}")))?;
    }
    names.dedup();
    ensure!(names.len() == 3, "veth names reused: {names:?}");
    Ok(())
}

// --- a runner killed with SIGKILL ------------------------------------------------------------

/// Helper mode: create a container with a lingering process, print its footprint, then wait to
/// be killed.
pub fn own_container(token: &str) -> i32 {
    let mut opts = Options::new();
    opts.set_network_cidr("10.0.9.2/24").expect("cidr");
    let mut c = match Container::create(&opts) {
        Ok(c) => c,
        Err(e) => {
            println!("create failed: {e}");
            return 1;
        }
    };
    if let Err(e) = c.spawn(&command("linger", &[token])) {
        println!("spawn failed: {e}");
        return 1;
    }
    for p in c.cgroup_paths() {
        println!("cgroup={}", p.display());
    }
    println!("veth={}", c.veth_host_name().unwrap_or_default());
    println!("init={}", c.init_pid().unwrap_or_default());
    println!("ready");
    std::mem::forget(c);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Helper mode: one create and destroy (a fresh process sweeps at its first create).
pub fn create_once(no_cgroups: bool) -> i32 {
    let mut opts = Options::new();
    if no_cgroups {
        opts.set_isolation(
            Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC,
        );
    }
    match Container::create(&opts) {
        Ok(c) => match c.destroy() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("destroy: {e}");
                2
            }
        },
        Err(e) => {
            eprintln!("create: {e}");
            1
        }
    }
}

/// What an owner (this binary as a helper that makes a container, keeps it and never exits)
/// printed before "ready".
#[derive(Debug, Default)]
pub(crate) struct OwnerReport {
    pub(crate) cgroups: Vec<PathBuf>,
    pub(crate) veth: String,
    pub(crate) init: i32,
    /// Its zygote's pid, when it made the container through one.
    pub(crate) zygote: i32,
}

/// Starts this binary as helper `mode` with `token` and reads its report up to "ready".
/// `Ok(Err(reason))` when this set-up cannot run an owner: below the root on cgroup v2 this test
/// process sits in its supervisor leaf, where a child cannot enable controllers, so a child of
/// this test cannot be a runner there.
pub(crate) fn start_owner(
    mode: &str,
    token: &str,
) -> Result<Result<(std::process::Child, OwnerReport), String>, Failed> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(fail("exe"))?;
    let mut owner = std::process::Command::new(&exe)
        .env(helpers::HELPER_ENV, mode)
        .arg(token)
        .stdout(StdStdio::piped())
        .spawn()
        .map_err(fail("spawn owner"))?;
    let stdout = owner.stdout.take().ok_or("no stdout")?;
    let mut report = OwnerReport::default();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(fail("read owner"))?;
        if let Some(p) = line.strip_prefix("cgroup=") {
            report.cgroups.push(PathBuf::from(p));
        } else if let Some(v) = line.strip_prefix("veth=") {
            report.veth = v.to_owned();
        } else if let Some(p) = line.strip_prefix("init=") {
            report.init = p.parse().unwrap_or(0);
        } else if let Some(p) = line.strip_prefix("zygote=") {
            report.zygote = p.parse().unwrap_or(0);
        } else if line == "ready" {
            return Ok(Ok((owner, report)));
        } else {
            let _ = owner.kill();
            let _ = owner.wait();
            if line.contains("cannot enable") {
                return Ok(Err(format!("a child of this test cannot be a runner here: {line}")));
            }
            return Err(format!("owner: {line}").into());
        }
    }
    let _ = owner.kill();
    let _ = owner.wait();
    Err("the owner ended before it was ready".into())
}

/// Runs this binary once as a new runner that creates one container, which sweeps what dead
/// owners left.
pub(crate) fn sweep_as_a_new_runner() -> Result<(), Failed> {
    let exe = std::env::current_exe().map_err(fail("exe"))?;
    let status = std::process::Command::new(&exe)
        .env(helpers::HELPER_ENV, "create-once")
        .status()
        .map_err(fail("sweeper"))?;
    ensure!(status.success(), "sweeper failed: {status}");
    Ok(())
}

/// `Ok(Some(reason))` when this set-up cannot run it (see [`start_owner`]).
fn dead_owner_state_is_swept() -> Result<Option<String>, Failed> {
    let token = unique_token("owner");
    let (mut owner, OwnerReport { cgroups, veth, init, .. }) = match start_owner("own-container", &token)? {
        Ok(started) => started,
        Err(reason) => return Ok(Some(reason)),
    };
    ensure!(token_running(&token), "the owner's container is not running");
    owner.kill().map_err(fail("SIGKILL owner"))?;
    owner.wait().map_err(fail("reap owner"))?;
    // The init sees its life pipe close and takes the container down with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while token_running(&token) {
        ensure!(Instant::now() < deadline, "the container outlived its owner");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its cgroups stay behind until someone sweeps them.
    for cg in &cgroups {
        ensure!(cg.exists(), "cgroup {} vanished without a sweep", cg.display());
    }
    sweep_as_a_new_runner()?;
    assert_gone(&Footprint {
        cgroups,
        veth: Some(veth).filter(|v| !v.is_empty()),
        init_pid: Some(init),
        netns: None,
    })?;
    Ok(None)
}

fn without_privileges() -> Result<(), Failed> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(fail("exe"))?;
    let as_nobody = |args: &[&str]| {
        std::process::Command::new(&exe)
            .env(helpers::HELPER_ENV, "create-once")
            .args(args)
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .output()
    };
    // Rootless: a container in a user namespace of its own. Without delegated cgroups (this
    // host's are v1) only without the CGROUPS part of isolation.
    let rootless = as_nobody(&["no-cgroups"]).map_err(fail("run as nobody"))?;
    let with_cgroups = as_nobody(&[]).map_err(fail("run as nobody"))?;
    let (rootless_err, cgroups_err) = (text(&rootless.stderr), text(&with_cgroups.stderr));
    ensure!(with_cgroups.status.code() == Some(1), "create with cgroups as nobody: {cgroups_err}");
    match crate::userns::no_user_namespaces() {
        None => {
            ensure!(rootless.status.success(), "rootless create as nobody: {rootless_err}");
            ensure!(cgroups_err.contains("cgroup"), "unclear message: {cgroups_err}");
        }
        // Where the kernel refuses user namespaces (the v2 VM's chroot), both say so.
        Some(_) => {
            for (out, err) in [(&rootless, &rootless_err), (&with_cgroups, &cgroups_err)] {
                ensure!(
                    out.status.code() == Some(1) && err.contains("user namespace"),
                    "create as nobody without user namespaces: {err}"
                );
            }
        }
    }
    Ok(())
}
