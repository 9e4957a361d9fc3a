//! The fixture crates build offline on a clean machine: their lock files pin only versions the
//! workspace's own lock has (the registry cache CI fills is the workspace's). A fixture whose
//! lock drifted (say a newer zbus) fails every trial that builds it with "no matching package",
//! far from the cause; this trial names the fixture and the package.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use libtest_mimic::{Failed, Trial};

pub fn trials() -> Vec<Trial> {
    vec![Trial::test(
        "fixtures_lock_only_the_workspaces_versions",
        fixtures_lock_only_the_workspaces_versions,
    )]
}

/// `name -> versions` of a Cargo.lock's registry packages.
fn locked(path: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: toml::Table = text.parse().map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in doc.get("package").and_then(|v| v.as_array()).into_iter().flatten() {
        let field = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        if field("source").is_some_and(|s| s.starts_with("registry+")) {
            if let (Some(n), Some(v)) = (field("name"), field("version")) {
                out.entry(n).or_default().insert(v);
            }
        }
    }
    Ok(out)
}

fn fixtures_lock_only_the_workspaces_versions() -> Result<(), Failed> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = locked(&crate_dir.join("../Cargo.lock"))?;
    let mut drift = Vec::new();
    let mut checked = 0;
    // Every workspace of the repository that tests build offline: this crate's fixtures, the
    // library's, and the reliability suite's.
    let mut dirs = vec![crate_dir.join("../tests/reliability")];
    for fixtures in [crate_dir.join("tests/fixtures"), crate_dir.join("../tests/fixtures")] {
        for entry in std::fs::read_dir(&fixtures).map_err(|e| format!("{}: {e}", fixtures.display()))? {
            dirs.push(entry.map_err(|e| e.to_string())?.path());
        }
    }
    for dir in dirs {
        let lock = dir.join("Cargo.lock");
        if !lock.exists() {
            continue;
        }
        checked += 1;
        for (name, versions) in locked(&lock)? {
            for v in versions.difference(workspace.get(&name).unwrap_or(&BTreeSet::new())) {
                drift.push(format!("{}: {name} {v}", lock.display()));
            }
        }
        // And complete: a lock that lacks a package makes cargo resolve again (online, the newest
        // versions), which is how the drift above comes about.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline", "--locked", "--manifest-path"])
            .arg(lock.with_file_name("Cargo.toml"))
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            drift.push(format!("{}: {}", lock.display(), String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    if checked == 0 {
        return Err("no fixture lock file found".into());
    }
    if drift.is_empty() {
        return Ok(());
    }
    Err(format!(
        "fixture lock files pin versions the workspace's Cargo.lock does not have (a clean machine's \
         offline build cannot fetch them): copy the workspace's Cargo.lock over the fixture's and run \
         `cargo metadata --offline` there:\n{}",
        drift.join("\n")
    )
    .into())
}
