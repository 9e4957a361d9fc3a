//! A unit's resource timeline (`--timeline`): its container's memory, pids and CPU time over
//! time, from spawn to the end of its main process (the span `duration` covers).
//!
//! Bounded however long the unit runs: at most [`Timeline::cap`] points. Samples come every
//! base interval; a point is a *bucket* of them (the largest memory and pids seen in it, the
//! CPU time at its end, the time of its last sample). When the points reach the cap, adjacent
//! pairs merge the same way and the bucket width doubles, so a peak is never lost to
//! downsampling, only blurred in time. One timeline belongs to one container run: a unit now,
//! an attempt once tests are retried.

use std::time::Duration;

use cvtest::Usage;

/// The default sampling interval.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);
/// Points kept per timeline.
pub(crate) const DEFAULT_CAP: usize = 512;

/// How timelines are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimelineOptions {
    /// Between two samples of a running container.
    pub(crate) interval: Duration,
    /// Points kept per timeline (at least 2).
    pub(crate) cap: usize,
}

impl Default for TimelineOptions {
    fn default() -> Self {
        TimelineOptions { interval: DEFAULT_INTERVAL, cap: DEFAULT_CAP }
    }
}

/// One point: a bucket of samples. `None` where the kernel does not count it (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    /// Since the command started: the time of the bucket's last sample.
    pub(crate) at: Duration,
    /// The most memory seen in the bucket.
    pub(crate) memory_bytes: Option<u64>,
    /// The most pids seen in the bucket.
    pub(crate) pids: Option<u64>,
    /// CPU time used by the end of the bucket (cumulative).
    pub(crate) cpu: Option<Duration>,
}

impl Point {
    fn new(at: Duration, u: &Usage) -> Point {
        Point { at, memory_bytes: u.memory_bytes, pids: u.pids, cpu: u.cpu }
    }

    /// `self` followed by `later`, as one bucket.
    fn merge(self, later: Point) -> Point {
        Point {
            at: later.at,
            memory_bytes: self.memory_bytes.max(later.memory_bytes),
            pids: self.pids.max(later.pids),
            cpu: later.cpu.or(self.cpu),
        }
    }
}

/// Where a timeline's container ended other than by its own exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkKind {
    /// The OOM killer killed the main process.
    Oom,
    /// The timeout passed; the container was killed.
    Timeout,
}

impl MarkKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MarkKind::Oom => "oom",
            MarkKind::Timeout => "timeout",
        }
    }
}

/// An event on a timeline: what happened, when (since the command started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) kind: MarkKind,
    pub(crate) at: Duration,
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// The sampling interval asked for.
    pub(crate) base_interval: Duration,
    /// The width of a bucket now: `base_interval` doubled at each downsampling.
    pub(crate) interval: Duration,
    pub(crate) points: Vec<Point>,
    /// Samples taken (reads of the container's counters).
    pub(crate) samples: u64,
    pub(crate) marks: Vec<Mark>,
    cap: usize,
    /// The bucket being filled, and when it started.
    open: Option<(Duration, Point)>,
}

impl Timeline {
    pub(crate) fn new(opts: TimelineOptions) -> Timeline {
        Timeline {
            base_interval: opts.interval,
            interval: opts.interval,
            points: Vec::new(),
            samples: 0,
            marks: Vec::new(),
            cap: opts.cap.max(2),
            open: None,
        }
    }

    /// The most points it keeps.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Adds a sample taken `at` after the command started.
    pub(crate) fn push(&mut self, at: Duration, usage: &Usage) {
        self.samples += 1;
        let p = Point::new(at, usage);
        self.open = Some(match self.open.take() {
            Some((start, bucket)) if at < start + self.interval => (start, bucket.merge(p)),
            Some((_, bucket)) => {
                self.close(bucket);
                (at, p)
            }
            None => (at, p),
        });
    }

    fn close(&mut self, bucket: Point) {
        if self.points.len() >= self.cap {
            self.downsample();
        }
        self.points.push(bucket);
    }

    /// Merges adjacent pairs (an odd last point stays) and doubles the bucket width.
    fn downsample(&mut self) {
        let old = std::mem::take(&mut self.points);
        let mut it = old.into_iter();
        while let Some(a) = it.next() {
            self.points.push(match it.next() {
                Some(b) => a.merge(b),
                None => a,
            });
        }
        self.interval *= 2;
    }

    /// Ends it at `end` (the main process's end): samples after it are dropped, so the timeline
    /// covers what `duration` does; `mark` says how it ended, if not by its own exit.
    pub(crate) fn finish(&mut self, end: Duration, mark: Option<MarkKind>) {
        if let Some((_, bucket)) = self.open.take() {
            self.close(bucket);
        }
        self.points.retain(|p| p.at <= end);
        if let Some(kind) = mark {
            self.marks.push(Mark { kind, at: end });
        }
    }

    /// The largest memory of any point.
    #[cfg(test)]
    pub(crate) fn max_memory(&self) -> Option<u64> {
        self.points.iter().filter_map(|p| p.memory_bytes).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(mem: u64, pids: u64, cpu_ms: u64) -> Usage {
        Usage { memory_bytes: Some(mem), pids: Some(pids), cpu: Some(Duration::from_millis(cpu_ms)) }
    }

    /// A simulated 60 s run sampled every 10 ms: at most `cap` points, the single spike kept.
    #[test]
    fn a_long_run_stays_bounded_and_keeps_its_peak() {
        let mut t = Timeline::new(TimelineOptions::default());
        for i in 0..6000u64 {
            let mem = if i == 4321 { 999 << 20 } else { (1 << 20) + i };
            let pids = if i == 17 { 40 } else { 3 };
            t.push(Duration::from_millis(i * 10), &usage(mem, pids, i));
        }
        t.finish(Duration::from_secs(60), None);
        assert!(t.points.len() <= DEFAULT_CAP, "{} points", t.points.len());
        assert!(t.points.len() > DEFAULT_CAP / 4, "kept too few: {}", t.points.len());
        assert_eq!(t.max_memory(), Some(999 << 20), "the spike survives downsampling");
        assert_eq!(t.points.iter().filter_map(|p| p.pids).max(), Some(40));
        assert_eq!(t.samples, 6000);
        assert_eq!(t.interval, Duration::from_millis(160), "6000 samples / 512 points: doubled 4 times");
        // Times increase; the last point is the last sample; CPU is the bucket's last value.
        assert!(t.points.windows(2).all(|w| w[0].at < w[1].at));
        let last = t.points.last().unwrap();
        assert_eq!((last.at, last.cpu), (Duration::from_millis(59_990), Some(Duration::from_millis(5999))));
    }

    #[test]
    fn samples_within_a_bucket_merge_and_finish_cuts_at_the_end() {
        let mut t = Timeline::new(TimelineOptions { interval: Duration::from_millis(10), cap: 4 });
        t.push(Duration::from_millis(1), &usage(5, 1, 0));
        t.push(Duration::from_millis(6), &usage(9, 2, 1));
        t.push(Duration::from_millis(12), &usage(7, 1, 2));
        t.push(Duration::from_millis(40), &usage(3, 1, 3));
        t.finish(Duration::from_millis(30), Some(MarkKind::Oom));
        let mems: Vec<_> = t.points.iter().map(|p| p.memory_bytes.unwrap()).collect();
        assert_eq!(mems, [9, 7], "the bucket of 1 and 6 ms keeps 9; the sample after the end is dropped");
        assert_eq!(t.marks, [Mark { kind: MarkKind::Oom, at: Duration::from_millis(30) }]);
    }

    #[test]
    fn what_the_kernel_does_not_count_stays_none() {
        let mut t = Timeline::new(TimelineOptions::default());
        let u = Usage { memory_bytes: Some(1), pids: None, cpu: None };
        t.push(Duration::ZERO, &u);
        t.push(Duration::from_millis(20), &u);
        t.finish(Duration::from_secs(1), None);
        assert!(t.points.iter().all(|p| p.pids.is_none() && p.cpu.is_none()));
    }
}
