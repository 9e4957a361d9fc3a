//! Building the tests: `cargo metadata` for the workspace, then `cargo test --no-run
//! --message-format=json-render-diagnostics` with the user's selection flags. Cargo renders its
//! own diagnostics on our stderr, exactly as `cargo test` shows them; we read the artifacts from
//! its stdout.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use cargo_metadata::camino::{Utf8Path, Utf8PathBuf};
use cargo_metadata::{Message, Metadata, MetadataCommand, Package, PackageId, TargetKind};

use crate::errors::{BuildError, SetupError};

/// What to build, and how to read the workspace: the CLI's selection flags, already in cargo's
/// words.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuildOptions {
    /// Passed through to `cargo test --no-run` as they are (`--package a`, `--release`, ...).
    pub(crate) cargo_args: Vec<String>,
    pub(crate) manifest_path: Option<PathBuf>,
    pub(crate) target_dir: Option<PathBuf>,
    /// `cargo metadata` without the network (`--offline` or `--frozen`).
    pub(crate) offline: bool,
    /// `cargo metadata` with `Cargo.lock` unchanged (`--locked` or `--frozen`).
    pub(crate) locked: bool,
}

/// What kind of target a test binary was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum BinaryKind {
    Lib,
    ProcMacro,
    Bin,
    Test,
    Example,
    Bench,
}

impl BinaryKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BinaryKind::Lib => "lib",
            BinaryKind::ProcMacro => "proc-macro",
            BinaryKind::Bin => "bin",
            BinaryKind::Test => "test",
            BinaryKind::Example => "example",
            BinaryKind::Bench => "bench",
        }
    }
}

/// One test executable cargo built.
#[derive(Debug, Clone)]
pub(crate) struct TestBinary {
    /// `crate` (lib unit tests), `crate::name` (integration test), `crate::bin/name`,
    /// `crate::example/name`, `crate::bench/name`.
    pub(crate) id: String,
    pub(crate) package_id: PackageId,
    pub(crate) kind: BinaryKind,
    pub(crate) target_name: String,
    pub(crate) path: Utf8PathBuf,
    /// `harness = false` in the manifest: may not speak libtest's `--list`.
    pub(crate) custom_harness: bool,
}

/// What a build produced besides the test binaries: what the tests' environment needs.
#[derive(Debug, Default)]
pub(crate) struct BuildOutput {
    pub(crate) binaries: Vec<TestBinary>,
    /// Non-test executables per package, for `CARGO_BIN_EXE_<name>`.
    pub(crate) bin_exes: BTreeMap<PackageId, Vec<(String, Utf8PathBuf)>>,
    /// Per package: build-script `OUT_DIR` and `cargo:rustc-env` values.
    pub(crate) script_env: BTreeMap<PackageId, Vec<(String, String)>>,
    /// Native library directories inside the target dir (from build scripts), for the dylib path.
    pub(crate) linked_paths: Vec<Utf8PathBuf>,
}

/// The workspace as `cargo metadata --no-deps` describes it.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) metadata: Metadata,
    /// The target dir in use (`--target-dir`, or what cargo's config says).
    pub(crate) target_dir: Utf8PathBuf,
}

impl Workspace {
    pub(crate) fn package(&self, id: &PackageId) -> Option<&Package> {
        self.metadata.packages.iter().find(|p| &p.id == id)
    }
    pub(crate) fn root(&self) -> &Utf8Path {
        &self.metadata.workspace_root
    }
}

/// The cargo to run: `$CARGO` (set by cargo for subcommands), else `cargo`.
pub(crate) fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| "cargo".into())
}

/// Reads the workspace with `cargo metadata --no-deps`.
pub(crate) fn load_workspace(args: &BuildOptions) -> Result<Workspace, SetupError> {
    let mut cmd = MetadataCommand::new();
    cmd.cargo_path(cargo_program()).no_deps();
    if let Some(m) = &args.manifest_path {
        cmd.manifest_path(m);
    }
    let mut other = Vec::new();
    if args.offline {
        other.push("--offline".to_owned());
    }
    if args.locked {
        other.push("--locked".to_owned());
    }
    cmd.other_options(other);
    let metadata = match crate::sudo::invoking_user()? {
        None => cmd.exec().map_err(|e| SetupError::Metadata(Box::new(e)))?,
        Some(user) => metadata_as(&cmd, user)?,
    };
    let target_dir = match &args.target_dir {
        Some(d) => {
            let d = Utf8PathBuf::from_path_buf(d.clone()).map_err(SetupError::NonUtf8Path)?;
            if d.is_relative() {
                Utf8PathBuf::from_path_buf(std::env::current_dir().map_err(SetupError::Cwd)?)
                    .map_err(SetupError::NonUtf8Path)?
                    .join(d)
            } else {
                d
            }
        }
        None => metadata.target_directory.clone(),
    };
    Ok(Workspace { metadata, target_dir })
}

/// `cargo metadata` as the user who ran `sudo` (it may write `Cargo.lock`).
fn metadata_as(cmd: &MetadataCommand, user: &crate::sudo::InvokingUser) -> Result<Metadata, SetupError> {
    let mut command = cmd.cargo_command();
    user.apply(&mut command);
    let out = match command.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => {
            return Err(match user.cannot_run(&cargo_program(), e) {
                Ok(sudo) => SetupError::Sudo(sudo),
                Err(e) => SetupError::Metadata(Box::new(e.into())),
            })
        }
    };
    parse_metadata(out).map_err(|e| SetupError::Metadata(Box::new(e)))
}

fn parse_metadata(out: std::process::Output) -> cargo_metadata::Result<Metadata> {
    if !out.status.success() {
        return Err(cargo_metadata::Error::CargoMetadata { stderr: String::from_utf8(out.stderr)? });
    }
    let stdout = std::str::from_utf8(&out.stdout)?;
    let json = stdout.lines().find(|l| l.starts_with('{')).ok_or(cargo_metadata::Error::NoJson)?;
    MetadataCommand::parse(json)
}

/// The `cargo test --no-run` command line.
fn cargo_test_args(args: &BuildOptions, color: bool) -> Vec<String> {
    let mut v: Vec<String> =
        ["test", "--no-run", "--message-format=json-render-diagnostics"].map(String::from).to_vec();
    v.push(format!("--color={}", if color { "always" } else { "never" }));
    v.extend(args.cargo_args.iter().cloned());
    v
}

/// Builds the tests. Cargo's own progress and diagnostics go to our stderr unchanged.
pub(crate) fn build(args: &BuildOptions, ws: &Workspace, color: bool) -> Result<BuildOutput, BuildError> {
    let argv = cargo_test_args(args, color);
    let mut cmd = Command::new(cargo_program());
    if let Some(user) = crate::sudo::invoking_user()? {
        user.check_target_dir(ws.target_dir.as_std_path())?;
        user.apply(&mut cmd);
    }
    let mut child = cmd
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| match crate::sudo::invoking_user().ok().flatten() {
            Some(user) => match user.cannot_run(&cargo_program(), source) {
                Ok(sudo) => BuildError::Sudo(sudo),
                Err(source) => BuildError::Spawn { program: cargo_program(), source },
            },
            None => BuildError::Spawn { program: cargo_program(), source },
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut out = BuildOutput::default();
    let mut parse_error = None;
    for msg in Message::parse_stream(BufReader::new(stdout)) {
        match msg {
            Ok(m) => collect(&mut out, m, ws),
            Err(e) => {
                parse_error.get_or_insert(e);
            }
        }
    }
    let status = child.wait().map_err(|source| BuildError::Spawn { program: cargo_program(), source })?;
    if !status.success() {
        return Err(BuildError::Failed { status });
    }
    if let Some(e) = parse_error {
        return Err(BuildError::Messages(e));
    }
    out.binaries.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn collect(out: &mut BuildOutput, msg: Message, ws: &Workspace) {
    match msg {
        Message::CompilerArtifact(a) => {
            let Some(exe) = a.executable else { return };
            let Some(pkg) = ws.package(&a.package_id) else { return };
            if !a.profile.test {
                if a.target.kind.contains(&TargetKind::Bin) {
                    out.bin_exes.entry(a.package_id).or_default().push((a.target.name, exe));
                }
                return;
            }
            let kind = binary_kind(&a.target.kind);
            let id = binary_id(&pkg.name, kind, &a.target.name);
            let custom_harness =
                manifest_harness_false(&a.manifest_path, kind, &a.target.name, &a.target.src_path);
            out.binaries.push(TestBinary {
                id,
                package_id: a.package_id,
                kind,
                target_name: a.target.name,
                path: exe,
                custom_harness,
            });
        }
        Message::BuildScriptExecuted(b) => {
            let env = out.script_env.entry(b.package_id).or_default();
            env.push(("OUT_DIR".to_owned(), b.out_dir.to_string()));
            env.extend(b.env);
            for p in b.linked_paths {
                // "native=/path", "dependency=/path", or a bare path; only ours (inside the target dir).
                let s = p.as_str();
                let path = s.split_once('=').map_or(s, |(_, p)| p);
                let path = Utf8PathBuf::from(path);
                if path.starts_with(&ws.target_dir) && !out.linked_paths.contains(&path) {
                    out.linked_paths.push(path);
                }
            }
        }
        _ => {}
    }
}

fn binary_kind(kinds: &[TargetKind]) -> BinaryKind {
    let has = |k: TargetKind| kinds.contains(&k);
    if has(TargetKind::ProcMacro) {
        BinaryKind::ProcMacro
    } else if has(TargetKind::Bin) {
        BinaryKind::Bin
    } else if has(TargetKind::Test) {
        BinaryKind::Test
    } else if has(TargetKind::Example) {
        BinaryKind::Example
    } else if has(TargetKind::Bench) {
        BinaryKind::Bench
    } else {
        BinaryKind::Lib
    }
}

/// nextest-style binary ids: readable, unique within a workspace, stable across builds.
pub(crate) fn binary_id(package: &str, kind: BinaryKind, target: &str) -> String {
    match kind {
        BinaryKind::Lib | BinaryKind::ProcMacro => package.to_owned(),
        BinaryKind::Test => format!("{package}::{target}"),
        BinaryKind::Bin | BinaryKind::Example | BinaryKind::Bench => {
            format!("{package}::{}/{target}", kind.as_str())
        }
    }
}

/// Whether the manifest declares this target with `harness = false`. Cargo's messages do not
/// say, so we read the manifest (a target without a section there uses the default harness).
fn manifest_harness_false(manifest: &Utf8Path, kind: BinaryKind, name: &str, src: &Utf8Path) -> bool {
    let Ok(text) = std::fs::read_to_string(manifest) else { return false };
    let Ok(doc) = text.parse::<toml::Table>() else { return false };
    let harness_false = |t: &toml::Table| t.get("harness").and_then(toml::Value::as_bool) == Some(false);
    let section = match kind {
        BinaryKind::Lib | BinaryKind::ProcMacro => {
            return doc.get("lib").and_then(|v| v.as_table()).is_some_and(harness_false)
        }
        BinaryKind::Bin => "bin",
        BinaryKind::Test => "test",
        BinaryKind::Example => "example",
        BinaryKind::Bench => "bench",
    };
    let dir = manifest.parent().unwrap_or(Utf8Path::new("."));
    doc.get(section).and_then(|v| v.as_array()).into_iter().flatten().filter_map(|v| v.as_table()).any(|t| {
        let same_name = t.get("name").and_then(|n| n.as_str()).map(|n| n.replace('-', "_"))
            == Some(name.replace('-', "_"));
        let same_path = t.get("path").and_then(|p| p.as_str()).is_some_and(|p| dir.join(p) == src);
        (same_name || same_path) && harness_false(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_nextest_shape() {
        assert_eq!(binary_id("foo", BinaryKind::Lib, "foo"), "foo");
        assert_eq!(binary_id("foo", BinaryKind::Test, "integ"), "foo::integ");
        assert_eq!(binary_id("foo", BinaryKind::Bin, "cli"), "foo::bin/cli");
        assert_eq!(binary_kind(&[TargetKind::Lib, TargetKind::RLib]), BinaryKind::Lib);
    }

    #[test]
    fn finds_harness_false() {
        let dir = tempfile::tempdir().unwrap();
        let m = Utf8PathBuf::from_path_buf(dir.path().join("Cargo.toml")).unwrap();
        std::fs::write(
            &m,
            "[package]\nname='x'\n[[test]]\nname = \"custom\"\nharness = false\n[[test]]\nname='plain'\n",
        )
        .unwrap();
        let src = dir.path().join("tests/custom.rs");
        let src = Utf8PathBuf::from_path_buf(src).unwrap();
        assert!(manifest_harness_false(&m, BinaryKind::Test, "custom", &src));
        assert!(!manifest_harness_false(&m, BinaryKind::Test, "plain", &src));
        assert!(!manifest_harness_false(&m, BinaryKind::Lib, "x", &src));
    }
}
