//! The per-container cost: create → spawn `/bin/true` → wait → peaks → destroy, with and without
//! a veth, beside a plain fork+exec+wait of `/bin/true` measured in the same run.
//!
//! `cargo bench --bench container [-- ITERATIONS]` (as root). Prints medians and the ratios to
//! the plain fork+exec+wait.

use std::ffi::CString;
use std::time::{Duration, Instant};

use cvtest::{Command, Container, Isolation, Options, Stdio};

fn main() {
    let iterations: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(300);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the container benchmark needs root; skipped");
        return;
    }
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
    if std::env::var_os("CVTEST_BENCH_NO_CGROUPS").is_some() {
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
    let phases = std::cell::RefCell::new([[(); 4].map(|()| Vec::new()), [(); 4].map(|()| Vec::new())]);
    let container = |opts: &Options| -> Result<(), String> {
        let t0 = Instant::now();
        let mut c = Container::create(opts).map_err(|e| format!("create: {e}"))?;
        let t1 = Instant::now();
        c.spawn(&cmd).map_err(|e| format!("spawn: {e}"))?;
        let t2 = Instant::now();
        let outcome = c.wait(None).map_err(|e| format!("wait: {e}"))?;
        assert!(outcome.termination.is_success(), "{outcome:?}");
        std::hint::black_box(outcome.peaks);
        let t3 = Instant::now();
        c.destroy().map_err(|e| format!("destroy: {e}"))?;
        let t4 = Instant::now();
        let case = usize::from(opts.network().is_some());
        for (v, d) in phases.borrow_mut()[case].iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
            v.push(d);
        }
        Ok(())
    };
    container(&plain_opts).expect("a container without network");
    let with_veth = match container(&veth_opts) {
        Ok(()) => true,
        Err(e) => {
            println!("container with veth unavailable, skipped: {e}");
            false
        }
    };

    // Interleave the cases so that drift (other load, caches) hits them alike.
    let mut samples: [Vec<Duration>; 4] = Default::default();
    let warmup = 20;
    let pause =
        std::env::var("CVTEST_BENCH_PAUSE_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    for i in 0..iterations + warmup {
        let times = [
            Some(time(fork_exec)),
            Some(time(std_spawn)),
            Some(time(|| container(&plain_opts).expect("container"))),
            with_veth.then(|| {
                if let Some(p) = pause {
                    std::thread::sleep(p);
                }
                next_subnet(&mut veth_opts);
                time(|| container(&veth_opts).expect("container with veth"))
            }),
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
    let stats: Vec<(Duration, Duration, Duration)> = samples
        .iter_mut()
        .take_while(|s| !s.is_empty())
        .map(|s| (percentile(s, 0), percentile(s, 50), percentile(s, 90)))
        .collect();
    let base = stats[0].1.as_secs_f64();
    let base_min = stats[0].0.as_secs_f64();
    println!("{iterations} iterations each (after {warmup} warm-up), interleaved\n");
    println!("{:<40} {:>9} {:>9} {:>9} {:>7} {:>9}", "case", "min", "median", "p90", "ratio", "min ratio");
    for (name, (min, median, p90)) in [
        "fork+exec+wait /bin/true (baseline)",
        "std::process::Command /bin/true",
        "container, no network",
        "container with veth",
    ]
    .iter()
    .zip(&stats)
    {
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
    for (case, name) in ["without network", "with veth"].iter().enumerate() {
        if phases[case][0].len() < iterations {
            continue;
        }
        let p: Vec<f64> = phases[case].iter_mut().map(|v| percentile(v, 50).as_secs_f64() * 1e6).collect();
        println!(
            "container {name}, median per phase: create {:.0}µs, spawn {:.0}µs, wait {:.0}µs, destroy {:.0}µs",
            p[0], p[1], p[2], p[3]
        );
    }
    println!("\ntargets: container ≤ 4x baseline without network, ≤ 5x with veth");
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
