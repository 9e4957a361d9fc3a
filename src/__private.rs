//! Support for `#[cv_test]`'s generated code. Not a public API: only the macro calls it.
//!
//! Each `#[cv_test]` function starts with a prologue that
//! 1. declares a [`Test`] (its name parts, its validated settings, `should_panic`, `ignore`),
//! 2. registers it from a constructor ([`register`]), and from a later constructor prints the
//!    settings dump when asked ([`list_settings`]),
//! 3. calls [`run`]: inside a container (`CVTEST_CONTAINER` set) the body runs directly;
//!    otherwise `run` re-executes this test binary for this one test inside a container with the
//!    test's limits, waits, and turns the container's outcome into this test's outcome.
//!
//! Both the outer test (here) and the inner one (in the container) carry `#[should_panic]`. The
//! inner libtest judges the panic; the outer one then has to reproduce the verdict:
//!
//! | in the container                       | plain test                | `#[should_panic(expected = E)]` |
//! |----------------------------------------|---------------------------|---------------------------------|
//! | libtest passed it (exit 0)             | return: passes            | panic with a message holding E: passes |
//! | libtest failed it, OOM, timeout, ...   | panic with why: fails     | print why, return: fails ("did not panic as expected") |
//! | skipped (`CVTEST_UNSANDBOXED=skip`)    | print why, return: passes | panic with a message holding E: passes |
//!
//! A failure under `#[should_panic]` never panics: any panic message might contain `E`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::Duration;

use cvtest_spec::{
    format_duration, libtest, DumpedTest, ParseError, SettingsDump, TestSettings, ENV_LIST_SETTINGS,
    SETTINGS_DUMP_VERSION, SETTINGS_LINE_PREFIX,
};

use crate::{
    error_chain, Command, Container, CreateError, Isolation, Limits, MemoryLimit, Options, Outcome, Rootfs,
    Stdio, Termination, ENV_CONTAINER,
};

pub use ::ctor;

/// Without privileges: unset to fail, `skip` to skip, `run` to run the body without isolation.
pub const ENV_UNSANDBOXED: &str = "CVTEST_UNSANDBOXED";

/// `off`: run the tests in containers without cgroups, so without limits, on purpose (where no
/// cgroup can be delegated, e.g. cgroup v1 as an ordinary user); `on` or unset: enforce them.
pub const ENV_LIMITS: &str = "CVTEST_LIMITS";

/// How much of the inner test's stdout and of its stderr is kept (the middle is dropped past it).
const OUTPUT_LIMIT: usize = 4 << 20;

/// One `#[cv_test]` test, as the macro declares it.
#[derive(Debug)]
pub struct Test {
    /// `module_path!()` where the function is: the crate's name, then its modules.
    pub module_path: &'static str,
    pub fn_name: &'static str,
    /// `(key, value)` pairs as written, already validated at compile time.
    pub settings: &'static [(&'static str, &'static str)],
    pub should_panic: ShouldPanic,
    pub ignored: bool,
    /// The test's package directory (`CARGO_MANIFEST_DIR` when it was compiled).
    pub manifest_dir: &'static str,
}

/// The test's `#[should_panic]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShouldPanic {
    No,
    Yes,
    Expected(&'static str),
}

impl Test {
    /// The name libtest gives the test: the module path without the crate's name, then the
    /// function's name (`tests::oom` for `fn oom` in `mod tests` of any crate).
    pub fn name(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_crate, modules)) => format!("{modules}::{}", self.fn_name),
            None => self.fn_name.to_owned(),
        }
    }

    /// The settings, parsed by the one value parser (which already accepted them at compile
    /// time).
    pub fn settings(&self) -> TestSettings {
        let mut settings = TestSettings::default();
        let mut host = None;
        for (key, value) in self.settings {
            if let Err(e) = settings.set(key, value, &mut host) {
                panic!(
                    "#[cv_test] on {}: {key} = {value:?} was accepted at compile time but not now: {e}",
                    self.name()
                );
            }
        }
        settings
    }
}

/// Every registered test of this binary. Filled by constructors before `main`.
static TESTS: Mutex<Vec<&'static Test>> = Mutex::new(Vec::new());

/// Records a test (called from a constructor of priority `default`).
pub fn register(test: &'static Test) {
    TESTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(test);
}

/// With `CVTEST_LIST_SETTINGS=1`, prints the settings line once (called from a constructor of
/// priority `late`, so after every [`register`]).
pub fn list_settings() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os(ENV_LIST_SETTINGS).is_some_and(|v| v == "1") {
            let tests = TESTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let line = settings_line(&tests);
            let mut stdout = std::io::stdout().lock();
            // Nothing to do if stdout is gone: the reader will see no settings line.
            let _ = stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush());
        }
    });
}

fn settings_line(tests: &[&'static Test]) -> String {
    let mut tests: Vec<DumpedTest> = tests
        .iter()
        .map(|t| DumpedTest {
            name: t.name(),
            settings: t.settings(),
            should_panic: t.should_panic != ShouldPanic::No,
            ignored: t.ignored,
        })
        .collect();
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    let dump = SettingsDump { version: SETTINGS_DUMP_VERSION, tests };
    let json = serde_json::to_string(&dump).expect("settings serialize to JSON");
    format!("{SETTINGS_LINE_PREFIX}{json}\n")
}

/// What a test function may return.
#[diagnostic::on_unimplemented(
    message = "a #[cv_test] function returns `()` or `Result<(), E>`, not `{Self}`"
)]
pub trait TestReturn {
    /// The value that makes libtest count the test as passed.
    fn passed() -> Self;
}

impl TestReturn for () {
    fn passed() -> Self {}
}

impl<E> TestReturn for Result<(), E> {
    fn passed() -> Self {
        Ok(())
    }
}

/// The prologue of every `#[cv_test]` body: `None` means "run the body here"; `Some` is the
/// test's result, already decided by running it in a container. Panics to fail the test (or,
/// under `#[should_panic]`, to pass it).
#[track_caller]
pub fn run<R: TestReturn>(test: &'static Test) -> Option<R> {
    if std::env::var_os(ENV_CONTAINER).is_some() {
        return None;
    }
    match (supervise(test), test.should_panic) {
        (Verdict::RunHere, _) => None,
        (Verdict::Passed, ShouldPanic::No) => Some(R::passed()),
        (Verdict::Passed, ShouldPanic::Yes) => panic!("the test panicked in its container, as it should"),
        (Verdict::Passed, ShouldPanic::Expected(expected)) => {
            panic!("the test panicked in its container with a message containing {expected:?}, as it should")
        }
        (Verdict::Failed(why), ShouldPanic::No) => panic!("{why}"),
        (Verdict::Failed(why), ShouldPanic::Yes | ShouldPanic::Expected(_)) => {
            // Not a panic: the message could contain the expected text and pass the test.
            println!("cvtest: {why}");
            Some(R::passed())
        }
        (Verdict::Skipped(why), ShouldPanic::No) => {
            println!("cvtest: {why}");
            Some(R::passed())
        }
        (Verdict::Skipped(why), ShouldPanic::Yes) => panic!("{why}"),
        (Verdict::Skipped(why), ShouldPanic::Expected(expected)) => {
            panic!("{why} (this panic stands in for the expected one: {expected:?})")
        }
    }
}

/// What became of the test outside this process.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// libtest in the container ran the test and passed it.
    Passed,
    /// The test failed in its container, or could not be run there; the text says which.
    Failed(String),
    /// No privileges and `CVTEST_UNSANDBOXED=skip`.
    Skipped(String),
    /// No privileges and `CVTEST_UNSANDBOXED=run`.
    RunHere,
}

/// Runs the test binary again for this one test, in a container with the test's settings.
fn supervise(test: &'static Test) -> Verdict {
    let name = test.name();
    let settings = test.settings();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return Verdict::Failed(format!(
                "cvtest cannot find this test binary to run it in a container: {e}"
            ))
        }
    };
    let mut options = match options(&settings, test, &exe) {
        Ok(options) => options,
        Err(e) => {
            return Verdict::Failed(format!("cvtest cannot make the test's container: {}", error_chain(&e)))
        }
    };
    match limits_enforced() {
        Ok(true) => {}
        Ok(false) => {
            options.set_isolation(
                Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC,
            );
            warn_no_limits_once();
        }
        Err(why) => return Verdict::Failed(why.to_string()),
    }

    let reported: std::cell::RefCell<Option<crate::lease::Waiting>> = std::cell::RefCell::new(None);
    let observer = |w: &crate::lease::Waiting| {
        let mut reported = reported.borrow_mut();
        if reported.as_ref() != Some(w) {
            let holder =
                w.holder.as_ref().map_or_else(|| "another cvtest container".to_owned(), |h| h.to_string());
            println!("cvtest: waiting for {}, held by {holder}", w.what);
            *reported = Some(w.clone());
        }
        true
    };
    let policy = crate::lease::WaitPolicy {
        label: Some(&name),
        timeout: settings.timeout.unwrap_or(crate::lease::DEFAULT_WAIT),
        observer: Some(&observer),
    };
    let mut container = match Container::create_waiting(&options, &policy) {
        Ok(c) => c,
        Err(
            e @ (CreateError::Privileges { .. }
            | CreateError::UserNamespaces(_)
            | CreateError::KernelTooOld { .. }
            // Rootless where no cgroup is delegated: the same ways out (or CVTEST_LIMITS=off).
            | CreateError::Cgroup(
                crate::CgroupError::NotDelegated { .. } | crate::CgroupError::ControllersNotDelegated { .. },
            )),
        ) => return unprivileged(&e),
        Err(e) => {
            return Verdict::Failed(format!(
                "cvtest could not create the test's container: {}",
                error_chain(&e)
            ))
        }
    };
    let mut command = Command::new(&exe);
    command
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1", "--include-ignored"])
        .env_remove(ENV_LIST_SETTINGS)
        .env_remove(crate::lab::ENV_SOCKET)
        .env_remove(crate::lab::ENV_UNSUPPORTED)
        .stdout(Stdio::Capture { limit: OUTPUT_LIMIT })
        .stderr(Stdio::Capture { limit: OUTPUT_LIMIT });
    // The test's lab maker (see `crate::lab`): its socket in the target directory, which the
    // test's container shares. Rootless, the lab is made in the test's user namespace, which the
    // container keeps for it.
    let mut maker = crate::lab::maker::prepare(&mut container, lab_socket_dir(test, &exe), &mut command);
    if let Err(e) = container.spawn(&command) {
        return Verdict::Failed(format!(
            "cvtest could not start the test in its container: {}",
            error_chain(&e)
        ));
    }
    if let Some(maker) = maker.as_mut() {
        maker.serve_container(
            &container,
            crate::lab::maker::NodeBase {
                exe: exe.clone(),
                rootfs: options.rootfs().clone(),
                limits: options.isolation().contains(Isolation::CGROUPS),
                test_network: container.network(),
            },
        );
    }
    let outcome = match container.wait(settings.timeout) {
        Ok(outcome) => outcome,
        Err(e) => {
            return Verdict::Failed(format!("cvtest lost the test in its container: {}", error_chain(&e)))
        }
    };
    // The test is gone: so is its end of the lab channel, and every node with the lab.
    let lab_reports = maker.map(crate::lab::maker::Maker::finish).unwrap_or_default();
    let id = container.id().to_owned();
    let network = container.network();
    let destroyed = container.destroy();
    // The test's process may end right after this test: its veth goes first.
    let _ = crate::wait_released_veths(VETHS_GONE_TIMEOUT);

    // The captured output goes through print!, so libtest shows it where it shows any test's
    // output: on failure, or always with --nocapture.
    print!("{}", String::from_utf8_lossy(&outcome.stdout));
    eprint!("{}", String::from_utf8_lossy(&outcome.stderr));
    print!("{}", crate::lab::maker::render(&lab_reports));
    match network {
        Some(net) => println!(
            "cvtest: container {id}: network {net} (host {}), {}",
            net.host(),
            usage(&outcome, options.limits())
        ),
        None => println!("cvtest: container {id}: {}", usage(&outcome, options.limits())),
    }

    let verdict = judge(&outcome, options.limits(), settings.timeout, &name);
    match destroyed {
        Ok(()) => verdict,
        Err(e) => {
            Verdict::Failed(format!("cvtest could not remove the test's container {id}: {}", error_chain(&e)))
        }
    }
}

/// How long a test waits for the kernel to delete its container's veth.
const VETHS_GONE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A `CVTEST_LIMITS` value other than `off`, `on` or empty.
#[derive(Debug, thiserror::Error)]
#[error("{ENV_LIMITS}={value:?} is not understood: set it to off (run without limits) or on")]
struct LimitsEnvError {
    value: std::ffi::OsString,
}

/// Whether `CVTEST_LIMITS` leaves the limits on; an error for a value it does not understand.
fn limits_enforced() -> Result<bool, LimitsEnvError> {
    match std::env::var_os(ENV_LIMITS) {
        None => Ok(true),
        Some(v) if v.is_empty() || v == "on" => Ok(true),
        Some(v) if v == "off" => Ok(false),
        Some(value) => Err(LimitsEnvError { value }),
    }
}

/// Says once per test binary, past libtest's capture, that no test's limits are enforced.
fn warn_no_limits_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut stderr = std::io::stderr().lock();
        // Nothing to do if stderr is gone: each test's usage line says it too.
        let _ = writeln!(
            stderr,
            "cvtest: {ENV_LIMITS}=off: the tests of this binary run without cgroup limits (memory, pids, cpu are \
             NOT enforced); peaks are what rusage tells (largest process RSS, CPU time)"
        );
    });
}

/// The container for a test: [`Options::for_test`], with the host's root read-only except
/// where `cargo test` tests normally write (the package and target directories; /tmp is the
/// container's own).
fn options(settings: &TestSettings, test: &Test, exe: &Path) -> Result<Options, ParseError> {
    let mut options = Options::for_test(settings)?;
    options.set_rootfs(Rootfs::Host { writable: writable_dirs(Path::new(test.manifest_dir), exe) });
    Ok(options)
}

/// Where a test's lab socket goes: `cvtest-lab/` in the target directory (else the package's).
fn lab_socket_dir(test: &Test, exe: &Path) -> Option<PathBuf> {
    let base = target_dir(exe).unwrap_or_else(|| PathBuf::from(test.manifest_dir));
    Some(base.join("cvtest-lab"))
}

/// The package directory and the target directory, without one nested in the other twice.
fn writable_dirs(manifest_dir: &Path, exe: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![manifest_dir.to_path_buf()];
    if let Some(target) = target_dir(exe) {
        if !target.starts_with(manifest_dir) {
            dirs.push(target);
        }
    }
    dirs
}

/// The cargo target directory a test binary was built in: the nearest ancestor with cargo's
/// `CACHEDIR.TAG`, else the directory above `deps/`.
fn target_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    dir.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .or_else(|| (dir.file_name()? == "deps").then(|| dir.parent()).flatten())
        .map(Path::to_path_buf)
}

/// No containers here (no privileges, or a kernel too old): fail, skip or run unisolated, as
/// `CVTEST_UNSANDBOXED` says.
fn unprivileged(missing: &CreateError) -> Verdict {
    match std::env::var(ENV_UNSANDBOXED).as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("") => Verdict::Failed(format!(
            "{missing}. Or set {ENV_UNSANDBOXED}=skip to skip such tests, or {ENV_UNSANDBOXED}=run to run them without isolation or limits"
        )),
        Ok("skip") => Verdict::Skipped(format!("skipped ({ENV_UNSANDBOXED}=skip): {missing}")),
        Ok("run") => {
            println!("cvtest: running without isolation or limits ({ENV_UNSANDBOXED}=run): {missing}");
            Verdict::RunHere
        }
        Ok(other) => Verdict::Failed(format!(
            "{ENV_UNSANDBOXED}={other:?} is not understood: set it to skip or run, or unset it ({missing})"
        )),
        Err(std::env::VarError::NotUnicode(v)) => Verdict::Failed(format!(
            "{ENV_UNSANDBOXED}={v:?} is not understood: set it to skip or run, or unset it ({missing})"
        )),
    }
}

/// Turns how the inner test binary ended into this test's verdict.
fn judge(outcome: &Outcome, limits: &Limits, timeout: Option<Duration>, name: &str) -> Verdict {
    let pids_note = || match (outcome.pids_limit_hit, limits.pids) {
        (true, limit) => format!(" after reaching its pids limit of {limit} (a fork or clone was refused)"),
        (false, _) => String::new(),
    };
    match outcome.termination {
        Termination::Exited(0) if libtest::passed_exactly_one(&outcome.stdout) => Verdict::Passed,
        Termination::Exited(0) => Verdict::Failed(format!(
            "the test binary ran no test named {name:?} in its container: libtest did not report it as passed"
        )),
        Termination::Exited(code) => Verdict::Failed(format!(
            "the test failed in its container{} (exit code {code}); its output is above",
            pids_note()
        )),
        Termination::Signaled(signal) => {
            Verdict::Failed(format!("the test was killed by signal {signal} in its container{}", pids_note()))
        }
        Termination::OomKilled => Verdict::Failed(format!(
            "killed: out of memory (limit {}, peak {})",
            limit_text(limits.memory),
            outcome.peaks.memory_bytes.map_or_else(|| "unknown".to_owned(), |m| mib(m.value)),
        )),
        Termination::TimedOut => Verdict::Failed(format!(
            "timed out after {}",
            timeout.map_or_else(|| "its timeout".to_owned(), format_duration)
        )),
    }
}

/// The usage line printed with every test: peaks and limits, CPU time, traffic, wall time.
pub(crate) fn usage(outcome: &Outcome, limits: &Limits) -> String {
    let peaks = &outcome.peaks;
    if !outcome.limits_enforced {
        let mut parts = vec![format!(
            "limits NOT enforced ({ENV_LIMITS}=off; memory {}, pids {} not applied)",
            limit_text(limits.memory),
            limits.pids
        )];
        if let Some(rss) = peaks.max_rss_bytes {
            parts.push(format!("largest process RSS {}", mib(rss)));
        }
        if let (Some(user), Some(system)) = (peaks.cpu_user, peaks.cpu_system) {
            parts.push(format!("cpu {} (user {}, system {})", secs(user + system), secs(user), secs(system)));
        }
        parts.push(format!("wall {}", secs(outcome.duration)));
        return parts.join(", ");
    }
    let bound = |sampled: bool| if sampled { ">=" } else { "" };
    let memory = peaks
        .memory_bytes
        .map_or_else(|| "unknown".to_owned(), |m| format!("{}{}", bound(m.sampled), mib(m.value)));
    let pids =
        peaks.pids.map_or_else(|| "unknown".to_owned(), |p| format!("{}{}", bound(p.sampled), p.value));
    let mut parts = vec![
        format!("peak memory {memory} (limit {})", limit_text(limits.memory)),
        format!("peak pids {pids} (limit {})", limits.pids),
    ];
    if let (Some(user), Some(system)) = (peaks.cpu_user, peaks.cpu_system) {
        parts.push(format!("cpu {} (user {}, system {})", secs(user + system), secs(user), secs(system)));
    }
    if let Some(kills) = peaks.oom_kills.filter(|&k| k > 0) {
        parts.push(format!("oom kills {kills}"));
    }
    if outcome.pids_limit_hit {
        parts.push("pids limit reached".to_owned());
    }
    if let Some(net) = peaks.net {
        parts.push(format!("network rx {} B / tx {} B", net.rx_bytes, net.tx_bytes));
    }
    parts.push(format!("wall {}", secs(outcome.duration)));
    parts.join(", ")
}

/// "512 MiB", "1 GiB", "1536 KiB", "1000 bytes", "none".
fn limit_text(limit: MemoryLimit) -> String {
    match limit.bytes() {
        None => "none".to_owned(),
        Some(b) if b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        Some(b) if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        Some(b) if b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        Some(b) => format!("{b} bytes"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Measured, Peaks};

    static NESTED: Test = Test {
        module_path: "fixture::net::tests",
        fn_name: "peer",
        settings: &[("host", "10.9.0.7"), ("network", "10.9.0.2/24"), ("memory", "64M")],
        should_panic: ShouldPanic::Expected("boom"),
        ignored: true,
        manifest_dir: "/src/fixture",
    };
    static TOP: Test = Test {
        module_path: "fixture",
        fn_name: "top",
        settings: &[],
        should_panic: ShouldPanic::No,
        ignored: false,
        manifest_dir: "/src/fixture",
    };

    #[test]
    fn names_drop_the_crate() {
        assert_eq!(NESTED.name(), "net::tests::peer");
        assert_eq!(TOP.name(), "top");
    }

    #[test]
    fn settings_line_is_one_sorted_json_line() {
        let line = settings_line(&[&TOP, &NESTED]);
        assert_eq!(
            line,
            "cvtest-settings: {\"version\":1,\"tests\":[\
             {\"name\":\"net::tests::peer\",\"settings\":{\"memory\":\"64M\",\"network\":\"10.9.0.2/24@10.9.0.7\"},\"should_panic\":true,\"ignored\":true},\
             {\"name\":\"top\",\"settings\":{},\"should_panic\":false,\"ignored\":false}]}\n"
        );
    }

    fn outcome(termination: Termination, stdout: &str) -> Outcome {
        Outcome {
            termination,
            pids_limit_hit: false,
            peaks: Peaks {
                memory_bytes: Some(Measured { value: 67_066_675, sampled: false }),
                ..Default::default()
            },
            limits_enforced: true,
            duration: Duration::from_millis(1500),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
            leftover: Vec::new(),
        }
    }

    #[test]
    fn judges_outcomes() {
        let limits = *options(&NESTED.settings(), &NESTED, Path::new("/t/debug/deps/x")).unwrap().limits();
        let passed = "running 1 test\ntest x ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 9 filtered out; finished in 0.00s\n\n";
        let judge = |o: &Outcome| judge(o, &limits, Some(Duration::from_secs(30)), "x");
        assert_eq!(judge(&outcome(Termination::Exited(0), passed)), Verdict::Passed);
        let none = "running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 9 filtered out; finished in 0.00s\n";
        assert!(
            matches!(judge(&outcome(Termination::Exited(0), none)), Verdict::Failed(m) if m.contains("ran no test named \"x\""))
        );
        assert_eq!(
            judge(&outcome(Termination::OomKilled, "")),
            Verdict::Failed("killed: out of memory (limit 64 MiB, peak 64.0 MiB)".to_owned())
        );
        assert_eq!(
            judge(&outcome(Termination::TimedOut, "")),
            Verdict::Failed("timed out after 30s".to_owned())
        );
        let mut pids = outcome(Termination::Exited(101), "");
        pids.pids_limit_hit = true;
        assert!(
            matches!(judge(&pids), Verdict::Failed(m) if m.contains("reaching its pids limit of 256 (a fork or clone was refused)"))
        );
    }

    #[test]
    fn usage_says_when_limits_were_not_enforced() {
        let limits = Limits { memory: MemoryLimit::Bytes(64 << 20), ..Limits::default() };
        let mut o = outcome(Termination::Exited(0), "");
        o.peaks.max_rss_bytes = Some(3 << 20);
        assert!(!usage(&o, &limits).contains("NOT enforced"));
        o.limits_enforced = false;
        o.peaks.cpu_user = Some(Duration::from_millis(250));
        o.peaks.cpu_system = Some(Duration::from_millis(50));
        let line = usage(&o, &limits);
        assert!(line.starts_with("limits NOT enforced (CVTEST_LIMITS=off; memory 64 MiB"), "{line}");
        assert!(line.contains("largest process RSS 3.0 MiB") && line.contains("cpu 0.30s"), "{line}");
        assert!(!line.contains("peak memory"), "{line}");
    }

    #[test]
    fn privileged_and_caps_reach_the_options() {
        static CAPPED: Test = Test {
            module_path: "fixture",
            fn_name: "capped",
            settings: &[("caps", "net_admin")],
            should_panic: ShouldPanic::No,
            ignored: false,
            manifest_dir: "/src/fixture",
        };
        static PRIVILEGED: Test = Test { settings: &[("privileged", "true")], ..CAPPED };
        let exe = Path::new("/t/debug/deps/x");
        let o = options(&TOP.settings(), &TOP, exe).unwrap();
        assert!(!o.privileged() && o.capabilities() == crate::Capabilities::DEFAULT);
        let o = options(&CAPPED.settings(), &CAPPED, exe).unwrap();
        assert!(!o.privileged());
        assert_eq!(o.capabilities(), crate::Capabilities::DEFAULT | "NET_ADMIN".parse().unwrap());
        assert!(options(&PRIVILEGED.settings(), &PRIVILEGED, exe).unwrap().privileged());
    }

    #[test]
    fn limits_read_naturally() {
        assert_eq!(limit_text(MemoryLimit::Bytes(512 << 20)), "512 MiB");
        assert_eq!(limit_text(MemoryLimit::Bytes(1 << 30)), "1 GiB");
        assert_eq!(limit_text(MemoryLimit::Bytes(1536 << 10)), "1536 KiB");
        assert_eq!(limit_text(MemoryLimit::Max), "none");
        assert_eq!(mib(512 << 20), "512.0 MiB");
    }

    #[test]
    fn writable_dirs_are_package_and_target() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("ws/target");
        std::fs::create_dir_all(target.join("debug/deps")).unwrap();
        std::fs::write(target.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        let exe = target.join("debug/deps/fixture-0123");
        let pkg = root.path().join("ws/pkg");
        assert_eq!(writable_dirs(&pkg, &exe), vec![pkg.clone(), target.clone()]);
        // A target directory inside the package is already writable.
        let inner = pkg.join("target");
        std::fs::create_dir_all(inner.join("debug/deps")).unwrap();
        assert_eq!(writable_dirs(&pkg, &inner.join("debug/deps/t")), vec![pkg.clone()]);
        // Without the tag, the directory above deps/.
        let bare = root.path().join("bare/debug/deps");
        std::fs::create_dir_all(&bare).unwrap();
        assert_eq!(target_dir(&bare.join("t")), Some(root.path().join("bare/debug")));
    }
}
