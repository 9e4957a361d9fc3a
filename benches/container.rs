//! The per-container cost: create → spawn `/bin/true` → wait → peaks → destroy, with and without
//! a veth, beside a plain fork+exec+wait of `/bin/true` measured in the same run.
//!
//! `cargo bench --bench container [-- ITERATIONS]` (as root). Prints medians and the ratios to
//! the plain fork+exec+wait.

use std::ffi::CString;
use std::time::{Duration, Instant};

use cvtest::{Caps, Command, Container, Options, Stdio};

fn main() {
    let iterations: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(300);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the container benchmark needs root; skipped");
        return;
    }
    let mut plain_opts = Options::new();
    let mut veth_opts = Options::new();
    veth_opts.network_cidr("10.213.0.2/24").expect("valid network");
    if std::env::var_os("CVTEST_BENCH_NO_CGROUPS").is_some() {
        let caps = Caps::NETWORK | Caps::FILESYSTEM | Caps::PROCESS_CONTROL | Caps::IPC;
        plain_opts.set_caps(caps);
        veth_opts.set_caps(caps);
    }
    let mut cmd = Command::new("/bin/true");
    cmd.env_clear().stdout(Stdio::Null).stderr(Stdio::Null);

    let fork_exec = || fork_exec_wait("/bin/true");
    let std_spawn = || {
        let status = std::process::Command::new("/bin/true").env_clear().status().expect("spawn /bin/true");
        assert!(status.success());
    };
    let phases = std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()]);
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
        if opts.network.is_none() {
            for (v, d) in phases.borrow_mut().iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
                v.push(d);
            }
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
    for i in 0..iterations + warmup {
        let times = [
            Some(time(fork_exec)),
            Some(time(std_spawn)),
            Some(time(|| container(&plain_opts).expect("container"))),
            with_veth.then(|| time(|| container(&veth_opts).expect("container with veth"))),
        ];
        if i >= warmup {
            for (s, t) in samples.iter_mut().zip(times) {
                s.extend(t);
            }
        }
    }
    let stats: Vec<(Duration, Duration)> = samples
        .iter_mut()
        .take_while(|s| !s.is_empty())
        .map(|s| (percentile(s, 50), percentile(s, 90)))
        .collect();
    let base = stats[0].0.as_secs_f64();
    println!("{iterations} iterations each (after {warmup} warm-up), interleaved\n");
    println!("{:<44} {:>10} {:>10} {:>8}", "case", "median", "p90", "ratio");
    for (name, (median, p90)) in [
        "fork+exec+wait /bin/true (baseline)",
        "std::process::Command /bin/true",
        "container, no network",
        "container with veth",
    ]
    .iter()
    .zip(&stats)
    {
        println!(
            "{name:<44} {:>8.0}µs {:>8.0}µs {:>7.2}x",
            median.as_secs_f64() * 1e6,
            p90.as_secs_f64() * 1e6,
            median.as_secs_f64() / base
        );
    }
    let mut phases = phases.borrow_mut();
    let phase = |i: usize, p: &mut [Vec<Duration>; 4]| percentile(&mut p[i], 50).as_secs_f64() * 1e6;
    println!(
        "\ncontainer without network, median per phase: create {:.0}µs, spawn {:.0}µs, wait {:.0}µs, destroy {:.0}µs",
        phase(0, &mut phases),
        phase(1, &mut phases),
        phase(2, &mut phases),
        phase(3, &mut phases)
    );
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
