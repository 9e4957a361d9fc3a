//! Labs: several containers on one network, for one test.
//!
//! ```no_run
//! use cvtest::lab::{Impairment, Lab, Node};
//!
//! fn server() {
//!     let me = cvtest::lab::NodeEnv::current().expect("run as a lab node");
//!     let listener = std::net::TcpListener::bind((me.address, 7000)).unwrap();
//!     for stream in listener.incoming() {
//!         drop(stream);
//!     }
//! }
//! cvtest::lab_node!(server);
//!
//! #[cvtest::cv_test]
//! fn talks_to_a_node() {
//!     let mut lab = Lab::new().unwrap();
//!     let a = lab.add(Node::function("a", "server").memory("64M").pids("16")).unwrap();
//!     std::net::TcpStream::connect((a, 7000)).unwrap();
//!     lab.partition(&["test"], &["a"]).unwrap(); // now it cannot
//!     lab.heal().unwrap();
//!     lab.impair("a", Impairment::none().rate(1_000_000)).unwrap();
//! }
//! ```
//!
//! A [`Lab`] is a switch (a bridge in a network namespace of its own) with the test on it
//! (`lab0`, the subnet's `.1`) and nodes: each its own container, with its own limits, hostname
//! and address, running a program or the test binary re-executed into a node function
//! ([`lab_node!`](crate::lab_node)). The test asks; whoever made its container (the `#[cv_test]`
//! parent process, or the runner) does the work over a channel ([`maker`]), so the test needs
//! no privilege. Nodes are siblings of the test: they die with its maker. Everything goes when
//! the lab is dropped or the test ends, however it ends; each node's runs (outcome, peaks,
//! output) are printed with the test's output.
//!
//! Works as root and rootless. A rootless maker (an ordinary user) may neither make nor enter
//! a network namespace, nor load a tc eBPF program; so the lab is made inside the test's own
//! user namespace, which the maker owns: helpers that join it make the switch's namespace and
//! open the netlink sockets the maker then uses, nodes are cloned there into user namespaces of
//! their own (children of the test's), and partitions are classic BPF (see
//! `sandbox::nested` and [`maker`]). Without delegated cgroups (cgroup v1) a rootless test runs
//! with `CVTEST_LIMITS=off` (or `--no-limits`), and so do its nodes: no limits, no peaks.

mod client;
#[doc(hidden)]
pub mod maker;
pub mod wire;

pub use client::{Impairment, Lab, LabError, Node};
pub use wire::{NodeReport, RunReport};

use std::net::Ipv4Addr;

/// Set in a test's container: the path of its lab maker's socket.
pub const ENV_SOCKET: &str = "CVTEST_LAB_SOCKET";
/// Set in a test's container instead of [`ENV_SOCKET`] when its maker cannot serve labs (it
/// could not make its socket: say, a rootless run in a target directory it may not write): why.
/// [`Lab::new`] then fails with [`LabError::Unsupported`].
pub const ENV_UNSUPPORTED: &str = "CVTEST_LAB_UNSUPPORTED";

/// Set in a node's environment when it runs a node function: the function's name.
pub const ENV_FUNCTION: &str = "CVTEST_LAB_FUNCTION";
/// Set in a node's environment: its name, address, prefix length, and the test's address.
pub const ENV_NAME: &str = "CVTEST_LAB_NAME";
pub const ENV_ADDRESS: &str = "CVTEST_LAB_ADDRESS";
pub const ENV_PREFIX: &str = "CVTEST_LAB_PREFIX";
pub const ENV_TEST_ADDRESS: &str = "CVTEST_LAB_TEST_ADDRESS";

/// What a node knows of itself (from its environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEnv {
    pub name: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// The test's address on the switch.
    pub test_address: Ipv4Addr,
    /// The node's arguments (those after the program).
    pub args: Vec<String>,
}

impl NodeEnv {
    /// `None` outside a lab node.
    pub fn current() -> Option<NodeEnv> {
        let var = |k| std::env::var(k).ok();
        Some(NodeEnv {
            name: var(ENV_NAME)?,
            address: var(ENV_ADDRESS)?.parse().ok()?,
            prefix: var(ENV_PREFIX)?.parse().ok()?,
            test_address: var(ENV_TEST_ADDRESS)?.parse().ok()?,
            args: std::env::args().skip(1).collect(),
        })
    }
}

/// Registers `fn name()` as a node function: a node started with
/// [`Node::function`]`(_, "name")` runs the test binary again, and this function runs in it
/// before `main` (libtest never starts there). Returning exits 0; a panic exits 101.
#[macro_export]
macro_rules! lab_node {
    ($function:ident) => {
        const _: () = {
            $crate::__private::ctor::declarative::ctor! {
                #[ctor(unsafe, anonymous, priority = late)]
                fn __cvtest_lab_node() {
                    $crate::lab::__run_node(::core::stringify!($function), $function);
                }
            }
        };
    };
}

/// Runs `f` and exits if this process is a node for the function `name`.
#[doc(hidden)]
pub fn __run_node(name: &str, f: fn()) {
    if std::env::var_os(ENV_FUNCTION).is_some_and(|v| v == name) {
        let code = match std::panic::catch_unwind(f) {
            Ok(()) => 0,
            Err(_) => 101,
        };
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
}
