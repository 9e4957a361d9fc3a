//! Example tests for cvtest, one per capability. Run them with
//!
//! ```text
//! cargo cvtest -p cvtest-examples
//! ```
//!
//! | test | shows |
//! |---|---|
//! | `memory::hog_is_oom_killed_under_32m` | a 128 MiB hog OOM-killed under `memory = "32M"` (expected: see Cargo.toml) |
//! | `memory::hog_passes_under_256m` | the same hog passing under `memory = "256M"`, with its peak |
//! | `pids::fork_storm_is_held_by_the_pids_limit` | 200 child processes asked for, `pids = "32"` refuses most |
//! | `net::server_and_client_over_a_veth` | a TCP server on the host end of a veth, a client in a container behind it |
//! | `cpu::busy_loop_is_held_to_half_a_cpu` | a busy loop under `cpus = "0.5"` gets at most about half a core |
//! | `lab::replicated_counter_*` | three counter nodes on a lab switch: one cut off, the majority accepts writes, the minority refuses, it catches up after a heal |
//! | `lab::client_retries_over_a_lossy_slow_link` | a client's retries against a node behind 20% loss, 40 ms delay, 1 Mbit/s (netem) |
//! | `lab::*` | the lab itself: reachability, partitions both and one way, kill/restart, a rate, a node's own OOM and pids exhaustion |
//! | `port::binds_8080_*` | plain `#[test]`s all binding 127.0.0.1:8080 at once: each has its own network namespace |
//!
//! Some examples only make sense under `cargo cvtest` (which sets `CVTEST_RUNNER`): under plain
//! `cargo test` they say so and return.
#![cfg(test)]

/// Whether `cargo cvtest` runs this test (each test in its own container).
fn under_cargo_cvtest() -> bool {
    let yes = std::env::var_os("CVTEST_RUNNER").is_some();
    if !yes {
        println!(
            "this example shows what `cargo cvtest` does; run it with `cargo cvtest -p cvtest-examples`"
        );
    }
    yes
}

/// Touches `mib` MiB, one page at a time, and keeps it.
fn allocate(mib: usize) -> Vec<Vec<u8>> {
    (0..mib)
        .map(|_| {
            let mut chunk = vec![0u8; 1 << 20];
            chunk.iter_mut().step_by(4096).for_each(|b| *b = 1);
            std::hint::black_box(chunk)
        })
        .collect()
}

mod lab;

mod memory {
    use super::*;
    use cvtest::cv_test;

    /// OOM-killed: the kernel stops it at 32 MiB. Marked `expect = "oom"` in Cargo.toml.
    #[cv_test(memory = "32M")]
    fn hog_is_oom_killed_under_32m() {
        if !under_cargo_cvtest() {
            return;
        }
        let kept = allocate(128);
        println!("allocated {} MiB: the limit did not hold", kept.len());
    }

    /// The same hog with room to spare: passes, and the report shows a peak near 128 MiB.
    #[cv_test(memory = "256M")]
    fn hog_passes_under_256m() {
        assert_eq!(allocate(128).len(), 128);
    }
}

mod pids {
    use cvtest::cv_test;

    /// A fork storm: asks for 200 children; the pids limit refuses all but about 30.
    #[cv_test(pids = "32")]
    fn fork_storm_is_held_by_the_pids_limit() {
        let mut children = Vec::new();
        let mut refused = 0;
        for _ in 0..200 {
            match std::process::Command::new("sleep").arg("10").spawn() {
                Ok(c) => children.push(c),
                Err(_) => refused += 1,
            }
        }
        println!("{} children started, {refused} refused", children.len());
        for mut c in children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(refused >= 150, "the pids limit held only {refused} of 200 forks back");
    }
}

mod net {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use cvtest::{Command, Container, Isolation, Options, Stdio, Termination};

    /// A server and a client talking over a veth. The server listens on the host end of the
    /// veth (10.213.0.1, in this test's own network namespace under `cargo cvtest`); the client
    /// runs in a container made with the cvtest library, behind the container end (10.213.0.2),
    /// and the veth's counters show the bytes that crossed.
    #[test]
    fn server_and_client_over_a_veth() {
        if !super::under_cargo_cvtest() {
            return;
        }
        let mut opts = Options::new();
        opts.set_isolation(
            Isolation::NETWORK | Isolation::PROCESS_CONTROL | Isolation::FILESYSTEM | Isolation::IPC,
        );
        opts.set_network("10.213.0.2", "255.255.255.0", "10.213.0.1").unwrap();
        let mut container = Container::create(&opts).unwrap();
        // The host end exists once the container is spawned; bind after a short retry loop.
        let mut client = Command::new("/bin/bash");
        client.args([
            "-c",
            "for i in $(seq 50); do exec 3<>/dev/tcp/10.213.0.1/7000 && break; sleep 0.1; done; \
                            echo ping >&3; read -r reply <&3; echo \"$reply\"",
        ]);
        client.stdout(Stdio::Capture { limit: 4096 }).stderr(Stdio::Capture { limit: 4096 });
        container.spawn(&client).unwrap();
        let server = (0..100)
            .find_map(|_| {
                TcpListener::bind("10.213.0.1:7000")
                    .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                    .ok()
            })
            .expect("the host end of the veth never got its address");
        let (stream, peer) = server.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        writeln!(&stream, "pong {}", line.trim()).unwrap();
        let outcome = container.wait(Some(std::time::Duration::from_secs(20))).unwrap();
        container.destroy().unwrap();
        let said = String::from_utf8_lossy(&outcome.stdout);
        assert_eq!(
            outcome.termination,
            Termination::Exited(0),
            "client: {said} {}",
            String::from_utf8_lossy(&outcome.stderr)
        );
        assert_eq!(said.trim(), "pong ping");
        assert_eq!(peer.ip().to_string(), "10.213.0.2");
        let net = outcome.peaks.net.expect("a veth has counters");
        println!(
            "client {peer} said ping over the veth: {} bytes in, {} bytes out",
            net.rx_bytes, net.tx_bytes
        );
        assert!(net.rx_bytes > 0 && net.tx_bytes > 0);
    }
}

mod cpu {
    use std::time::{Duration, Instant};

    use cvtest::cv_test;

    /// CPU time of this process so far (user + system), from /proc/self/stat.
    fn cpu_time() -> Duration {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after_comm.split(' ').collect();
        // Fields 14 and 15 (utime, stime), counted from 1, are 11 and 12 after the comm.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    /// Spins for 2 s of wall time under a quota of half a CPU: gets about 1 s of CPU.
    #[cv_test(cpus = "0.5")]
    fn busy_loop_is_held_to_half_a_cpu() {
        let (wall0, cpu0) = (Instant::now(), cpu_time());
        let mut x = 0u64;
        while wall0.elapsed() < Duration::from_secs(2) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let (wall, cpu) = (wall0.elapsed(), cpu_time() - cpu0);
        println!("{cpu:?} of CPU in {wall:?} of wall time");
        assert!(cpu.as_secs_f64() < 0.7 * wall.as_secs_f64(), "the quota did not hold: {cpu:?} in {wall:?}");
    }
}

mod port {
    use std::net::TcpListener;
    use std::time::Duration;

    /// Binds 127.0.0.1:8080 and holds it a while. Several of these run at once under cargo
    /// cvtest, each in its own network namespace; under plain `cargo test` they would collide.
    fn hold_8080() {
        if !super::under_cargo_cvtest() {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:8080").expect("127.0.0.1:8080 is taken");
        std::thread::sleep(Duration::from_millis(500));
        drop(listener);
    }

    #[test]
    fn binds_8080_a() {
        hold_8080();
    }
    #[test]
    fn binds_8080_b() {
        hold_8080();
    }
    #[test]
    fn binds_8080_c() {
        hold_8080();
    }
    #[test]
    fn binds_8080_d() {
        hold_8080();
    }
}
