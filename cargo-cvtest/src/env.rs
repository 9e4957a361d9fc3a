//! The environment `cargo test` gives a test binary, rebuilt for each binary: the working
//! directory (the package's directory), `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, `CARGO_CRATE_NAME`,
//! build-script `OUT_DIR` and `rustc-env` values, `CARGO_BIN_EXE_*` and `CARGO_TARGET_TMPDIR`
//! for integration tests, and the dynamic library path (the deps dir, build scripts' native
//! dirs inside the target dir, and the toolchain's lib dirs: proc-macro crates' tests link
//! libstd dynamically).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use cargo_metadata::camino::Utf8PathBuf;

use crate::build::{BinaryKind, BuildOutput, TestBinary, Workspace};
use crate::errors::SetupError;

/// The toolchain's library directories, asked of rustc once per run.
#[derive(Debug, Clone)]
pub(crate) struct Toolchain {
    pub(crate) lib_dirs: Vec<PathBuf>,
}

impl Toolchain {
    pub(crate) fn detect() -> Result<Toolchain, SetupError> {
        let rustc = std::env::var_os("RUSTC").map(PathBuf::from).unwrap_or_else(|| "rustc".into());
        let out = Command::new(&rustc)
            .args(["--print", "sysroot", "--print", "target-libdir"])
            .output()
            .map_err(|source| SetupError::Rustc { program: rustc.clone(), source })?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).into_owned();
            return Err(SetupError::Rustc { program: rustc, source: std::io::Error::other(msg) });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let mut lib_dirs = Vec::new();
        if let Some(sysroot) = lines.next() {
            lib_dirs.push(PathBuf::from(sysroot).join("lib"));
        }
        if let Some(target_libdir) = lines.next() {
            lib_dirs.push(PathBuf::from(target_libdir));
        }
        Ok(Toolchain { lib_dirs })
    }
}

/// Where and with what a test binary runs.
#[derive(Debug, Clone)]
pub(crate) struct TestEnv {
    pub(crate) cwd: PathBuf,
    pub(crate) vars: Vec<(OsString, OsString)>,
}

/// The variable that holds the dynamic library search path on this platform.
pub(crate) const DYLIB_VAR: &str = "LD_LIBRARY_PATH";

/// Builds the environment of `bin` as `cargo test` would.
pub(crate) fn test_env(
    bin: &TestBinary,
    ws: &Workspace,
    build: &BuildOutput,
    toolchain: &Toolchain,
) -> TestEnv {
    let pkg = ws.package(&bin.package_id).expect("artifacts come from workspace packages");
    let manifest_dir = pkg.manifest_path.parent().expect("a manifest path has a parent").to_path_buf();
    let mut vars: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &str, v: String| vars.push((k.into(), v.into()));

    set("CARGO", crate::build::cargo_program().display().to_string());
    set("CARGO_MANIFEST_DIR", manifest_dir.to_string());
    set("CARGO_MANIFEST_PATH", pkg.manifest_path.to_string());
    set("CARGO_PKG_NAME", pkg.name.to_string());
    set("CARGO_CRATE_NAME", bin.target_name.replace('-', "_"));
    let v = &pkg.version;
    set("CARGO_PKG_VERSION", v.to_string());
    set("CARGO_PKG_VERSION_MAJOR", v.major.to_string());
    set("CARGO_PKG_VERSION_MINOR", v.minor.to_string());
    set("CARGO_PKG_VERSION_PATCH", v.patch.to_string());
    set("CARGO_PKG_VERSION_PRE", v.pre.to_string());
    set("CARGO_PKG_AUTHORS", pkg.authors.join(":"));
    set("CARGO_PKG_DESCRIPTION", pkg.description.clone().unwrap_or_default());
    set("CARGO_PKG_HOMEPAGE", pkg.homepage.clone().unwrap_or_default());
    set("CARGO_PKG_REPOSITORY", pkg.repository.clone().unwrap_or_default());
    set("CARGO_PKG_LICENSE", pkg.license.clone().unwrap_or_default());
    set("CARGO_PKG_LICENSE_FILE", pkg.license_file.as_ref().map(|p| p.to_string()).unwrap_or_default());
    set("CARGO_PKG_RUST_VERSION", pkg.rust_version.as_ref().map(|v| v.to_string()).unwrap_or_default());
    set("CARGO_PKG_README", pkg.readme.as_ref().map(|p| p.to_string()).unwrap_or_default());
    if bin.kind == BinaryKind::Bin {
        set("CARGO_BIN_NAME", bin.target_name.clone());
    }
    if matches!(bin.kind, BinaryKind::Test | BinaryKind::Bench) {
        let tmp = ws.target_dir.join("tmp");
        // Cargo creates it before running integration tests; so do we (best effort: a test
        // that needs it will say so).
        let _ = crate::sudo::create_dir_all(tmp.as_std_path());
        set("CARGO_TARGET_TMPDIR", tmp.to_string());
    }
    if matches!(bin.kind, BinaryKind::Test | BinaryKind::Bench | BinaryKind::Bin) {
        for (name, exe) in build.bin_exes.get(&bin.package_id).into_iter().flatten() {
            set(&format!("CARGO_BIN_EXE_{name}"), exe.to_string());
        }
    }
    for (k, v) in build.script_env.get(&bin.package_id).into_iter().flatten() {
        set(k, v.clone());
    }

    vars.push((DYLIB_VAR.into(), dylib_path(bin, build, toolchain)));
    TestEnv { cwd: manifest_dir.into_std_path_buf(), vars }
}

/// deps dir, native dirs from build scripts, toolchain lib dirs, then whatever was set before.
fn dylib_path(bin: &TestBinary, build: &BuildOutput, toolchain: &Toolchain) -> OsString {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(deps) = bin.path.parent() {
        dirs.push(deps.as_std_path().to_path_buf());
    }
    dirs.extend(build.linked_paths.iter().map(|p: &Utf8PathBuf| p.as_std_path().to_path_buf()));
    dirs.extend(toolchain.lib_dirs.iter().cloned());
    if let Some(old) = std::env::var_os(DYLIB_VAR) {
        dirs.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}
