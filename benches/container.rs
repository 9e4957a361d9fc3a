//! The per-container cost: create → spawn `/bin/true` → wait → peaks → destroy, with and without
//! a veth, beside a plain fork+exec+wait of `/bin/true` measured in the same run.
//!
//! `cargo bench --bench container [-- ITERATIONS]`. Prints medians and the ratios to the plain
//! fork+exec+wait.
//!
//! As root it measures real-root containers and root-mode containers with a user namespace
//! (root mapped to nobody) interleaved, then runs itself as nobody (`setpriv`, when present) for
//! the rootless containers, with their own fork+exec+wait baseline. As any other user it
//! measures rootless containers only. Rootless containers run without the CGROUPS part of
//! isolation where the cgroups cannot be delegated (cgroup v1).

use std::ffi::CString;
use std::time::{Duration, Instant};

use cvtest::{Command, Container, Isolation, Options, Stdio};

fn main() {
    // The zygote below is this benchmark re-executed.
    cvtest::zygote::serve_if_requested();
    let iterations: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(300);
    let root = nix::unistd::geteuid().is_root();
    let label = if root { "" } else { "rootless " };
    let mut plain_opts = Options::new();
    // Each veth container gets its own subnet, as a runner gives each container network: the
    // kernel removes a released pair asynchronously, and the same subnet right after it waits.
    let mut veth_opts = Options::new();
    veth_opts.set_network_cidr("10.213.0.2/24").expect("valid network");
    let subnet = std::cell::Cell::new(0u32);
    let next_subnet = |opts: &mut Options| {
        let n = subnet.get();
        subnet.set((n + 1) % 200);
        opts.set_network_cidr(&format!("10.213.{n}.2/24")).expect("valid network");
    };
    let v1 =
        std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|c| c.lines().any(|l| !l.starts_with("0::")));
    if std::env::var_os("CVTEST_BENCH_NO_CGROUPS").is_some() || (!root && v1) {
        let caps = Isolation::NETWORK | Isolation::FILESYSTEM | Isolation::PROCESS_CONTROL | Isolation::IPC;
        plain_opts.set_isolation(caps);
        veth_opts.set_isolation(caps);
    }
    let mut cmd = Command::new("/bin/true");
    cmd.env_clear().stdout(Stdio::Null).stderr(Stdio::Null);

    let fork_exec = || fork_exec_wait("/bin/true");
    let std_spawn = || {
        let status = std::process::Command::new("/bin/true").env_clear().status().expect("spawn /bin/true");
        assert!(status.success());
    };
    // Per phase (create, spawn, wait, destroy), without and with a veth.
    let phases = std::cell::RefCell::new([(); 9].map(|()| [(); 4].map(|()| Vec::new())));
    // Set while a runner-like container is cloned directly, without the zygote (its A/B).
    let direct = std::cell::Cell::new(false);
    // The A/B of the network namespace pool: the same container, reusing a namespace.
    let mut pooled_opts = plain_opts.clone();
    pooled_opts.set_reuse_netns(true);
    // As `cargo cvtest` runs a test: a pooled namespace (when it has no network), the cgroup
    // made ahead and removed behind by the background thread, the init cloned by a zygote.
    let mut runner_opts = pooled_opts.clone();
    runner_opts.set_background(true);
    let mut runner_veth = veth_opts.clone();
    runner_veth.set_reuse_netns(true).set_background(true);
    // Its A/B: the veth container's namespace made by its init's clone, not made ahead.
    let mut runner_veth_new_ns = runner_veth.clone();
    runner_veth_new_ns.set_reuse_netns(false);
    let zygote = std::cell::RefCell::new(cvtest::Zygote::start().ok());
    // Root mode with a user namespace: root is nobody outside.
    let (mut userns_plain, mut userns_veth) = (plain_opts.clone(), veth_opts.clone());
    userns_plain.map_root_to(65534, 65534);
    userns_veth.map_root_to(65534, 65534);
    // Before issue 17, `destroy` waited for the kernel to delete the veth: the same container,
    // then that wait, measured in the same loop (an A/B of that change).
    let container_waiting = |opts: &Options, wait_veth: bool| -> Result<(), String> {
        let t0 = Instant::now();
        let mut c = Container::create(opts).map_err(|e| format!("create: {e}"))?;
        let mapped = c.mapped_owner().is_some() && root;
        let t1 = Instant::now();
        match zygote.borrow_mut().as_mut().filter(|_| opts.background() && !direct.get()) {
            Some(z) => c.spawn_via(z, &cmd),
            None => c.spawn(&cmd),
        }
        .map_err(|e| format!("spawn: {e}"))?;
        let t2 = Instant::now();
        let outcome = c.wait(None).map_err(|e| format!("wait: {e}"))?;
        assert!(outcome.termination.is_success(), "{outcome:?}");
        std::hint::black_box(outcome.peaks);
        let t3 = Instant::now();
        c.destroy().map_err(|e| format!("destroy: {e}"))?;
        if wait_veth {
            let left = cvtest::wait_released_veths(Duration::from_secs(10));
            assert!(left.is_empty(), "veths not deleted in 10 s: {left:?}");
            return Ok(());
        }
        let t4 = Instant::now();
        let case = if opts.background() && direct.get() {
            7
        } else if opts.background() && opts.network().is_some() && !opts.reuse_netns() {
            8
        } else if opts.background() {
            5 + usize::from(opts.network().is_some())
        } else if opts.reuse_netns() {
            4
        } else {
            usize::from(opts.network().is_some()) + if mapped { 2 } else { 0 }
        };
        for (v, d) in phases.borrow_mut()[case].iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
            v.push(d);
        }
        Ok(())
    };
    let container = |opts: &Options| container_waiting(opts, false);
    container(&plain_opts).expect("a container without network");
    let with_veth = match container(&veth_opts) {
        Ok(()) => true,
        Err(e) => {
            println!("container with veth unavailable, skipped: {e}");
            false
        }
    };

    // Interleave the cases so that drift (other load, caches) hits them alike.
    let mut samples: [Vec<Duration>; 12] = Default::default();
    let warmup = 20;
    let pause =
        std::env::var("CVTEST_BENCH_PAUSE_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    for i in 0..iterations + warmup {
        // Pool off and on, in alternating order (a namespace's teardown runs after its container).
        let mut ab = [None, None];
        for case in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let opts = if case == 0 { &plain_opts } else { &pooled_opts };
            ab[case] = Some(time(|| container(opts).expect("container")));
        }
        // As cargo cvtest runs one, through the zygote and cloned directly, in alternating order.
        let mut rd = [None, None];
        // With a veth, its namespace made ahead and made by the clone, in alternating order.
        let mut rv = [None, None];
        for case in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            rv[case] = with_veth.then(|| {
                let opts = if case == 0 { &mut runner_veth } else { &mut runner_veth_new_ns };
                next_subnet(opts);
                time(|| container(opts).expect("container with veth as cargo cvtest runs one"))
            });
        }
        for case in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            direct.set(case == 1);
            rd[case] = Some(time(|| container(&runner_opts).expect("container as cargo cvtest runs one")));
            direct.set(false);
        }
        let times = [
            Some(time(fork_exec)),
            Some(time(std_spawn)),
            ab[0],
            with_veth.then(|| {
                if let Some(p) = pause {
                    std::thread::sleep(p);
                }
                next_subnet(&mut veth_opts);
                time(|| container(&veth_opts).expect("container with veth"))
            }),
            root.then(|| time(|| container(&userns_plain).expect("container with a user namespace"))),
            (root && with_veth).then(|| {
                next_subnet(&mut userns_veth);
                time(|| container(&userns_veth).expect("container with a user namespace and veth"))
            }),
            ab[1],
            with_veth.then(|| {
                next_subnet(&mut veth_opts);
                time(|| container_waiting(&veth_opts, true).expect("container with veth, waiting for it"))
            }),
            rd[0],
            rv[0],
            rd[1],
            rv[1],
        ];
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
        if i >= warmup {
            for (s, t) in samples.iter_mut().zip(times) {
                s.extend(t);
            }
        }
    }
    let stats: Vec<Option<(Duration, Duration, Duration)>> = samples
        .iter_mut()
        .map(|s| (!s.is_empty()).then(|| (percentile(s, 0), percentile(s, 50), percentile(s, 90))))
        .collect();
    let Some(Some(baseline)) = stats.first().copied() else { return };
    let base = baseline.1.as_secs_f64();
    let base_min = baseline.0.as_secs_f64();
    let who = if root { "as root" } else { "rootless, as an unprivileged user" };
    println!("{iterations} iterations each (after {warmup} warm-up), interleaved, {who}\n");
    println!("{:<40} {:>9} {:>9} {:>9} {:>7} {:>9}", "case", "min", "median", "p90", "ratio", "min ratio");
    let names = [
        "fork+exec+wait /bin/true (baseline)".to_owned(),
        "std::process::Command /bin/true".to_owned(),
        format!("{label}container, no network"),
        format!("{label}container with veth"),
        "userns container, no network".to_owned(),
        "userns container with veth".to_owned(),
        format!("{label}container, no network, pooled netns"),
        format!("{label}veth, destroy waits (before)"),
        format!("{label}as cargo cvtest runs one, no network"),
        format!("{label}as cargo cvtest runs one, with veth"),
        format!("{label}as cargo cvtest, without zygote"),
        format!("{label}as cargo cvtest, veth, netns by clone"),
    ];
    for (name, stat) in names.iter().zip(&stats) {
        let Some((min, median, p90)) = stat else { continue };
        println!(
            "{name:<40} {:>7.0}µs {:>7.0}µs {:>7.0}µs {:>6.2}x {:>8.2}x",
            min.as_secs_f64() * 1e6,
            median.as_secs_f64() * 1e6,
            p90.as_secs_f64() * 1e6,
            median.as_secs_f64() / base,
            min.as_secs_f64() / base_min
        );
    }
    let mut phases = phases.borrow_mut();
    let cases = [
        format!("{label}container without network"),
        format!("{label}container with veth"),
        "userns container without network".to_owned(),
        "userns container with veth".to_owned(),
        format!("{label}container without network, pooled netns"),
        format!("{label}container as cargo cvtest runs one, no network"),
        format!("{label}container as cargo cvtest runs one, with veth"),
        format!("{label}container as cargo cvtest runs one, no network, without the zygote"),
        format!("{label}container as cargo cvtest runs one, with veth, its namespace made by the clone"),
    ];
    for (case, name) in cases.iter().enumerate() {
        if phases[case][0].len() < iterations {
            continue;
        }
        let p: Vec<f64> = phases[case].iter_mut().map(|v| percentile(v, 50).as_secs_f64() * 1e6).collect();
        println!(
            "{name}, median per phase: create {:.0}µs, spawn {:.0}µs, wait {:.0}µs, destroy {:.0}µs",
            p[0], p[1], p[2], p[3]
        );
    }
    let pool = cvtest::netns_pool_stats();
    println!(
        "netns pool: {} made, {} reused, {} returned, {} discarded, {} used up by a veth",
        pool.made, pool.reused, pool.returned, pool.discarded, pool.with_veth
    );
    // The background thread's cgroups (made ahead, or not removed yet) go before the process.
    if let Err(e) = cvtest::release_own_cgroup() {
        println!("releasing the background thread's cgroups failed: {}", cvtest::error_chain(&e));
    }
    println!(
        "\ntargets (issue 17): a container ≤ 3x baseline without network, ≤ 4x with veth (as cargo cvtest runs one)"
    );
    if root {
        rootless_as_nobody(iterations);
    }
}

/// Runs this benchmark again as nobody, for the rootless cases.
fn rootless_as_nobody(iterations: usize) {
    let Ok(exe) = std::env::current_exe() else { return };
    println!("\n--- the same as nobody (setpriv --reuid=65534 --regid=65534 --clear-groups) ---");
    let status = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(exe)
        .arg(iterations.to_string())
        .current_dir("/")
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        println!("rootless run unavailable ({status:?})");
    }
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() - 1) * p / 100]
}

/// A literal fork, execve, waitpid.
fn fork_exec_wait(program: &str) {
    let path = CString::new(program).expect("no NUL");
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: the benchmark is single-threaded; the child only calls execve and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: argv and envp are NULL-terminated arrays of valid C strings.
        unsafe {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: status is a valid int to write to.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(r == pid && status == 0, "/bin/true failed: {status:#x}");
}
