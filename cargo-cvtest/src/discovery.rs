//! Discovery: which tests each test binary has, asked of the binary itself with `--list --format
//! terse` (with `CVTEST_LIST_SETTINGS=1`, so a binary using `#[cv_test]` first prints its settings
//! dump) and `--list --format terse --ignored`, every binary `jobs` at a time.
//!
//! Binaries built with the default harness are listed on the host, as cargo and nextest do: libtest
//! runs no test code for `--list`. A `harness = false` binary may ignore `--list` and run its tests,
//! so it is listed inside a container; if it does not answer in libtest's format it becomes one
//! test, run whole, as `cargo test` runs it.

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use cvtest_spec::{DumpError, DumpedTest, SettingsDump, ENV_LIST_SETTINGS, SETTINGS_LINE_PREFIX};

use crate::build::{BuildOutput, TestBinary, Workspace};
use crate::env::{TestEnv, Toolchain};
use crate::errors::{ListError, SetupError, UnitError};

/// A test binary with what is needed to run it, and the tests it has.
#[derive(Debug)]
pub(crate) struct BinaryEntry {
    pub(crate) bin: TestBinary,
    pub(crate) package: String,
    pub(crate) env: TestEnv,
    pub(crate) tests: BinaryTests,
}

/// One test as a binary lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedTest {
    pub(crate) name: String,
    pub(crate) ignored: bool,
    /// Present for `#[cv_test]` tests.
    pub(crate) cv: Option<DumpedTest>,
}

/// The tests of one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BinaryTests {
    /// Tests that libtest (or a compatible harness) lists and runs one by one.
    Listed(Vec<ListedTest>),
    /// A custom harness that does not speak `--list`: the binary is one test, run whole.
    Whole,
}

/// How a listing command is run: on the host, or inside a container (for custom harnesses).
pub(crate) trait ListLauncher: Sync {
    /// Runs `bin args` with `env` and returns (success, stdout, stderr).
    fn run(
        &self,
        bin: &TestBinary,
        args: &[&str],
        env: &TestEnv,
    ) -> Result<(bool, String, String), ListError>;
}

/// Runs listing commands directly on the host.
pub(crate) struct HostLauncher;

impl ListLauncher for HostLauncher {
    fn run(
        &self,
        bin: &TestBinary,
        args: &[&str],
        env: &TestEnv,
    ) -> Result<(bool, String, String), ListError> {
        let out = Command::new(&bin.path)
            .args(args)
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .env(ENV_LIST_SETTINGS, "1")
            .env_remove(cvtest::ENV_CONTAINER)
            .current_dir(&env.cwd)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| ListError::Spawn { path: bin.path.clone().into_std_path_buf(), source })?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Runs listing commands inside a container with default limits (custom harnesses, which may
/// run their tests when they do not understand `--list`).
pub(crate) struct ContainerLauncher {
    /// The container of a test without settings of its own.
    pub(crate) options: cvtest::Options,
}

/// Listing a custom harness may not take longer than this.
const CONTAINED_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl ListLauncher for ContainerLauncher {
    fn run(
        &self,
        bin: &TestBinary,
        args: &[&str],
        env: &TestEnv,
    ) -> Result<(bool, String, String), ListError> {
        use cvtest::{Command as CCommand, Container, Stdio as CStdio};
        let contained = |e: UnitError| ListError::Container(Box::new(e));
        let mut c = Container::create(&self.options).map_err(|e| contained(UnitError::Create(e)))?;
        let mut cmd = CCommand::new(bin.path.as_std_path());
        cmd.args(args);
        for (k, v) in &env.vars {
            cmd.env(k, v);
        }
        cmd.env(ENV_LIST_SETTINGS, "1");
        cmd.current_dir(&env.cwd);
        cmd.stdout(CStdio::Capture { limit: 4 << 20 });
        cmd.stderr(CStdio::Capture { limit: 64 << 10 });
        let result = c
            .spawn(&cmd)
            .map_err(|e| contained(UnitError::Spawn(e)))
            .and_then(|()| c.wait(Some(CONTAINED_LIST_TIMEOUT)).map_err(|e| contained(UnitError::Wait(e))));
        let destroyed = c.destroy().map_err(|e| contained(UnitError::Destroy(e)));
        let outcome = result?;
        destroyed?;
        Ok((
            outcome.termination.is_success(),
            String::from_utf8_lossy(&outcome.stdout).into_owned(),
            String::from_utf8_lossy(&outcome.stderr).into_owned(),
        ))
    }
}

/// Lists every binary's tests, `jobs` at a time.
pub(crate) fn discover(
    ws: &Workspace,
    output: &BuildOutput,
    toolchain: &Toolchain,
    jobs: usize,
    container: &cvtest::Options,
) -> Result<Vec<BinaryEntry>, SetupError> {
    let contained = ContainerLauncher { options: container.clone() };
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<BinaryTests, ListError>>>> =
        output.binaries.iter().map(|_| Mutex::new(None)).collect();
    let envs: Vec<_> =
        output.binaries.iter().map(|b| crate::env::test_env(b, ws, output, toolchain)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(output.binaries.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(bin) = output.binaries.get(i) else { break };
                let r = list_binary(bin, &envs[i], &HostLauncher, &contained);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    let mut entries = Vec::new();
    for ((bin, env), r) in output.binaries.iter().zip(envs).zip(results) {
        let tests = r
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .expect("every binary was listed")
            .map_err(|source| SetupError::List { binary: bin.id.clone(), source })?;
        let package = ws.package(&bin.package_id).map(|p| p.name.to_string()).unwrap_or_default();
        entries.push(BinaryEntry { bin: bin.clone(), package, env, tests });
    }
    Ok(entries)
}

/// Lists one binary's tests.
pub(crate) fn list_binary(
    bin: &TestBinary,
    env: &TestEnv,
    host: &dyn ListLauncher,
    contained: &dyn ListLauncher,
) -> Result<BinaryTests, ListError> {
    let launcher = if bin.custom_harness { contained } else { host };
    let args = ["--list", "--format", "terse"];
    let (ok, stdout, stderr) = launcher.run(bin, &args, env)?;
    let parsed = parse_terse(&stdout);
    if bin.custom_harness && (!ok || parsed.is_err() || parsed.as_ref().is_ok_and(|p| p.tests.is_empty())) {
        return Ok(BinaryTests::Whole);
    }
    if !ok {
        return Err(ListError::Exit {
            command: format!("{} {}", bin.path, args.join(" ")),
            status: "failure".into(),
            stderr,
        });
    }
    let parsed = match parsed {
        Ok(p) => p,
        Err(p) => p, // default harness: stray lines (a ctor printing) are not tests; keep the rest
    };
    if let Some(e) = parsed.dump_error {
        return Err(ListError::Settings(e));
    }
    let ignored: HashSet<String> = if parsed.tests.is_empty() {
        HashSet::new()
    } else {
        let args = ["--list", "--format", "terse", "--ignored"];
        let (ok, stdout, stderr) = launcher.run(bin, &args, env)?;
        if !ok {
            return Err(ListError::Exit {
                command: format!("{} {}", bin.path, args.join(" ")),
                status: "failure".into(),
                stderr,
            });
        }
        let p = parse_terse(&stdout).unwrap_or_else(|p| p);
        p.tests.into_iter().collect()
    };
    let mut cv = parsed.cv;
    let tests = parsed
        .tests
        .into_iter()
        .map(|name| {
            let entry = cv.iter().position(|e| e.name == name).map(|i| cv.swap_remove(i));
            ListedTest { ignored: ignored.contains(&name), cv: entry, name }
        })
        .collect();
    Ok(BinaryTests::Listed(tests))
}

#[derive(Debug, Default)]
struct Terse {
    tests: Vec<String>,
    cv: Vec<DumpedTest>,
    dump_error: Option<DumpError>,
}

/// Parses libtest's terse list. `Err` carries what parsed when some line was not in the format.
fn parse_terse(stdout: &str) -> Result<Terse, Terse> {
    let mut t = Terse::default();
    let mut clean = true;
    for line in stdout.lines() {
        if let Some(json) = line.strip_prefix(SETTINGS_LINE_PREFIX) {
            match SettingsDump::from_json(json) {
                Ok(d) => t.cv = d.tests,
                Err(e) => t.dump_error = Some(e),
            }
        } else if let Some(name) = line.strip_suffix(": test") {
            t.tests.push(name.to_owned());
        } else if line.ends_with(": bench") || line.is_empty() {
            // Benchmarks run only under `cargo bench`.
        } else {
            clean = false;
        }
    }
    if clean {
        Ok(t)
    } else {
        Err(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::BinaryKind;

    /// A launcher whose binary prints `self.0` and succeeds.
    struct Prints(&'static str);

    impl ListLauncher for Prints {
        fn run(&self, _: &TestBinary, _: &[&str], _: &TestEnv) -> Result<(bool, String, String), ListError> {
            Ok((true, self.0.to_owned(), String::new()))
        }
    }

    fn fake_binary() -> TestBinary {
        TestBinary {
            id: "p".into(),
            package_id: cargo_metadata::PackageId { repr: "p".into() },
            kind: BinaryKind::Lib,
            target_name: "p".into(),
            path: "/nonexistent/p".into(),
            custom_harness: false,
        }
    }

    fn fake_env() -> TestEnv {
        TestEnv { cwd: "/".into(), vars: Vec::new() }
    }

    #[test]
    fn terse_with_settings_dump() {
        let out = "cvtest-settings: {\"version\":1,\"tests\":[{\"name\":\"a::hog\",\"settings\":{\"memory\":\"64M\"},\"should_panic\":false,\"ignored\":false}]}\n\
                   a::hog: test\na::plain: test\nbench_x: bench\n";
        let t = parse_terse(out).unwrap();
        assert_eq!(t.tests, ["a::hog", "a::plain"]);
        assert_eq!(t.cv.len(), 1);
        assert_eq!(t.cv[0].settings.memory, Some(cvtest_spec::MemoryLimit::Bytes(64 << 20)));
        assert!(t.dump_error.is_none());
    }

    #[test]
    fn stray_lines_are_reported() {
        let t = parse_terse("hello world\nx: test\n").unwrap_err();
        assert_eq!(t.tests, ["x"]);
        let t = parse_terse("cvtest-settings: {\"version\":1,\"tests\":[{\"name\":\"x\",\"settings\":{\"memory\":\"1X\"}}]}\n")
            .unwrap();
        assert!(matches!(t.dump_error, Some(DumpError::Json(_))));
    }

    #[test]
    fn another_dump_version_is_refused() {
        let out = "cvtest-settings: {\"version\":2,\"tests\":{}}\nx: test\n";
        let t = parse_terse(out).unwrap();
        assert!(matches!(t.dump_error, Some(DumpError::Version { found: 2 })));
        let e = list_binary(&fake_binary(), &fake_env(), &Prints(out), &Prints(out)).unwrap_err();
        let text = crate::errors::render_chain(&e);
        assert!(
            text.contains("the settings dump has version 2; this cargo-cvtest reads version 1"),
            "{text}"
        );
    }
}
