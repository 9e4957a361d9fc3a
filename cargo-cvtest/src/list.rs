//! Listing a test binary's tests: `--list --format terse` (with `CVTEST_LIST_SETTINGS=1`, so a
//! binary using `#[cv_test]` first prints its settings dump) and `--list --format terse --ignored`.
//!
//! Binaries built with the default harness are listed on the host, as cargo and nextest do: libtest
//! runs no test code for `--list`. A `harness = false` binary may ignore `--list` and run its tests,
//! so it is listed inside a container; if it does not answer in libtest's format it becomes one
//! test, run whole, as `cargo test` runs it.

use std::collections::HashSet;
use std::process::Command;

use cvtest_spec::TestSettings;
use serde::Deserialize;

use crate::build::TestBinary;
use crate::env::TestEnv;
use crate::errors::ListError;

/// The environment variable that makes `#[cv_test]` binaries print their settings dump.
pub const ENV_LIST_SETTINGS: &str = "CVTEST_LIST_SETTINGS";
const SETTINGS_PREFIX: &str = "cvtest-settings: ";

/// One test as a binary lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTest {
    pub name: String,
    pub ignored: bool,
    /// Present for `#[cv_test]` tests.
    pub cv: Option<CvEntry>,
}

/// What `#[cv_test]` recorded for a test.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CvEntry {
    pub name: String,
    pub settings: TestSettings,
    #[serde(default)]
    pub should_panic: bool,
    #[serde(default)]
    pub ignored: bool,
}

#[derive(Debug, Deserialize)]
struct SettingsDump {
    version: u64,
    tests: Vec<CvEntry>,
}

/// The tests of one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryTests {
    /// Tests that libtest (or a compatible harness) lists and runs one by one.
    Listed(Vec<ListedTest>),
    /// A custom harness that does not speak `--list`: the binary is one test, run whole.
    Whole,
}

/// How a listing command is run: on the host, or inside a container (for custom harnesses).
pub trait ListLauncher: Sync {
    /// Runs `bin args` with `env` and returns (success, stdout, stderr).
    fn run(
        &self,
        bin: &TestBinary,
        args: &[&str],
        env: &TestEnv,
    ) -> Result<(bool, String, String), ListError>;
}

/// Runs listing commands directly on the host.
pub struct HostLauncher;

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
pub struct ContainerLauncher {
    pub writable: Vec<std::path::PathBuf>,
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
        use cvtest::{Command as CCommand, Container, Options, Rootfs, Stdio as CStdio};
        let boxed = |e: &dyn std::error::Error| ListError::Container(crate::errors::render_chain(e).into());
        // Listing runs with the defaults a test without settings gets.
        let mut opts = Options::for_test(&cvtest::spec::TestSettings::default()).map_err(|e| boxed(&e))?;
        opts.set_rootfs(Rootfs::Host { writable: self.writable.clone() });
        let mut c = Container::create(&opts).map_err(|e| boxed(&e))?;
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
            .map_err(|e| boxed(&e))
            .and_then(|()| c.wait(Some(CONTAINED_LIST_TIMEOUT)).map_err(|e| boxed(&e)));
        let destroyed = c.destroy().map_err(|e| boxed(&e));
        let outcome = result?;
        destroyed?;
        Ok((
            outcome.termination.is_success(),
            String::from_utf8_lossy(&outcome.stdout).into_owned(),
            String::from_utf8_lossy(&outcome.stderr).into_owned(),
        ))
    }
}

/// Lists one binary's tests.
pub fn list_binary(
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
    if let Some(v) = parsed.dump_version.filter(|&v| v != 1) {
        return Err(ListError::SettingsVersion(v));
    }
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
    cv: Vec<CvEntry>,
    dump_version: Option<u64>,
    dump_error: Option<serde_json::Error>,
}

/// Parses libtest's terse list. `Err` carries what parsed when some line was not in the format.
fn parse_terse(stdout: &str) -> Result<Terse, Terse> {
    let mut t = Terse::default();
    let mut clean = true;
    for line in stdout.lines() {
        if let Some(json) = line.strip_prefix(SETTINGS_PREFIX) {
            match serde_json::from_str::<SettingsDump>(json) {
                Ok(d) => {
                    t.dump_version = Some(d.version);
                    t.cv = d.tests;
                }
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

    #[test]
    fn terse_with_settings_dump() {
        let out = "cvtest-settings: {\"version\":1,\"tests\":[{\"name\":\"a::hog\",\"settings\":{\"memory\":\"64M\"},\"should_panic\":false,\"ignored\":false}]}\n\
                   a::hog: test\na::plain: test\nbench_x: bench\n";
        let t = parse_terse(out).unwrap();
        assert_eq!(t.tests, ["a::hog", "a::plain"]);
        assert_eq!(t.cv.len(), 1);
        assert_eq!(t.cv[0].settings.memory, Some(cvtest_spec::MemoryLimit::Bytes(64 << 20)));
        assert_eq!(t.dump_version, Some(1));
    }

    #[test]
    fn stray_lines_are_reported() {
        let t = parse_terse("hello world\nx: test\n").unwrap_err();
        assert_eq!(t.tests, ["x"]);
        let t = parse_terse("cvtest-settings: {\"version\":1,\"tests\":[{\"name\":\"x\",\"settings\":{\"memory\":\"1X\"}}]}\n")
            .unwrap();
        assert!(t.dump_error.is_some());
    }
}
