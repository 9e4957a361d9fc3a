//! Moving a placed container's threads to more CPUs while it runs ([`AffinityHandle`]).
//!
//! A container placed on some CPUs ([`crate::Options::set_cpu_affinity`]) keeps them for its
//! whole run: its init gets the affinity before the go and everything it starts inherits it.
//! When other CPUs fall idle (a runner's other workers have run out of tests), a long test left
//! on its share would use one CPU of several: a test that runs `date` thousands of times, one
//! after the other, took 1.8 times as long as unplaced. The handle gives every thread of the
//! container that is still on the CPUs it was placed on the wider set; a thread the test placed
//! itself (`sched_setaffinity`, `taskset`) is left where it is.

use std::path::{Path, PathBuf};

use cvtest_spec::CpuList;

use crate::sandbox::spawn::{get_affinity, set_affinity};

/// How many times [`AffinityHandle::widen`] reads the threads again: a thread forked between a
/// read of the list and its parent's move inherits the parent's old CPUs, and the next read
/// finds it. A test that forks without end is not chased further.
const PASSES: usize = 4;
/// How deep below the container's cgroup the walk goes (a privileged test may make cgroups).
const DEPTH: usize = 8;

/// The threads of a running container placed on some CPUs, for another thread to give them more
/// ([`crate::Container::affinity_handle`]). It names the container's cgroup: once the container
/// is destroyed, [`AffinityHandle::widen`] finds nothing to move.
#[derive(Debug, Clone)]
pub struct AffinityHandle {
    /// The container's cgroup directory and its thread list's name there (and in every cgroup
    /// below it).
    dir: PathBuf,
    list: &'static str,
    /// The CPUs the container was placed on.
    placed: CpuList,
}

impl AffinityHandle {
    pub(crate) fn new(dir: PathBuf, list: &'static str, placed: CpuList) -> Self {
        AffinityHandle { dir, list, placed }
    }

    /// The CPUs the container was placed on.
    pub fn placed(&self) -> &CpuList {
        &self.placed
    }

    /// Gives `cpus` to every thread of the container whose affinity is still exactly the one it
    /// was placed on; how many threads it moved. Best effort: a thread that exits meanwhile, or
    /// that this process may not move (`EPERM`: another user's, without `CAP_SYS_NICE`), is
    /// skipped.
    pub fn widen(&self, cpus: &CpuList) -> usize {
        if *cpus == self.placed {
            return 0;
        }
        let mut moved = 0;
        for _ in 0..PASSES {
            let mut tids = Vec::new();
            collect_threads(&self.dir, self.list, DEPTH, &mut tids);
            let n = tids
                .into_iter()
                .filter(|&tid| {
                    get_affinity(tid).is_ok_and(|now| now == self.placed) && set_affinity(tid, cpus).is_ok()
                })
                .count();
            moved += n;
            if n == 0 {
                break;
            }
        }
        moved
    }
}

/// The thread ids listed in `dir`'s `list` and in those of the cgroups below it, `depth` levels.
fn collect_threads(dir: &Path, list: &str, depth: usize, out: &mut Vec<libc::pid_t>) {
    if let Ok(text) = std::fs::read_to_string(dir.join(list)) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<libc::pid_t>().ok()).filter(|&t| t > 0));
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_threads(&e.path(), list, depth - 1, out);
        }
    }
}
