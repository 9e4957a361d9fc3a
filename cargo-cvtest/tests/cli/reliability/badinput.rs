//! Bad input: flag values, config files (malformed TOML, unknown keys, wrong types, bad values)
//! and environment variables. Each must be a usage error (exit 2) that names the value and says
//! what is accepted, before anything is built or created.

use std::path::Path;
use std::process::Command;

use libtest_mimic::{Completion, Failed};

use super::host::{Baseline, Owner};
use super::run::{self, Invocation};

/// What an error's "accepted" part may look like ("unexpected argument" is not one).
const ACCEPTED: &[&str] = &[
    "; expected ",
    "[possible values: ",
    "valid keys are: ",
    "expected one of ",
    " must be ",
    " needs ",
    "is not valid TOML",
];

/// Runs a usage-error case; checks exit 2, empty stdout, the `needles` and an "accepted" part in
/// stderr, and that nothing was built (the fresh target dir does not exist) or created.
fn usage_error(case: &str, mut cmd: Command, target: &Path, needles: &[&str]) -> Result<String, Failed> {
    let base = Baseline::capture();
    let child = cmd.spawn().map_err(|e| format!("{case}: cannot run cargo-cvtest: {e}"))?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ctx = || format!("case {case}: exit {:?}\nstderr:\n{stderr}", out.status.code());
    if out.status.code() != Some(2) {
        return Err(format!("want exit code 2\n{}", ctx()).into());
    }
    if !out.stdout.is_empty() {
        return Err(format!("usage errors print nothing on stdout\n{}", ctx()).into());
    }
    for n in needles {
        if !stderr.contains(n) {
            return Err(format!("the error does not name {n:?}\n{}", ctx()).into());
        }
    }
    if !ACCEPTED.iter().any(|a| stderr.contains(a)) {
        return Err(format!("the error does not say what is accepted\n{}", ctx()).into());
    }
    if target.exists() {
        return Err(format!("{} was created: something was built\n{}", target.display(), ctx()).into());
    }
    let left = base.leaks(&Owner::any_with_pid(pid));
    if !left.is_empty() {
        return Err(format!("a usage error left things behind:\n{left}\n{}", ctx()).into());
    }
    Ok(stderr.lines().next().unwrap_or_default().to_owned())
}

fn flag_cases(cases: &[(&str, &str)]) -> Result<(), Failed> {
    let tmp = tempfile::tempdir()?;
    let mut failures = Vec::new();
    for (i, (flag, value)) in cases.iter().enumerate() {
        let target = tmp.path().join(format!("target-{i}"));
        let mut cmd = Invocation { bare: true, ..Default::default() }.command();
        cmd.arg("--manifest-path").arg(run::manifest()).arg("--target-dir").arg(&target);
        cmd.arg(flag).arg(value);
        if let Err(e) = usage_error(&format!("{flag} {value}"), cmd, &target, &[value]) {
            failures.push(e.message().map(str::to_owned).unwrap_or_default());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n").into())
    }
}

/// Values each flag's parser rejects with a message naming the value and what is accepted.
pub fn flag_values() -> Result<Completion, Failed> {
    flag_cases(&[
        ("--memory", "12Q"),
        ("--memory", "0"),
        ("--pids", "lots"),
        ("--pids", "0"),
        ("--cpu-weight", "10001"),
        ("--cpu-weight", "1.5"),
        ("--cpus", "0"),
        ("--cpus", "1.5.2"),
        ("--network", "10.0.0.2"),
        ("--network", "10.0.0.2/31"),
        ("--network", "300.0.0.2/24"),
        ("--network", "10.0.0.255/24"),
        ("--timeout", "0s"),
        ("--timeout", "soon"),
        ("--jobs", "many"),
        ("--jobs", "0"),
        ("--partition", "hash:0/2"),
        ("--partition", "slice:1/2"),
        ("--memory-budget", "lots"),
        ("--message-format", "yaml"),
        ("--color", "sometimes"),
        ("--isolation", "vm"),
    ])?;
    Ok(Completion::Completed)
}

/// Negative values and `--top`: clap takes "-1G" for a flag and suggests `-- -1`, which would
/// make it a test filter; `--top many` says "invalid digit found in string" and not what is
/// accepted.
pub fn negative_and_count_values() -> Result<Completion, Failed> {
    flag_cases(&[
        ("--memory", "-1G"),
        ("--pids", "-5"),
        ("--timeout", "-1s"),
        ("--jobs", "-1"),
        ("--top", "many"),
    ])?;
    Ok(Completion::Completed)
}

/// A workspace of one empty crate, with `metadata` in its manifest and `file` as
/// `.config/cvtest.toml`.
fn config_crate(dir: &Path, metadata: &str, file: Option<&str>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("src/lib.rs"), "")?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"cfg\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n{metadata}"
        ),
    )?;
    if let Some(text) = file {
        std::fs::create_dir_all(dir.join(".config"))?;
        std::fs::write(dir.join(".config/cvtest.toml"), text)?;
    }
    Ok(())
}

pub fn config_files() -> Result<Completion, Failed> {
    let tmp = tempfile::tempdir()?;
    // (name, Cargo.toml metadata, .config/cvtest.toml, what the error must name)
    let cases: &[(&str, &str, Option<&str>, &[&str])] = &[
        ("malformed TOML", "", Some("memory = \"1G\n"), &["cvtest.toml", "TOML", "line 1"]),
        ("unknown key in file", "", Some("memroy = \"1G\"\n"), &["cvtest.toml", "memroy", "memory"]),
        (
            "unknown key in package metadata",
            "[package.metadata.cvtest]\nmemroy = \"1G\"\n",
            None,
            &["Cargo.toml", "[package.metadata.cvtest]", "memroy"],
        ),
        (
            "unknown key in workspace metadata",
            "[workspace.metadata.cvtest]\npidz = \"1\"\n",
            None,
            &["Cargo.toml", "[workspace.metadata.cvtest]", "pidz"],
        ),
        ("wrong type: bool", "", Some("pids = true\n"), &["cvtest.toml", "pids"]),
        ("wrong type: array", "", Some("memory = [1]\n"), &["cvtest.toml", "memory"]),
        ("wrong type: overrides", "", Some("overrides = 3\n"), &["cvtest.toml", "overrides"]),
        ("wrong type: filter", "", Some("[[overrides]]\nfilter = 3\n"), &["overrides[0]", "filter"]),
        ("bad value: cpu_weight", "", Some("cpu_weight = \"0\"\n"), &["cvtest.toml", "cpu_weight", "\"0\""]),
        ("bad value: network", "", Some("network = \"10.0.0.0/24\"\n"), &["network", "10.0.0.0/24"]),
        ("bad value: timeout", "", Some("timeout = \"soon\"\n"), &["timeout", "soon"]),
        (
            "bad value: expect",
            "",
            Some("[[overrides]]\nfilter = \"x\"\nexpect = \"maybe\"\n"),
            &["expect", "maybe"],
        ),
        (
            "override without a name",
            "",
            Some("[[overrides]]\nmemory = \"1G\"\n"),
            &["overrides[0]", "filter"],
        ),
        (
            "unknown key in an override",
            "",
            Some("[[overrides]]\nfilter = \"x\"\ncolour = \"red\"\n"),
            &["colour"],
        ),
    ];
    let mut failures = Vec::new();
    let mut firsts = Vec::new();
    for (i, (name, metadata, file, needles)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case-{i}"));
        config_crate(&dir, metadata, *file)?;
        let target = dir.join("target");
        let mut cmd = Invocation { bare: true, ..Default::default() }.command();
        cmd.arg("--manifest-path").arg(dir.join("Cargo.toml")).arg("--target-dir").arg(&target);
        match usage_error(name, cmd, &target, needles) {
            Ok(first) => firsts.push(first),
            Err(e) => failures.push(e.message().map(str::to_owned).unwrap_or_default()),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("\n\n").into());
    }
    Ok(Completion::Completed)
}

/// `CARGO_TERM_COLOR=sometimes`: exit 2, naming the value, the accepted values and the variable.
pub fn env_values() -> Result<Completion, Failed> {
    let tmp = tempfile::tempdir()?;
    let target = tmp.path().join("target");
    let mut cmd = Invocation { bare: true, ..Default::default() }.command();
    cmd.arg("--manifest-path").arg(run::manifest()).arg("--target-dir").arg(&target);
    cmd.env("CARGO_TERM_COLOR", "sometimes");
    usage_error(
        "CARGO_TERM_COLOR=sometimes",
        cmd,
        &target,
        &["sometimes", "auto", "always", "never", "CARGO_TERM_COLOR"],
    )?;
    Ok(Completion::Completed)
}

/// `CVTEST_UNSANDBOXED=bogus` for a `#[cv_test]` run without privileges (the test binary run
/// directly as nobody): the test fails with a message naming the value and the accepted ones.
/// (A test binary's exit code is libtest's: 101.)
pub fn unsandboxed_env_value() -> Result<Completion, Failed> {
    let Some(bin) = fixture_binary() else {
        return Ok(Completion::ignored_with(
            "the fixture is not built yet (another reliability test builds it)",
        ));
    };
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["--exact", "faults::oom"])
        .env("CVTEST_UNSANDBOXED", "bogus")
        .env("RUST_BACKTRACE", "0")
        .env_remove("CVTEST_CONTAINER")
        .current_dir(std::env::temp_dir())
        .output()
        .map_err(|e| format!("cannot run setpriv: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.code() == Some(101)
        && stdout.contains("CVTEST_UNSANDBOXED=\"bogus\" is not understood")
        && stdout.contains("skip or run");
    if !ok {
        return Err(format!(
            "exit {:?}\n{stdout}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(Completion::Completed)
}

/// The newest test binary of the fixture, if built.
fn fixture_binary() -> Option<std::path::PathBuf> {
    let deps = run::target_dir().join("debug/deps");
    std::fs::read_dir(deps)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("cvtest_reliability-") && !n.contains('.')
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}
