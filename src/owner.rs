//! Who owns a cgroup or a veth, and whether that owner still runs.
//!
//! Every cgroup cvtest makes is named `cvtest.<tag>.<rest>`, and every veth's host end has the
//! alias `cvtest owner=<tag>`. The tag is `<pid>.<start>.<pidns>`: the owner's pid as its own PID
//! namespace numbers it, its start time in clock ticks since boot (`/proc/self/stat` field 22,
//! so a reused pid is another process), and the inode of that PID namespace. Runners in other
//! PID namespaces can share our cgroups and veths (a runner under `unshare --pid`, in a
//! container, in a CI sandbox): their pid means nothing in ours, so the namespace is part of who
//! they are.
//!
//! [`status`] checks a tag:
//! - our PID namespace: the pid runs with that start time (alive), or does not (dead);
//! - another PID namespace we can see (a descendant of ours: its processes are in our /proc): a
//!   process of it has that pid in it (alive), or none does (dead);
//! - a namespace we cannot see (an ancestor's or a sibling's), a tag we cannot parse (an older
//!   cvtest's, a stranger's), a /proc we cannot read: unknown.
//!
//! Only a dead owner's things are swept; unknown is never swept: when in doubt, touch nothing.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

/// What [`status`] knows of a tag's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Alive,
    Dead,
    /// Cannot be checked from here (see the module docs): never swept.
    Unknown,
}

/// A parsed tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    pid: i32,
    start: u64,
    pidns: u64,
}

impl Tag {
    fn parse(tag: &str) -> Option<Tag> {
        let mut parts = tag.split('.');
        let (pid, start, pidns) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || ![pid, start, pidns].iter().all(|p| digits(p)) {
            return None;
        }
        let pid: i32 = pid.parse().ok()?;
        (pid > 0).then_some(Tag { pid, start: start.parse().ok()?, pidns: pidns.parse().ok()? })
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The owner tag of this process (see the module docs).
pub(crate) fn tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id();
        // Without a readable /proc nothing else works either; a 0 start never matches a process.
        let start = read_stat("/proc/self/stat").map(|s| s.start_time).unwrap_or(0);
        format!("{pid}.{start}.{}", own_pidns().unwrap_or(0))
    })
}

/// Whether the owner of `tag` runs, is gone, or cannot be checked from here.
pub(crate) fn status(tag: &str) -> Owner {
    let Some(tag) = Tag::parse(tag) else { return Owner::Unknown };
    match own_pidns() {
        Ok(ours) if ours == tag.pidns => in_our_pidns(tag),
        Ok(_) => in_another_pidns(tag),
        Err(_) => Owner::Unknown,
    }
}

/// Whether `tag`'s owner may be running: anything but a provably dead one.
pub(crate) fn may_be_alive(tag: &str) -> bool {
    status(tag) != Owner::Dead
}

fn in_our_pidns(tag: Tag) -> Owner {
    match read_stat(&format!("/proc/{}/stat", tag.pid)) {
        Ok(stat) if stat.start_time == tag.start => Owner::Alive,
        Ok(_) => Owner::Dead,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => Owner::Dead,
        Err(_) => Owner::Unknown,
    }
}

/// Looks through our /proc for the processes of `tag.pidns`. A process whose pid in that
/// namespace is `tag.pid` means alive (its start time is not compared: a reused pid only keeps
/// a dead runner's things until it ends); processes of the namespace but none with that pid mean
/// dead; none at all, unknown (the namespace is gone, or was never visible from here).
fn in_another_pidns(tag: Tag) -> Owner {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Owner::Unknown };
    let mut seen_namespace = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| digits(n)) else { continue };
        let in_namespace =
            std::fs::metadata(format!("/proc/{pid}/ns/pid")).is_ok_and(|m| m.ino() == tag.pidns);
        if !in_namespace {
            continue;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| innermost_pid(&s)) {
            Some(inner) if inner == tag.pid => return Owner::Alive,
            Some(_) => seen_namespace = true,
            // It went meanwhile, or its status is unreadable: it could have been the owner.
            None => return Owner::Unknown,
        }
    }
    if seen_namespace {
        Owner::Dead
    } else {
        Owner::Unknown
    }
}

/// The pid in the innermost PID namespace, the last field of `NSpid:` in `/proc/<pid>/status`.
fn innermost_pid(status: &str) -> Option<i32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_ascii_whitespace().last()?.parse().ok()
}

/// The inode of this process's PID namespace.
fn own_pidns() -> io::Result<u64> {
    static NS: OnceLock<u64> = OnceLock::new();
    if let Some(ns) = NS.get() {
        return Ok(*ns);
    }
    let ns = std::fs::metadata("/proc/self/ns/pid")?.ino();
    Ok(*NS.get_or_init(|| ns))
}

/// The owner tag in a cvtest cgroup name `cvtest.<tag>.<rest>`; `None` for any other name
/// (which the sweep then never touches), older cvtests' `cvtest.<pid>.<start>.<seq>` included.
pub(crate) fn tag_of_cgroup(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("cvtest.")?;
    let mut dots = rest.match_indices('.').map(|(i, _)| i);
    let end = dots.nth(2)?;
    let (tag, tail) = (&rest[..end], &rest[end + 1..]);
    (Tag::parse(tag).is_some() && !tail.is_empty()).then_some(tag)
}

/// The parent pid of `pid` (in our PID namespace), if it runs.
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    read_stat(&format!("/proc/{pid}/stat")).ok().map(|s| s.ppid)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    ppid: i32,
    start_time: u64,
}

fn read_stat(path: &str) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(path)?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("malformed {path}")))
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
        assert_eq!(tag_of_cgroup("cvtest.123.456.789.0"), Some("123.456.789"));
        assert_eq!(tag_of_cgroup("cvtest.123.456.789.supervisor"), Some("123.456.789"));
        for name in [
            // An older cvtest's names (no PID namespace): never swept.
            "cvtest.123.456.0",
            "cvtest.123.456.supervisor",
            "cvtest.123.456.789",
            "cvtest.123.456.789.",
            "cvtest.12a.456.789.0",
            "cvtest..456.789.0",
            "cvtest.0.456.789.0",
            "cvtests.1.2.3.4",
            "user.slice",
            "cvtest",
        ] {
            assert_eq!(tag_of_cgroup(name), None, "{name}");
        }
    }

    #[test]
    fn nspid_innermost() {
        assert_eq!(innermost_pid("Name:\tx\nNSpid:\t4242\t7\t1\nNSpgid:\t1\n"), Some(1));
        assert_eq!(innermost_pid("NSpid:\t99\n"), Some(99));
        assert_eq!(innermost_pid("Name:\tx\n"), None);
    }

    #[test]
    fn own_tag_is_alive_and_a_wrong_start_time_is_not() {
        let own = tag();
        let t = Tag::parse(own).unwrap();
        assert_eq!(t.pid as u32, std::process::id());
        assert!(t.start > 0 && t.pidns > 0);
        assert_eq!(status(own), Owner::Alive);
        let reused = format!("{}.{}.{}", t.pid, t.start + 1, t.pidns);
        assert_eq!(status(&reused), Owner::Dead, "a reused pid is another process");
        for unparsable in ["garbage", "0.5.1", "12.34", "12.34.56.78", "1.2.x"] {
            assert_eq!(status(unparsable), Owner::Unknown, "{unparsable}");
            assert!(may_be_alive(unparsable));
        }
    }

    #[test]
    fn a_pid_namespace_we_cannot_see_is_unknown() {
        let t = Tag::parse(tag()).unwrap();
        // No process of ours is in a namespace with inode 1 (nsfs inodes are far above it).
        let foreign = format!("{}.{}.1", t.pid, t.start);
        assert_eq!(status(&foreign), Owner::Unknown);
        assert!(may_be_alive(&foreign));
    }

    #[test]
    fn an_exited_child_is_dead() {
        let mut child = std::process::Command::new("/bin/sleep").arg("10").spawn().unwrap();
        let pid = child.id() as i32;
        let start = read_stat(&format!("/proc/{pid}/stat")).unwrap().start_time;
        let child_tag = format!("{pid}.{start}.{}", own_pidns().unwrap());
        assert_eq!(status(&child_tag), Owner::Alive);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(status(&child_tag), Owner::Dead);
    }
}
