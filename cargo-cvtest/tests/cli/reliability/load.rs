//! Load: 500 tests each with a veth at `-j` = 2 × cores, and 2,000 without. Every result
//! reported (one `test` event per test, none lost or doubled), all pass, nothing left, the host's
//! network exactly as before, and the runner's peak RSS bounded.

use std::collections::BTreeSet;

use libtest_mimic::{Completion, Failed};

use super::host::{Baseline, NetSnapshot};
use super::run::{rendezvous, Invocation};
use super::{note, CLEANUP_TIMEOUT};

/// The runner's peak RSS must stay below this, whatever the number of tests.
const RSS_BOUND_MIB: f64 = 64.0;

fn jobs() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `RELIABILITY_LOAD_PARTS=N` runs the first of N partitions (`--partition count:1/N`): the
/// cgroup v2 VM leg runs a fifth of the load, as emulation makes the whole of it take minutes.
fn parts() -> usize {
    std::env::var("RELIABILITY_LOAD_PARTS").ok().and_then(|v| v.parse().ok()).filter(|&n| n >= 1).unwrap_or(1)
}

fn load(filter: &str, all: usize, networked: bool) -> Result<Completion, Failed> {
    let net_before = NetSnapshot::capture()?;
    let base = Baseline::capture();
    let rdv = rendezvous();
    let jobs = jobs().to_string();
    let parts = parts();
    let partition = format!("count:1/{parts}");
    let count = all.div_ceil(parts);
    // 128M each, so that memory-aware admission never holds the jobs back on a small machine.
    let mut args = vec!["-j", &jobs, "--memory", "128M", filter];
    if parts > 1 {
        args.extend(["--partition", &partition]);
    }
    let done = Invocation::new(&args).env("RELIABILITY_DIR", rdv.path()).run()?;
    done.check_events_complete()?;
    done.expect_code(0)?;
    let tests = done.tests();
    let names: BTreeSet<&str> = tests.iter().filter_map(|t| t["name"].as_str()).collect();
    done.check(
        tests.len() == count && names.len() == count,
        &format!("{} test events for {} names, want {count} each", tests.len(), names.len()),
    )?;
    let not_passed: Vec<_> =
        tests.iter().filter(|t| t["status"] != "pass").map(|t| t["name"].clone()).collect();
    done.check(not_passed.is_empty(), &format!("did not pass: {not_passed:?}"))?;
    let started = done.event("run-started").expect("checked");
    let finished = done.event("run-finished").expect("checked");
    done.check(started["to_run"] == count && finished["passed"] == count, "run-started/run-finished counts")?;
    if networked {
        let without: Vec<_> =
            tests.iter().filter(|t| t.pointer("/peaks/net").map_or(true, |n| n.is_null())).collect();
        done.check(without.is_empty(), &format!("{} networked tests without net counters", without.len()))?;
    }
    let cleaned = base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    let net_after = NetSnapshot::capture()?;
    let diffs = net_after.differences(&net_before, &done.owner);
    done.check(diffs.is_empty(), &format!("the host's network changed:\n{}", diffs.join("\n")))?;
    done.check(
        done.hwm_mib() > 0.0 && done.hwm_mib() < RSS_BOUND_MIB,
        &format!("runner peak RSS {:.1} MiB, bound {RSS_BOUND_MIB} MiB", done.hwm_mib()),
    )?;
    let scope = if parts > 1 { format!(" (partition 1/{parts} of {all})") } else { String::new() };
    note(&format!(
        "load {count}{scope} {} at -j {jobs}: {count} results, all PASS, in {:.1?}; runner peak RSS {:.1} MiB; \
         clean {cleaned:?} after exit; host network unchanged ({})",
        if networked { "with a veth each" } else { "without veth" },
        done.elapsed,
        done.hwm_mib(),
        net_after.counts(),
    ));
    Ok(Completion::Completed)
}

pub fn networked_500() -> Result<Completion, Failed> {
    load("load::net::", 500, true)
}

/// The same 500 networked tests with `network = "auto"`: each leases a free /30 of the pool.
pub fn auto_500() -> Result<Completion, Failed> {
    load("load::auto::", 500, true)
}

pub fn plain_2000() -> Result<Completion, Failed> {
    load("load::plain::", 2000, false)
}
