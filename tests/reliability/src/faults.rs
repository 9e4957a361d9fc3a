//! Tests that fail, hang, flood or attack their container. The driver runs each by name and
//! checks the outcome the runner reports, then that nothing is left.

use std::io::Write;
use std::time::Duration;

use cvtest::cv_test;

use crate::support::{daemonize, fork_sleeper, rendezvous_dir, signal, sleep, wait_for};

/// FAIL, exit code 101, the message in the kept stderr.
#[test]
fn panics() {
    panic!("reliability: this test panics on purpose");
}

/// OOM: touches 256 MiB under a 64 MiB limit.
#[cv_test(memory = "64M")]
fn oom() {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for _ in 0..256 {
        let mut chunk = vec![0u8; 1 << 20];
        chunk.iter_mut().step_by(4096).for_each(|b| *b = 1);
        kept.push(std::hint::black_box(chunk));
    }
    println!("allocated {} MiB: the memory limit did not hold", kept.len());
}

/// A fork bomb under `pids = "32"`: every process forks forever. Once its own fork is refused
/// (the limit is full) it tells the driver (`bomb.full`), waits until the driver has probed the
/// host (`probe.done`), checks that forks are still refused, and returns: the container ends,
/// and the bomb with it.
#[cv_test(pids = "32")]
fn fork_bomb() {
    let dir = rendezvous_dir();
    let full = loop {
        // SAFETY: the child runs only async-signal-safe code (fork in a loop).
        match unsafe { libc::fork() } {
            0 => bomb(),
            -1 => break std::io::Error::last_os_error(),
            _ => {}
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::EAGAIN), "fork failed, but not at the pids limit: {full}");
    signal("bomb.full");
    assert!(wait_for(&dir.join("probe.done"), Duration::from_secs(120)), "the driver never probed the host");
    // SAFETY: as above; the bomb is still running, so this fork must be refused.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        bomb();
    }
    assert_eq!(pid, -1, "a fork succeeded: the bomb died down, or the limit does not hold");
}

fn bomb() -> ! {
    loop {
        // SAFETY: fork is async-signal-safe; every child runs this same loop.
        unsafe { libc::fork() };
    }
}

/// Starts a daemon (double fork, setsid) that keeps stdout and stderr open and would sleep for
/// 10 minutes, and returns. PASS, quickly: the runner must not wait for the daemon's pipes, and
/// the daemon must die with the container.
#[cv_test(timeout = "60s")]
fn daemonizes_and_exits() {
    daemonize(600);
    println!("daemon started");
}

/// Ignores SIGTERM, SIGINT and SIGHUP, then sleeps for 5 minutes. Run with `--timeout 2s`
/// (TIMEOUT), and as the victim of a runner that gets SIGTERM (CANCELLED).
#[test]
fn ignores_sigterm() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: SIG_IGN is a valid disposition for these signals.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    signal("ignores_sigterm.ready");
    sleep(300);
}

/// Closes stdout and stderr, works on for half a second, and passes.
#[test]
fn closes_stdout() {
    println!("before closing");
    std::io::stdout().flush().unwrap();
    // SAFETY: closing our own standard descriptors; std treats writes to a closed one as done.
    unsafe {
        libc::close(1);
        libc::close(2);
    }
    std::thread::sleep(Duration::from_millis(500));
}

/// Closes stdout, then panics: FAIL, with the panic on stderr.
#[test]
fn closes_stdout_then_panics() {
    // SAFETY: closing our own stdout.
    unsafe { libc::close(1) };
    panic!("reliability: stdout is closed and this test panics");
}

/// Writes 100 MiB to stdout (a first line, 100 MiB of 1 KiB lines, a last line), then fails.
/// The runner keeps a bounded part with a marker where it dropped the middle.
#[test]
fn floods_stdout() {
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "FLOOD-BEGIN").unwrap();
    let line = [b'x'; 1023];
    for i in 0..(100 * 1024) {
        out.write_all(&line[..1023 - 8]).unwrap();
        writeln!(out, "{i:07}").unwrap();
    }
    writeln!(out, "FLOOD-END").unwrap();
    out.flush().unwrap();
    drop(out);
    panic!("reliability: flooded stdout with 100 MiB");
}

/// Sleeps far past its 1 s timeout: TIMEOUT.
#[cv_test(timeout = "1s")]
fn hangs_past_timeout() {
    sleep(600);
}

/// For interrupts: a test process with a child, asleep for 2 minutes.
#[test]
fn sleeper() {
    fork_sleeper(120);
    signal("sleeper.ready");
    sleep(120);
}

/// For interrupts: the same behind a veth.
#[cv_test(network = "10.182.0.2/30")]
fn sleeper_networked() {
    fork_sleeper(120);
    signal("sleeper_networked.ready");
    sleep(120);
}

/// For interrupts: a daemon and a sleeper behind another veth.
#[cv_test(network = "10.182.0.6/30")]
fn sleeper_with_daemon() {
    daemonize(120);
    signal("sleeper_with_daemon.ready");
    sleep(120);
}

/// Asks for a CPU quota of one whole CPU (refused below a parent with a smaller quota on v1).
#[cv_test(cpus = "1")]
fn wants_one_cpu() {}

/// Trivial passing tests, for runs that need a few containers.
#[test]
fn small_a() {}
#[test]
fn small_b() {}
#[test]
fn small_c() {}

/// A networked trivial test (for the veth-name case).
#[cv_test(network = "10.182.0.10/30")]
fn small_networked() {
    crate::load::check_networked("10.182.0.10");
}
