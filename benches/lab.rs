//! The cost of a lab (`cvtest::lab`): making a 3-node and a 10-node lab (switch, the test's
//! link, each node a container running `/bin/sleep` with its link) and closing it (every node
//! killed and reaped, the switch gone), beside making and destroying the same number of plain
//! containers running `/bin/sleep`; and the time of a partition and of a heal.
//!
//! `sudo cargo bench --bench lab [-- ROUNDS]` (root only). This process plays the `#[cv_test]`
//! parent: it runs itself as the "test" in a container, serves its lab requests, and measures
//! the plain containers itself; the test measures its lab requests from the inside, as a test
//! sees them.

use std::time::{Duration, Instant};

use cvtest::lab::maker::{Maker, NodeBase};
use cvtest::lab::{Lab, Node};
use cvtest::{Command, Container, Options, Rootfs, Stdio};

const ROLE: &str = "CVTEST_LAB_BENCH_ROUNDS";

fn main() {
    if let Ok(rounds) = std::env::var(ROLE) {
        inside(rounds.parse().expect("rounds"));
        return;
    }
    let rounds: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(20);
    assert!(nix::unistd::geteuid().is_root(), "the lab benchmark runs as root");
    for n in [3, 10] {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (u, d) = plain_containers(n);
            up.push(u);
            down.push(d);
        }
        println!("{n} plain containers: make {} / destroy {}", median(&mut up), median(&mut down));
    }

    let exe = std::env::current_exe().expect("own exe");
    let target =
        exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()).expect("target dir").to_path_buf();
    unused_makers(&exe, &target.join("cvtest-lab"), rounds * 25);
    let mut options = Options::new();
    options.set_rootfs(Rootfs::Host { writable: vec![target.clone()] });
    let mut test = Container::create(&options).expect("the test's container");
    let mut maker = Maker::bind(&target.join("cvtest-lab")).expect("lab socket");
    let mut cmd = Command::new(&exe);
    cmd.env(ROLE, rounds.to_string())
        .env(cvtest::lab::ENV_SOCKET, maker.socket_path())
        .stdout(Stdio::Capture { limit: 1 << 20 })
        .stderr(Stdio::Capture { limit: 1 << 20 });
    test.spawn(&cmd).expect("spawn the test");
    let base = NodeBase { exe: exe.clone(), rootfs: Rootfs::default(), limits: true, test_network: None };
    maker.serve(test.init_pid().expect("spawned"), base);
    let outcome = test.wait(Some(Duration::from_secs(600))).expect("wait");
    drop(maker.finish());
    print!("{}", String::from_utf8_lossy(&outcome.stdout));
    eprint!("{}", String::from_utf8_lossy(&outcome.stderr));
    test.destroy().expect("destroy");
}

/// What every test pays for its maker when it opens no lab (most tests): bind the socket, serve
/// (a thread waiting for a connection), finish (wake it, join it, remove the socket).
fn unused_makers(exe: &std::path::Path, dir: &std::path::Path, rounds: usize) {
    let me = std::process::id() as i32;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let mut maker = Maker::bind(dir).expect("lab socket");
        let base =
            NodeBase { exe: exe.to_path_buf(), rootfs: Rootfs::default(), limits: true, test_network: None };
        maker.serve(me, base);
        drop(maker.finish());
        times.push(start.elapsed());
    }
    println!("an unused maker (bind, serve, finish), as every test pays: {}", median(&mut times));
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        drop(Maker::bind(dir).expect("lab socket"));
        times.push(start.elapsed());
    }
    println!("  of which the socket (bind, then remove): {}", median(&mut times));
}

/// `n` containers running `/bin/sleep 60`, all up; then all killed and destroyed.
fn plain_containers(n: usize) -> (Duration, Duration) {
    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("60").stdout(Stdio::Null).stderr(Stdio::Null);
    let t0 = Instant::now();
    let containers: Vec<Container> = (0..n)
        .map(|_| {
            let mut c = Container::create(&Options::new()).expect("create");
            c.spawn(&cmd).expect("spawn");
            c
        })
        .collect();
    let up = t0.elapsed();
    let t1 = Instant::now();
    for c in containers {
        c.destroy().expect("destroy");
    }
    (up, t1.elapsed())
}

/// The test's side: labs made and closed, partitions and heals, each timed.
fn inside(rounds: usize) {
    for n in [3, 10] {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t0 = Instant::now();
            let mut lab = Lab::new().expect("lab");
            for i in 0..n {
                lab.add(Node::binary(&format!("n{i}"), "/bin/sleep").arg("60")).expect("node");
            }
            up.push(t0.elapsed());
            let t1 = Instant::now();
            lab.close().expect("close");
            down.push(t1.elapsed());
        }
        println!("{n}-node lab: make {} / close {}", median(&mut up), median(&mut down));
    }
    let mut lab = Lab::new().expect("lab");
    for i in 0..3 {
        lab.add(Node::binary(&format!("n{i}"), "/bin/sleep").arg("60")).expect("node");
    }
    let (mut cut, mut heal) = (Vec::new(), Vec::new());
    for _ in 0..rounds * 5 {
        let t0 = Instant::now();
        lab.partition(&["n0"], &["n1", "n2"]).expect("partition");
        cut.push(t0.elapsed());
        let t1 = Instant::now();
        lab.heal().expect("heal");
        heal.push(t1.elapsed());
    }
    println!("3-node lab: partition (1 from 2, both ways) {} / heal {}", median(&mut cut), median(&mut heal));
}

fn median(v: &mut [Duration]) -> String {
    v.sort();
    let m = v[v.len() / 2];
    format!("{:.2} ms (min {:.2})", m.as_secs_f64() * 1e3, v[0].as_secs_f64() * 1e3)
}
