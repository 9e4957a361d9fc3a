//! Signals to the runner mid-run: SIGINT and SIGTERM stop it cleanly; after SIGKILL the
//! containers die with it and the next run sweeps its cgroups.

use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed};

use super::host::{our_processes, Baseline, NetSnapshot};
use super::run::{rendezvous, Invocation, Started};
use super::{note, CLEANUP_TIMEOUT};

/// Four long tests at once: a sleeper with a child, one behind a veth, one with a daemon behind
/// another veth, and one that ignores SIGTERM.
const VICTIMS: [&str; 4] = [
    "faults::sleeper",
    "faults::sleeper_networked",
    "faults::sleeper_with_daemon",
    "faults::ignores_sigterm",
];
const READY: [&str; 4] =
    ["sleeper.ready", "sleeper_networked.ready", "sleeper_with_daemon.ready", "ignores_sigterm.ready"];

fn start_victims(rdv: &tempfile::TempDir) -> Result<Started, Failed> {
    // 256M each, so that memory-aware admission lets all four run at once on a small machine.
    let mut args = vec!["-j", "4", "--memory", "256M", "--exact"];
    args.extend(VICTIMS);
    let mut run = Invocation::new(&args).env("RELIABILITY_DIR", rdv.path()).start()?;
    for f in READY {
        run.wait_for_file(&rdv.path().join(f), Duration::from_secs(300))?;
    }
    Ok(run)
}

pub fn interrupt(sig: i32) -> Result<Completion, Failed> {
    let net_before = NetSnapshot::capture()?;
    let base = Baseline::capture();
    let rdv = rendezvous();
    let run = start_victims(&rdv)?;
    let before = running_state(&base, &run)?;
    run.signal(sig);
    let sent = Instant::now();
    let done = run.finish(Duration::from_secs(60))?;
    let took = sent.elapsed();
    done.check_events_complete()?;
    done.expect_code(128 + sig)?;
    done.check(took < Duration::from_secs(20), &format!("took {took:?} to stop"))?;
    for name in VICTIMS {
        let t = done.test(name)?;
        done.check(t["status"] == "cancelled", &format!("{name} is cancelled"))?;
    }
    let ev = done.event("interrupted");
    done.check(ev.is_some_and(|e| e["signal"] == sig), "an interrupted event with the signal")?;
    let fin = done.event("run-finished").expect("checked above");
    done.check(fin["interrupted_by"] == sig, "run-finished says interrupted_by")?;
    let cleaned = base.wait_clean(&done.owner, CLEANUP_TIMEOUT)?;
    let diffs = NetSnapshot::capture()?.differences(&net_before, &done.owner);
    done.check(diffs.is_empty(), &format!("the host's network changed:\n{}", diffs.join("\n")))?;
    note(&format!(
        "signal {sig} mid-run ({before}): exited {:?} after {took:?}, clean {cleaned:?} later",
        done.code()
    ));
    Ok(Completion::Completed)
}

pub fn kill_then_sweep() -> Result<Completion, Failed> {
    let net_before = NetSnapshot::capture()?;
    let base = Baseline::capture();
    let rdv = rendezvous();
    let run = start_victims(&rdv)?;
    let owner = run.owner.clone();
    let before = running_state(&base, &run)?;
    run.signal(libc::SIGKILL);
    let done = run.finish(Duration::from_secs(30))?;
    done.check(
        done.status.code().is_none()
            && std::os::unix::process::ExitStatusExt::signal(&done.status) == Some(9),
        "killed by SIGKILL",
    )?;
    // The containers die with their runner: their inits watch a pipe only it held.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = base.leaks(&owner);
        if left.processes.is_empty() && left.links.is_empty() && left.mounts.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("after SIGKILL of the runner, its containers live on:\n{left}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stale = base.leaks(&owner).cgroups.len();
    // A new run sweeps the dead runner's cgroups.
    let next = Invocation::new(&["-j", "1", "--exact", "faults::small_a"])
        .env("RELIABILITY_DIR", rdv.path())
        .run()?;
    next.expect_code(0)?;
    let left = base.leaks(&owner);
    if !left.is_empty() {
        return Err(format!(
            "the next run ({}) did not sweep what the killed one left:\n{left}",
            next.owner.tag
        )
        .into());
    }
    base.wait_clean(&next.owner, CLEANUP_TIMEOUT)?;
    let diffs = NetSnapshot::capture()?.differences(&net_before, &owner);
    if !diffs.is_empty() {
        return Err(format!("the host's network changed:\n{}", diffs.join("\n")).into());
    }
    note(&format!(
        "SIGKILL mid-run ({before}): processes and veths gone with the runner; {stale} stale cgroup dirs swept by the next run; \
         our processes now: {:?}",
        our_processes(None)
    ));
    Ok(Completion::Completed)
}

/// What the runner has on the host while its four victims run: their processes, the workers'
/// zygotes, two veths that are up (and at most one more, down: the pair made ahead for a next
/// test with a network) and their cgroups must be there, or the checks after the signal would
/// prove nothing.
fn running_state(base: &Baseline, run: &Started) -> Result<String, Failed> {
    let now = base.leaks(&run.owner);
    let zygotes = now.processes.iter().filter(|p| p.contains(" (cvtest-zygote) ")).count();
    let up = now.links.iter().filter(|l| !l.ends_with(", down)")).count();
    if now.processes.len() < 4 || zygotes == 0 || up != 2 || now.links.len() > 3 || now.cgroups.is_empty() {
        return Err(format!("the victims are not all running, or no zygote runs:\n{now}").into());
    }
    Ok(format!(
        "{} processes ({zygotes} zygotes), {} veths, {} cgroup dirs",
        now.processes.len(),
        now.links.len(),
        now.cgroups.len()
    ))
}
