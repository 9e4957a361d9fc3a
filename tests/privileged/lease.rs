//! Machine-wide leases: subnets waited for across threads and processes, released by the kernel
//! when a holder is SIGKILLed, `network = "auto"` subnets distinct, memory shares of one budget.

use std::io::{BufRead, BufReader};
use std::process::Stdio as ProcessStdio;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cvtest::lease::{self, Holder, LeaseError, NetworkPool, WaitPolicy, Waiting};
use cvtest::{Command, Container, NetworkSpec, Options, Stdio, Termination};
use libtest_mimic::{Failed, Trial};

use crate::support::privileged;

pub fn trials() -> Vec<Trial> {
    vec![
        privileged("lease::overlapping_subnet_waits_for_the_holder", overlapping_subnet_waits_for_the_holder),
        privileged("lease::sigkilled_holder_releases_its_lease", sigkilled_holder_releases_its_lease),
        privileged(
            "lease::containers_on_overlapping_subnets_take_turns",
            containers_on_overlapping_subnets_take_turns,
        ),
        privileged(
            "lease::auto_networks_are_distinct_and_in_the_env",
            auto_networks_are_distinct_and_in_the_env,
        ),
        privileged(
            "lease::subnet_of_an_exited_process_is_free_while_its_veth_goes",
            subnet_of_an_exited_process_is_free_while_its_veth_goes,
        ),
        privileged("lease::memory_shares_fit_the_budget", memory_shares_fit_the_budget),
        privileged("lease::wait_times_out_naming_the_holder", wait_times_out_naming_the_holder),
        privileged("lease::bench_take_release", bench_take_release).with_ignored_flag(true),
    ]
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Failed::from(format!($($msg)+)));
        }
    };
}

fn spec(cidr: &str) -> NetworkSpec {
    cidr.parse().expect("valid test network")
}

fn chain(e: &dyn std::error::Error) -> Failed {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    Failed::from(s)
}

/// Helper mode `hold-lease CIDR`: takes the subnet's lease, says so, and holds it until killed.
pub fn hold_lease(cidr: &str) -> i32 {
    let lease =
        lease::take_subnet(&spec(cidr), &WaitPolicy { label: Some("holder::test"), ..Default::default() });
    match lease {
        Ok(_lease) => {
            println!("held");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Err(e) => {
            println!("failed: {e}");
            1
        }
    }
}

/// Helper mode `veth-and-exit CIDR`: one container on the subnet, destroyed, then exits at once
/// (no `wait_released_veths`): the kernel is still deleting the veth when it has gone.
pub fn veth_and_exit(cidr: &str) -> i32 {
    let mut o = Options::new();
    o.set_network_spec(Some(spec(cidr)));
    // No cgroup: this helper shares its cgroup with the trial's process, which cgroup v2 lets
    // pass no controllers to children (the test.slice leg); the veth and the lease are the point.
    o.set_isolation(
        cvtest::Isolation::NETWORK
            | cvtest::Isolation::FILESYSTEM
            | cvtest::Isolation::PROCESS_CONTROL
            | cvtest::Isolation::IPC,
    );
    let mut c = match Container::create(&o) {
        Ok(c) => c,
        Err(e) => {
            println!("create failed: {}", cvtest::error_chain(&e));
            return 1;
        }
    };
    let name = c.veth_host_name().unwrap_or_default().to_owned();
    let mut cmd = Command::new("/bin/true");
    cmd.stdout(Stdio::Null);
    let ran = c.spawn(&cmd).map_err(|e| cvtest::error_chain(&e)).and_then(|()| {
        c.wait(Some(Duration::from_secs(30))).map(|_| ()).map_err(|e| cvtest::error_chain(&e))
    });
    if let Err(e) = ran.and_then(|()| c.destroy().map_err(|e| cvtest::error_chain(&e))) {
        println!("failed: {e}");
        return 1;
    }
    println!("veth={name}");
    0
}

/// A process's `destroy` releases the subnet before the kernel has deleted the veth; a
/// container on the same subnet in another process right after it waits out the leftover route
/// of that cvtest veth instead of refusing it as a clash.
fn subnet_of_an_exited_process_is_free_while_its_veth_goes() -> Result<(), Failed> {
    let cidr = "10.233.9.2/24";
    let exe = std::env::current_exe().map_err(|e| Failed::from(e.to_string()))?;
    for round in 0..5 {
        let out = std::process::Command::new(&exe)
            .env(crate::helpers::HELPER_ENV, "veth-and-exit")
            .arg(cidr)
            .stdin(ProcessStdio::null())
            .output()
            .map_err(|e| Failed::from(format!("helper: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(out.status.success(), "round {round}: helper {:?}: {text}", out.status);
        let mut o = Options::new();
        o.set_network_spec(Some(spec(cidr)));
        let (termination, net, _) = run_true(&o)?;
        ensure!(termination == Termination::Exited(0), "round {round}: {termination:?}");
        ensure!(net == Some(spec(cidr)), "round {round}: {net:?}");
    }
    Ok(())
}

fn overlapping_subnet_waits_for_the_holder() -> Result<(), Failed> {
    let take_held = || {
        lease::take_subnet(
            &spec("10.231.7.2/24"),
            &WaitPolicy { label: Some("lease::a"), ..Default::default() },
        )
        .map_err(|e| chain(&e))
    };
    // A wider and a narrower subnet each wait; the holder lets go only once it saw the waiter
    // report the wait (so the wait is certain, not a matter of timing).
    for cidr in ["10.231.0.2/16", "10.231.7.6/30"] {
        let holder = Mutex::new(Some(take_held()?));
        let seen: Mutex<Vec<Waiting>> = Mutex::new(Vec::new());
        let observer = |w: &Waiting| {
            seen.lock().unwrap().push(w.clone());
            true
        };
        let waiter = std::thread::scope(|s| {
            let t = s.spawn(|| {
                lease::take_subnet(
                    &spec(cidr),
                    &WaitPolicy { label: None, timeout: Duration::from_secs(60), observer: Some(&observer) },
                )
            });
            while seen.lock().unwrap().is_empty() && !t.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
            holder.lock().unwrap().take();
            t.join().expect("waiter thread")
        });
        let lease = waiter.map_err(|e| chain(&e))?;
        let w = seen.lock().unwrap().first().cloned().ok_or("the waiter never reported waiting")?;
        let n = spec(cidr);
        ensure!(w.what == format!("{}/{}", n.network(), n.prefix_len()), "{w:?}");
        let h = w.holder.ok_or("no holder named")?;
        ensure!(h.pid == std::process::id() as i32, "holder {h:?}");
        ensure!(h.what == "10.231.7.0/24" && h.test.as_deref() == Some("lease::a"), "holder {h:?}");
        drop(lease);
    }
    // A disjoint subnet never waits.
    let _held = take_held()?;
    let never = |_: &Waiting| false;
    let other = lease::take_subnet(
        &spec("10.231.8.2/24"),
        &WaitPolicy { label: None, timeout: Duration::from_secs(60), observer: Some(&never) },
    );
    ensure!(other.is_ok(), "a disjoint subnet waited: {other:?}");
    Ok(())
}

fn sigkilled_holder_releases_its_lease() -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .env(crate::helpers::HELPER_ENV, "hold-lease")
        .arg("10.232.0.2/24")
        .stdout(ProcessStdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    ensure!(line.trim() == "held", "the holder said {line:?}");
    let pid = child.id() as i32;
    let killed = AtomicBool::new(false);
    let holders: Mutex<Vec<Option<Holder>>> = Mutex::new(Vec::new());
    let observer = |w: &Waiting| {
        holders.lock().unwrap().push(w.holder.clone());
        if w.holder.as_ref().is_some_and(|h| h.pid == pid) && !killed.swap(true, Ordering::Relaxed) {
            // SAFETY: kill has no memory preconditions; pid is our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        true
    };
    let taken = lease::take_subnet(
        &spec("10.232.0.9/24"),
        &WaitPolicy { label: None, timeout: Duration::from_secs(60), observer: Some(&observer) },
    );
    let status = child.wait()?;
    ensure!(
        killed.load(Ordering::Relaxed),
        "the waiter never saw the child as the holder: {:?}",
        holders.lock()
    );
    ensure!(status.code().is_none(), "the holder was not killed: {status:?}");
    taken.map_err(|e| chain(&e))?;
    let first = holders.lock().unwrap().iter().flatten().next().cloned().ok_or("no holder")?;
    ensure!(first.test.as_deref() == Some("holder::test"), "{first:?}");
    // The dead holder's record is stale (nobody locks it): a sweep removes it.
    let record = lease::dir().join("holders").join(format!("{pid}.json"));
    lease::sweep_stale_records();
    ensure!(!record.exists(), "{} of the dead holder is still there after a sweep", record.display());
    Ok(())
}

fn run_true(options: &Options) -> Result<(Termination, Option<NetworkSpec>, String), Failed> {
    let mut c = Container::create(options).map_err(|e| chain(&e))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo $CVTEST_NET_ADDRESS $CVTEST_NET_HOST $CVTEST_NET_PREFIX"]);
    cmd.stdout(Stdio::Capture { limit: 4096 });
    c.spawn(&cmd).map_err(|e| chain(&e))?;
    let o = c.wait(Some(Duration::from_secs(60))).map_err(|e| chain(&e))?;
    let net = c.network();
    c.destroy().map_err(|e| chain(&e))?;
    Ok((o.termination, net, String::from_utf8_lossy(&o.stdout).trim().to_owned()))
}

fn containers_on_overlapping_subnets_take_turns() -> Result<(), Failed> {
    let mut nets = vec!["10.233.5.2/24"; 8];
    nets.push("10.233.0.2/16");
    nets.push("10.233.5.6/30");
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = nets
            .iter()
            .map(|cidr| {
                s.spawn(move || {
                    let mut o = Options::new();
                    o.set_network_spec(Some(spec(cidr)));
                    run_true(&o)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (cidr, r) in nets.iter().zip(results) {
        let (termination, net, env) = r?;
        ensure!(termination == Termination::Exited(0), "{cidr}: {termination:?}");
        let n = spec(cidr);
        ensure!(net == Some(n), "{cidr}: {net:?}");
        ensure!(env == format!("{} {} {}", n.container(), n.host(), n.prefix_len()), "{cidr}: env {env:?}");
    }
    Ok(())
}

fn auto_networks_are_distinct_and_in_the_env() -> Result<(), Failed> {
    const N: usize = 12;
    let pool: NetworkPool = "10.234.0.0/24".parse().expect("pool");
    // Hold N containers at once, so that a subnet handed out twice would show.
    let mut containers = Vec::new();
    for _ in 0..N {
        let mut o = Options::new();
        o.set_network_auto(pool);
        containers.push(Container::create(&o).map_err(|e| chain(&e))?);
    }
    let nets: Vec<NetworkSpec> = containers.iter().filter_map(Container::network).collect();
    ensure!(nets.len() == N, "{nets:?}");
    for (i, a) in nets.iter().enumerate() {
        ensure!(
            a.prefix_len() == 30 && a.network().octets()[..3] == [10, 234, 0],
            "{a} is not a /30 of {pool}"
        );
        ensure!(nets[i + 1..].iter().all(|b| !a.overlaps(b)), "{a} handed out twice: {nets:?}");
    }
    for mut c in containers {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo $CVTEST_NET_ADDRESS $CVTEST_NET_HOST $CVTEST_NET_PREFIX"]);
        cmd.stdout(Stdio::Capture { limit: 4096 });
        c.spawn(&cmd).map_err(|e| chain(&e))?;
        let o = c.wait(Some(Duration::from_secs(60))).map_err(|e| chain(&e))?;
        let n = c.network().ok_or("no network")?;
        let env = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        ensure!(env == format!("{} {} 30", n.container(), n.host()), "env {env:?} for {n}");
        c.destroy().map_err(|e| chain(&e))?;
    }
    Ok(())
}

fn memory_shares_fit_the_budget() -> Result<(), Failed> {
    // A budget far above anything real runners use at offset 0 would be shared with them; so
    // these shares sit in a budget of their own size and only ever wait for each other.
    let never = |_: &Waiting| false;
    let give_up =
        WaitPolicy { label: Some("lease::memory"), timeout: Duration::from_secs(60), observer: Some(&never) };
    let budget = 1 << 40;
    let a = lease::take_memory(budget / 2, budget, &give_up).map_err(|e| chain(&e))?;
    let b = lease::take_memory(budget / 4, budget, &give_up).map_err(|e| chain(&e))?;
    let c = lease::take_memory(budget / 4, budget, &give_up).map_err(|e| chain(&e))?;
    let full = lease::take_memory(1, budget, &give_up);
    ensure!(matches!(full, Err(LeaseError::GaveUp { .. })), "the budget was overcommitted: {full:?}");
    // Freeing a and c leaves two separate holes; a share as big as both still fits.
    drop(a);
    drop(c);
    let both = lease::take_memory(budget / 2 + budget / 4, budget, &give_up).map_err(|e| chain(&e))?;
    drop(b);
    // A waiter is let in when the holder goes.
    let released = AtomicI32::new(0);
    let holder = Mutex::new(Some(both));
    let observer = |w: &Waiting| {
        if released.fetch_add(1, Ordering::Relaxed) == 0 {
            ensure_holder(w);
            holder.lock().unwrap().take();
        }
        true
    };
    let waited = lease::take_memory(
        budget,
        budget,
        &WaitPolicy { label: None, timeout: Duration::from_secs(60), observer: Some(&observer) },
    )
    .map_err(|e| chain(&e))?;
    ensure!(released.load(Ordering::Relaxed) >= 1, "the whole budget was taken while a share was held");
    drop(waited);
    Ok(())
}

fn ensure_holder(w: &Waiting) {
    assert_eq!(w.holder.as_ref().and_then(|h| h.test.as_deref()), Some("lease::memory"), "{w:?}");
}

fn wait_times_out_naming_the_holder() -> Result<(), Failed> {
    let _held = lease::take_subnet(
        &spec("10.235.0.2/24"),
        &WaitPolicy { label: Some("lease::t"), ..Default::default() },
    )
    .map_err(|e| chain(&e))?;
    let r = lease::take_subnet(
        &spec("10.235.0.3/24"),
        &WaitPolicy { timeout: Duration::ZERO, ..Default::default() },
    );
    let e = r.err().ok_or("an overlapping subnet was leased twice")?;
    let text = e.to_string();
    ensure!(
        matches!(&e, LeaseError::TimedOut { holder: Some(h), .. } if h.pid == std::process::id() as i32),
        "{e:?}"
    );
    ensure!(text.contains("10.235.0.0/24") && text.contains("test lease::t"), "{text}");
    Ok(())
}

/// The cost of a lease per networked container: take + release, and a pool pick.
fn bench_take_release() -> Result<(), Failed> {
    const N: u32 = 2000;
    let net = spec("10.236.0.2/24");
    let t = Instant::now();
    for _ in 0..N {
        drop(lease::take_subnet(&net, &WaitPolicy::default()).map_err(|e| chain(&e))?);
    }
    let fixed = t.elapsed() / N;
    let pool: NetworkPool = "10.236.16.0/20".parse().expect("pool");
    let t = Instant::now();
    for _ in 0..200 {
        drop(lease::take_from_pool(&pool, &WaitPolicy::default()).map_err(|e| chain(&e))?);
    }
    let auto = t.elapsed() / 200;
    let t = Instant::now();
    for _ in 0..N {
        drop(lease::take_memory(64, 1 << 20, &WaitPolicy::default()).map_err(|e| chain(&e))?);
    }
    let memory = t.elapsed() / N;
    println!(
        "lease take+release: subnet {:.1} us, auto (pool pick with a route dump) {:.1} us, memory {:.1} us",
        fixed.as_secs_f64() * 1e6,
        auto.as_secs_f64() * 1e6,
        memory.as_secs_f64() * 1e6
    );
    Ok(())
}
