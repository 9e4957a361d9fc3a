//! The test's side of a lab: [`Lab`], a handle on the channel to whoever made the test's
//! container. Every request is answered before the call returns.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::wire::{FailureKind, NodeReport, NodeSpec, Program, Reply, Request};
use super::ENV_SOCKET;

/// A lab request failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("no lab maker for this test: {ENV_SOCKET} is not set; a lab needs a #[cv_test] test (run by cargo test, cargo nextest or cargo cvtest)")]
    NoMaker,
    #[error("no lab for this test: {why}")]
    Unsupported { why: String },
    #[error("failed to reach the lab maker at {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the lab channel failed during {request}; the maker may have gone")]
    Channel {
        request: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{request}: {message}")]
    Refused { request: &'static str, message: String },
    #[error("{request}: {message}")]
    KernelFeature { request: &'static str, message: String },
    #[error("{request} failed: {message}")]
    Failed { request: &'static str, message: String },
}

/// A switch with the test and its nodes on it. Dropping it (or the test ending, however it
/// ends) removes every node, link and namespace of the lab.
#[derive(Debug)]
pub struct Lab {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    network: Ipv4Addr,
    prefix: u8,
    test_address: Ipv4Addr,
    nodes: Vec<(String, Ipv4Addr)>,
}

impl Lab {
    /// A lab on a subnet of its own choosing (`10.254.0.0/24`, or `10.253.0.0/24` if the test's
    /// own network is there): a lab's subnet lives only in namespaces of the lab, so it never
    /// meets the host's routes.
    pub fn new() -> Result<Lab, LabError> {
        Lab::open(None)
    }

    /// A lab on `subnet` (a CIDR such as `"10.77.0.0/24"`; `"auto"` is [`Lab::new`]). The test
    /// is `.1`, nodes follow from `.2` unless given an address.
    pub fn with_subnet(subnet: &str) -> Result<Lab, LabError> {
        Lab::open((subnet != "auto").then(|| subnet.to_owned()))
    }

    fn open(subnet: Option<String>) -> Result<Lab, LabError> {
        if let Ok(why) = std::env::var(super::ENV_UNSUPPORTED) {
            return Err(LabError::Unsupported { why });
        }
        let path = PathBuf::from(std::env::var_os(ENV_SOCKET).ok_or(LabError::NoMaker)?);
        let writer = UnixStream::connect(&path).map_err(|source| LabError::Connect { path, source })?;
        let reader = BufReader::new(
            writer.try_clone().map_err(|source| LabError::Channel { request: "open", source })?,
        );
        let mut lab = Lab {
            reader,
            writer,
            network: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            test_address: Ipv4Addr::UNSPECIFIED,
            nodes: Vec::new(),
        };
        match lab.call("open", &Request::Open { subnet })? {
            Reply::Opened { network, prefix, test_address } => {
                (lab.network, lab.prefix, lab.test_address) = (network, prefix, test_address);
                Ok(lab)
            }
            other => Err(unexpected("open", &other)),
        }
    }

    /// The test's own address on the switch (its interface is `lab0`).
    pub fn test_address(&self) -> Ipv4Addr {
        self.test_address
    }

    /// The subnet: network address and prefix length.
    pub fn subnet(&self) -> (Ipv4Addr, u8) {
        (self.network, self.prefix)
    }

    /// The `n`th address of the subnet (`host(1)` is the test's).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    /// The address of the node `name`.
    pub fn address(&self, name: &str) -> Option<Ipv4Addr> {
        self.nodes.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Starts a node; returns its address once its command runs with that address in place.
    pub fn add(&mut self, node: Node) -> Result<Ipv4Addr, LabError> {
        let name = node.0.name.clone();
        match self.call("add node", &Request::AddNode { spec: node.0 })? {
            Reply::NodeAdded { address } => {
                self.nodes.push((name, address));
                Ok(address)
            }
            other => Err(unexpected("add node", &other)),
        }
    }

    /// Cuts `a` and `b` apart, both directions: IPv4 between them is dropped at the switch.
    pub fn partition(&mut self, a: &[&str], b: &[&str]) -> Result<(), LabError> {
        self.done("partition", Request::Partition { from: strings(a), to: strings(b), both: true })
    }

    /// Drops what `from` sends to `to`; `to` can still send to `from`.
    pub fn partition_one_way(&mut self, from: &[&str], to: &[&str]) -> Result<(), LabError> {
        self.done("partition", Request::Partition { from: strings(from), to: strings(to), both: false })
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> Result<(), LabError> {
        self.done("heal", Request::Heal)
    }

    /// Kills the node `name` (SIGKILL to its whole container); its run's outcome is kept.
    pub fn kill(&mut self, name: &str) -> Result<(), LabError> {
        self.done("kill", Request::Kill { node: name.to_owned() })
    }

    /// Starts the node `name` again, with its address and settings (killing it first if it runs).
    pub fn restart(&mut self, name: &str) -> Result<(), LabError> {
        self.done("restart", Request::Restart { node: name.to_owned() })
    }

    /// Impairs the link of node `name`, each direction; [`Impairment::none`] removes it.
    /// Delay, jitter and loss need the kernel's netem (`CONFIG_NET_SCH_NETEM`); a rate alone
    /// needs tbf. A kernel without it: [`LabError::KernelFeature`].
    pub fn impair(&mut self, name: &str, impairment: Impairment) -> Result<(), LabError> {
        let Impairment { delay, jitter, loss, rate } = impairment;
        self.done(
            "impair",
            Request::Impair {
                node: name.to_owned(),
                delay_us: delay.as_micros() as u64,
                jitter_us: jitter.as_micros() as u64,
                loss_ppm: (loss.clamp(0.0, 1.0) * 1e6) as u32,
                rate_bps: rate,
            },
        )
    }

    /// Every node's runs so far (a running node's run says `running`).
    pub fn reports(&mut self) -> Result<Vec<NodeReport>, LabError> {
        match self.call("reports", &Request::Reports)? {
            Reply::Reports { nodes } => Ok(nodes),
            other => Err(unexpected("reports", &other)),
        }
    }

    /// Ends the lab now (dropping it does the same without waiting): every node is stopped and
    /// reaped, the switch and its links removed; returns every node's runs.
    pub fn close(mut self) -> Result<Vec<NodeReport>, LabError> {
        match self.call("close", &Request::Close)? {
            Reply::Reports { nodes } => Ok(nodes),
            other => Err(unexpected("close", &other)),
        }
    }

    fn done(&mut self, request: &'static str, r: Request) -> Result<(), LabError> {
        match self.call(request, &r)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(request, &other)),
        }
    }

    fn call(&mut self, request: &'static str, r: &Request) -> Result<Reply, LabError> {
        let fail = |source| LabError::Channel { request, source };
        let mut line = serde_json::to_string(r).expect("requests serialize");
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(fail)?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer).map_err(fail)? == 0 {
            return Err(fail(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let reply: Reply = serde_json::from_str(&answer).map_err(|e| fail(e.into()))?;
        match reply {
            Reply::Failed { kind: FailureKind::Request, message } => {
                Err(LabError::Refused { request, message })
            }
            Reply::Failed { kind: FailureKind::KernelFeature, message } => {
                Err(LabError::KernelFeature { request, message })
            }
            Reply::Failed { kind: FailureKind::System, message } => {
                Err(LabError::Failed { request, message })
            }
            other => Ok(other),
        }
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn unexpected(request: &'static str, reply: &Reply) -> LabError {
    LabError::Failed { request, message: format!("the maker answered {reply:?}") }
}

/// A node to start: a name (its hostname too), a command, settings like a test's.
#[derive(Debug, Clone)]
pub struct Node(NodeSpec);

impl Node {
    /// The test binary re-executed into `function`, a node function of the test crate
    /// registered with [`crate::lab_node!`].
    pub fn function(name: &str, function: &str) -> Node {
        Node(NodeSpec {
            name: name.to_owned(),
            program: Program::Function(function.to_owned()),
            ..NodeSpec::default()
        })
    }

    /// A program, such as a binary of the package (`env!("CARGO_BIN_EXE_<name>")`).
    pub fn binary(name: &str, path: impl Into<PathBuf>) -> Node {
        Node(NodeSpec { name: name.to_owned(), program: Program::Binary(path.into()), ..NodeSpec::default() })
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Node {
        self.0.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Node {
        self.0.env.push((key.into(), value.into()));
        self
    }

    /// The node's address (default: the next free one).
    pub fn address(mut self, address: Ipv4Addr) -> Node {
        self.0.address = Some(address);
        self
    }

    /// A setting as `#[cv_test]` takes it: `memory`, `pids`, `cpus`, `cpu_weight`, `timeout`,
    /// `caps`, `privileged`. Checked by the maker (a bad one fails [`Lab::add`]).
    pub fn set(mut self, key: &str, value: &str) -> Node {
        self.0.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn memory(self, value: &str) -> Node {
        self.set("memory", value)
    }

    pub fn pids(self, value: &str) -> Node {
        self.set("pids", value)
    }

    pub fn cpus(self, value: &str) -> Node {
        self.set("cpus", value)
    }

    pub fn timeout(self, value: &str) -> Node {
        self.set("timeout", value)
    }
}

/// How a link is impaired (each direction).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    pub delay: Duration,
    pub jitter: Duration,
    /// 0.0..=1.0
    pub loss: f64,
    /// Bits per second.
    pub rate: Option<u64>,
}

impl Impairment {
    /// No impairment: what [`Lab::impair`] removes it with.
    pub fn none() -> Impairment {
        Impairment::default()
    }

    pub fn delay(mut self, delay: Duration) -> Impairment {
        self.delay = delay;
        self
    }

    pub fn jitter(mut self, jitter: Duration) -> Impairment {
        self.jitter = jitter;
        self
    }

    /// Loss probability, 0.0..=1.0.
    pub fn loss(mut self, loss: f64) -> Impairment {
        self.loss = loss;
        self
    }

    /// Rate in bits per second.
    pub fn rate(mut self, bits_per_second: u64) -> Impairment {
        self.rate = Some(bits_per_second);
        self
    }
}
