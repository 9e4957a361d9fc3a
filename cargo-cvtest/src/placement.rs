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
//! its threads share those CPUs instead of spreading over idle ones. `--no-pin` or
//! `CVTEST_PIN=0` turns it off.

use cvtest::CpuList;

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
