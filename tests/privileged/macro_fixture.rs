//! `#[cv_test]` for real: builds the fixture crate `tests/fixtures/macro-fixture` (in its own
//! target directory, `target/fixtures`, so this nested cargo never waits on the outer one's
//! lock), runs its tests through `cargo test`, and asserts how each test ended in libtest's
//! output — not only exit codes.
//!
//! The fixture's network test talks to the host end of its veth: this process listens on
//! 10.147.33.1 (bound with IP_FREEBIND before the address exists; only the fixture's veth ever
//! carries it) and answers one line, and checks that the connection came from the container's
//! address.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cvtest::spec::{SettingsDump, ENV_LIST_SETTINGS, SETTINGS_LINE_PREFIX};
use libtest_mimic::{Completion, Failed, Trial};

use crate::support::{missing_privileges, privileged};

pub fn trials() -> Vec<Trial> {
    vec![
        containers("macro_fixture::every_test_ends_as_expected", every_test_ends_as_expected),
        containers("macro_fixture::oom_fails_with_limit_and_peak", oom_fails_with_limit_and_peak),
        containers(
            "macro_fixture::network_test_exchanges_with_host_end",
            network_test_exchanges_with_host_end,
        ),
        containers("macro_fixture::should_panic_behaves_like_libtest", should_panic_behaves_like_libtest),
        containers("macro_fixture::ignore_behaves_like_libtest", ignore_behaves_like_libtest),
        containers("macro_fixture::result_tests_behave_like_libtest", result_tests_behave_like_libtest),
        containers("macro_fixture::tokio_composes", tokio_composes),
        containers("macro_fixture::limits_pids_and_timeout", limits_pids_and_timeout),
        containers("macro_fixture::failure_shows_the_containers_output", failure_shows_the_containers_output),
        containers("macro_fixture::one_process_per_test_like_nextest", one_process_per_test_like_nextest),
        containers("macro_fixture::no_terminal_under_a_terminal", no_terminal_under_a_terminal),
        // These two need no containers, but building the fixture writes the target directory
        // and the unprivileged runs switch users: as root only, like the rest.
        privileged("macro_fixture::settings_dump_lists_every_test", settings_dump_lists_every_test),
        privileged("macro_fixture::unsandboxed_fails_skips_or_runs", unsandboxed_fails_skips_or_runs),
    ]
}

/// A trial whose fixture tests make containers: as root, and where a test binary started by
/// cargo (or by this process) can have them. On cgroup v2 below the root cgroup, cvtest needs
/// its cgroup to itself (it moves into a leaf so that the cgroup may pass controllers on), but
/// such a test binary shares its cgroup with its parent; the library refuses, saying so.
fn containers(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || match missing_privileges().or_else(shared_v2_cgroup) {
        Some(reason) => Ok(Completion::ignored_with(reason)),
        None => f().map(|()| Completion::Completed),
    })
}

fn shared_v2_cgroup() -> Option<String> {
    let hierarchy = cvtest::test_support::Hierarchy::detect().ok()?;
    if hierarchy.version() != cvtest::test_support::CgroupVersion::V2 {
        return None;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    (path != "/").then(|| {
        format!(
            "cgroup v2 below the root ({path}): a test binary run by cargo shares its cgroup with cargo, and cvtest needs one of its own"
        )
    })
}

/// How each fixture test must end in a plain `cargo test` run. Every test is here.
const EXPECTED: &[(&str, Status)] = &[
    ("asynchronous::tokio_current_thread", Status::Ok),
    ("asynchronous::tokio_multi_thread_result", Status::Ok),
    ("asynchronous::tokio_should_panic", Status::Ok),
    ("at_root", Status::Ok),
    ("confinement::caps_adds_net_admin", Status::Ok),
    ("confinement::default_lacks_sys_admin", Status::Ok),
    ("confinement::no_terminal", Status::Ok),
    ("confinement::privileged_has_sys_admin", Status::Ok),
    ("limits::limits_are_applied", Status::Ok),
    ("limits::oom_allocates_256m", Status::Failed),
    ("limits::pids_limit_fails_spawn", Status::Failed),
    ("limits::times_out_after_1s", Status::Failed),
    ("limits::writes_where_tests_write", Status::Ok),
    ("net::exchanges_with_host_end", Status::Ok),
    ("outcomes::ignored", Status::Ignored),
    ("outcomes::ignored_should_panic", Status::Ignored),
    ("outcomes::panics_with_output", Status::Failed),
    ("outcomes::result_err_fails", Status::Failed),
    ("outcomes::result_ok", Status::Ok),
    ("outcomes::should_panic_bare_ok", Status::Ok),
    ("outcomes::should_panic_expected_ok", Status::Ok),
    ("outcomes::should_panic_no_panic_fails", Status::Failed),
    ("outcomes::should_panic_oom_fails", Status::Failed),
    ("outcomes::should_panic_written_first_ok", Status::Ok),
    ("outcomes::should_panic_wrong_message_fails", Status::Failed),
    ("r#loop", Status::Ok),
    ("reports_where_it_runs", Status::Ok),
];

const CONTAINER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 147, 33, 2);
const HOST_END: Ipv4Addr = Ipv4Addr::new(10, 147, 33, 1);

// ---------------------------------------------------------------------------------------------
// Trials

fn every_test_ends_as_expected() -> Result<(), Failed> {
    let run = main_run()?;
    let expected: BTreeMap<&str, Status> = EXPECTED.iter().copied().collect();
    let got: BTreeMap<&str, Status> = run.libtest.results.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    check(got == expected, || format!("expected {expected:#?}\ngot {got:#?}\n{}", run.output))?;
    let (passed, failed, ignored) = (count(Status::Ok), count(Status::Failed), count(Status::Ignored));
    let summary = format!("test result: FAILED. {passed} passed; {failed} failed; {ignored} ignored;");
    check(run.output.contains(&summary), || format!("no {summary:?} in\n{}", run.output))
}

fn oom_fails_with_limit_and_peak() -> Result<(), Failed> {
    let run = main_run()?;
    let out = run.libtest.failed("limits::oom_allocates_256m")?;
    let message = out
        .lines()
        .find_map(|l| l.strip_prefix("killed: out of memory (limit 64 MiB, peak "))
        .ok_or_else(|| format!("no OOM message with the 64 MiB limit in\n{out}"))?;
    let peak: f64 = message
        .strip_suffix(" MiB)")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no peak in MiB in {message:?}"))?;
    check((48.0..=64.5).contains(&peak), || format!("peak {peak} MiB is not near the 64 MiB limit"))?;
    check(!out.contains("fixture: allocated"), || {
        format!("the allocation finished despite the limit:\n{out}")
    })?;
    check(out.contains("peak memory ") && out.contains("(limit 64 MiB)"), || {
        format!("no usage line in\n{out}")
    })
}

fn network_test_exchanges_with_host_end() -> Result<(), Failed> {
    let run = main_run()?;
    run.libtest.expect("net::exchanges_with_host_end", Status::Ok)?;
    let exchanges = run.exchanges.lock().unwrap().clone();
    let expected = vec![(std::net::IpAddr::from(CONTAINER_ADDR), "ping from the container".to_owned())];
    let got: Vec<_> = exchanges.iter().map(|(peer, line)| (peer.ip(), line.clone())).collect();
    check(got == expected, || format!("the host end's listener saw {got:?}, expected {expected:?}"))
}

fn should_panic_behaves_like_libtest() -> Result<(), Failed> {
    let run = main_run()?;
    let l = &run.libtest;
    for ok in ["should_panic_expected_ok", "should_panic_bare_ok", "should_panic_written_first_ok"] {
        l.expect(&format!("outcomes::{ok}"), Status::Ok)?;
    }
    // The inner libtest's verdict is shown, and the outer test fails as libtest's would.
    let wrong = l.failed("outcomes::should_panic_wrong_message_fails")?;
    for part in
        ["panic did not contain expected string", "\"bang\"", "\"boom\"", "test did not panic as expected"]
    {
        check(wrong.contains(part), || format!("no {part:?} in\n{wrong}"))?;
    }
    let none = l.failed("outcomes::should_panic_no_panic_fails")?;
    check(none.matches("test did not panic as expected").count() == 2, || {
        format!("expected the inner and outer verdicts in\n{none}")
    })?;
    // An OOM kill is no expected panic.
    let oom = l.failed("outcomes::should_panic_oom_fails")?;
    check(oom.contains("cvtest: killed: out of memory (limit 64 MiB, peak "), || {
        format!("no OOM message in\n{oom}")
    })
}

fn ignore_behaves_like_libtest() -> Result<(), Failed> {
    let run = main_run()?;
    check(
        run.output.contains("test outcomes::ignored_should_panic ... ignored, runs only when asked"),
        || format!("no ignore reason in\n{}", run.output),
    )?;
    // Asked for, the ignored tests run (in their containers) and pass.
    let fixture = fixture()?;
    let ignored = Libtest::parse(&output_of(&mut fixture.test_binary(&["--ignored"]))?);
    let expected: BTreeMap<String, Status> =
        [("outcomes::ignored", Status::Ok), ("outcomes::ignored_should_panic", Status::Ok)]
            .map(|(n, s)| (n.to_owned(), s))
            .into();
    check(ignored.results == expected, || format!("with --ignored: {:#?}", ignored.results))
}

fn result_tests_behave_like_libtest() -> Result<(), Failed> {
    let run = main_run()?;
    run.libtest.expect("outcomes::result_ok", Status::Ok)?;
    let err = run.libtest.failed("outcomes::result_err_fails")?;
    check(err.contains("Error: \"fixture: the body returned an error\""), || {
        format!("no Err value in\n{err}")
    })
}

fn tokio_composes() -> Result<(), Failed> {
    let run = main_run()?;
    for name in ["tokio_current_thread", "tokio_multi_thread_result", "tokio_should_panic"] {
        run.libtest.expect(&format!("asynchronous::{name}"), Status::Ok)?;
    }
    Ok(())
}

fn limits_pids_and_timeout() -> Result<(), Failed> {
    let run = main_run()?;
    let pids = run.libtest.failed("limits::pids_limit_fails_spawn")?;
    check(pids.contains("after reaching its pids limit of 8 (a fork or clone was refused)"), || {
        format!("no pids message in\n{pids}")
    })?;
    let timeout = run.libtest.failed("limits::times_out_after_1s")?;
    check(timeout.lines().any(|l| l == "timed out after 1s"), || {
        format!("no timeout message in\n{timeout}")
    })?;
    run.libtest.expect("limits::writes_where_tests_write", Status::Ok)?;
    // A passing test prints its peaks and limits (seen with --nocapture).
    let out =
        output_of(&mut fixture()?.test_binary(&["--exact", "limits::limits_are_applied", "--nocapture"]))?;
    summary_passed(&out, 1)?;
    let usage = out
        .lines()
        .find(|l| l.starts_with("cvtest: container "))
        .ok_or_else(|| format!("no usage line in\n{out}"))?;
    for part in ["peak memory ", "(limit 256 MiB)", "peak pids ", "(limit 64)"] {
        check(usage.contains(part), || format!("no {part:?} in {usage:?}"))?;
    }
    Ok(())
}

/// `#[cv_test]` in a terminal (the fixture's binary under `script`, as `cargo test` in a
/// developer's shell): the test has no controlling terminal and no fd of it (issue 11, item 1).
fn no_terminal_under_a_terminal() -> Result<(), Failed> {
    let test = fixture()?.test_binary(&["--exact", "confinement::no_terminal", "--nocapture"]);
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let mut line = String::from("tty; exec");
    for part in std::iter::once(test.get_program()).chain(test.get_args()) {
        line.push(' ');
        line.push_str(&quote(part));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]).stdin(std::process::Stdio::null());
    if let Some(dir) = test.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (k, v) in test.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = output_of(&mut cmd)?;
    check(out.lines().next().is_some_and(|l| l.starts_with("/dev/pts/")), || {
        format!("the fixture did not run on a terminal:\n{out}")
    })?;
    let out = out.replace("\r\n", "\n");
    summary_passed(&out, 1)
}

fn failure_shows_the_containers_output() -> Result<(), Failed> {
    let run = main_run()?;
    let out = run.libtest.failed("outcomes::panics_with_output")?;
    for part in [
        "fixture: stdout before the panic",
        "fixture: stderr before the panic",
        "fixture: the body panicked",
        "the test failed in its container (exit code 101); its output is above",
        "cvtest: container ",
    ] {
        check(out.contains(part), || format!("no {part:?} in\n{out}"))?;
    }
    Ok(())
}

/// nextest runs each test as its own process, `BIN --exact NAME --nocapture`, and judges it by
/// the exit code: the same outcomes must come out that way.
fn one_process_per_test_like_nextest() -> Result<(), Failed> {
    let fixture = fixture()?;
    let listener = EchoListener::start()?;
    let mut wrong = Vec::new();
    for &(name, expected) in EXPECTED.iter().filter(|(_, s)| *s != Status::Ignored) {
        let out = fixture
            .test_binary(&["--exact", name, "--nocapture"])
            .env("MACRO_FIXTURE_ECHO", listener.addr.to_string())
            .output()
            .map_err(|e| format!("cannot run the fixture: {e}"))?;
        let got = if out.status.success() { Status::Ok } else { Status::Failed };
        if got != expected || out.status.code().is_none() {
            wrong.push(format!("{name}: {:?}, expected {expected:?}", out.status));
        }
    }
    let exchanges = listener.stop();
    check(wrong.is_empty(), || wrong.join("\n"))?;
    let peers: Vec<_> = exchanges.lock().unwrap().iter().map(|(peer, _)| peer.ip()).collect();
    check(peers == [CONTAINER_ADDR], || format!("the host end saw {peers:?}"))
}

fn settings_dump_lists_every_test() -> Result<(), Failed> {
    let fixture = fixture()?;
    let mut list = fixture.test_binary(&["--list", "--format", "terse"]);
    let plain = output_of(list.env_remove(ENV_LIST_SETTINGS))?;
    check(!plain.contains(SETTINGS_LINE_PREFIX), || {
        format!("a settings line without {ENV_LIST_SETTINGS}:\n{plain}")
    })?;

    let out = output_of(list.env(ENV_LIST_SETTINGS, "1"))?;
    let (first, rest) = out.split_once('\n').unwrap_or((&out, ""));
    let json = first
        .strip_prefix(SETTINGS_LINE_PREFIX)
        .ok_or_else(|| format!("the first line is not the settings line:\n{out}"))?;
    check(rest == plain, || format!("the list changed with the settings line:\n{rest}\nvs\n{plain}"))?;
    let dump: SettingsDump =
        serde_json::from_str(json).map_err(|e| format!("bad settings JSON {json}: {e}"))?;
    check(dump.version == 1, || format!("version {}", dump.version))?;

    let listed: Vec<&str> = plain.lines().filter_map(|l| l.strip_suffix(": test")).collect();
    let dumped: Vec<&str> = dump.tests.iter().map(|t| t.name.as_str()).collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    check(listed == expected && dumped == expected, || format!("listed {listed:?}\ndumped {dumped:?}"))?;

    let settings = |name: &str| {
        let t = dump.tests.iter().find(|t| t.name == name).expect("listed");
        (serde_json::to_string(&t.settings).expect("serializes"), t.should_panic, t.ignored)
    };
    let cases = [
        ("at_root", r#"{}"#, false, false),
        ("confinement::caps_adds_net_admin", r#"{"caps":"NET_ADMIN"}"#, false, false),
        ("confinement::privileged_has_sys_admin", r#"{"privileged":"true"}"#, false, false),
        ("limits::oom_allocates_256m", r#"{"memory":"64M"}"#, false, false),
        (
            "limits::limits_are_applied",
            r#"{"memory":"256M","pids":"64","cpu_weight":"200","cpus":"0.5","hostname":"fixture-box"}"#,
            false,
            false,
        ),
        ("limits::times_out_after_1s", r#"{"timeout":"1s"}"#, false, false),
        ("net::exchanges_with_host_end", r#"{"network":"10.147.33.2/24@10.147.33.1"}"#, false, false),
        ("outcomes::ignored_should_panic", r#"{"memory":"128M"}"#, true, true),
        ("outcomes::should_panic_written_first_ok", r#"{}"#, true, false),
        ("asynchronous::tokio_multi_thread_result", r#"{"pids":"32"}"#, false, false),
    ];
    for (name, json, should_panic, ignored) in cases {
        let got = settings(name);
        check(got == (json.to_owned(), should_panic, ignored), || format!("{name}: got {got:?}"))?;
    }
    Ok(())
}

fn unsandboxed_fails_skips_or_runs() -> Result<(), Failed> {
    let fixture = fixture()?;
    let run = |mode: Option<&str>, args: &[&str]| -> Result<(Libtest, String), Failed> {
        let mut cmd = fixture.test_binary(args);
        if let Some(mode) = mode {
            cmd.env("CVTEST_UNSANDBOXED", mode);
        }
        let out = output_of(&mut unprivileged(cmd))?;
        Ok((Libtest::parse(&out), out))
    };

    // By default: fail, saying what is missing and both ways out.
    let (l, out) = run(None, &["--exact", "at_root"])?;
    let msg = l.failed("at_root")?;
    // What is missing: the capabilities (no user namespaces either), or, rootless, a delegated
    // cgroup for the limits (cgroup v1 here).
    check(msg.contains("CAP_SYS_ADMIN") || msg.contains("may not create cgroups"), || {
        format!("neither the capabilities nor the cgroup delegation named in\n{out}")
    })?;
    for part in [
        "sudo -E",
        "CVTEST_UNSANDBOXED=skip to skip such tests",
        "CVTEST_UNSANDBOXED=run to run them without isolation",
    ] {
        check(msg.contains(part), || format!("no {part:?} in\n{out}"))?;
    }
    // skip: passes without running, also where a panic was expected.
    let (_, out) =
        run(Some("skip"), &["--exact", "at_root", "outcomes::should_panic_expected_ok", "--nocapture"])?;
    summary_passed(&out, 2)?;
    check(out.contains("cvtest: skipped (CVTEST_UNSANDBOXED=skip): "), || out.clone())?;
    // run: the body runs here, without a container.
    let (_, out) = run(Some("run"), &["--exact", "reports_where_it_runs", "--nocapture"])?;
    summary_passed(&out, 1)?;
    check(out.contains("cvtest: running without isolation or limits (CVTEST_UNSANDBOXED=run)"), || {
        out.clone()
    })?;
    check(out.contains("fixture: CVTEST_CONTAINER=unset"), || out.clone())?;
    // Anything else is a mistake, said as such.
    let (l, _) = run(Some("yes"), &["--exact", "at_root"])?;
    let msg = l.failed("at_root")?;
    check(msg.contains("CVTEST_UNSANDBOXED=\"yes\" is not understood: set it to skip or run"), || {
        msg.to_owned()
    })
}

// ---------------------------------------------------------------------------------------------
// The fixture: built once, run once through `cargo test`

struct Fixture {
    dir: PathBuf,
    target_dir: PathBuf,
    binary: PathBuf,
}

impl Fixture {
    /// The fixture's test binary, run as `cargo test` runs it (from the package directory).
    fn test_binary(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args).current_dir(&self.dir);
        clean_env(&mut cmd);
        cmd
    }

    fn cargo(&self) -> Command {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.arg("test")
            .arg("--manifest-path")
            .arg(self.dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &self.target_dir);
        clean_env(&mut cmd);
        cmd
    }
}

/// What the fixture's tests must not inherit from this process's environment.
fn clean_env(cmd: &mut Command) {
    for var in [
        "CVTEST_CONTAINER",
        "CVTEST_UNSANDBOXED",
        ENV_LIST_SETTINGS,
        "RUST_TEST_THREADS",
        "RUST_TEST_NOCAPTURE",
    ] {
        cmd.env_remove(var);
    }
    // Panic messages without backtraces keep the compared output short.
    cmd.env("RUST_BACKTRACE", "0");
}

fn fixture() -> Result<&'static Fixture, Failed> {
    static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture).as_ref().map_err(|e| Failed::from(e.as_str()))
}

fn build_fixture() -> Result<Fixture, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut fixture = Fixture {
        dir: root.join("tests/fixtures/macro-fixture"),
        target_dir: root.join("target/fixtures"),
        binary: PathBuf::new(),
    };
    let out = fixture
        .cargo()
        .args(["--no-run", "--lib", "--message-format=json"])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the fixture failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    fixture.binary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "macro_fixture")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo named no test binary for the fixture:\n{stdout}"))?;
    Ok(fixture)
}

/// The fixture's `cargo test` run, with the host end's listener up.
struct MainRun {
    output: String,
    libtest: Libtest,
    /// (peer, line received) for each connection the listener answered.
    exchanges: Arc<Mutex<Vec<(SocketAddr, String)>>>,
}

fn main_run() -> Result<&'static MainRun, Failed> {
    static RUN: OnceLock<Result<MainRun, String>> = OnceLock::new();
    RUN.get_or_init(|| {
        let fixture = fixture().map_err(|e| e.message().unwrap_or("no fixture").to_owned())?;
        let listener = EchoListener::start()?;
        let out = fixture.cargo().env("MACRO_FIXTURE_ECHO", listener.addr.to_string()).output();
        let exchanges = listener.stop();
        let out = out.map_err(|e| format!("cannot run cargo test: {e}"))?;
        let output = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(MainRun { libtest: Libtest::parse(&output), output, exchanges })
    })
    .as_ref()
    .map_err(|e| Failed::from(e.as_str()))
}

/// A TCP listener on the host end's address that answers "pong <line>" to one line.
struct EchoListener {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    exchanges: Arc<Mutex<Vec<(SocketAddr, String)>>>,
}

impl EchoListener {
    fn start() -> Result<Self, String> {
        use nix::sys::socket::{
            bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
        };
        use std::os::fd::AsRawFd;

        let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| format!("socket: {e}"))?;
        // The address appears only when the fixture's veth is configured.
        setsockopt(&fd, sockopt::IpFreebind, &true).map_err(|e| format!("IP_FREEBIND: {e}"))?;
        bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(HOST_END, 0)))
            .map_err(|e| format!("bind {HOST_END}: {e}"))?;
        listen(&fd, Backlog::new(8).expect("valid backlog")).map_err(|e| format!("listen: {e}"))?;
        let listener = TcpListener::from(fd);
        let SocketAddr::V4(addr) = listener.local_addr().map_err(|e| e.to_string())? else {
            unreachable!("an IPv4 socket")
        };
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;

        let stop = Arc::new(AtomicBool::new(false));
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, exchanges) = (stop.clone(), exchanges.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                            let mut line = String::new();
                            if BufReader::new(&stream).read_line(&mut line).is_ok() {
                                let line = line.trim_end().to_owned();
                                let _ = writeln!(&stream, "pong {line}");
                                exchanges.lock().unwrap().push((peer, line));
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Ok(EchoListener { addr, stop, thread, exchanges })
    }

    fn stop(self) -> Arc<Mutex<Vec<(SocketAddr, String)>>> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.exchanges
    }
}

// ---------------------------------------------------------------------------------------------
// libtest's human output

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Failed,
    Ignored,
}

/// Per-test results and failure output, parsed from libtest's default (pretty) format.
struct Libtest {
    results: BTreeMap<String, Status>,
    /// The captured output libtest prints for each failed test.
    failures: BTreeMap<String, String>,
}

impl Libtest {
    /// Parses a run with captured output (no `--nocapture`): one result line per test, then a
    /// section `---- NAME stdout ----` per failed test (whose text may hold a whole inner libtest
    /// run, with its own `---- NAME stdout ----` and `failures:` lines), then the final
    /// `failures:` list and the summary.
    fn parse(stdout: &str) -> Libtest {
        let lines: Vec<&str> = stdout.lines().collect();
        let end = lines.iter().rposition(|l| *l == "failures:").unwrap_or(lines.len());
        let mut results = BTreeMap::new();
        let mut failures: BTreeMap<String, String> = BTreeMap::new();
        let mut section: Option<String> = None;
        for line in &lines[..end] {
            let header = line.strip_prefix("---- ").and_then(|l| l.strip_suffix(" stdout ----"));
            match (header, &section) {
                // The inner run's header for the same test is part of the outer section.
                (Some(name), Some(current)) if name == current => {}
                (Some(name), _) => {
                    section = Some(name.to_owned());
                    continue;
                }
                (None, _) => {}
            }
            if let Some(name) = &section {
                let text = failures.entry(name.clone()).or_default();
                text.push_str(line);
                text.push('\n');
                continue;
            }
            let Some((name, status)) = line.strip_prefix("test ").and_then(|l| l.split_once(" ... ")) else {
                continue;
            };
            let status = match status {
                "ok" => Status::Ok,
                "FAILED" => Status::Failed,
                s if s.starts_with("ignored") => Status::Ignored,
                _ => continue,
            };
            results.insert(name.strip_suffix(" - should panic").unwrap_or(name).to_owned(), status);
        }
        Libtest { results, failures }
    }

    fn expect(&self, name: &str, status: Status) -> Result<(), Failed> {
        let got = self.results.get(name);
        check(got == Some(&status), || format!("{name}: expected {status:?}, got {got:?}"))
    }

    /// The output shown for a test that must have failed.
    fn failed(&self, name: &str) -> Result<&str, Failed> {
        self.expect(name, Status::Failed)?;
        self.failures
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("no failure output for {name}").into())
    }
}

/// With `--nocapture` a test's output (here: a whole inner libtest run) lands amid the result
/// lines, so such a run is judged by its last summary line: `ok` and how many passed.
fn summary_passed(out: &str, passed: usize) -> Result<(), Failed> {
    let summary = out.lines().rev().find(|l| l.starts_with("test result: ")).unwrap_or("no summary");
    let expected = format!("test result: ok. {passed} passed; 0 failed;");
    check(summary.starts_with(&expected), || format!("expected {expected:?}, got {summary:?} in\n{out}"))
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn count(status: Status) -> usize {
    EXPECTED.iter().filter(|(_, s)| *s == status).count()
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(message().into())
    }
}

/// The command's stdout, then its stderr.
fn output_of(cmd: &mut Command) -> Result<String, Failed> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// The command as `nobody`, through setpriv.
fn unprivileged(cmd: Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped
}
