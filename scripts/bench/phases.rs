//! Where a container's time goes: create, spawn, wait and destroy timed separately, for the full
//! container and with one capability taken away at a time, beside a plain fork+exec+wait, all
//! interleaved in one run.
//!
//!   phases [ITERATIONS] [--veth] [-- PROGRAM [ARG]...]   (default program: /bin/true)
//!
//! bench.py builds this against the repository's `cvtest` library (release) in a scratch crate
//! under the target dir. As root. Prints one line per case and phase: medians in µs.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cvtest::{Command, Container, Isolation, Options, Stdio};

struct Case {
    name: &'static str,
    opts: Options,
    /// create, spawn, wait, destroy, total
    samples: [Vec<Duration>; 5],
}

fn main() {
    let mut iterations = 200usize;
    let mut program = PathBuf::from("/bin/true");
    let mut program_args: Vec<String> = Vec::new();
    let mut veth = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--veth" => veth = true,
            "--" => {
                program = args.next().expect("-- PROGRAM").into();
                program_args = args.by_ref().collect();
            }
            n => iterations = n.parse().unwrap_or_else(|_| panic!("not an iteration count: {n}")),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("phases needs root");
        std::process::exit(2);
    }
    let without = |isolation: Isolation| {
        let mut o = Options::new();
        let all = [Isolation::CGROUPS, Isolation::NETWORK, Isolation::FILESYSTEM, Isolation::PROCESS_CONTROL, Isolation::IPC];
        let kept = all.into_iter().filter(|c| *c != isolation).fold(Isolation::NONE, |acc, c| acc | c);
        o.set_isolation(kept);
        o
    };
    let mut cases = vec![
        Case { name: "full (no network)", opts: Options::new(), samples: Default::default() },
        Case {
            name: "full, pooled netns (reuse_netns)",
            opts: Options::new().set_reuse_netns(true).clone(),
            samples: Default::default(),
        },
        Case {
            name: "as cargo cvtest: pooled netns, background thread",
            opts: Options::new().set_reuse_netns(true).set_background(true).clone(),
            samples: Default::default(),
        },
        Case { name: "without CGROUPS", opts: without(Isolation::CGROUPS), samples: Default::default() },
        Case { name: "without FILESYSTEM", opts: without(Isolation::FILESYSTEM), samples: Default::default() },
        Case {
            name: "without PROCESS_CONTROL",
            opts: without(Isolation::PROCESS_CONTROL),
            samples: Default::default(),
        },
        Case {
            name: "only netns (Isolation::NONE)",
            opts: Options::new().set_isolation(Isolation::NONE).clone(),
            samples: Default::default(),
        },
    ];
    if veth {
        cases.push(Case { name: "full with veth", opts: Options::new(), samples: Default::default() });
    }
    let mut cmd = Command::new(&program);
    cmd.args(&program_args).env_clear().stdout(Stdio::Null).stderr(Stdio::Null);
    let path = CString::new(program.to_str().expect("utf-8 path")).expect("no NUL");
    let argv_c: Vec<CString> = std::iter::once(path.clone())
        .chain(program_args.iter().map(|a| CString::new(a.as_str()).expect("no NUL")))
        .collect();
    let mut base = Vec::new();

    // The baseline twice: in a block of its own before any container (nothing else running), and
    // interleaved with the containers (where it shares the CPUs with their asynchronous teardown,
    // e.g. the kernel's network-namespace cleanup, which makes it slower).
    let warmup = 10;
    let mut block = Vec::new();
    for i in 0..iterations + warmup {
        let t = Instant::now();
        fork_exec_wait(&path, &argv_c);
        if i >= warmup {
            block.push(t.elapsed());
        }
    }
    for i in 0..iterations + warmup {
        let t = Instant::now();
        fork_exec_wait(&path, &argv_c);
        if i >= warmup {
            base.push(t.elapsed());
        }
        // Rotate the order each iteration: the first container after a pause pays kernel costs
        // that the next ones skip (an RCU grace period on a v1 cgroup migration), and no case
        // should always be first.
        let n = cases.len();
        for k in 0..n {
            let case = &mut cases[(i + k) % n];
            if case.name == "full with veth" {
                // A new subnet each time, as a runner gives each container network: the kernel
                // removes a released pair asynchronously, and reusing its subnet at once would wait.
                case.opts.set_network_cidr(&format!("10.214.{}.2/24", i % 200)).expect("valid network");
            }
            let t0 = Instant::now();
            let mut c = Container::create(&case.opts).expect("create");
            let t1 = Instant::now();
            c.spawn(&cmd).expect("spawn");
            let t2 = Instant::now();
            let outcome = c.wait(None).expect("wait");
            let t3 = Instant::now();
            assert!(outcome.termination.is_success(), "{}: {outcome:?}", case.name);
            c.destroy().expect("destroy");
            let t4 = Instant::now();
            if i >= warmup {
                for (s, d) in case.samples.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]) {
                    s.push(d);
                }
            }
        }
    }
    // The background thread's cgroups (made ahead, or not removed yet) go before the process.
    cvtest::release_own_cgroup().expect("release the background thread's cgroups");
    let b = median(&mut base);
    let bb = median(&mut block);
    println!("case\tcreate_us\tspawn_us\twait_us\tdestroy_us\ttotal_us\tratio\tratio_block");
    println!(
        "fork+exec+wait, block before the containers\t\t\t\t\t{:.0}\t{:.2}\t1.00",
        bb.as_secs_f64() * 1e6,
        bb.as_secs_f64() / b.as_secs_f64()
    );
    println!(
        "fork+exec+wait, interleaved\t\t\t\t\t{:.0}\t1.00\t{:.2}",
        b.as_secs_f64() * 1e6,
        b.as_secs_f64() / bb.as_secs_f64()
    );
    for case in &mut cases {
        let m: Vec<Duration> = case.samples.iter_mut().map(|s| median(s)).collect();
        println!(
            "{}\t{:.0}\t{:.0}\t{:.0}\t{:.0}\t{:.0}\t{:.2}\t{:.2}",
            case.name,
            m[0].as_secs_f64() * 1e6,
            m[1].as_secs_f64() * 1e6,
            m[2].as_secs_f64() * 1e6,
            m[3].as_secs_f64() * 1e6,
            m[4].as_secs_f64() * 1e6,
            m[4].as_secs_f64() / b.as_secs_f64(),
            m[4].as_secs_f64() / bb.as_secs_f64()
        );
    }
}

fn median(s: &mut [Duration]) -> Duration {
    s.sort_unstable();
    s[s.len() / 2]
}

fn fork_exec_wait(path: &CString, args: &[CString]) {
    let argv: Vec<*const libc::c_char> =
        args.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp = [std::ptr::null()];
    let devnull = CString::new("/dev/null").expect("no NUL");
    // SAFETY: the child only calls open, dup2, execve and _exit (async-signal-safe: other
    // threads of this process, the background one's, do not matter).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: argv and envp are NULL-terminated arrays of valid C strings; fds 1 and 2 are
        // replaced in the child only, as the containers' output goes to /dev/null.
        unsafe {
            let fd = libc::open(devnull.as_ptr(), libc::O_WRONLY);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: status is a valid int to write to.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(r == pid && status == 0, "{path:?} failed: {status:#x}");
}
