//! A thread of this process that does containers' housekeeping ahead of need and behind them,
//! off the path from one container to the next ([`crate::Options::set_background`]; on in
//! `cargo cvtest`).
//!
//! - **Ahead**: making a container's cgroup is a `mkdir` per hierarchy (cgroup v1: four here),
//!   0.1-0.3 ms. The thread keeps one more cgroup made than containers are running, of each kind
//!   asked for; a container takes one and writes its own limits into it.
//! - **Behind**: once a container's destroy has emptied its cgroup (every process of the
//!   container is gone: [`crate::cgroup::Cgroup::kill_all`] checked), the `rmdir`s are the
//!   thread's; so is the check that decides whether a pooled network namespace goes back to the
//!   pool (entering it and reading five files of `/proc/net`).
//! - **Behind**, on cgroup v1: the emptied cgroup of a confined container is recycled instead
//!   of removed, when the kernel lets its counters start again ([`Cgroup::recycle`]; up to
//!   [`MAX_READY`] of a kind), and the next container whose memory limit is at least
//!   [`REUSE_MIN_MEMORY`] takes it before one made ahead: no `mkdir`, no `rmdir`, and only the
//!   limits that differ are written. Its memory and CPU controllers' state is most of what
//!   making and removing a cgroup costs (the memory one's per-CPU statistics, its offlining on
//!   a kworker). `CVTEST_CGROUP_REUSE=0` turns it off.
//! - **Ahead**, too: after a container took a pooled network namespace, a new one when the pool
//!   has none made ahead ([`crate::net::pool::top_up`]); after a container with a veth was
//!   created, a veth pair in a new namespace for the next one
//!   ([`crate::net::pool::top_up_ready_veth`]; [`drain`] deletes one not taken).
//!
//! Nothing of a container outlives its destroy but an empty directory or a namespace no process
//! is in. The work is the same, on another thread: what changes is the latency of create and
//! destroy, and how the kernel's cgroup work overlaps the tests'.
//!
//! [`drain`] finishes every job, removes the cgroups made and not taken, and stops the thread:
//! [`crate::release_own_cgroup`] calls it, which a runner calls at the end of a run. A process that
//! exits without it (or is killed) leaves empty cgroups named as its own, which the next cvtest
//! run's sweep removes, as after a SIGKILL. The thread starts again on the next take.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::cgroup::{Cgroup, CgroupError, Hierarchy, Made};
use crate::options::Limits;

/// At most this many cgroups of a kind are kept made ahead, and as many recycled.
const MAX_READY: usize = 8;

/// Whether `CVTEST_BACKGROUND` leaves the thread on (anything but `0`, `off`, `false`).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| !matches!(std::env::var(crate::BACKGROUND_ENV).as_deref(), Ok("0" | "off" | "false")))
}

/// Whether `CVTEST_CGROUP_REUSE` leaves the reuse of cgroups on (anything but `0`, `off`, `false`).
fn reuse_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(std::env::var(crate::CGROUP_REUSE_ENV).as_deref(), Ok("0" | "off" | "false"))
    })
}

/// A container whose memory limit is below this gets a new cgroup, never a recycled one: what
/// the kernel may still have charged to a recycled one (up to 1 MiB, see `Cgroup::recycle`)
/// would be a noticeable part of its limit.
const REUSE_MIN_MEMORY: u64 = 64 << 20;

/// Whether a container with `limits` may have a recycled cgroup.
fn may_reuse(limits: &Limits) -> bool {
    match limits.memory {
        cvtest_spec::MemoryLimit::Max => true,
        cvtest_spec::MemoryLimit::Bytes(b) => b >= REUSE_MIN_MEMORY,
    }
}

/// Work for the thread, in order.
enum Job {
    /// An empty cgroup to remove; with its kind when it may be recycled instead.
    Remove(Box<dyn Cgroup>, Option<bool>),
    /// Anything else a container left to do (a pooled namespace's check).
    Run(Box<dyn FnOnce() + Send>),
}

#[derive(Default)]
struct State {
    /// The hierarchy the thread makes cgroups in (the process's one, detected once).
    hierarchy: Option<&'static Hierarchy>,
    /// Made and not taken, with their kind (`freezer`: a directory in the v1 freezer hierarchy
    /// too, for a container without a PID namespace).
    ready: Vec<(bool, Made)>,
    /// Recycled for another container ([`Cgroup::recycle`]), with their kind.
    used: Vec<(bool, Box<dyn Cgroup>)>,
    jobs: VecDeque<Job>,
    /// Taken and not retired yet, per kind (`[no freezer, freezer]`).
    live: [usize; 2],
    /// The kinds containers asked for since the last drain: only those are made ahead.
    asked: [bool; 2],
    /// The thread is running (it exits when drained).
    thread: bool,
    /// Finish the jobs, make nothing more, exit.
    draining: bool,
    /// Making failed in the background: containers make their own (and see the error).
    make_failed: bool,
    /// Removals that failed in the background, for [`drain`] to report.
    errors: Vec<CgroupError>,
}

struct Shared {
    state: Mutex<State>,
    /// A job, or a take that left fewer cgroups ready than wanted.
    work: Condvar,
    /// The thread exited.
    exited: Condvar,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        state: Mutex::new(State::default()),
        work: Condvar::new(),
        exited: Condvar::new(),
    })
}

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cgroup with `limits`: one an earlier container had, recycled by the thread (only when the
/// memory limit is large enough, see [`REUSE_MIN_MEMORY`]), else one the thread made ahead, else
/// one made now. Either way the thread is asked to have the next one ready.
pub(crate) fn take_cgroup(
    h: &'static Hierarchy,
    limits: &Limits,
    freezer: bool,
) -> Result<Box<dyn Cgroup>, CgroupError> {
    let s = shared();
    let taken = {
        let mut st = lock(s);
        let kind = usize::from(freezer);
        st.asked[kind] = true;
        st.live[kind] += 1;
        st.hierarchy.get_or_insert(h);
        let used = match may_reuse(limits) {
            true => st.used.iter().position(|(f, _)| *f == freezer).map(|i| st.used.swap_remove(i).1),
            false => None,
        };
        let made = match used {
            Some(_) => None,
            None => st.ready.iter().position(|(f, _)| *f == freezer).map(|i| st.ready.swap_remove(i).1),
        };
        if !st.draining && !st.make_failed && start(s, &mut st) {
            s.work.notify_one();
        }
        (used, made)
    };
    let configured = match taken {
        (Some(cg), _) => match cg.apply_limits(limits) {
            Ok(()) => Ok(cg),
            // Limits a recycled cgroup took no longer (its kernel state is not known): a new one.
            Err(_) => {
                let mut cg = cg;
                let _ = cg.destroy();
                h.make(freezer).and_then(|m| m.configure(limits))
            }
        },
        (None, Some(m)) => m.configure(limits),
        (None, None) => h.make(freezer).and_then(|m| m.configure(limits)),
    };
    if configured.is_err() {
        forget_cgroup(freezer);
    }
    configured
}

/// Leaves an empty cgroup (its container destroyed) to the thread, which recycles it for
/// another container when `recycle` and the kernel allow (see [`Cgroup::recycle`]), else
/// removes it; without a running thread (drained meanwhile), removes it here.
pub(crate) fn retire_cgroup(
    cgroup: Box<dyn Cgroup>,
    freezer: bool,
    recycle: bool,
) -> Result<(), CgroupError> {
    forget_cgroup(freezer);
    let kind = (recycle && reuse_enabled()).then_some(freezer);
    match queue(Job::Remove(cgroup, kind)) {
        Some(Job::Remove(mut cgroup, _)) => cgroup.destroy(),
        Some(Job::Run(_)) | None => Ok(()),
    }
}

/// A cgroup taken with [`take_cgroup`] that is not retired (its owner destroys it, or it was
/// never configured).
pub(crate) fn forget_cgroup(freezer: bool) {
    let mut st = lock(shared());
    let kind = usize::from(freezer);
    st.live[kind] = st.live[kind].saturating_sub(1);
}

/// Runs `job` on the thread if it is running, else here and now.
pub(crate) fn defer(job: impl FnOnce() + Send + 'static) {
    if let Some(Job::Run(job)) = queue(Job::Run(Box::new(job))) {
        job();
    }
}

/// Returns once every job queued before it is done (at once without a running thread).
pub(crate) fn settle() {
    let (done, finished) = std::sync::mpsc::channel();
    defer(move || {
        let _ = done.send(());
    });
    let _ = finished.recv();
}

/// Runs `job` on the thread if it is running, else not at all: work ahead of need that the
/// caller would otherwise do itself when it needs it.
pub(crate) fn ahead(job: impl FnOnce() + Send + 'static) {
    let _ = queue(Job::Run(Box::new(job)));
}

/// Queues `job` for a running thread; gives it back when there is none.
fn queue(job: Job) -> Option<Job> {
    let s = shared();
    let mut st = lock(s);
    if st.thread && !st.draining {
        st.jobs.push_back(job);
        s.work.notify_one();
        None
    } else {
        Some(job)
    }
}

/// Starts the thread unless it runs; whether it runs now.
fn start(s: &'static Shared, st: &mut State) -> bool {
    if st.thread {
        return true;
    }
    match std::thread::Builder::new().name("cvtest-background".to_owned()).spawn(move || work(s)) {
        Ok(_) => st.thread = true,
        // No thread: containers make their own cgroups and do their own teardown, as without it.
        Err(_) => st.make_failed = true,
    }
    st.thread
}

/// The thread: jobs first, in the order they came (a retired cgroup holds kernel memory), then
/// the cgroups missing; sleeps when there is neither; exits when drained and done.
fn work(s: &'static Shared) {
    let mut st = lock(s);
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            match job {
                Job::Remove(mut cg, kind) => {
                    let recycled = kind.is_some_and(|freezer| {
                        let room = {
                            let st = lock(s);
                            !st.draining && st.used.iter().filter(|(f, _)| *f == freezer).count() < MAX_READY
                        };
                        room && matches!(cg.recycle(), Ok(true))
                    });
                    match (recycled, kind) {
                        (true, Some(freezer)) => lock(s).used.push((freezer, cg)),
                        _ => {
                            if let Err(e) = cg.destroy() {
                                lock(s).errors.push(e);
                            }
                        }
                    }
                }
                Job::Run(f) => f(),
            }
            st = lock(s);
            continue;
        }
        if st.draining {
            st.thread = false;
            s.exited.notify_all();
            return;
        }
        if let Some((h, freezer)) = missing(&st) {
            drop(st);
            let made = h.make(freezer);
            st = lock(s);
            match made {
                Ok(m) => st.ready.push((freezer, m)),
                Err(_) => st.make_failed = true,
            }
            continue;
        }
        st = s.work.wait(st).unwrap_or_else(PoisonError::into_inner);
    }
}

/// A kind with fewer cgroups made than wanted (one more than are taken, at most
/// [`MAX_READY`]), if any.
fn missing(st: &State) -> Option<(&'static Hierarchy, bool)> {
    if st.make_failed {
        return None;
    }
    let h = st.hierarchy?;
    [false, true].into_iter().find_map(|freezer| {
        let kind = usize::from(freezer);
        let ready = st.ready.iter().filter(|(f, _)| *f == freezer).count();
        let wanted = (st.live[kind] + 1).min(MAX_READY);
        (st.asked[kind] && ready < wanted).then_some((h, freezer))
    })
}

/// Finishes every job, removes the cgroups made and not taken, and stops the thread; returns the
/// cgroups that could not be removed (here or in the background before). The thread starts again
/// on the next take.
pub(crate) fn drain() -> Vec<CgroupError> {
    let s = shared();
    let (ready, mut errors, used) = {
        let mut st = lock(s);
        st.draining = true;
        s.work.notify_all();
        while st.thread {
            st = s.exited.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.draining = false;
        st.make_failed = false;
        st.asked = [false; 2];
        (std::mem::take(&mut st.ready), std::mem::take(&mut st.errors), std::mem::take(&mut st.used))
    };
    for (_, mut cg) in used {
        if let Err(e) = cg.destroy() {
            errors.push(e);
        }
    }
    for (_, m) in ready {
        if let Err(e) = m.destroy() {
            errors.push(e);
        }
    }
    crate::net::pool::drop_ready_veths();
    errors
}
