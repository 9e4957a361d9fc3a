//! Sweeping what a dead runner left: cgroups named `cvtest.<pid>.<start>.<seq>` and veths whose
//! alias names an owner that no longer runs. Safe with several runners at once: a live owner's
//! things are never touched.
//!
//! The owner tag is `<pid>.<start time>`, the start time in clock ticks since boot from
//! `/proc/<pid>/stat` (field 22): a pid that was reused by another process has another start
//! time, so a live stranger is never mistaken for the owner. Tags compare pids of this pid
//! namespace, which is where every runner sharing these cgroups runs.
//!
//! Only directories named `cvtest.<digits>.<digits>.<more>` directly below this process's own
//! cgroups are looked at; anything else is never touched.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::cgroup::{CgroupError, Hierarchy};

/// How often [`sweep_stale_cgroups`] really looks: the first call of a process, then at most
/// once per this interval (a runner killed meanwhile is swept by the next create after it).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The owner tag of this process: `<pid>.<start time in clock ticks since boot>`.
pub fn owner_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id();
        // Without a readable /proc nothing else works either.
        let start = proc_stat(pid as i32).map(|s| s.start_time).unwrap_or(0);
        format!("{pid}.{start}")
    })
}

/// Whether the process of `tag` still runs: its pid exists and has the recorded start time.
/// A malformed tag, or a /proc entry that cannot be read for another reason than "no such
/// process", counts as alive: when in doubt, touch nothing.
pub fn owner_alive(tag: &str) -> bool {
    let Some((pid, start)) = parse_tag(tag) else { return true };
    match proc_stat(pid) {
        Ok(stat) => stat.start_time == start,
        Err(e) => e.kind() != io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// Removes the cgroups whose owner is dead (killing whatever still runs in them), at most once
/// per [`SWEEP_INTERVAL`]; between sweeps this returns `Ok(0)` at once. Returns how many were
/// removed; on errors, the rest are still attempted and the first error is returned.
pub fn sweep_stale_cgroups() -> Result<usize, CgroupError> {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < SWEEP_INTERVAL) {
            return Ok(0);
        }
        *last = Some(Instant::now());
    }
    sweep_stale_cgroups_now()
}

/// [`sweep_stale_cgroups`] without the throttle.
pub fn sweep_stale_cgroups_now() -> Result<usize, CgroupError> {
    sweep_in(Hierarchy::detect()?)
}

fn sweep_in(h: &Hierarchy) -> Result<usize, CgroupError> {
    let mine = owner_tag();
    let mut alive: BTreeMap<String, bool> = BTreeMap::new();
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
            let Some(tag) = tag_of(name) else { continue };
            if tag == mine || stale.iter().any(|s| s == name) {
                continue;
            }
            if !*alive.entry(tag.to_owned()).or_insert_with(|| owner_alive(tag)) {
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

/// The owner tag in a cvtest cgroup name `cvtest.<pid>.<start>.<rest>`; `None` for any other
/// name (which the sweep then never touches).
pub(crate) fn tag_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("cvtest.")?;
    let mut parts = rest.splitn(3, '.');
    let (pid, start, tail) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(start) || tail.is_empty() {
        return None;
    }
    Some(&rest[..pid.len() + 1 + start.len()])
}

fn parse_tag(tag: &str) -> Option<(i32, u64)> {
    let (pid, start) = tag.split_once('.')?;
    let pid: i32 = pid.parse().ok()?;
    (pid > 0).then_some(())?;
    Some((pid, start.parse().ok()?))
}

/// The parent pid of `pid`, if it runs.
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    proc_stat(pid).ok().map(|s| s.ppid)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    ppid: i32,
    start_time: u64,
}

fn proc_stat(pid: i32) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("malformed /proc/{pid}/stat")))
}

/// Fields of `/proc/<pid>/stat` (proc(5)): `pid (comm) state ppid ... starttime(22) ...`. The
/// comm may hold spaces and parentheses, so fields are counted after the last ')'.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state).
    Some(ProcStat { ppid: fields.get(1)?.parse().ok()?, start_time: fields.get(19)?.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_hostile_comm() {
        let stat =
            "4242 (a) b) (c d) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000000 100";
        assert_eq!(parse_stat(stat), Some(ProcStat { ppid: 17, start_time: 987654 }));
        assert_eq!(parse_stat("1 (x) S 0"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn only_well_formed_cvtest_names_have_a_tag() {
        assert_eq!(tag_of("cvtest.123.456.0"), Some("123.456"));
        assert_eq!(tag_of("cvtest.123.456.supervisor"), Some("123.456"));
        for name in [
            "cvtest.123.456",
            "cvtest.123.456.",
            "cvtest.12a.456.0",
            "cvtest..456.0",
            "cvtests.1.2.3",
            "user.slice",
            "cvtest",
        ] {
            assert_eq!(tag_of(name), None, "{name}");
        }
    }

    #[test]
    fn own_tag_is_alive_and_a_wrong_start_time_is_not() {
        let tag = owner_tag();
        let (pid, start) = parse_tag(tag).unwrap();
        assert_eq!(pid as u32, std::process::id());
        assert!(start > 0);
        assert!(owner_alive(tag));
        assert!(!owner_alive(&format!("{pid}.{}", start + 1)), "a reused pid is another process");
        assert!(owner_alive("garbage"), "malformed tags are never swept");
        assert!(owner_alive("0.5"));
    }

    #[test]
    fn an_exited_child_is_dead() {
        let mut child = std::process::Command::new("/bin/sleep").arg("10").spawn().unwrap();
        let pid = child.id() as i32;
        let tag = format!("{pid}.{}", proc_stat(pid).unwrap().start_time);
        assert!(owner_alive(&tag));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!owner_alive(&tag));
    }
}
