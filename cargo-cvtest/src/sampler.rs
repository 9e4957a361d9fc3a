//! One thread that samples every running container's usage (`--timeline`).
//!
//! A worker registers its container's [`UsageProbe`] right after spawn and takes the
//! [`Timeline`] back when `wait` returns; in between, the sampler reads each registered probe
//! once per interval (three `pread`s on files opened once) and adds the sample to its
//! timeline. One thread for all units, not one per test: the cost is one wake-up per interval
//! for the whole run, and none while nothing is registered. A probe whose read fails (its
//! cgroup is gone) is no longer read; its timeline ends there.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use cvtest::UsageProbe;

use crate::timeline::{Timeline, TimelineOptions};

struct Entry {
    id: u64,
    probe: UsageProbe,
    origin: Instant,
    timeline: Timeline,
    /// A read failed: the cgroup is gone.
    stopped: bool,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    next_id: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sampling thread; stopped and joined on drop.
pub(crate) struct Sampler {
    shared: Arc<Shared>,
    opts: TimelineOptions,
    thread: Option<JoinHandle<()>>,
}

/// A registered container; give it back with [`Sampler::take`].
#[derive(Debug)]
pub(crate) struct Registration(u64);

impl Sampler {
    pub(crate) fn start(opts: TimelineOptions) -> std::io::Result<Sampler> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let s = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name("cvtest-sampler".into()).spawn(move || sample_loop(&s, opts))?;
        Ok(Sampler { shared, opts, thread: Some(thread) })
    }

    /// Samples `probe` from now on; times count from `origin` (when the command started).
    pub(crate) fn register(&self, probe: UsageProbe, origin: Instant) -> Registration {
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.entries.push(Entry { id, probe, origin, timeline: Timeline::new(self.opts), stopped: false });
        drop(st);
        self.shared.changed.notify_all();
        Registration(id)
    }

    /// Stops sampling it and returns what was sampled (not yet finished: see
    /// [`Timeline::finish`]).
    pub(crate) fn take(&self, r: Registration) -> Option<Timeline> {
        let mut st = self.shared.lock();
        let i = st.entries.iter().position(|e| e.id == r.0)?;
        Some(st.entries.swap_remove(i).timeline)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sample_loop(shared: &Shared, opts: TimelineOptions) {
    let mut next = Instant::now();
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        if st.entries.iter().all(|e| e.stopped) {
            // Nothing to sample: sleep until a registration (or the stop).
            st = shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            next = Instant::now();
            continue;
        }
        let now = Instant::now();
        if now < next {
            st = shared.changed.wait_timeout(st, next - now).unwrap_or_else(|e| e.into_inner()).0;
            continue;
        }
        for e in st.entries.iter_mut().filter(|e| !e.stopped) {
            match e.probe.read() {
                Ok(u) => e.timeline.push(e.origin.elapsed(), &u),
                Err(_) => e.stopped = true,
            }
        }
        // On schedule, without catching up on ticks missed under load.
        next += opts.interval;
        let now = Instant::now();
        if next < now {
            next = now + opts.interval;
        }
    }
}
