//! Network namespaces reused between containers that cannot change them.
//!
//! Making a network namespace is the largest single cost of a container (`copy_net_ns`:
//! per-namespace sysctl tables, `lo`; then the kernel's asynchronous `cleanup_net`). A container
//! with no network of its own whose processes hold no `CAP_NET_ADMIN` over the namespace (real
//! root, no user namespace, capabilities within [`Capabilities::DEFAULT`], a PID namespace so
//! that the init's end is the end of every process in it) can change nothing in its namespace
//! but sockets and the counters its traffic moves. Such a container may get a namespace of this
//! pool (its init joins it with `setns` before its mounts, and does not clone one), and gives it
//! back when it is destroyed: after its init is reaped (so its PID namespace is empty) and its
//! cgroup removed.
//!
//! **A namespace goes back to the pool only if it looks exactly as it did when it was made**:
//! read from inside it, the per-namespace socket counts of `sockstat` and `sockstat6` (every
//! socket of every family still alive in it, unix ones with abstract names included, TCP's in use
//! and in TIME_WAIT), the link list with `lo`'s counters (`dev`) and the IPv4 and IPv6 MIB
//! counters (`snmp`, `snmp6`) equal the snapshot taken when it was fresh. So a namespace in
//! which anything was sent or received, or any socket is left, is discarded (counted), never
//! reused. What then survives is only what no test can observe from inside: the namespace's
//! identity (its inode) and global kernel state that fresh namespaces share anyway.
//!
//! A container with a veth starts in a namespace of the pool too, but only in one no container
//! has had ([`take_fresh`]), and never gives it back: its link changed it. With the background
//! thread the pool keeps one such namespace made ahead ([`top_up`], after each take), so a
//! container whose namespace is new does not wait for `copy_net_ns` either.
//!
//! The pool holds its namespaces only as fds of this process: nothing outlives it, even
//! SIGKILLed. `CVTEST_NETNS_POOL=0` turns it off for the whole process (for A/B measurements).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use cvtest_spec::Capabilities;

use super::netns::NetnsGuard;
use super::{NetError, ReadyPair};
use crate::sys;

/// At most this many idle namespaces are kept (one per worker is what a runner needs).
const MAX_IDLE: usize = 16;

/// Files of `/proc/thread-self/net` that must read the same as when the namespace was fresh:
/// the links with their counters (any packet through `lo`, a packet socket's included) and the
/// IPv4 and IPv6 MIB counters (what never reached a device too: a send without a route). Other
/// files cost more than the rest of the check together (the socket tables walk machine-wide hash
/// tables: `tcp` 2.7 ms per `read` on this 24 GiB machine) and show nothing these and
/// [`SOCKSTAT`] miss: every socket is counted there, TIME_WAIT ones included, and without
/// `CAP_NET_ADMIN` a test cannot change links, addresses or routes.
const COMPARED: [&str; 3] = ["dev", "snmp", "snmp6"];

/// The files whose per-namespace counts must stay as fresh (the others are machine-wide).
const SOCKSTAT: [&str; 2] = ["sockstat", "sockstat6"];

/// A network namespace of the pool, lent to one container.
#[derive(Debug)]
pub(crate) struct PooledNetns {
    fd: OwnedFd,
    /// Its [`SOCKSTAT`] and [`COMPARED`] files, opened from inside it when it was made and kept:
    /// a procfs `net` file shows the namespace it was opened in, and read again from offset 0
    /// it shows it as it is now. Checking a namespace given back is then a `pread` of each,
    /// without entering it (two `setns`) or opening anything.
    files: NetFiles,
    fresh: Snapshot,
}

impl PooledNetns {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How a process's pool has been used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetnsPoolStats {
    /// Namespaces made by the pool.
    pub made: u64,
    /// Containers that got a namespace used before.
    pub reused: u64,
    /// Namespaces given back and found as fresh.
    pub returned: u64,
    /// Namespaces given back and thrown away: something in them differed from fresh (a socket
    /// left, TIME_WAIT included; traffic on `lo`), or they could not be checked.
    pub discarded: u64,
    /// Namespaces a container with a veth had (never given back).
    pub with_veth: u64,
    /// Veth pairs made ahead (each in a new namespace), taken or not.
    pub veths_made_ahead: u64,
    /// Containers with a veth that got a pair made ahead (with its namespace).
    pub ready_veths: u64,
}

static MADE: AtomicU64 = AtomicU64::new(0);
static REUSED: AtomicU64 = AtomicU64::new(0);
static RETURNED: AtomicU64 = AtomicU64::new(0);
static DISCARDED: AtomicU64 = AtomicU64::new(0);
static WITH_VETH: AtomicU64 = AtomicU64::new(0);
static READY_TAKEN: AtomicU64 = AtomicU64::new(0);
static READY_MADE: AtomicU64 = AtomicU64::new(0);

/// The counters of this process's pool.
pub fn stats() -> NetnsPoolStats {
    NetnsPoolStats {
        made: MADE.load(Ordering::Relaxed),
        reused: REUSED.load(Ordering::Relaxed),
        returned: RETURNED.load(Ordering::Relaxed),
        discarded: DISCARDED.load(Ordering::Relaxed),
        with_veth: WITH_VETH.load(Ordering::Relaxed),
        veths_made_ahead: READY_MADE.load(Ordering::Relaxed),
        ready_veths: READY_TAKEN.load(Ordering::Relaxed),
    }
}

/// Whether `CVTEST_NETNS_POOL` leaves the pool on (anything but `0`, `off`, `false`).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| !matches!(std::env::var(crate::NETNS_POOL_ENV).as_deref(), Ok("0" | "off" | "false")))
}

/// Whether a container may have a pooled namespace: nothing in it can hold `CAP_NET_ADMIN` (or
/// `CAP_SYS_ADMIN`, which could make `/proc/sys` writable) over a namespace owned by the initial
/// user namespace, and its processes end with its init.
pub(crate) fn eligible(confine: Option<Capabilities>, user_namespace: bool, pid_namespace: bool) -> bool {
    enabled()
        && confine.is_some_and(|caps| Capabilities::DEFAULT.contains(caps))
        && !user_namespace
        && pid_namespace
        && crate::preflight::in_initial_user_namespace()
}

/// Whether a container with a veth may start in a namespace of the pool (one as fresh as a new
/// one): it never gives it back (its veth changed it), so only the namespace's owner matters.
/// Its processes run without a user namespace of their own, so the namespace is owned by the
/// initial user namespace either way, as when the init clones it.
pub(crate) fn eligible_with_veth(user_namespace: bool) -> bool {
    enabled() && !user_namespace && crate::preflight::in_initial_user_namespace()
}

fn idle() -> &'static Mutex<Vec<PooledNetns>> {
    static IDLE: OnceLock<Mutex<Vec<PooledNetns>>> = OnceLock::new();
    IDLE.get_or_init(|| Mutex::new(Vec::new()))
}

/// Namespaces made ahead that no container has had yet.
fn fresh() -> &'static Mutex<Vec<PooledNetns>> {
    static FRESH: OnceLock<Mutex<Vec<PooledNetns>>> = OnceLock::new();
    FRESH.get_or_init(|| Mutex::new(Vec::new()))
}

fn pop(list: &Mutex<Vec<PooledNetns>>) -> Option<PooledNetns> {
    list.lock().unwrap_or_else(|e| e.into_inner()).pop()
}

/// A namespace for a container without a network: an idle one (given back as fresh), else one
/// made ahead, else a new one (`lo` up, its fresh state noted).
pub(crate) fn take() -> Result<PooledNetns, NetError> {
    if let Some(ns) = pop(idle()) {
        REUSED.fetch_add(1, Ordering::Relaxed);
        return Ok(ns);
    }
    take_fresh()
}

/// A namespace no container has had, for a container with a veth: one made ahead, else a new
/// one.
pub(crate) fn take_fresh() -> Result<PooledNetns, NetError> {
    pop(fresh()).map_or_else(make, Ok)
}

/// Makes one namespace ahead of need when none made ahead is left: the background thread calls
/// it after a take, so the next container that needs a new namespace finds one (made then or
/// now, a new namespace is the same). Best effort: a take makes its own when this failed.
pub(crate) fn top_up() {
    if !fresh().lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return;
    }
    if let Ok(ns) = make() {
        fresh().lock().unwrap_or_else(|e| e.into_inner()).push(ns);
    }
}

/// A veth pair made ahead with its peer in a namespace no container has had (the pair first:
/// dropped, it deletes the link before the namespace goes).
#[derive(Debug)]
pub(crate) struct ReadyVeth {
    pub(crate) pair: ReadyPair,
    pub(crate) netns: PooledNetns,
}

fn ready_veths() -> &'static Mutex<Vec<ReadyVeth>> {
    static READY: Mutex<Vec<ReadyVeth>> = Mutex::new(Vec::new());
    &READY
}

/// A pair made ahead for a container with a veth, if one is ready.
pub(crate) fn take_ready_veth() -> Option<ReadyVeth> {
    let ready = ready_veths().lock().unwrap_or_else(|e| e.into_inner()).pop();
    if ready.is_some() {
        READY_TAKEN.fetch_add(1, Ordering::Relaxed);
    }
    ready
}

/// Makes a pair ahead (in a new namespace) when none is ready: the background thread's, after a
/// container with a veth was created. Best effort: without one, a container makes its own pair
/// as it always did.
pub(crate) fn top_up_ready_veth() {
    if !ready_veths().lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return;
    }
    let Ok(netns) = take_fresh() else { return };
    if let Ok(pair) = ReadyPair::make(netns.fd(), crate::owner::tag()) {
        ready_veths().lock().unwrap_or_else(|e| e.into_inner()).push(ReadyVeth { pair, netns });
        READY_MADE.fetch_add(1, Ordering::Relaxed);
    }
}

/// Deletes the pairs made ahead and not taken (the end of a run: no link of this process is
/// left on the host once it returns).
pub(crate) fn drop_ready_veths() {
    let ready = std::mem::take(&mut *ready_veths().lock().unwrap_or_else(|e| e.into_inner()));
    drop(ready);
}

/// A new namespace with `lo` up, and its fresh state.
fn make() -> Result<PooledNetns, NetError> {
    let guard = NetnsGuard::unshare()?;
    sys::loopback_up().map_err(|e| NetError::Netns {
        action: "bring lo up in",
        netns: "a new pooled network namespace".to_owned(),
        source: e.into(),
    })?;
    let fd: OwnedFd = File::open("/proc/thread-self/ns/net")
        .map_err(|source| NetError::Netns {
            action: "open",
            netns: "/proc/thread-self/ns/net (a new pooled network namespace)".to_owned(),
            source,
        })?
        .into();
    let files = NetFiles::open_here();
    drop(guard);
    let files = files?;
    let fresh = Snapshot::read(&files)?;
    MADE.fetch_add(1, Ordering::Relaxed);
    Ok(PooledNetns { fd, files, fresh })
}

/// Gives back the namespace of a container whose processes are all gone: kept if it is exactly
/// as fresh, else dropped (the kernel then tears it down).
pub(crate) fn give_back(ns: PooledNetns) {
    match Snapshot::read(&ns.files) {
        Ok(now) if now == ns.fresh => {
            let mut idle = idle().lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(ns);
            }
            RETURNED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(_) | Err(_) => {
            DISCARDED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Drops the namespace of a container that had a veth in it: changed, never reused.
pub(crate) fn used_up(ns: PooledNetns) {
    drop(ns);
    WITH_VETH.fetch_add(1, Ordering::Relaxed);
}

/// Drops a namespace whose container may not have ended cleanly (a failed spawn or teardown).
pub(crate) fn discard(ns: PooledNetns) {
    drop(ns);
    DISCARDED.fetch_add(1, Ordering::Relaxed);
}

/// The files of one network namespace that a snapshot reads: [`SOCKSTAT`], then [`COMPARED`];
/// `None` where the kernel has no such file (no IPv6, say), fresh or not.
#[derive(Debug)]
struct NetFiles(Vec<Option<File>>);

impl NetFiles {
    /// Opens them in the calling thread's network namespace.
    fn open_here() -> Result<NetFiles, NetError> {
        let open = |name: &&str| {
            let path = format!("/proc/thread-self/net/{name}");
            match File::open(&path) {
                Ok(file) => Ok(Some(file)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(NetError::Netns {
                    action: "open",
                    netns: format!("{path} of a pooled network namespace"),
                    source,
                }),
            }
        };
        SOCKSTAT.iter().chain(COMPARED.iter()).map(open).collect::<Result<_, _>>().map(NetFiles)
    }
}

/// What a network namespace shows from inside.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    files: Vec<Vec<u8>>,
    /// The per-namespace counts of `sockstat` and `sockstat6`: (line prefix, key, value).
    counts: Vec<(String, String, String)>,
}

impl Snapshot {
    /// Reads the namespace of `files` as it is now.
    fn read(files: &NetFiles) -> Result<Snapshot, NetError> {
        // One buffer for every file, kept by the thread (the background thread checks a
        // namespace per container): large enough for the largest (`snmp6`, about 4 KiB).
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with_borrow_mut(|buffer| {
            let mut texts = Vec::with_capacity(files.0.len());
            for (file, name) in files.0.iter().zip(SOCKSTAT.iter().chain(COMPARED.iter())) {
                let Some(file) = file else {
                    texts.push(Vec::new());
                    continue;
                };
                if buffer.len() < READ_BUFFER {
                    buffer.resize(READ_BUFFER, 0);
                }
                let len =
                    crate::cgroup::fs::read_from_start(file, buffer).map_err(|source| NetError::Netns {
                        action: "read",
                        netns: format!("{name} of a pooled network namespace"),
                        source,
                    })?;
                texts.push(buffer[..len].to_vec());
            }
            // The socket counts first: a closing TCP socket becomes a TIME_WAIT one before it is
            // freed, so reading `sockets: used` before `tw` (sockstat's order) cannot miss both.
            let mut counts = Vec::new();
            for text in &texts[..SOCKSTAT.len()] {
                counts.extend(per_namespace_counts(&String::from_utf8_lossy(text)));
            }
            let files = texts.split_off(SOCKSTAT.len());
            Ok(Snapshot { files, counts })
        })
    }
}

/// The capacity of the buffer a namespace's files are read into.
const READ_BUFFER: usize = 16 * 1024;

/// `sockets: used`, each protocol's `inuse`, TCP's `tw` and FRAG's `memory`: what sockstat counts
/// per namespace (`orphan`, `alloc` and `mem` are machine-wide).
fn per_namespace_counts(sockstat: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for line in sockstat.lines() {
        let Some((proto, rest)) = line.split_once(':') else { continue };
        let words: Vec<&str> = rest.split_whitespace().collect();
        for pair in words.chunks(2) {
            if let [key, value] = pair {
                let per_namespace = matches!(*key, "used" | "inuse" | "tw")
                    || (proto.starts_with("FRAG") && *key == "memory");
                if per_namespace {
                    out.push((proto.to_owned(), (*key).to_owned(), (*value).to_owned()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_counts_only_what_is_per_namespace() {
        let text = "sockets: used 3\nTCP: inuse 1 orphan 9 tw 2 alloc 7 mem 160\nUDP: inuse 0 mem 4\n\
                    FRAG: inuse 0 memory 0\nTCP6: inuse 1\n";
        let got = per_namespace_counts(text);
        let keys: Vec<String> = got.iter().map(|(p, k, v)| format!("{p}.{k}={v}")).collect();
        assert_eq!(
            keys,
            [
                "sockets.used=3",
                "TCP.inuse=1",
                "TCP.tw=2",
                "UDP.inuse=0",
                "FRAG.inuse=0",
                "FRAG.memory=0",
                "TCP6.inuse=1"
            ]
        );
    }
}
