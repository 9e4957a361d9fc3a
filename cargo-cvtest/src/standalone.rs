//! Running a test binary in a container when cargo or nextest starts it, not `cargo cvtest`: what
//! `cargo-cvtest wrap` (a nextest wrapper script, [`crate::wrapper`]) and `cargo-cvtest runner`
//! (a cargo target runner, [`crate::target_runner`]) share.
//!
//! Each invocation runs once per test (or per binary), so it avoids `cargo metadata`: it finds the
//! package and the workspace from the environment cargo and nextest give a test binary
//! (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, `NEXTEST_WORKSPACE_ROOT`, `NEXTEST_BINARY_ID`), reads
//! the config files itself ([`Config::load_files`]), asks the binary for its `#[cv_test]`
//! settings (the settings dump), and resolves every test's settings as `cargo cvtest` does, with
//! no CLI layer.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cvtest::__private::ENV_LIMITS;
use cvtest::{Command, Container, KillHandle, Options, Outcome, Rootfs, Termination};
use cvtest_spec::{DumpedTest, SettingsDump, TestSettings, ENV_LIST_SETTINGS, SETTINGS_LINE_PREFIX};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use crate::config::Config;
use crate::errors::UsageError;
use crate::events::Status;
use crate::expect::Expect;
use crate::settings::{self, Effective, Resolver};

/// Why a test binary could not be run in its container.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StandaloneError {
    #[error(
        "{var} is not set: `cargo-cvtest {mode}` runs test binaries that cargo test or cargo nextest start, and they set it"
    )]
    MissingEnv { var: &'static str, mode: &'static str },
    #[error("bad cvtest config")]
    Config(#[source] UsageError),
    #[error("failed to run {path} to list its tests")]
    ListSpawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path} --list --format terse` exited with {status}:\n{stderr}")]
    ListExit { path: PathBuf, status: String, stderr: String },
    #[error("{path} printed a settings dump that cvtest cannot read (was it built with another cvtest?)")]
    BadDump {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the settings of {test} do not make a container's options")]
    Settings {
        test: String,
        #[source]
        source: cvtest_spec::ParseError,
    },
    #[error("cannot tell whether to enforce limits")]
    LimitsMode(#[source] UsageError),
    #[error("cannot install the signal handlers")]
    Signals(#[source] io::Error),
    #[error("cannot create the container")]
    Create(#[source] Box<cvtest::CreateError>),
    #[error("cannot start {path} in its container")]
    Spawn {
        path: PathBuf,
        #[source]
        source: Box<cvtest::SpawnError>,
    },
    #[error("lost track of the container")]
    Wait(#[source] Box<cvtest::WaitError>),
    #[error("cannot clean up the container")]
    Destroy(#[source] Box<cvtest::DestroyError>),
    #[error("failed to run {path}")]
    Exec {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where a test binary comes from: its package, workspace and target directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    pub(crate) workspace_root: PathBuf,
    pub(crate) package: String,
    pub(crate) package_dir: PathBuf,
    /// nextest's binary id (`NEXTEST_BINARY_ID`), or one derived from the file name.
    pub(crate) binary_id: String,
    /// The cargo target directory the binary is in (or was extracted to, from an archive).
    pub(crate) target_dir: Option<PathBuf>,
}

impl Site {
    /// From the environment cargo and nextest give a test binary.
    pub(crate) fn from_env(bin: &Path, mode: &'static str) -> Result<Site, StandaloneError> {
        let var = |var: &'static str| {
            std::env::var_os(var).filter(|v| !v.is_empty()).ok_or(StandaloneError::MissingEnv { var, mode })
        };
        let package = var("CARGO_PKG_NAME")?.to_string_lossy().into_owned();
        let package_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
        let workspace_root = std::env::var_os("NEXTEST_WORKSPACE_ROOT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root_of(&package_dir));
        let binary_id = std::env::var("NEXTEST_BINARY_ID")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| derive_binary_id(&package, bin));
        Ok(Site { workspace_root, package, package_dir, binary_id, target_dir: target_dir_of(bin) })
    }

    /// The config layers that apply to this package.
    pub(crate) fn config(&self) -> Result<Config, StandaloneError> {
        Config::load_files(&self.workspace_root, &self.package, &self.package_dir)
            .map_err(StandaloneError::Config)
    }

    /// What a test may write: the workspace, the package (if outside it) and the target dir.
    pub(crate) fn writable(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.workspace_root.clone()];
        for d in [Some(&self.package_dir), self.target_dir.as_ref()].into_iter().flatten() {
            if !dirs.iter().any(|w| d.starts_with(w)) {
                dirs.push(d.clone());
            }
        }
        dirs
    }

    /// The effective settings and expectation of test `name` (`cv`: its `#[cv_test]` settings).
    pub(crate) fn resolve(
        &self,
        config: &Config,
        name: &str,
        cv: Option<&TestSettings>,
    ) -> Result<(Effective, Expect), StandaloneError> {
        // No flag here: CVTEST_LIMITS=off or the config's `limits = "off"`, as for `cargo cvtest`.
        let enforced = settings::limits_enforced(false, std::env::var_os(ENV_LIMITS), config)
            .map_err(StandaloneError::LimitsMode)?;
        let resolver =
            Resolver { config: config.clone(), cli: TestSettings::default(), force: false, enforced };
        resolver
            .resolve(&self.package, &self.binary_id, name, cv)
            .map_err(|source| StandaloneError::Settings { test: name.to_owned(), source })
    }
}

/// The nearest ancestor of `package_dir` (itself included) whose `Cargo.toml` has a
/// `[workspace]` table; the package directory when none has.
fn workspace_root_of(package_dir: &Path) -> PathBuf {
    package_dir
        .ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .is_some_and(|t| t.contains_key("workspace"))
        })
        .unwrap_or(package_dir)
        .to_path_buf()
}

/// `name-0123abcd` in `deps/`: the package's name for its library's tests, `package::name` for
/// an integration test (cargo test does not say which target a binary is; a binary target's
/// unit tests get the integration-test form).
fn derive_binary_id(package: &str, bin: &Path) -> String {
    let stem = bin.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let name = stem.rsplit_once('-').map_or(stem.as_str(), |(n, _)| n);
    if name == package.replace('-', "_") {
        package.to_owned()
    } else {
        format!("{package}::{name}")
    }
}

/// The cargo target directory of a test binary: the nearest ancestor holding cargo's
/// `CACHEDIR.TAG`, else the directory two above `deps/` (`target/debug/deps`).
pub(crate) fn target_dir_of(bin: &Path) -> Option<PathBuf> {
    let dir = bin.parent()?;
    dir.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .or_else(|| (dir.file_name()? == "deps").then(|| dir.parent()?.parent()).flatten())
        .map(Path::to_path_buf)
}

/// A binary's test list and `#[cv_test]` settings.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) tests: Vec<String>,
    pub(crate) cv: Vec<DumpedTest>,
}

impl Listing {
    pub(crate) fn cv_settings(&self, name: &str) -> Option<&TestSettings> {
        self.cv.iter().find(|t| t.name == name).map(|t| &t.settings)
    }
}

/// Runs `bin --list --format terse EXTRA` on the host (libtest runs no test for `--list`), with
/// the settings dump asked for.
pub(crate) fn list(bin: &Path, extra: &[&str]) -> Result<Listing, StandaloneError> {
    let out = std::process::Command::new(bin)
        .args(["--list", "--format", "terse"])
        .args(extra)
        .env(ENV_LIST_SETTINGS, "1")
        .env_remove(cvtest::ENV_CONTAINER)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| StandaloneError::ListSpawn { path: bin.to_owned(), source })?;
    if !out.status.success() {
        return Err(StandaloneError::ListExit {
            path: bin.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    parse_listing(&String::from_utf8_lossy(&out.stdout))
        .map_err(|source| StandaloneError::BadDump { path: bin.to_owned(), source })
}

fn parse_listing(stdout: &str) -> Result<Listing, serde_json::Error> {
    let mut listing = Listing::default();
    for line in stdout.lines() {
        if let Some(json) = line.strip_prefix(SETTINGS_LINE_PREFIX) {
            listing.cv = serde_json::from_str::<SettingsDump>(json)?.tests;
        } else if let Some(name) = line.strip_suffix(": test") {
            listing.tests.push(name.to_owned());
        }
    }
    Ok(listing)
}

/// The container options for `s`: as `cargo cvtest` gives them, with `writable` host dirs.
pub(crate) fn options(s: &Effective, writable: Vec<PathBuf>) -> Options {
    let mut o = s.options().clone();
    o.set_rootfs(Rootfs::Host { writable });
    o
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, caught for as long as it lives: the first one kills the
/// armed container (nextest's timeout sends SIGTERM, Ctrl-C SIGINT); the caller then cleans up
/// and ends itself by that signal ([`Exit::Signal`]).
pub(crate) struct SignalGuard {
    shared: Arc<GuardShared>,
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct GuardShared {
    received: AtomicI32,
    kill: Mutex<Option<KillHandle>>,
}

impl SignalGuard {
    pub(crate) fn install() -> Result<SignalGuard, StandaloneError> {
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
            .map_err(StandaloneError::Signals)?;
        let handle = signals.handle();
        let shared = Arc::new(GuardShared::default());
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            for sig in signals.forever() {
                let _ = for_thread.received.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                if let Some(k) = for_thread.kill.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                    k.kill();
                }
            }
        });
        Ok(SignalGuard { shared, handle, thread: Some(thread) })
    }

    /// The first signal caught, if any.
    pub(crate) fn received(&self) -> Option<i32> {
        Some(self.shared.received.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }

    /// A later signal kills this container; one already caught kills it now.
    fn arm(&self, kill: KillHandle) {
        let mut slot = self.shared.kill.lock().unwrap_or_else(PoisonError::into_inner);
        if self.received().is_some() {
            kill.kill();
        }
        *slot = Some(kill);
    }

    fn disarm(&self) {
        *self.shared.kill.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one container run gave.
#[derive(Debug)]
pub(crate) struct Contained {
    pub(crate) container_id: String,
    pub(crate) outcome: Outcome,
    pub(crate) started: Instant,
    /// The container's network: the test's fixed one, or what `network = "auto"` got.
    pub(crate) network: Option<cvtest_spec::NetworkSpec>,
}

/// Creates a container for `settings`, runs `cmd` in it (output inherited: it goes where the
/// runner reads the test's output), waits (the settings' timeout kills it), destroys it. `None`
/// when a signal came before the container started.
pub(crate) fn run_contained(
    settings: &Effective,
    writable: Vec<PathBuf>,
    cmd: &Command,
    guard: &SignalGuard,
) -> Result<Option<Contained>, StandaloneError> {
    if guard.received().is_some() {
        return Ok(None);
    }
    let started = Instant::now();
    let options = options(settings, writable);
    let mut c = Container::create(&options).map_err(|e| StandaloneError::Create(Box::new(e)))?;
    let container_id = c.id().to_owned();
    let network = c.network();
    // The test's lab maker (`cvtest::lab`): this process makes its nodes (rootless: in the
    // test's user namespace, which the container keeps for it).
    use cvtest::lab::maker;
    let mut with_lab = cmd.clone();
    let mut lab = maker::prepare(&mut c, maker::socket_dir(cmd.get_program()), &mut with_lab);
    let cmd = &with_lab;
    let result = (|| {
        c.spawn(cmd).map_err(|source| StandaloneError::Spawn {
            path: cmd.get_program().to_owned(),
            source: Box::new(source),
        })?;
        guard.arm(c.kill_handle());
        if let Some(m) = lab.as_mut() {
            m.serve_container(
                &c,
                maker::NodeBase {
                    exe: cmd.get_program().to_path_buf(),
                    rootfs: options.rootfs().clone(),
                    limits: options.isolation().contains(cvtest::Isolation::CGROUPS),
                    test_network: network,
                },
            );
        }
        c.wait(settings.timeout()).map_err(|e| StandaloneError::Wait(Box::new(e)))
    })();
    guard.disarm();
    // The test's output went straight to where the runner reads it; its nodes' lines follow.
    let nodes = lab.map(maker::Maker::finish).unwrap_or_default();
    {
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{}", maker::render(&nodes));
    }
    let destroyed = c.destroy().map_err(|e| StandaloneError::Destroy(Box::new(e)));
    // One test per process, which exits next: its veth is gone before it does.
    let _ = cvtest::wait_released_veths(VETHS_GONE_TIMEOUT);
    let outcome = result?;
    destroyed?;
    Ok(Some(Contained { container_id, outcome, started, network }))
}

/// How long a wrapped test waits for the kernel to delete its container's veth.
const VETHS_GONE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How the test ended, in `cargo cvtest`'s terms (a signal we caught is `Cancelled`).
pub(crate) fn status(outcome: &Outcome, guard: &SignalGuard) -> Status {
    match outcome.termination {
        Termination::Exited(0) => Status::Pass,
        Termination::Exited(_) | Termination::Signaled(_) if guard.received().is_some() => Status::Cancelled,
        Termination::Exited(code) => Status::Fail { exit_code: code },
        Termination::Signaled(signal) => Status::Signal { signal },
        Termination::OomKilled => Status::Oom,
        Termination::TimedOut => Status::Timeout,
    }
}

/// How this process ends, so that whoever started it (nextest, cargo) reads the test's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(i32),
    /// Die by this signal, as the test (or this process, when nextest signalled it) did.
    Signal(i32),
}

impl Exit {
    /// A test killed by `signal`: the same signal where dying by it dumps no core, else the
    /// shell's 128+N code (a core of this process would be no use).
    pub(crate) fn from_test_signal(signal: i32) -> Exit {
        match signal {
            libc::SIGKILL
            | libc::SIGTERM
            | libc::SIGINT
            | libc::SIGHUP
            | libc::SIGPIPE
            | libc::SIGALRM
            | libc::SIGUSR1
            | libc::SIGUSR2 => Exit::Signal(signal),
            _ => Exit::Code(128 + signal),
        }
    }

    /// Ends the process this way (stdout and stderr flushed, our own cgroup released first).
    pub(crate) fn apply(self) -> i32 {
        use std::io::Write;
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        release_own_cgroup();
        match self {
            Exit::Code(code) => code,
            Exit::Signal(sig) => {
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                128 + sig
            }
        }
    }
}

/// Runs one mode's work with signals turned into container kills (see [`SignalGuard`]), and
/// returns its exit code; an error is printed once, here at the edge, as a setup failure.
pub(crate) fn guarded<E: std::error::Error>(work: impl FnOnce(&SignalGuard) -> Result<Exit, E>) -> i32 {
    let guard = match SignalGuard::install() {
        Ok(g) => g,
        Err(e) => {
            say!("cvtest: {}", crate::errors::render_chain(&e));
            return crate::exit_codes::SETUP_FAILED;
        }
    };
    let exit = work(&guard).unwrap_or_else(|e| {
        say!("cvtest: {}", crate::errors::render_chain(&e));
        Exit::Code(crate::exit_codes::SETUP_FAILED)
    });
    drop(guard);
    exit.apply()
}

/// Every container is gone: undo what the library did to our own cgroup (on cgroup v2 the
/// supervisor leaf this process moved into), so not even an empty cgroup is left.
pub(crate) fn release_own_cgroup() {
    if let Err(e) = cvtest::release_own_cgroup() {
        say!("cvtest: warning: {}", crate::errors::render_chain(&e));
    }
}

/// Replaces this process with `bin args` (listing through a wrapper or runner: not contained,
/// so the output is exactly the binary's).
pub(crate) fn exec_direct(bin: &Path, args: &[OsString]) -> StandaloneError {
    use std::os::unix::process::CommandExt;
    let source = std::process::Command::new(bin).args(args).exec();
    StandaloneError::Exec { path: bin.to_owned(), source }
}

/// `[  0.012s]`-style seconds.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_ids_from_file_names() {
        assert_eq!(derive_binary_id("my-crate", Path::new("/t/debug/deps/my_crate-0123abcd")), "my-crate");
        assert_eq!(
            derive_binary_id("my-crate", Path::new("/t/debug/deps/integ-0123abcd")),
            "my-crate::integ"
        );
    }

    #[test]
    fn target_dir_from_tag_or_deps() {
        let root = tempfile::tempdir().unwrap();
        let deps = root.path().join("x/target/debug/deps");
        std::fs::create_dir_all(&deps).unwrap();
        assert_eq!(target_dir_of(&deps.join("t-1")), Some(root.path().join("x/target")));
        std::fs::write(root.path().join("x/CACHEDIR.TAG"), "Signature").unwrap();
        assert_eq!(target_dir_of(&deps.join("t-1")), Some(root.path().join("x")));
    }

    #[test]
    fn listing_with_dump() {
        let l = parse_listing(
            "cvtest-settings: {\"version\":1,\"tests\":[{\"name\":\"a::hog\",\"settings\":{\"memory\":\"64M\"},\"should_panic\":false,\"ignored\":false}]}\n\
             a::hog: test\na::plain: test\nb: bench\n",
        )
        .unwrap();
        assert_eq!(l.tests, ["a::hog", "a::plain"]);
        assert!(l.cv_settings("a::hog").is_some_and(|s| s.memory.is_some()));
        assert!(l.cv_settings("a::plain").is_none());
    }

    #[test]
    fn workspace_root_is_the_nearest_workspace_manifest() {
        let root = tempfile::tempdir().unwrap();
        let pkg = root.path().join("crates/a");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("Cargo.toml"), "[package]\nname = \"a\"\n").unwrap();
        assert_eq!(workspace_root_of(&pkg), pkg);
        std::fs::write(root.path().join("Cargo.toml"), "[workspace]\nmembers = [\"crates/a\"]\n").unwrap();
        assert_eq!(workspace_root_of(&pkg), root.path());
    }
}
