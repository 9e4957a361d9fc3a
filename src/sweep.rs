//! Sweeping what a dead runner left: cgroups named `cvtest.<owner tag>.<seq>` and veths whose
//! alias names an owner that provably no longer runs ([`crate::owner`]). Safe with several
//! runners at once, in any PID namespaces: a live owner's things are never touched, nor those of
//! an owner that cannot be checked from here.
//!
//! Only directories named `cvtest.<tag>.<more>` directly below this process's own cgroups are
//! looked at; anything else is never touched.

use std::collections::BTreeMap;
use std::io;

use crate::cgroup::{CgroupError, Hierarchy};
use crate::owner::{self, Owner};

/// Removes the cgroups whose owner is dead (killing whatever still runs in them). Returns how
/// many were removed; on errors, the rest are still attempted and the first error is returned.
/// `Container::create` calls it at most every few seconds.
pub fn sweep_stale_cgroups_now() -> Result<usize, CgroupError> {
    sweep_in(Hierarchy::detect()?)
}

fn sweep_in(h: &Hierarchy) -> Result<usize, CgroupError> {
    let mine = owner::tag();
    let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
    let mut stale: Vec<String> = Vec::new();
    for dir in h.own_dirs() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CgroupError::Read { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| CgroupError::Read { path: dir.clone(), source })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(tag) = owner::tag_of_cgroup(name) else { continue };
            if tag == mine || stale.iter().any(|s| s == name) {
                continue;
            }
            if *owners.entry(tag.to_owned()).or_insert_with(|| owner::status(tag)) == Owner::Dead {
                stale.push(name.to_owned());
            }
        }
    }
    let mut removed = 0;
    let mut first_error = None;
    for name in stale {
        match h.adopt(&name).destroy() {
            Ok(()) => removed += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // Under systemd each runner has its own scope: a dead one's is beside ours, not below.
    match h.sweep_dead_scopes() {
        Ok(n) => removed += n,
        Err(e) => {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        None => Ok(removed),
        Some(e) => Err(e),
    }
}
