//! Machine-wide leases: subnets and memory, shared by every cvtest on the machine (threads,
//! processes, `cargo cvtest` runners, `#[cv_test]` under any harness).
//!
//! A lease is an open-file-description (OFD) write lock on a byte range of one lock file:
//! `subnets.lock`, where the range is the subnet's addresses (so overlapping subnets are
//! overlapping ranges), and `memory.lock`, where a byte is a MiB of the memory budget. OFD locks
//! were chosen because they have every property a lease needs and nothing else does all of them:
//! - they conflict between open file descriptions, not processes, so two threads of one process
//!   exclude each other as two processes do (classic POSIX locks do not);
//! - the kernel drops them when the last fd of the description closes, so a holder that dies,
//!   even by SIGKILL, releases its leases: nothing is left behind to sweep;
//! - a range is locked atomically and `F_OFD_GETLK` says which range blocks a request, which is
//!   exactly "which held subnet overlaps mine" (and a first-fit search for memory);
//! - they cost a few syscalls (an `open`, an `fcntl`, a `close`): no daemon, no D-Bus.
//!
//! OFD locks do not tell who holds them (`l_pid` is -1), so each holding process also publishes
//! what it holds in `holders/<pid>.json` (a JSON array: pid, test name, what, range per lease),
//! one file per process, OFD-locked by it for its whole life and rewritten in place on every
//! take and release (creating and removing a file per lease costs more than the lease itself on
//! a disk-backed `/run`). A waiter reads the record that matches the blocking range; a file
//! whose lock is free belongs to a dead process and is removed by whoever meets it.
//!
//! Waiting polls (`F_OFD_SETLK` with a back-off from 1 ms to 50 ms) rather than blocking in
//! `F_OFD_SETLKW`: a wait is bounded, can be given up by its observer (an interrupted run), and
//! reports who it waits for while it waits.
//!
//! The files live in `/run/cvtest/` for root; for any other user in `$XDG_RUNTIME_DIR/cvtest/`
//! (else `/tmp/cvtest-<uid>/`): a user's containers never add host routes, so their subnets
//! never meet root's.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use cvtest_spec::NetworkPool;
use cvtest_spec::NetworkSpec;
use serde::{Deserialize, Serialize};

use crate::sys;

/// How long [`crate::Container::create`] waits for a subnet held by another cvtest container
/// when the caller sets no bound ([`WaitPolicy::default`]).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

pub use cvtest_spec::{AUTO_PREFIX, DEFAULT_POOL, ENV_POOL};

const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

/// Who holds a lease, from its published record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: i32,
    /// The test's name, when the holder is a cvtest test.
    pub test: Option<String>,
    /// What is held: `10.0.0.0/24`, `512 MiB of memory`.
    pub what: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    start: u64,
    #[serde(default)]
    len: u64,
}

impl Holder {
    /// A holder as a reporter shows it (the range it holds stays unknown).
    pub fn new(pid: i32, test: Option<String>, what: String) -> Holder {
        Holder { pid, test, what, kind: String::new(), start: 0, len: 0 }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.test {
            Some(test) => write!(f, "pid {} (test {test})", self.pid),
            None => write!(f, "pid {}", self.pid),
        }
    }
}

/// A lease being waited for: reported to [`WaitPolicy::observer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// What this container asks for: `10.0.0.0/24`, `512 MiB of memory`, `a subnet of 198.19.0.0/16`.
    pub what: String,
    /// Who holds an overlapping lease; `None` if it could not be told (it was just released, or
    /// its record is not published yet).
    pub holder: Option<Holder>,
}

/// How a lease is waited for.
pub struct WaitPolicy<'a> {
    /// Who asks, published for others that wait (a test's name).
    pub label: Option<&'a str>,
    /// How long to wait for a held lease before failing with [`LeaseError::TimedOut`].
    pub timeout: Duration,
    /// Called about every 50 ms while waiting; returning `false` gives up
    /// ([`LeaseError::GaveUp`]).
    pub observer: Option<&'a dyn Fn(&Waiting) -> bool>,
}

impl Default for WaitPolicy<'_> {
    fn default() -> Self {
        WaitPolicy { label: None, timeout: DEFAULT_WAIT, observer: None }
    }
}

impl std::fmt::Debug for WaitPolicy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitPolicy")
            .field("label", &self.label)
            .field("timeout", &self.timeout)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// A lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("failed to create the lease directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to open the lease file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to lock a range of the lease file {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to publish the lease record {path}")]
    Record {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("waited {waited:?} for {what}, still held by {holder}; raise the test's timeout, or give the tests distinct subnets (or network = \"auto\")", holder = holder.as_ref().map_or_else(|| "another cvtest container".to_owned(), |h| format!("cvtest {h} ({})", h.what)))]
    TimedOut { what: String, holder: Option<Box<Holder>>, waited: Duration },
    #[error("gave up waiting for {what}")]
    GaveUp { what: String },
}

/// A held lease; dropping it releases it (and withdraws its record).
#[derive(Debug)]
pub struct Lease {
    _lock: OwnedFd,
    record: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut records = records();
        if let Some(r) = records.as_mut() {
            r.held.retain(|(id, _)| *id != self.record);
            if r.held.is_empty() {
                // Holding nothing: no file left behind (the next lease makes it again).
                let _ = fs::remove_file(dir().join("holders").join(format!("{}.json", r.pid)));
                *records = None;
            } else {
                r.rewrite();
            }
        }
    }
}

/// This process's published holdings.
#[derive(Debug)]
struct Records {
    pid: u32,
    file: File,
    next: u64,
    held: Vec<(u64, Holder)>,
    /// How many bytes the file has.
    written: usize,
}

impl Records {
    /// Writes the holdings over the file's contents. A reader that meets a half-written file
    /// fails to parse it and tells no holder this round.
    fn rewrite(&mut self) {
        use std::os::unix::fs::FileExt;
        let list: Vec<&Holder> = self.held.iter().map(|(_, h)| h).collect();
        if let Ok(mut json) = serde_json::to_vec(&list) {
            // Padded with spaces over the previous contents instead of truncated: one write.
            if json.len() < self.written {
                json.resize(self.written, b' ');
            }
            if self.file.write_all_at(&json, 0).is_ok() {
                self.written = json.len();
            }
        }
    }
}

fn records() -> std::sync::MutexGuard<'static, Option<Records>> {
    static RECORDS: Mutex<Option<Records>> = Mutex::new(None);
    RECORDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subnet,
    Memory,
}

impl Kind {
    fn file(self) -> &'static str {
        match self {
            Kind::Subnet => "subnets.lock",
            Kind::Memory => "memory.lock",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Subnet => "subnet",
            Kind::Memory => "memory",
        }
    }
}

/// The directory of the lease files (see the module's documentation).
pub fn dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/run/cvtest");
        }
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d).join("cvtest"),
            None => PathBuf::from(format!("/tmp/cvtest-{}", nix::unistd::geteuid())),
        }
    })
    .clone()
}

fn make_dir(path: &Path) -> Result<(), LeaseError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|source| LeaseError::Dir { path: path.to_owned(), source })
}

fn open_lock(kind: Kind) -> Result<(PathBuf, OwnedFd), LeaseError> {
    let d = dir();
    let path = d.join(kind.file());
    let open = |path: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
    };
    let file = match open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_dir(&d)?;
            open(&path).map_err(|source| LeaseError::Open { path: path.clone(), source })?
        }
        Err(source) => return Err(LeaseError::Open { path, source }),
    };
    Ok((path, file.into()))
}

/// The range a subnet takes in `subnets.lock`: its addresses.
fn subnet_range(net: &NetworkSpec) -> (u64, u64) {
    (u64::from(u32::from(net.network())), 1u64 << (32 - u32::from(net.prefix_len())))
}

fn subnet_text(net: &NetworkSpec) -> String {
    format!("{}/{}", net.network(), net.prefix_len())
}

/// Takes the lease of `net`'s subnet, waiting while an overlapping one is held.
pub fn take_subnet(net: &NetworkSpec, policy: &WaitPolicy<'_>) -> Result<Lease, LeaseError> {
    let (start, len) = subnet_range(net);
    let what = subnet_text(net);
    let (path, fd) = open_lock(Kind::Subnet)?;
    let deadline = Instant::now() + policy.timeout;
    let mut pause = POLL_FIRST;
    loop {
        if try_lock(&path, &fd, start, len)? {
            return publish(fd, Kind::Subnet, start, len, what, policy.label);
        }
        let holder = conflict_holder(&path, &fd, Kind::Subnet, start, len);
        wait_round(policy, &what, holder, deadline, &mut pause)?;
    }
}

/// Takes the lease of `net`'s subnet if it is free now.
pub fn try_take_subnet(net: &NetworkSpec, label: Option<&str>) -> Result<Option<Lease>, LeaseError> {
    let (start, len) = subnet_range(net);
    let (path, fd) = open_lock(Kind::Subnet)?;
    if try_lock(&path, &fd, start, len)? {
        publish(fd, Kind::Subnet, start, len, subnet_text(net), label).map(Some)
    } else {
        Ok(None)
    }
}

/// Takes `mib` MiB of a machine-wide memory budget of `budget_mib` MiB, waiting while too
/// little of it is free. The share is a set of ranges of `memory.lock` (whatever pieces are
/// free, lowest first, so the budget never fragments), all released together. A request larger
/// than the budget takes all of it.
pub fn take_memory(mib: u64, budget_mib: u64, policy: &WaitPolicy<'_>) -> Result<Lease, LeaseError> {
    let budget = budget_mib.max(1);
    let len = mib.clamp(1, budget);
    let what = format!("{len} MiB of the {budget} MiB memory budget");
    let deadline = Instant::now() + policy.timeout;
    let mut pause = POLL_FIRST;
    loop {
        let (path, fd) = open_lock(Kind::Memory)?;
        let mut got = 0;
        let mut first = None;
        let mut blocker = None;
        let mut start = 0;
        while got < len && start < budget {
            // The free prefix of [start, start + what is still needed).
            let mut end = (start + (len - got)).min(budget);
            while let Some((s, l)) =
                sys::ofd_conflict(fd.as_fd(), start, end - start).map_err(|e| lock_error(&path, e))?
            {
                blocker.get_or_insert((s, l));
                if s <= start {
                    start = if l == 0 { budget } else { s + l };
                    end = start;
                    break;
                }
                end = s;
            }
            if end > start && try_lock(&path, &fd, start, end - start)? {
                first.get_or_insert(start);
                got += end - start;
                start = end;
            }
        }
        if got == len {
            return publish(fd, Kind::Memory, first.unwrap_or(0), len, what, policy.label);
        }
        // Not enough: give back what was taken (closing the fd drops its locks) and wait.
        drop(fd);
        let holder = blocker.and_then(|(s, l)| find_holder(Kind::Memory, s, l.max(1)));
        wait_round(policy, &what, holder, deadline, &mut pause)?;
    }
}

/// A free subnet of `pool` that no host route overlaps, with its lease. Waits (as
/// [`take_subnet`] does) only when every subnet of the pool is taken.
pub fn take_from_pool(
    pool: &NetworkPool,
    policy: &WaitPolicy<'_>,
) -> Result<(NetworkSpec, Lease), LeaseError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let what = format!("a subnet of {pool}");
    let count = pool.count();
    // Spread processes and calls over the pool so that they rarely try the same subnet.
    let first = (u64::from(std::process::id()).wrapping_mul(2654435761)
        + NEXT.fetch_add(1, Ordering::Relaxed))
        % count;
    let deadline = Instant::now() + policy.timeout;
    let mut pause = POLL_FIRST;
    loop {
        // Routes dumped after the lease of the subnet they are checked for was taken (so no
        // cvtest route can appear in it since); they also screen the candidates that follow.
        let mut routes: Option<Vec<(std::net::Ipv4Addr, u8)>> = None;
        for i in (0..count).map(|k| (first + k) % count) {
            let net = pool.subnet(i);
            if routes.as_ref().is_some_and(|r| crate::net::route_overlaps(&net, r)) {
                continue;
            }
            let Some(lease) = try_take_subnet(&net, policy.label)? else { continue };
            routes = crate::net::host_ipv4_routes().ok();
            if routes.as_ref().is_some_and(|r| !crate::net::route_overlaps(&net, r)) {
                return Ok((net, lease));
            }
            drop(lease);
        }
        wait_round(policy, &what, None, deadline, &mut pause)?;
    }
}

fn lock_error(path: &Path, e: sys::Errno) -> LeaseError {
    LeaseError::Lock { path: path.to_owned(), source: e.into() }
}

fn try_lock(path: &Path, fd: &OwnedFd, start: u64, len: u64) -> Result<bool, LeaseError> {
    sys::ofd_try_lock(fd.as_fd(), start, len).map_err(|e| lock_error(path, e))
}

/// One round of waiting: report, give up or time out, or sleep.
fn wait_round(
    policy: &WaitPolicy<'_>,
    what: &str,
    holder: Option<Holder>,
    deadline: Instant,
    pause: &mut Duration,
) -> Result<(), LeaseError> {
    if let Some(observe) = policy.observer {
        if !observe(&Waiting { what: what.to_owned(), holder: holder.clone() }) {
            return Err(LeaseError::GaveUp { what: what.to_owned() });
        }
    }
    let now = Instant::now();
    if now >= deadline {
        return Err(LeaseError::TimedOut {
            what: what.to_owned(),
            holder: holder.map(Box::new),
            waited: policy.timeout,
        });
    }
    std::thread::sleep((*pause).min(deadline - now));
    *pause = (*pause * 2).min(POLL_MAX);
    Ok(())
}

/// Removes the records of processes that died holding leases (their leases went with them).
/// Best effort; [`crate::Container::create`] calls it with its sweep of stale cgroups.
pub fn sweep_stale_records() {
    let Ok(entries) = fs::read_dir(dir().join("holders")) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().ends_with(".json") {
            continue;
        }
        if let Ok(file) = File::open(&path) {
            if let Ok(None) = sys::ofd_conflict(file.as_fd(), 0, 0) {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// The holder of the lock that blocks `[start, start + len)`, if its record can be found.
fn conflict_holder(path: &Path, fd: &OwnedFd, kind: Kind, start: u64, len: u64) -> Option<Holder> {
    let _ = path;
    let (s, l) = sys::ofd_conflict(fd.as_fd(), start, len).ok()??;
    find_holder(kind, s, l.max(1))
}

/// The live holder whose record is exactly the range `[start, start + len)` (else one that
/// overlaps it). Removes records of dead holders on the way.
fn find_holder(kind: Kind, start: u64, len: u64) -> Option<Holder> {
    let holders = dir().join("holders");
    let mut overlapping = None;
    for entry in fs::read_dir(&holders).ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(".json") {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else { continue };
        let Ok(text) = fs::read_to_string(&path) else { continue };
        match sys::ofd_conflict(file.as_fd(), 0, 0) {
            Ok(Some(_)) => {}
            // Nobody locks it: its process is dead.
            Ok(None) => {
                let _ = fs::remove_file(&path);
                continue;
            }
            Err(_) => continue,
        }
        let Ok(list) = serde_json::from_str::<Vec<Holder>>(&text) else { continue };
        for h in list {
            if h.kind != kind.name() || h.start + h.len <= start || start + len <= h.start {
                continue;
            }
            if h.start == start && h.len == len {
                return Some(h);
            }
            overlapping.get_or_insert(h);
        }
    }
    overlapping
}

/// Publishes who holds the lease just taken on `lock`.
fn publish(
    lock: OwnedFd,
    kind: Kind,
    start: u64,
    len: u64,
    what: String,
    label: Option<&str>,
) -> Result<Lease, LeaseError> {
    let pid = std::process::id();
    let mut records = records();
    let r = match records.as_mut() {
        // A forked child does not own its parent's file (nor its lock).
        Some(r) if r.pid == pid => r,
        _ => records.insert(Records { pid, file: open_records(pid)?, next: 0, held: Vec::new(), written: 0 }),
    };
    let holder = Holder {
        pid: pid as i32,
        test: label.map(str::to_owned),
        what,
        kind: kind.name().to_owned(),
        start,
        len,
    };
    let id = r.next;
    r.next += 1;
    r.held.push((id, holder));
    r.rewrite();
    Ok(Lease { _lock: lock, record: id })
}

/// Creates `holders/<pid>.json`, OFD-locked: made under a temporary name and renamed into place,
/// so that no reader ever sees it unlocked (and removes it as a dead process's).
fn open_records(pid: u32) -> Result<File, LeaseError> {
    let holders = dir().join("holders");
    let tmp = holders.join(format!(".{pid}.tmp"));
    let path = holders.join(format!("{pid}.json"));
    let err = |source| LeaseError::Record { path: path.clone(), source };
    let create = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
    };
    let file = match create() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_dir(&holders)?;
            create().map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    let placed = sys::ofd_try_lock(file.as_fd(), 0, 0)
        .map_err(io::Error::from)
        .and_then(|locked| {
            if locked {
                Ok(())
            } else {
                Err(io::Error::new(io::ErrorKind::WouldBlock, "another process locks this pid's record"))
            }
        })
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_ranges_are_their_addresses() {
        let a: NetworkSpec = "10.0.0.2/24".parse().unwrap();
        assert_eq!(subnet_range(&a), (0x0a00_0000, 256));
        let b: NetworkSpec = "10.0.0.6/30".parse().unwrap();
        assert_eq!(subnet_range(&b), (0x0a00_0004, 4));
    }
}
