//! Admission: which unit of work starts next.
//!
//! Workers (as many as `--jobs`) ask for the next unit. A unit is admitted when
//! - **memory**: the memory limits of the running units plus its own stay within the budget
//!   (`MemAvailable` when the run starts, or `--memory-budget`). A unit whose limit is larger than
//!   the budget (or "max") runs alone: it waits until nothing runs, and nothing starts beside it.
//!   Memory is first come, first served: when the first waiting unit does not fit, later ones wait
//!   too, so a big test is never starved by a stream of small ones;
//! - **network**: no running unit has an overlapping subnet (two veths in one subnet would clash
//!   in the host's routing table). A unit held back by its network is skipped, but its subnet is
//!   reserved against later units, so it is not starved either.
//!
//! Stopping (Ctrl-C, `--fail-fast`) ends admission; an interrupt also kills every running
//! container through its [`KillHandle`].

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use cvtest::KillHandle;
use cvtest_spec::NetworkSpec;

/// What a unit needs while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Demand {
    /// The memory limit in bytes; `None` for "max".
    pub(crate) memory: Option<u64>,
    pub(crate) networks: Vec<NetworkSpec>,
}

/// A unit that may start now. Give it back with [`Scheduler::finish`].
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) unit: usize,
    slot: u64,
}

#[derive(Debug)]
struct Running {
    slot: u64,
    charge: u64,
    /// Its demand's memory, to put it back ([`Scheduler::give_back`]).
    memory: Option<u64>,
    networks: Vec<NetworkSpec>,
    kill: Option<KillHandle>,
}

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<(usize, Demand)>,
    running: Vec<Running>,
    used: u64,
    exclusive: bool,
    stopped: bool,
    killed: bool,
    next_slot: u64,
}

#[derive(Debug)]
pub(crate) struct Scheduler {
    state: Mutex<State>,
    changed: Condvar,
    budget: u64,
}

impl Scheduler {
    /// `units` in the order they should start.
    pub(crate) fn new(units: impl IntoIterator<Item = (usize, Demand)>, budget: u64) -> Scheduler {
        let state = State { pending: units.into_iter().collect(), ..State::default() };
        Scheduler { state: Mutex::new(state), changed: Condvar::new(), budget: budget.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock leaves consistent state (no invariant
        // spans an unwind), so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until a unit may start; `None` when there is nothing left to start.
    #[cfg(test)]
    pub(crate) fn next(&self) -> Option<Ticket> {
        self.next_or_idle(|| ())
    }

    /// [`Scheduler::next`]; before it first waits (units are left, none may start yet: their
    /// memory or network is taken), calls `idle` without the lock and keeps what it returns
    /// until it returns: the caller's CPUs are idle meanwhile.
    pub(crate) fn next_or_idle<G>(&self, idle: impl FnOnce() -> G) -> Option<Ticket> {
        let mut idle = Some(idle);
        let mut _idle_guard = None;
        let mut st = self.lock();
        loop {
            if st.stopped || st.pending.is_empty() {
                return None;
            }
            if let Some(i) = self.pick(&st) {
                return Some(self.admit(&mut st, i));
            }
            if let Some(f) = idle.take() {
                // Without the lock; the state is looked at again before any wait.
                drop(st);
                _idle_guard = Some(f());
                st = self.lock();
                continue;
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next unit, if it may start now, `eligible` says yes, and more than `more_than`
    /// units are waiting; never blocks. A worker takes its next unit this way while its current
    /// one runs, to prepare its container ahead (`runner.rs`). Only the unit at the head of the
    /// queue (the order stays), and never the last ones (so that no worker is left with
    /// nothing while another holds a unit it has not started).
    pub(crate) fn try_next_ahead(
        &self,
        more_than: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<Ticket> {
        let mut st = self.lock();
        if st.stopped || st.pending.len() <= more_than {
            return None;
        }
        match self.pick(&st) {
            Some(0) if eligible(st.pending[0].0) => Some(self.admit(&mut st, 0)),
            _ => None,
        }
    }

    /// A unit admitted but not started goes back to the head of the queue, as if it had never
    /// been taken (its memory and network are free again).
    pub(crate) fn give_back(&self, t: Ticket) {
        let mut st = self.lock();
        if let Some(r) = self.release(&mut st, t.slot) {
            st.pending.push_front((t.unit, Demand { memory: r.memory, networks: r.networks }));
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Whether admission has stopped (`--fail-fast`, an interrupt).
    pub(crate) fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    fn admit(&self, st: &mut State, i: usize) -> Ticket {
        let (unit, demand) = st.pending.remove(i).expect("picked index exists");
        let (charge, exclusive) = self.charge(&demand);
        st.used += charge;
        st.exclusive |= exclusive;
        let slot = st.next_slot;
        st.next_slot += 1;
        st.running.push(Running {
            slot,
            charge,
            memory: demand.memory,
            networks: demand.networks,
            kill: None,
        });
        Ticket { unit, slot }
    }

    fn release(&self, st: &mut State, slot: u64) -> Option<Running> {
        let i = st.running.iter().position(|r| r.slot == slot)?;
        let r = st.running.swap_remove(i);
        st.used -= r.charge;
        if r.charge == self.budget {
            st.exclusive = st.running.iter().any(|r| r.charge == self.budget);
        }
        Some(r)
    }

    /// The budget in MiB (rounded up), for the machine-wide memory lease.
    pub fn budget_mib(&self) -> u64 {
        self.budget.div_ceil(1 << 20)
    }

    /// What a unit with this memory limit takes of the machine-wide budget, in MiB (rounded
    /// up): its limit, or the whole budget when it has none or a larger one.
    pub fn charge_mib(&self, memory: Option<u64>) -> u64 {
        self.charge(&Demand { memory, networks: Vec::new() }).0.div_ceil(1 << 20)
    }

    fn charge(&self, d: &Demand) -> (u64, bool) {
        match d.memory {
            Some(b) if b <= self.budget => (b, false),
            _ => (self.budget, true),
        }
    }

    fn pick(&self, st: &State) -> Option<usize> {
        let mut reserved: Vec<NetworkSpec> = Vec::new();
        for (i, (_, d)) in st.pending.iter().enumerate() {
            let (charge, exclusive) = self.charge(d);
            let fits = if exclusive {
                st.running.is_empty()
            } else {
                !st.exclusive && st.used + charge <= self.budget
            };
            if !fits {
                return None;
            }
            let clash = d.networks.iter().any(|n| {
                st.running.iter().flat_map(|r| &r.networks).any(|r| r.overlaps(n))
                    || reserved.iter().any(|r| r.overlaps(n))
            });
            if !clash {
                return Some(i);
            }
            reserved.extend(d.networks.iter().copied());
        }
        None
    }

    /// Records how to kill the unit's container. Returns `false` if the run is already being
    /// interrupted: the caller must kill it itself.
    pub(crate) fn set_kill(&self, t: &Ticket, kill: KillHandle) -> bool {
        let mut st = self.lock();
        if st.killed {
            return false;
        }
        if let Some(r) = st.running.iter_mut().find(|r| r.slot == t.slot) {
            r.kill = Some(kill);
        }
        true
    }

    /// The unit ended; its memory and network become free.
    pub(crate) fn finish(&self, t: Ticket) {
        let mut st = self.lock();
        self.release(&mut st, t.slot);
        drop(st);
        self.changed.notify_all();
    }

    /// Starts nothing more (`--fail-fast`); running units finish. Whether this call stopped
    /// admission (it was neither stopped nor interrupted before).
    pub(crate) fn stop_admitting(&self) -> bool {
        let was_stopped = std::mem::replace(&mut self.lock().stopped, true);
        self.changed.notify_all();
        !was_stopped
    }

    /// Starts nothing more and kills every running container (an interrupt).
    pub(crate) fn interrupt(&self) {
        let mut st = self.lock();
        st.stopped = true;
        st.killed = true;
        for r in &st.running {
            if let Some(k) = &r.kill {
                k.kill();
            }
        }
        drop(st);
        self.changed.notify_all();
    }

    pub(crate) fn is_interrupted(&self) -> bool {
        self.lock().killed
    }

    /// Units never started (after a stop).
    #[cfg(test)]
    pub(crate) fn not_started(&self) -> usize {
        self.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn d(mem: Option<u64>, net: Option<&str>) -> Demand {
        Demand { memory: mem, networks: net.map(|n| n.parse().unwrap()).into_iter().collect() }
    }

    #[test]
    fn machine_wide_shares_are_whole_mib_of_the_budget() {
        let s = Scheduler::new([], 600 << 20);
        assert_eq!(s.budget_mib(), 600);
        assert_eq!(s.charge_mib(Some(400 << 20)), 400);
        assert_eq!(s.charge_mib(Some((1 << 20) + 1)), 2);
        assert_eq!(s.charge_mib(Some(2 << 30)), 600, "larger than the budget: all of it");
        assert_eq!(s.charge_mib(None), 600, "max: all of it");
    }

    #[test]
    fn ahead_takes_only_the_head_and_never_the_last_units() {
        let s = Scheduler::new([(0, d(Some(10), None)), (1, d(Some(10), None)), (2, d(Some(10), None))], 100);
        assert!(s.try_next_ahead(3, |_| true).is_none(), "three wait, not more than three");
        assert!(s.try_next_ahead(2, |u| u != 0).is_none(), "the head is not eligible: nothing");
        let t = s.try_next_ahead(2, |_| true).expect("the head, while more than two wait");
        assert_eq!(t.unit, 0);
        let next = s.next().expect("the next in order");
        assert_eq!(next.unit, 1);
        s.stop_admitting();
        assert!(s.try_next_ahead(0, |_| true).is_none(), "nothing ahead once stopped");
    }

    #[test]
    fn a_unit_given_back_is_next_again_and_frees_its_memory() {
        let s = Scheduler::new([(0, d(Some(60), None)), (1, d(Some(60), None)), (2, d(Some(10), None))], 100);
        let first = s.next().expect("first");
        assert_eq!(first.unit, 0);
        assert!(s.try_next_ahead(0, |_| true).is_none(), "unit 1 does not fit beside unit 0");
        s.finish(first);
        let ahead = s.try_next_ahead(0, |_| true).expect("unit 1 fits now");
        assert_eq!(ahead.unit, 1);
        s.give_back(ahead);
        assert_eq!(s.not_started(), 2);
        let a = s.next().expect("unit 1 again, first");
        assert_eq!(a.unit, 1);
        let b = s.next().expect("its memory was free again, so unit 2 fits beside it");
        assert_eq!(b.unit, 2);
    }

    #[test]
    fn memory_budget_limits_concurrency() {
        let s = Scheduler::new([(0, d(Some(60), None)), (1, d(Some(60), None)), (2, d(Some(30), None))], 100);
        let a = s.next().unwrap();
        assert_eq!(a.unit, 0);
        // 60 + 60 > 100, and unit 2 must not jump the queue.
        assert!(s.pick(&s.lock()).is_none());
        s.finish(a);
        let b = s.next().unwrap();
        let c = s.next().unwrap();
        assert_eq!((b.unit, c.unit), (1, 2));
    }

    #[test]
    fn idle_is_called_once_and_only_when_it_must_wait() {
        let s = Scheduler::new([(0, d(Some(60), None)), (1, d(Some(60), None))], 100);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let call = || calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let a = s.next_or_idle(call).expect("unit 0 starts at once");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0, "no wait, no idle");
        // Unit 1 waits for unit 0's memory: idle once, its guard held until it may start.
        struct Guard<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert!(
                    !dropped.load(std::sync::atomic::Ordering::SeqCst),
                    "the guard went before the wait ended"
                );
                s.finish(a);
            });
            let b = s
                .next_or_idle(|| {
                    call();
                    Guard(&dropped)
                })
                .expect("unit 1, once unit 0 is done");
            assert_eq!(b.unit, 1);
        });
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn bigger_than_budget_runs_alone() {
        let s = Scheduler::new([(0, d(Some(10), None)), (1, d(None, None)), (2, d(Some(10), None))], 100);
        let a = s.next().unwrap();
        assert!(s.pick(&s.lock()).is_none(), "max waits for the running one");
        s.finish(a);
        let big = s.next().unwrap();
        assert_eq!(big.unit, 1);
        assert!(s.pick(&s.lock()).is_none(), "nothing beside the big one");
        s.finish(big);
        assert_eq!(s.next().unwrap().unit, 2);
    }

    #[test]
    fn overlapping_networks_never_run_together() {
        let s = Scheduler::new(
            [
                (0, d(Some(1), Some("10.0.0.2/24"))),
                (1, d(Some(1), Some("10.0.0.3/16"))),
                (2, d(Some(1), Some("10.0.0.9/24"))),
                (3, d(Some(1), Some("10.1.0.2/24"))),
                (4, d(Some(1), Some("10.9.0.2/24"))),
            ],
            100,
        );
        let a = s.next().unwrap();
        // 1 overlaps 0; 2 overlaps 0 and the reserved 1; 3 overlaps the reserved /16 (10.0/16
        // does not contain 10.1, so it may start); 4 is free.
        let b = s.next().unwrap();
        assert_eq!((a.unit, b.unit), (0, 3));
        let c = s.next().unwrap();
        assert_eq!(c.unit, 4);
        s.finish(a);
        let e = s.next().unwrap();
        assert_eq!(e.unit, 1, "the /16 was reserved ahead of unit 2");
    }

    #[test]
    fn workers_block_until_finish_and_stop_releases_them() {
        let s = Arc::new(Scheduler::new([(0, d(Some(80), None)), (1, d(Some(80), None))], 100));
        let a = s.next().unwrap();
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || s2.next().map(|t| t.unit));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        s.finish(a);
        assert_eq!(waiter.join().unwrap(), Some(1));

        let s = Arc::new(Scheduler::new([(0, d(Some(80), None)), (1, d(Some(80), None))], 100));
        let _a = s.next().unwrap();
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || s2.next().map(|t| t.unit));
        s.interrupt();
        assert_eq!(waiter.join().unwrap(), None);
        assert_eq!(s.not_started(), 1);
    }
}
