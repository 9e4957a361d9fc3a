//! The maker's side of a lab: whoever made the test's container (the `#[cv_test]` parent, or
//! the runner's worker) serves its lab requests. The test holds no privilege for any of it.
//! A rootless maker makes the lab inside the test's user namespace, which it owns (the switch's
//! namespace, every socket, every node's init: `sandbox::nested`); [`Maker::serve_container`]
//! takes the namespaces the container kept for it ([`Container::keep_namespaces`]).
//!
//! Before spawning the test, [`Maker::bind`] makes a unix socket in a directory the test can
//! reach (the target directory); its path goes to the test in `CVTEST_LAB_SOCKET`. Once the
//! test runs, [`Maker::serve`] hands the socket to the process's hub, one thread that polls
//! every serving maker's socket; a test that connects gets a thread for its lab, and only a peer
//! in the test's own network namespace is served (checked with `SO_PEERCRED` on every
//! connection): another test that finds the socket cannot drive this lab. Most tests never
//! connect, and then cost no thread at all. One lab at a time; when the test closes the channel (drops
//! its [`super::Lab`], or ends however it ends) every node is killed and reaped, its cgroup
//! removed, and the switch's namespace closed, which removes the bridge and every link.
//! [`Maker::finish`] (after the test's container ended) returns every node's report. If the
//! maker itself dies, its nodes die with it (their life pipes), and the switch's namespace,
//! held only by its fds, goes with them.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cvtest_spec::{NetworkSpec, TestSettings};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::wire::{FailureKind, NodeReport, NodeSpec, Program, Reply, Request, RunReport};
use super::{ENV_ADDRESS, ENV_FUNCTION, ENV_NAME, ENV_PREFIX, ENV_TEST_ADDRESS};
use crate::net::{LabPort, ShapeError, Shaping, Switch, NODE_END};
use crate::{
    error_chain, Command, Container, Isolation, KillHandle, Options, Outcome, Rootfs, Stdio, Termination,
};

/// How much of a node's stdout and of its stderr is kept.
const NODE_OUTPUT_LIMIT: usize = 256 << 10;
/// The test's end of its link, in the test's container.
const TEST_END: &str = "lab0";
/// The test's port on the switch.
const TEST_PORT: &str = "test";

/// How a lab's nodes are made: like the test's own container.
#[derive(Debug, Clone)]
pub struct NodeBase {
    /// The test binary (a node function runs in it, re-executed).
    pub exe: PathBuf,
    /// The nodes' root: the test's.
    pub rootfs: Rootfs,
    /// `false` under `CVTEST_LIMITS=off`: no cgroups for the nodes either.
    pub limits: bool,
    /// The test's own network, which a lab's subnet must not overlap.
    pub test_network: Option<NetworkSpec>,
}

/// Where a test binary's lab socket goes: `cvtest-lab/` in its cargo target directory (the
/// nearest ancestor with cargo's `CACHEDIR.TAG`), which its container can write.
pub fn socket_dir(exe: &Path) -> Option<PathBuf> {
    exe.ancestors().skip(1).find(|d| d.join("CACHEDIR.TAG").is_file()).map(|d| d.join("cvtest-lab"))
}

/// The maker for the test `cmd` will run in `container` (its socket in `dir`), with `cmd`'s
/// environment saying where it is (`CVTEST_LAB_SOCKET`), or why there is none
/// (`CVTEST_LAB_UNSUPPORTED`). One place for the three makers: the `#[cv_test]` parent, the
/// runner's worker and the nextest wrapper.
///
/// - Rootless, the container is told to keep its init's namespaces: the lab is made in the
///   test's user namespace ([`Maker::serve_container`]).
/// - A test whose root is mapped to a host user (root mode with a user namespace: under `sudo`)
///   is that user to the socket: the socket becomes theirs, or the test could not connect.
///   The maker stays real root: it makes the switch and the nodes as for any root-mode test,
///   and the nodes get the same mapping as the test.
pub fn prepare(
    container: &mut crate::Container,
    dir: Option<PathBuf>,
    cmd: &mut crate::Command,
) -> Option<Maker> {
    let maker = Maker::for_command(dir.as_deref(), cmd)?;
    finish_prepare(container, maker, cmd)
}

/// [`prepare`], with a socket that an earlier test of this caller's left in `sockets` (see
/// [`Maker::finish_keeping`]) when one in `dir` is there and still this process's: a runner's
/// worker runs its tests one after another, and each would otherwise make a socket (a `bind`
/// that creates a file in the target directory) and remove it.
pub fn prepare_reusing(
    container: &mut crate::Container,
    dir: Option<PathBuf>,
    cmd: &mut crate::Command,
    sockets: &mut Sockets,
) -> Option<Maker> {
    let maker = match dir.as_deref().and_then(|dir| sockets.take(dir)) {
        Some(kept) => {
            let maker = Maker::from_kept(kept);
            cmd.env(super::ENV_SOCKET, maker.socket_path()).env_remove(super::ENV_UNSUPPORTED);
            maker
        }
        None => Maker::for_command(dir.as_deref(), cmd)?,
    };
    finish_prepare(container, maker, cmd)
}

fn finish_prepare(container: &mut crate::Container, maker: Maker, cmd: &mut crate::Command) -> Option<Maker> {
    if container.is_rootless() {
        container.keep_namespaces();
    }
    if let Some(owner) = container.mapped_owner() {
        if let Err(e) = std::os::unix::fs::chown(maker.socket_path(), Some(owner.uid), Some(owner.gid)) {
            let why = format!(
                "its maker cannot give the lab socket {} to uid {} (the test's root): {e}",
                maker.socket_path().display(),
                owner.uid
            );
            cmd.env(super::ENV_UNSUPPORTED, why).env_remove(super::ENV_SOCKET);
            return None;
        }
    }
    Some(maker)
}

/// A lab maker for one test: its socket, registered with this process's `Hub` while it
/// serves.
#[derive(Debug)]
pub struct Maker {
    path: PathBuf,
    /// Shared with the hub's entry while serving.
    listener: Option<Arc<UnixListener>>,
    /// The socket file's device and inode when it was made: what [`Sockets`] checks before it
    /// serves another test (a test can write the target directory, so it can replace it).
    file: Option<(u64, u64)>,
    /// Its entry in the hub, once serving.
    id: Option<u64>,
    stop: Arc<AtomicBool>,
    /// Set once the test connected: its network namespace may have got a link to a switch.
    connected: Arc<AtomicBool>,
}

static NEXT_SOCKET: AtomicU32 = AtomicU32::new(0);

impl Maker {
    /// A socket in `dir` (made if missing), for the test to find in `CVTEST_LAB_SOCKET`.
    pub fn bind(dir: &Path) -> std::io::Result<Maker> {
        static SWEPT: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            // Whoever owns the target directory owns this one too: under `sudo` it stays the
            // user's (and a test of theirs may make its own maker's socket there).
            if let Some(parent) = dir.parent().and_then(|p| std::fs::metadata(p).ok()) {
                let _ = std::os::unix::fs::chown(dir, Some(parent.uid()), Some(parent.gid()));
            }
        }
        // Once per directory and process: a maker that died since is someone else's to sweep.
        if SWEPT.lock().unwrap_or_else(PoisonError::into_inner).insert(dir.to_path_buf()) {
            sweep_sockets(dir);
        }
        let n = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("lab-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        let file = std::fs::symlink_metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        Ok(Maker {
            path,
            listener: Some(Arc::new(listener)),
            file,
            id: None,
            stop: Arc::new(AtomicBool::new(false)),
            connected: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A maker for the test that `command` starts, its socket in `dir` (see [`socket_dir`]),
    /// the socket's path in the command's environment (`CVTEST_LAB_SOCKET`). `None` when no
    /// socket can be made there (say, a target directory of another user's that a rootless run
    /// may not write): then the command's `CVTEST_LAB_UNSUPPORTED` says why, and so does the
    /// test's [`super::Lab::new`].
    pub fn for_command(dir: Option<&Path>, command: &mut Command) -> Option<Maker> {
        let made = match dir {
            Some(dir) => Maker::bind(dir)
                .map_err(|e| format!("its maker cannot make the lab socket in {}: {e}", dir.display())),
            None => Err("the test binary is not in a cargo target directory (no CACHEDIR.TAG above it), where its lab socket would go".to_owned()),
        };
        match made {
            Ok(maker) => {
                command.env(super::ENV_SOCKET, maker.socket_path()).env_remove(super::ENV_UNSUPPORTED);
                Some(maker)
            }
            Err(why) => {
                command.env(super::ENV_UNSUPPORTED, why).env_remove(super::ENV_SOCKET);
                None
            }
        }
    }

    /// A maker on a socket kept from an earlier test, with nothing of that test's.
    fn from_kept(mut kept: Kept) -> Maker {
        // Taken out: the kept socket's drop then has no path to remove.
        let path = std::mem::take(&mut kept.path);
        Maker {
            path,
            listener: Some(Arc::clone(&kept.listener)),
            file: Some(kept.file),
            id: None,
            stop: Arc::new(AtomicBool::new(false)),
            connected: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The socket's path: the value of `CVTEST_LAB_SOCKET` for the test.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Serves the test whose container's init is `test_init` (a host pid) until [`Maker::finish`].
    /// A maker with root privileges only: see [`Maker::serve_container`].
    pub fn serve(&mut self, test_init: i32, base: NodeBase) {
        self.serve_test(TestSide::Root { init: test_init, netns: None }, base);
    }

    /// Serves the test in `container` (spawned) until [`Maker::finish`]. A rootless container
    /// must have been spawned after [`Container::keep_namespaces`]: the lab is made in its user
    /// namespace (see [`crate::lab`]); without them nothing is served (the test's connection is
    /// refused).
    pub fn serve_container(&mut self, container: &Container, base: NodeBase) {
        let Some(init) = container.init_pid() else { return };
        let side = if container.is_rootless() {
            match container.namespaces() {
                Some((Some(userns), netns)) => TestSide::Rootless { userns: Arc::new(userns), netns },
                // Not served: the socket is closed, the test's connection refused.
                _ => {
                    self.listener = None;
                    return;
                }
            }
        } else {
            TestSide::Root { init, netns: container.pooled_netns() }
        };
        self.serve_test(side, base);
    }

    /// Hands the socket to the hub: no thread of its own until the test connects (most tests
    /// never do, and a thread per test is a wake-up and a join at every test's end).
    fn serve_test(&mut self, side: TestSide, base: NodeBase) {
        let Some(listener) = self.listener.clone() else { return };
        let (netns, userns) = match side {
            TestSide::Root { netns: Some(fd), .. } => (fd, None),
            TestSide::Root { init, netns: None } => {
                let Ok(fd) = std::fs::File::open(format!("/proc/{init}/ns/net")).map(OwnedFd::from) else {
                    return;
                };
                (fd, None)
            }
            TestSide::Rootless { userns, netns } => (netns, Some(userns)),
        };
        let Ok(want) = nix::sys::stat::fstat(&netns).map(|m| m.st_ino) else { return };
        let Some(hub) = Hub::get() else { return };
        let entry = Entry {
            id: 0,
            listener,
            want,
            test: Arc::new(TestNs { netns, userns }),
            base: Arc::new(base),
            stop: Arc::clone(&self.stop),
            connected: Arc::clone(&self.connected),
            serving: None,
            done: Vec::new(),
        };
        self.id = Some(hub.register(entry));
    }

    /// Stops serving (the test has ended: its labs are torn down) and returns every node's
    /// report, in the order the nodes were added.
    pub fn finish(mut self) -> Vec<NodeReport> {
        self.stop_serving()
    }

    /// [`Maker::finish`], and whether the test ever connected to ask for a lab (then its
    /// network namespace may have been given a link: see
    /// [`crate::Container::mark_netns_changed`]). Read once its lab has stopped. A connection
    /// still waiting to be accepted is never served, so it made no link.
    pub fn finish_connected(mut self) -> (Vec<NodeReport>, bool) {
        let reports = self.stop_serving();
        (reports, self.connected.load(Ordering::Relaxed))
    }

    /// [`Maker::finish_connected`], keeping the socket in `sockets` for the caller's next test
    /// ([`prepare_reusing`]) instead of removing it.
    pub fn finish_keeping(mut self, sockets: &mut Sockets) -> (Vec<NodeReport>, bool) {
        let reports = self.end_serving();
        let connected = self.connected.load(Ordering::Relaxed);
        // No longer in the hub's entries. The hub may still hold the listener in the poll it
        // is woken from; it accepts on a listener only for the entry serving it, so a
        // connection queued until the next test's entry is there waits for it.
        if let (Some(listener), Some(file)) = (self.listener.take(), self.file) {
            let path = std::mem::take(&mut self.path);
            sockets.idle.push(Kept { path, listener, file });
        }
        (reports, connected)
    }

    fn stop_serving(&mut self) -> Vec<NodeReport> {
        let reports = self.end_serving();
        self.listener = None;
        remove_socket(&self.path);
        reports
    }

    /// The test has ended: its lab is torn down, and the hub no longer listens for it.
    fn end_serving(&mut self) -> Vec<NodeReport> {
        self.stop.store(true, Ordering::Relaxed);
        match (self.id.take(), Hub::get()) {
            (Some(id), Some(hub)) => hub.unregister(id),
            _ => Vec::new(),
        }
    }
}

/// Removes the socket file at `path` (whatever is there now: a file a test put at this
/// process's socket path goes too). An empty path (the socket was kept): nothing.
fn remove_socket(path: &Path) {
    if !path.as_os_str().is_empty() {
        let _ = std::fs::remove_file(path);
    }
}

/// Lab sockets whose tests have ended, kept by one caller (a runner's worker) for its next
/// tests: see [`prepare_reusing`] and [`Maker::finish_keeping`]. Dropping it removes them.
#[derive(Debug, Default)]
pub struct Sockets {
    idle: Vec<Kept>,
}

/// A socket kept between tests: listening, served by nobody.
#[derive(Debug)]
struct Kept {
    path: PathBuf,
    listener: Arc<UnixListener>,
    /// The socket file's device and inode when it was made.
    file: (u64, u64),
}

impl Sockets {
    /// A kept socket in `dir` whose file is still the one made there, its queue emptied: a
    /// connection made while no test was served (by the earlier test's processes, which are all
    /// gone now) is dropped unanswered. A socket whose file was removed or replaced (a test can
    /// write the target directory) is closed, and whatever is at its path removed.
    fn take(&mut self, dir: &Path) -> Option<Kept> {
        while let Some(at) = self.idle.iter().position(|k| k.path.parent() == Some(dir)) {
            let kept = self.idle.swap_remove(at);
            let same = std::fs::symlink_metadata(&kept.path).is_ok_and(|m| (m.dev(), m.ino()) == kept.file);
            if !same {
                continue;
            }
            while kept.listener.accept().is_ok() {}
            return Some(kept);
        }
        None
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        remove_socket(&self.path);
    }
}

impl Drop for Maker {
    fn drop(&mut self) {
        self.stop_serving();
    }
}

/// The one thread of this process that waits for lab connections, for every test's maker: it
/// polls their sockets, and starts a thread for a test's lab only when the test connects.
struct Hub {
    entries: Mutex<Vec<Entry>>,
    next: std::sync::atomic::AtomicU64,
    /// Written to wake the thread: an entry came or went, or a lab ended.
    wake: OwnedFd,
}

/// A serving maker, as the hub knows it.
struct Entry {
    id: u64,
    listener: Arc<UnixListener>,
    /// The inode of the test's network namespace: only a peer in it is served.
    want: u64,
    test: Arc<TestNs>,
    base: Arc<NodeBase>,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    /// The thread of the lab the test has open (one at a time, as it asked).
    serving: Option<JoinHandle<Vec<NodeReport>>>,
    /// The reports of its labs that ended.
    done: Vec<NodeReport>,
}

impl Hub {
    /// This process's hub, its thread started at the first call; `None` if no pipe could be made.
    fn get() -> Option<&'static Hub> {
        static HUB: std::sync::OnceLock<Option<Hub>> = std::sync::OnceLock::new();
        HUB.get_or_init(|| {
            let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
            let (woken, wake) = nix::unistd::pipe2(flags).ok()?;
            let spawned = std::thread::Builder::new().name("cvtest-lab-hub".to_owned()).spawn(move || {
                // Blocks until this initialization has returned.
                if let Some(hub) = Hub::get() {
                    hub.run(&woken);
                }
            });
            spawned.ok()?;
            Some(Hub { entries: Mutex::new(Vec::new()), next: std::sync::atomic::AtomicU64::new(1), wake })
        })
        .as_ref()
    }

    fn register(&self, mut entry: Entry) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        entry.id = id;
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
        self.poke();
        id
    }

    /// Removes the entry `id`; waits for its open lab to be torn down (its stop flag is set);
    /// returns the reports of all its labs.
    fn unregister(&self, id: u64) -> Vec<NodeReport> {
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.iter().position(|e| e.id == id).map(|at| entries.swap_remove(at))
        };
        self.poke();
        let Some(mut entry) = entry else { return Vec::new() };
        if let Some(serving) = entry.serving.take() {
            entry.done.extend(serving.join().unwrap_or_default());
        }
        entry.done
    }

    fn poke(&self) {
        let _ = nix::unistd::write(&self.wake, &[1]);
    }

    fn run(&self, woken: &OwnedFd) {
        loop {
            // The sockets of tests with no lab open; ended labs joined.
            let listening: Vec<Arc<UnixListener>> = {
                let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
                for e in entries.iter_mut() {
                    if e.serving.as_ref().is_some_and(JoinHandle::is_finished) {
                        let ended = e.serving.take().map(|t| t.join().unwrap_or_default());
                        e.done.extend(ended.unwrap_or_default());
                    }
                }
                entries.iter().filter(|e| e.serving.is_none()).map(|e| Arc::clone(&e.listener)).collect()
            };
            let mut fds = vec![PollFd::new(woken.as_fd(), PollFlags::POLLIN)];
            fds.extend(listening.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)));
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue; // EINTR
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            if ready[0] {
                let mut buf = [0u8; 64];
                while nix::unistd::read(woken.as_fd(), &mut buf).is_ok_and(|n| n > 0) {}
            }
            for (listener, _) in listening.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
                self.accept(listener);
            }
        }
    }

    /// A connection waits on `listener`: accepted for the entry that serves it now, and given its
    /// lab's thread if the peer is that entry's test. A listener no entry serves (its test has
    /// ended, and the socket is kept for the next: [`Sockets`]) is left alone: whatever is
    /// queued there waits for the next entry, which the hub's next poll includes.
    fn accept(&self, listener: &Arc<UnixListener>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(e) = entries.iter_mut().find(|e| Arc::ptr_eq(&e.listener, listener)) else { return };
        if e.serving.is_some() {
            return;
        }
        let Ok((stream, _)) = listener.accept() else { return };
        if !peer_in_netns(&stream, e.want) {
            return; // not the test: dropped unanswered
        }
        e.connected.store(true, Ordering::Relaxed);
        let (stop, test, base) = (Arc::clone(&e.stop), Arc::clone(&e.test), Arc::clone(&e.base));
        e.serving = Some(std::thread::spawn(move || {
            let reports = serve_lab(stream, &stop, &test, &base);
            // The hub listens to this test's socket again (a next lab), and joins this thread.
            if let Some(hub) = Hub::get() {
                hub.poke();
            }
            reports
        }));
    }
}

/// The test a maker serves.
#[derive(Debug)]
enum TestSide {
    /// A maker with root privileges: the test's namespaces are its init's (its network
    /// namespace already open when it is a pooled one).
    Root { init: i32, netns: Option<OwnedFd> },
    /// A rootless maker: the test's user namespace (where the lab is made) and network
    /// namespace, opened at spawn.
    Rootless { userns: Arc<OwnedFd>, netns: OwnedFd },
}

/// Removes the sockets of makers that died without removing theirs (SIGKILLed): `lab-<pid>-*`
/// whose pid is gone. (A pid reused since is only a socket left a little longer.)
fn sweep_sockets(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) =
            name.to_str().and_then(|n| n.strip_prefix("lab-")?.split('-').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The test's network namespace, and with a rootless maker its user namespace (the lab's).
struct TestNs {
    netns: OwnedFd,
    userns: Option<Arc<OwnedFd>>,
}

/// Whether the process at the other end of `stream` is in the network namespace `ino` (the
/// test's container's).
fn peer_in_netns(stream: &UnixStream, ino: u64) -> bool {
    let Ok(cred) = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials) else {
        return false;
    };
    std::fs::metadata(format!("/proc/{}/ns/net", cred.pid())).is_ok_and(|m| m.ino() == ino)
}

/// One lab: requests until the test closes the channel (or the maker stops), then teardown.
fn serve_lab(stream: UnixStream, stop: &AtomicBool, test: &TestNs, base: &NodeBase) -> Vec<NodeReport> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(mut writer) = stream.try_clone() else { return Vec::new() };
    let mut reader = BufReader::new(stream);
    let mut lab: Option<LabState> = None;
    // The reports of a lab closed on request (the channel may go on, unused).
    let mut closed = Vec::new();
    let mut line = String::new();
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.ends_with('\n') => {
                let reply = match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Close) => {
                        let nodes = lab.take().map(LabState::teardown).unwrap_or_default();
                        closed.extend(nodes.iter().cloned());
                        Reply::Reports { nodes }
                    }
                    Ok(request) => handle(&mut lab, request, test, base),
                    Err(e) => refused(format!("not a lab request: {e}")),
                };
                line.clear();
                let mut out = serde_json::to_string(&reply).expect("replies serialize");
                out.push('\n');
                if writer.write_all(out.as_bytes()).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    closed.extend(lab.map(LabState::teardown).unwrap_or_default());
    closed
}

fn refused(message: String) -> Reply {
    Reply::Failed { kind: FailureKind::Request, message }
}

fn system(message: String) -> Reply {
    Reply::Failed { kind: FailureKind::System, message }
}

fn handle(lab: &mut Option<LabState>, request: Request, test: &TestNs, base: &NodeBase) -> Reply {
    if let Request::Open { subnet } = request {
        if lab.is_some() {
            return refused("this test already has a lab open; drop it before opening another".to_owned());
        }
        return match LabState::open(subnet.as_deref(), test, base) {
            Ok(state) => {
                let reply = Reply::Opened {
                    network: Ipv4Addr::from(state.network),
                    prefix: state.prefix,
                    test_address: state.test_address,
                };
                *lab = Some(state);
                reply
            }
            Err(reply) => reply,
        };
    }
    let Some(state) = lab.as_mut() else {
        return refused("no lab is open".to_owned());
    };
    let result = match request {
        Request::Open { .. } | Request::Close => unreachable!("handled above"),
        Request::AddNode { spec } => state.add(spec, base),
        Request::Partition { from, to, both } => state.partition(&from, &to, both),
        Request::Heal => {
            state.cuts.clear();
            state.apply_cuts().map(|()| Reply::Done)
        }
        Request::Kill { node } => state.kill(&node),
        Request::Restart { node } => state.restart(&node, base),
        Request::Impair { node, delay_us, jitter_us, loss_ppm, rate_bps } => {
            let shaping = Shaping {
                delay: Duration::from_micros(delay_us),
                jitter: Duration::from_micros(jitter_us),
                loss: f64::from(loss_ppm) / 1e6,
                rate: rate_bps,
            };
            state.impair(&node, shaping)
        }
        Request::Reports => Ok(Reply::Reports { nodes: state.reports() }),
    };
    result.unwrap_or_else(|reply| reply)
}

/// One open lab.
struct LabState {
    switch: Arc<Mutex<Switch>>,
    /// A rootless maker's: the test's user namespace, where every node is made.
    userns: Option<Arc<OwnedFd>>,
    network: u32,
    prefix: u8,
    test_address: Ipv4Addr,
    nodes: Vec<NodeState>,
    /// (from, to): what `from` sends to `to` is dropped. Names, `test` for the test.
    cuts: BTreeSet<(String, String)>,
    /// Ports that have a partition program (so a heal clears them).
    filtered: BTreeSet<String>,
}

struct NodeState {
    spec: NodeSpec,
    address: Ipv4Addr,
    port: String,
    options: Options,
    timeout: Option<Duration>,
    shaping: Shaping,
    runs: Vec<RunReport>,
    current: Option<NodeRun>,
}

/// A node's container, running on a thread of its own (create, spawn, wait, destroy).
struct NodeRun {
    kill: KillHandle,
    init_pid: i32,
    /// Its network namespace, opened at spawn (a rootless maker's: it may not open it later).
    netns: Option<OwnedFd>,
    /// 0: ran its course; 1: killed on request; 2: stopped with the lab.
    ended_by: Arc<AtomicU8>,
    thread: JoinHandle<RunReport>,
}

const BY_REQUEST: u8 = 1;
const WITH_LAB: u8 = 2;

type Answer = Result<Reply, Reply>;

impl LabState {
    fn open(subnet: Option<&str>, test: &TestNs, base: &NodeBase) -> Result<LabState, Reply> {
        let (network, prefix) = match subnet {
            Some(s) => parse_subnet(s).map_err(refused)?,
            None => {
                let first = (u32::from(Ipv4Addr::new(10, 254, 0, 0)), 24);
                let second = (u32::from(Ipv4Addr::new(10, 253, 0, 0)), 24);
                match base.test_network {
                    Some(net) if overlaps(first, &net) => second,
                    _ => first,
                }
            }
        };
        if let Some(net) = base.test_network.filter(|net| overlaps((network, prefix), net)) {
            return Err(refused(format!(
                "the lab's subnet {}/{prefix} overlaps the test's own network {net}; pick another",
                Ipv4Addr::from(network)
            )));
        }
        let switch = match &test.userns {
            None => Switch::create(),
            Some(userns) => Switch::create_in(Arc::clone(userns)),
        };
        let mut switch = switch.map_err(|e| system(format!("making the switch: {}", error_chain(&e))))?;
        let test_address = Ipv4Addr::from(network + 1);
        switch
            .attach(test.netns.as_fd(), TEST_PORT, TEST_END, test_address, prefix)
            .map_err(|e| system(format!("linking the test to the switch: {}", error_chain(&e))))?;
        Ok(LabState {
            switch: Arc::new(Mutex::new(switch)),
            userns: test.userns.clone(),
            network,
            prefix,
            test_address,
            nodes: Vec::new(),
            cuts: BTreeSet::new(),
            filtered: BTreeSet::new(),
        })
    }

    /// What starting a node needs of the lab.
    fn for_start(&self) -> StartIn {
        StartIn {
            switch: Arc::clone(&self.switch),
            userns: self.userns.clone(),
            prefix: self.prefix,
            test_address: self.test_address,
        }
    }

    fn node(&mut self, name: &str) -> Result<&mut NodeState, Reply> {
        self.nodes
            .iter_mut()
            .find(|n| n.spec.name == name)
            .ok_or_else(|| refused(format!("no node named {name:?} in this lab")))
    }

    fn add(&mut self, spec: NodeSpec, base: &NodeBase) -> Answer {
        let name = &spec.name;
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && name != TEST_PORT;
        if !valid {
            return Err(refused(format!(
                "a node's name is its hostname: 1 to 32 letters, digits or '-', and not {TEST_PORT:?} ({name:?})"
            )));
        }
        if self.nodes.iter().any(|n| &n.spec.name == name) {
            return Err(refused(format!("there is already a node named {name:?}")));
        }
        let size = 1u32 << (32 - u32::from(self.prefix));
        let host_of = |a: Ipv4Addr| u32::from(a).wrapping_sub(self.network);
        let taken: BTreeSet<u32> = self.nodes.iter().map(|n| host_of(n.address)).chain([1]).collect();
        let host = match spec.address {
            Some(a) => {
                let h = host_of(a);
                if h == 0 || h >= size - 1 || taken.contains(&h) {
                    return Err(refused(format!("{a} is not a free node address of this lab's subnet")));
                }
                h
            }
            None => (2..size - 1)
                .find(|h| !taken.contains(h))
                .ok_or_else(|| refused("the lab's subnet is full".to_owned()))?,
        };
        let address = Ipv4Addr::from(self.network + host);
        let (options, timeout) = node_options(&spec, base).map_err(refused)?;
        let node = NodeState {
            spec,
            address,
            port: format!("n{host}"),
            options,
            timeout,
            shaping: Shaping::default(),
            runs: Vec::new(),
            current: None,
        };
        self.nodes.push(node);
        let lab = self.for_start();
        let node = self.nodes.last_mut().expect("just pushed");
        match start(node, &lab, base) {
            Ok(()) => Ok(Reply::NodeAdded { address }),
            Err(message) => {
                self.nodes.pop();
                Err(system(message))
            }
        }
    }

    fn port_of(&self, name: &str) -> Option<(String, Ipv4Addr)> {
        if name == TEST_PORT {
            return Some((TEST_PORT.to_owned(), self.test_address));
        }
        self.nodes.iter().find(|n| n.spec.name == name).map(|n| (n.port.clone(), n.address))
    }

    fn partition(&mut self, from: &[String], to: &[String], both: bool) -> Answer {
        for name in from.iter().chain(to) {
            if self.port_of(name).is_none() {
                return Err(refused(format!(
                    "no node named {name:?} in this lab (the test is {TEST_PORT:?})"
                )));
            }
        }
        for a in from {
            for b in to {
                if a != b {
                    self.cuts.insert((a.clone(), b.clone()));
                    if both {
                        self.cuts.insert((b.clone(), a.clone()));
                    }
                }
            }
        }
        self.apply_cuts().map(|()| Reply::Done)
    }

    /// Every port's program from the cuts (a port without cuts that had a program gets an
    /// empty one).
    fn apply_cuts(&mut self) -> Result<(), Reply> {
        let mut members: Vec<String> = vec![TEST_PORT.to_owned()];
        members.extend(self.nodes.iter().map(|n| n.spec.name.clone()));
        for name in members {
            self.apply_cuts_of(&name)?;
        }
        Ok(())
    }

    fn apply_cuts_of(&mut self, name: &str) -> Result<(), Reply> {
        let Some((port, _)) = self.port_of(name) else { return Ok(()) };
        // A cut (from, to) is enforced on to's port: it drops what comes from `from`.
        let blocked: Vec<Ipv4Addr> = self
            .cuts
            .iter()
            .filter(|(_, to)| to == name)
            .filter_map(|(from, _)| self.port_of(from).map(|(_, a)| a))
            .collect();
        if blocked.is_empty() && !self.filtered.contains(&port) {
            return Ok(());
        }
        let running =
            name == TEST_PORT || self.nodes.iter().any(|n| n.spec.name == name && n.current.is_some());
        if !running {
            return Ok(()); // applied when it starts again
        }
        let mut switch = self.switch.lock().unwrap_or_else(PoisonError::into_inner);
        switch
            .set_blocked(&port, &blocked)
            .map_err(|e| system(format!("cutting {name}'s link: {}", error_chain(&e))))?;
        self.filtered.insert(port);
        Ok(())
    }

    fn kill(&mut self, name: &str) -> Answer {
        let switch = Arc::clone(&self.switch);
        let node = self.node(name)?;
        stop(node, BY_REQUEST, &switch);
        let port = node.port.clone();
        self.filtered.remove(&port);
        Ok(Reply::Done)
    }

    fn restart(&mut self, name: &str, base: &NodeBase) -> Answer {
        let lab = self.for_start();
        let node = self.node(name)?;
        stop(node, BY_REQUEST, &lab.switch);
        let port = node.port.clone();
        start(node, &lab, base).map_err(system)?;
        let shaping = node.shaping;
        self.filtered.remove(&port);
        self.apply_cuts_of(name)?;
        if shaping != Shaping::default() {
            self.impair(name, shaping)?;
        }
        Ok(Reply::Done)
    }

    fn impair(&mut self, name: &str, shaping: Shaping) -> Answer {
        let switch = Arc::clone(&self.switch);
        let node = self.node(name)?;
        let Some(run) = &node.current else {
            return Err(refused(format!("node {name:?} is not running (restart it first)")));
        };
        let netns = match &run.netns {
            Some(fd) => fd.try_clone(),
            None => std::fs::File::open(format!("/proc/{}/ns/net", run.init_pid)).map(OwnedFd::from),
        }
        .map_err(|e| system(format!("opening node {name:?}'s network namespace: {e}")))?;
        let mut switch = switch.lock().unwrap_or_else(PoisonError::into_inner);
        match switch.shape(&node.port, netns.as_fd(), NODE_END, &shaping) {
            Ok(()) => {
                node.shaping = shaping;
                Ok(Reply::Done)
            }
            Err(e @ ShapeError::Missing { .. }) => {
                Err(Reply::Failed { kind: FailureKind::KernelFeature, message: e.to_string() })
            }
            Err(ShapeError::Net(e)) => Err(system(format!("impairing {name}'s link: {}", error_chain(&e)))),
        }
    }

    /// Every node's runs; a run that has ended is collected first.
    fn reports(&mut self) -> Vec<NodeReport> {
        for node in &mut self.nodes {
            if node.current.as_ref().is_some_and(|run| run.thread.is_finished()) {
                stop(node, 0, &self.switch);
            }
        }
        self.nodes
            .iter()
            .map(|n| {
                let mut runs = n.runs.clone();
                if n.current.is_some() {
                    runs.push(running_report());
                }
                NodeReport { name: n.spec.name.clone(), address: n.address, runs }
            })
            .collect()
    }

    /// Stops every node (removing its link), removes the test's link, then lets the switch go
    /// (its namespace and bridge with it).
    fn teardown(mut self) -> Vec<NodeReport> {
        // Every node killed first, then each reaped: their teardowns overlap. Their links go
        // with the switch's namespace, all in one kernel cleanup (deleting each here would
        // wait ~30 ms per link).
        for node in &self.nodes {
            if let Some(run) = node.current.as_ref().filter(|r| !r.thread.is_finished()) {
                run.ended_by.store(WITH_LAB, Ordering::SeqCst);
                run.kill.kill();
            }
        }
        for node in &mut self.nodes {
            if let Some(run) = node.current.take() {
                node.runs.push(collect(run));
            }
        }
        // The test's end would go with the switch's namespace, but asynchronously: a next lab
        // of the same test needs its name now.
        let _ = self.switch.lock().unwrap_or_else(PoisonError::into_inner).detach(TEST_PORT);
        self.nodes
            .into_iter()
            .map(|n| NodeReport { name: n.spec.name, address: n.address, runs: n.runs })
            .collect()
    }
}

fn running_report() -> RunReport {
    RunReport {
        outcome: "running".to_owned(),
        ok: true,
        oom: false,
        pids_limit_hit: false,
        peak_memory_bytes: None,
        peak_pids: None,
        cpu_ms: None,
        duration_ms: 0,
        usage: String::new(),
        stdout: String::new(),
        stderr: String::new(),
    }
}

/// The node's container options and timeout from its settings (like a test's).
fn node_options(spec: &NodeSpec, base: &NodeBase) -> Result<(Options, Option<Duration>), String> {
    let mut settings = TestSettings::default();
    let mut host = None;
    for (key, value) in &spec.settings {
        if matches!(key.as_str(), "network" | "host" | "host_access" | "hostname") {
            return Err(format!(
                "node {:?}: {key} is not a node setting (a node's network is the lab's, its hostname its name)",
                spec.name
            ));
        }
        settings
            .set(key, value, &mut host)
            .map_err(|e| format!("node {:?}: {key} = {value:?}: {e}", spec.name))?;
    }
    let mut options = Options::for_test(&settings).map_err(|e| format!("node {:?}: {e}", spec.name))?;
    options.set_rootfs(base.rootfs.clone());
    options.set_hostname(&spec.name).map_err(|e| format!("node {:?}: {e}", spec.name))?;
    if !base.limits {
        options.set_isolation(
            Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC,
        );
    }
    Ok((options, settings.timeout))
}

/// What starting a node needs of its lab.
struct StartIn {
    switch: Arc<Mutex<Switch>>,
    userns: Option<Arc<OwnedFd>>,
    prefix: u8,
    test_address: Ipv4Addr,
}

/// Starts a run of `node`: its container is made, linked and spawned on a thread of its own,
/// which then waits for it; returns once the command runs (or could not start).
fn start(node: &mut NodeState, lab: &StartIn, base: &NodeBase) -> Result<(), String> {
    let (prefix, test_address) = (lab.prefix, lab.test_address);
    let rootless = lab.userns.is_some();
    let port = LabPort {
        switch: Arc::clone(&lab.switch),
        port: node.port.clone(),
        address: node.address,
        prefix,
        userns: lab.userns.clone(),
    };
    let mut command = match &node.spec.program {
        Program::Function(f) => {
            let mut c = Command::new(&base.exe);
            c.env(ENV_FUNCTION, f);
            c
        }
        Program::Binary(path) => Command::new(path),
    };
    command
        .args(&node.spec.args)
        .env(ENV_NAME, &node.spec.name)
        .env(ENV_ADDRESS, node.address.to_string())
        .env(ENV_PREFIX, prefix.to_string())
        .env(ENV_TEST_ADDRESS, test_address.to_string())
        .env_remove(super::ENV_SOCKET)
        .env_remove(cvtest_spec::ENV_LIST_SETTINGS)
        .stdout(Stdio::Capture { limit: NODE_OUTPUT_LIMIT })
        .stderr(Stdio::Capture { limit: NODE_OUTPUT_LIMIT });
    for (k, v) in &node.spec.env {
        command.env(k, v);
    }
    let (options, timeout, name) = (node.options.clone(), node.timeout, node.spec.name.clone());
    let ended_by = Arc::new(AtomicU8::new(0));
    let ended = Arc::clone(&ended_by);
    let (tx, rx) = mpsc::channel::<Result<(KillHandle, i32, Option<OwnedFd>), String>>();
    let thread = std::thread::spawn(move || {
        let started = Instant::now();
        let failed = |message: String| RunReport { outcome: message, ok: false, ..running_report() };
        let mut container = match Container::create(&options) {
            Ok(c) => c,
            Err(e) => {
                let message = format!("node {name:?}: could not create its container: {}", error_chain(&e));
                let _ = tx.send(Err(message.clone()));
                return failed(message);
            }
        };
        container.set_lab_port(port);
        if rootless {
            container.keep_namespaces();
        }
        if let Err(e) = container.spawn(&command) {
            let message = format!("node {name:?}: could not start: {}", error_chain(&e));
            let _ = tx.send(Err(message.clone()));
            return failed(message);
        }
        let pid = container.init_pid().expect("spawned");
        let netns = container.namespaces().map(|(_, net)| net);
        let _ = tx.send(Ok((container.kill_handle(), pid, netns)));
        let report = match container.wait(timeout) {
            Ok(outcome) => run_report(&outcome, options.limits(), ended.load(Ordering::SeqCst), timeout),
            Err(e) => failed(format!("lost: {}", error_chain(&e))),
        };
        let _ = container.destroy();
        let _ = started;
        report
    });
    match rx.recv() {
        Ok(Ok((kill, init_pid, netns))) => {
            node.current = Some(NodeRun { kill, init_pid, netns, ended_by, thread });
            Ok(())
        }
        Ok(Err(message)) => {
            if let Ok(report) = thread.join() {
                node.runs.push(report);
            }
            Err(message)
        }
        Err(_) => Err(format!("node {:?}: its thread ended before it started", node.spec.name)),
    }
}

/// Ends the node's current run (SIGKILL unless it already ended), keeps its report, and removes
/// its link at once (its namespace would take it, asynchronously).
fn stop(node: &mut NodeState, why: u8, switch: &Arc<Mutex<Switch>>) {
    if let Some(run) = node.current.take() {
        if !run.thread.is_finished() {
            run.ended_by.store(why, Ordering::SeqCst);
            run.kill.kill();
        }
        node.runs.push(collect(run));
    }
    let _ = switch.lock().unwrap_or_else(PoisonError::into_inner).detach(&node.port);
}

/// Waits for a run's thread (its container reaped and destroyed): its report.
fn collect(run: NodeRun) -> RunReport {
    run.thread.join().unwrap_or_else(|_| RunReport {
        outcome: "its thread panicked".to_owned(),
        ok: false,
        ..running_report()
    })
}

fn run_report(
    outcome: &Outcome,
    limits: &crate::Limits,
    ended_by: u8,
    timeout: Option<Duration>,
) -> RunReport {
    let oom = matches!(outcome.termination, Termination::OomKilled);
    let (text, ok) = match (ended_by, outcome.termination) {
        (BY_REQUEST, Termination::Signaled(9)) => ("killed by the lab".to_owned(), true),
        (WITH_LAB, Termination::Signaled(9)) => ("stopped at the end of the lab".to_owned(), true),
        (_, Termination::Exited(0)) => ("exited 0".to_owned(), true),
        (_, Termination::Exited(code)) => (format!("exited {code}"), false),
        (_, Termination::Signaled(s)) => (format!("killed by signal {s}"), false),
        (_, Termination::OomKilled) => ("killed: out of memory".to_owned(), false),
        (_, Termination::TimedOut) => (
            format!(
                "timed out after {}",
                timeout.map_or_else(|| "its timeout".to_owned(), cvtest_spec::format_duration)
            ),
            false,
        ),
    };
    let text = if outcome.pids_limit_hit { format!("{text} (after reaching its pids limit)") } else { text };
    let cpu = match (outcome.peaks.cpu_user, outcome.peaks.cpu_system) {
        (Some(u), Some(s)) => Some((u + s).as_millis() as u64),
        _ => None,
    };
    RunReport {
        outcome: text,
        ok,
        oom,
        pids_limit_hit: outcome.pids_limit_hit,
        peak_memory_bytes: outcome.peaks.memory_bytes.map(|m| m.value),
        peak_pids: outcome.peaks.pids.map(|p| p.value),
        cpu_ms: cpu,
        duration_ms: outcome.duration.as_millis() as u64,
        usage: crate::__private::usage(outcome, limits),
        stdout: String::from_utf8_lossy(&outcome.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&outcome.stderr).into_owned(),
    }
}

/// `a.b.c.d/len`, len 8..=30, the address being the network's.
fn parse_subnet(s: &str) -> Result<(u32, u8), String> {
    let bad =
        || format!("lab subnet {s:?}: expected a network as a.b.c.d/len with len 8 to 30 (or \"auto\")");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&len) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - u32::from(len));
    if u32::from(addr) & !mask != 0 {
        return Err(format!(
            "lab subnet {s:?}: host bits are set; the network is {}/{len}",
            Ipv4Addr::from(u32::from(addr) & mask)
        ));
    }
    Ok((u32::from(addr), len))
}

fn overlaps((network, prefix): (u32, u8), net: &NetworkSpec) -> bool {
    let len = prefix.min(net.prefix_len());
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    network & mask == u32::from(net.network()) & mask
}

/// The nodes' reports as the test's output shows them: a line per run, then its output.
pub fn render(reports: &[NodeReport]) -> String {
    let mut out = String::new();
    for node in reports {
        for (i, run) in node.runs.iter().enumerate() {
            let nth = if node.runs.len() > 1 { format!(" run {}", i + 1) } else { String::new() };
            out.push_str(&format!("cvtest: lab node {} ({}){nth}: {}", node.name, node.address, run.outcome));
            if !run.usage.is_empty() {
                out.push_str(&format!("; {}", run.usage));
            }
            out.push('\n');
            for line in run.stdout.lines().chain(run.stderr.lines()) {
                out.push_str(&format!("[{}] {line}\n", node.name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_render_a_line_per_run_then_its_output() {
        let run = |outcome: &str, stdout: &str| RunReport {
            outcome: outcome.to_owned(),
            usage: "peak memory 1.0 MiB (limit 64 MiB)".to_owned(),
            stdout: stdout.to_owned(),
            ..running_report()
        };
        let reports = [
            NodeReport {
                name: "a".into(),
                address: Ipv4Addr::new(10, 254, 0, 2),
                runs: vec![run("exited 0", "hi\n")],
            },
            NodeReport {
                name: "b".into(),
                address: Ipv4Addr::new(10, 254, 0, 3),
                runs: vec![run("killed by the lab", ""), run("stopped at the end of the lab", "")],
            },
        ];
        assert_eq!(
            render(&reports),
            "cvtest: lab node a (10.254.0.2): exited 0; peak memory 1.0 MiB (limit 64 MiB)\n[a] hi\n\
             cvtest: lab node b (10.254.0.3) run 1: killed by the lab; peak memory 1.0 MiB (limit 64 MiB)\n\
             cvtest: lab node b (10.254.0.3) run 2: stopped at the end of the lab; peak memory 1.0 MiB (limit 64 MiB)\n"
        );
    }

    #[test]
    fn subnets_parse() {
        assert_eq!(parse_subnet("10.77.0.0/24"), Ok((u32::from(Ipv4Addr::new(10, 77, 0, 0)), 24)));
        assert!(parse_subnet("10.77.0.1/24").unwrap_err().contains("host bits"));
        assert!(parse_subnet("10.77.0.0/31").is_err());
        assert!(parse_subnet("10.77.0.0").is_err());
        let net: NetworkSpec = "10.254.0.2/30".parse().unwrap();
        assert!(overlaps(parse_subnet("10.254.0.0/24").unwrap(), &net));
        assert!(!overlaps(parse_subnet("10.253.0.0/24").unwrap(), &net));
    }
}
