//! The lab channel: one JSON object per line each way, a request then its reply, on a unix
//! stream socket between the test (the client) and the lab's maker. Closing it ends the lab.

use serde::{Deserialize, Serialize};

/// What the test asks of its maker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Make the switch (`subnet`: a CIDR, or `None` for `auto`) and put the test on it.
    Open { subnet: Option<String> },
    /// Start a node.
    AddNode { spec: NodeSpec },
    /// Cut `from` off from `to`: what `from` sends to `to` is dropped, and with `both` the reverse.
    Partition { from: Vec<String>, to: Vec<String>, both: bool },
    /// Remove every cut.
    Heal,
    /// SIGKILL a node (its container, whole); its outcome is kept.
    Kill { node: String },
    /// Start a killed (or ended) node again, same address, same settings.
    Restart { node: String },
    /// Impair a node's link (both directions); all zero removes the impairment.
    Impair { node: String, delay_us: u64, jitter_us: u64, loss_ppm: u32, rate_bps: Option<u64> },
    /// The nodes' reports so far.
    Reports,
    /// Stop every node and remove the lab now; the answer is every node's reports.
    Close,
}

/// What a node runs and with what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct NodeSpec {
    pub name: String,
    pub program: Program,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `None`: the next free address.
    pub address: Option<std::net::Ipv4Addr>,
    /// Settings as a test writes them: `memory`, `pids`, `cpus`, `timeout`, ...
    pub settings: Vec<(String, String)>,
}

/// A node's command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    /// The test binary itself, re-executed into the node function of this name
    /// ([`crate::lab_node!`]).
    Function(String),
    /// Any program (a binary of the package: `env!("CARGO_BIN_EXE_<name>")`).
    Binary(std::path::PathBuf),
}

impl Default for Program {
    fn default() -> Self {
        Program::Function(String::new())
    }
}

/// The maker's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Opened { network: std::net::Ipv4Addr, prefix: u8, test_address: std::net::Ipv4Addr },
    NodeAdded { address: std::net::Ipv4Addr },
    Done,
    Reports { nodes: Vec<NodeReport> },
    Failed { kind: FailureKind, message: String },
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request itself is wrong (unknown node, bad setting, a second lab, ...).
    Request,
    /// The kernel lacks what the request needs; the message names the option.
    KernelFeature,
    /// Making or changing something failed.
    System,
}

/// One node: every run it had (a restart adds one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    pub name: String,
    pub address: std::net::Ipv4Addr,
    pub runs: Vec<RunReport>,
}

/// One run of a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    /// `running`, `exited 0`, `killed by signal 9`, `oom`, `timed out`, `killed by the lab`,
    /// `stopped at the end of the lab`, or why it could not start.
    pub outcome: String,
    /// Whether it ended as a node should: exited 0, or killed on the test's request, or stopped
    /// when the lab ended.
    pub ok: bool,
    pub oom: bool,
    pub pids_limit_hit: bool,
    pub peak_memory_bytes: Option<u64>,
    pub peak_pids: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub duration_ms: u64,
    /// The usage line, as a test's.
    pub usage: String,
    pub stdout: String,
    pub stderr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_are_one_json_line_each() {
        let r = Request::Impair {
            node: "a".into(),
            delay_us: 40_000,
            jitter_us: 0,
            loss_ppm: 200_000,
            rate_bps: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"op":"impair","node":"a","delay_us":40000,"jitter_us":0,"loss_ppm":200000,"rate_bps":null}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let reply = Reply::Failed { kind: FailureKind::KernelFeature, message: "no netem".into() };
        let line = serde_json::to_string(&reply).unwrap();
        assert_eq!(line, r#"{"reply":"failed","kind":"kernel_feature","message":"no netem"}"#);
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
        let spec = NodeSpec {
            name: "n".into(),
            program: Program::Binary("/bin/true".into()),
            ..NodeSpec::default()
        };
        let r = Request::AddNode { spec };
        assert_eq!(serde_json::from_str::<Request>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
    }
}
