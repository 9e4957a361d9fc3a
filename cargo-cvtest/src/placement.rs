//! Where each worker's containers run: its own share of the CPUs this process may use.
//!
//! With as many workers as CPUs, letting the scheduler place every container leaves cores idle:
//! a finished container's teardown (the kernel's cgroup and RCU work on per-CPU workers) and the
//! next container's start move the tasks about, two tests end up queued on one CPU while the
//! other idles, and the load balancer will not move a task that ran in the last half
//! millisecond (it is "cache hot") until it has failed to balance a few times. The idle comes in
//! pieces of 0.5-5 ms: 1.5 core-seconds per 1,000 tests of the 10 ms suite on two cores, 0.15-0.2
//! placed (docs/BENCHMARKS.md, "CPU shares"). A worker whose containers start on its own CPUs
//! never queues behind another.
//!
//! The cost is that a test sees only its worker's share (`available_parallelism` counts it), so
//! its threads share those CPUs instead of spreading over idle ones. That lasts only while every
//! worker has a test running: while one waits for a test's memory or network, and once one runs
//! out of tests ([`Tail`]), the containers running get every CPU of the run (and after the
//! latter none is placed). `--no-pin` or `CVTEST_PIN=0` turns placement off.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use cvtest::{AffinityHandle, CpuList};

/// Whether containers are placed on their worker's share: unless `--no-pin`, or `CVTEST_PIN` is
/// `0`, `off` or `false`.
pub(crate) fn enabled(no_pin: bool) -> bool {
    !no_pin && !matches!(std::env::var("CVTEST_PIN").as_deref(), Ok("0" | "off" | "false"))
}

/// The CPUs this process may run on (its affinity), ascending; empty if it cannot tell.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    cvtest::cpu_affinity().map(|l| l.cpus().to_vec()).unwrap_or_default()
}

/// `allowed` split into `workers` shares, in order, as even as can be (the first ones get one
/// more when it does not divide). None when there is nothing to gain: fewer than two workers,
/// or more workers than CPUs (shares would overlap, and the queueing they prevent comes back).
pub(crate) fn shares(allowed: &[usize], workers: usize) -> Option<Vec<CpuList>> {
    if workers < 2 || workers > allowed.len() {
        return None;
    }
    let (base, extra) = (allowed.len() / workers, allowed.len() % workers);
    let mut rest = allowed;
    let mut out = Vec::with_capacity(workers);
    for i in 0..workers {
        let (share, tail) = rest.split_at(base + usize::from(i < extra));
        out.push(CpuList::new(share.iter().copied()).ok()?);
        rest = tail;
    }
    Some(out)
}

/// The run's tail, and workers that wait: CPUs left idle go to the placed containers running.
///
/// The tail begins when the first worker runs out of units. The placed containers that run then
/// get all of the run's CPUs (chrono's `try_verify_against_date_command` runs `date` thousands
/// of times in a row, alone at the end: 92 s placed on one of two CPUs, 51 s under nextest),
/// and no container is placed after it. A worker that waits for a unit's memory or network
/// (the budget is taken, a subnet is held) lends its CPUs the same way while it waits
/// ([`Tail::idle`]); containers started later are placed again.
#[derive(Debug)]
pub(crate) struct Tail {
    /// The CPUs the run may use; `None`: nothing is placed.
    all: Option<CpuList>,
    begun: AtomicBool,
    /// How many workers wait now ([`Tail::idle`]).
    idle: AtomicUsize,
    running: Mutex<Vec<(u64, AffinityHandle)>>,
    next: AtomicU64,
}

impl Tail {
    pub(crate) fn new(all: Option<CpuList>) -> Self {
        Tail {
            all,
            begun: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            running: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }
    }

    /// Whether the tail has begun: a container started now is not placed.
    pub(crate) fn begun(&self) -> bool {
        self.begun.load(Ordering::SeqCst)
    }

    /// A worker has run out of units: every placed container that runs gets all of the run's
    /// CPUs. Once per run.
    pub(crate) fn begin(&self) {
        if self.all.is_none() || self.begun.swap(true, Ordering::SeqCst) {
            return;
        }
        self.widen_running();
    }

    /// A worker waits (for a unit's memory or network) until the guard drops: meanwhile every
    /// placed container that runs, or starts, gets all of the run's CPUs.
    pub(crate) fn idle(&self) -> Idle<'_> {
        self.idle.fetch_add(1, Ordering::SeqCst);
        self.widen_running();
        Idle(self)
    }

    fn widen_running(&self) {
        let Some(all) = &self.all else { return };
        let running: Vec<AffinityHandle> = self.lock().iter().map(|(_, h)| h.clone()).collect();
        for h in running {
            h.widen(all);
        }
    }

    /// Keeps `handle` (a placed container that has just started) until the guard drops (it has
    /// ended). Registered before the tail and the waiting workers are looked at, so that either
    /// [`Tail::begin`] or [`Tail::idle`] finds it, or it finds them and widens itself.
    pub(crate) fn running(&self, handle: AffinityHandle) -> Running<'_> {
        let Some(all) = &self.all else { return Running { tail: self, key: None } };
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().push((key, handle.clone()));
        if self.begun() || self.idle.load(Ordering::SeqCst) > 0 {
            handle.widen(all);
        }
        Running { tail: self, key: Some(key) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, AffinityHandle)>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A worker waiting ([`Tail::idle`]).
pub(crate) struct Idle<'a>(&'a Tail);

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A placed container registered with the [`Tail`] while it runs.
pub(crate) struct Running<'a> {
    tail: &'a Tail,
    key: Option<u64>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.tail.lock().retain(|(k, _)| *k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: Option<Vec<CpuList>>) -> Option<Vec<String>> {
        s.map(|v| v.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn one_share_per_worker_as_even_as_can_be() {
        assert_eq!(strings(shares(&[0, 1], 2)), Some(vec!["0".into(), "1".into()]));
        assert_eq!(
            strings(shares(&[0, 1, 2, 3, 4, 5, 6, 7], 3)),
            Some(vec!["0-2".into(), "3-5".into(), "6-7".into()])
        );
        // The CPUs the process may use, whatever their numbers (`taskset -c 2,5,7 cargo cvtest`).
        assert_eq!(strings(shares(&[2, 5, 7], 3)), Some(vec!["2".into(), "5".into(), "7".into()]));
    }

    #[test]
    fn no_shares_where_they_cannot_help() {
        assert_eq!(shares(&[0, 1, 2, 3], 1), None);
        assert_eq!(shares(&[0, 1], 3), None);
        assert_eq!(shares(&[], 2), None);
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }
}
