//! The typed channel from the container's init to the parent: fixed-size messages over a pipe,
//! each written with one `write(2)` (well under `PIPE_BUF`, so never split or interleaved).
//!
//! No strings cross it. A setup failure names its [`Stage`] (and, for mounts, the index of the
//! step in the parent's own copy of the mount plan) plus an errno; the parent turns that into a
//! structured error with paths from its own data.

/// What the init tells the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    /// The main process was forked and has exec'd the command. `pid` is its pid as the init sees
    /// it (2 in a PID namespace). `overlay_errno`: why the kernel refused a throw-away layer of
    /// the mount plan (the directory stayed read-only), 0 when it did not.
    Started { pid: i32, overlay_errno: i32 },
    /// Setup failed at `stage` (`step` indexes the mount plan for [`Stage::Mount`], the cgroups
    /// for [`Stage::JoinCgroup`]).
    Failed { stage: Stage, step: u32, errno: i32 },
    /// The main process ended with this raw wait status.
    /// The main process ended with this raw wait status. `alone`: nothing else is left in the
    /// container's PID namespace (the init has no child), so the init ends at once, without
    /// waiting for the parent to list what is left.
    Exited { status: i32, alone: bool },
    /// Rootless with a network: the init made the run's network namespace (for the host end of
    /// the veth) and route-netlink sockets in it and in the container's own; these are their fd
    /// numbers in the init, for the parent to copy with `pidfd_getfd`. (A socket keeps its
    /// namespace alive.)
    Netns { host_socket: i32, container_socket: i32 },
}

/// Where in the init's or the main process's setup something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    CloseFds = 1,
    Signals = 2,
    Hostname = 3,
    Mount = 4,
    Loopback = 5,
    Release = 6,
    ForkMain = 7,
    ProcessGroup = 8,
    Stdio = 9,
    Chdir = 10,
    Exec = 11,
    JoinCgroup = 12,
    CgroupNamespace = 13,
    Capabilities = 14,
    Session = 15,
    Keyring = 16,
    UserNamespace = 17,
    RunNetns = 18,
    JoinNetns = 19,
}

impl Stage {
    fn from_u32(v: u32) -> Option<Stage> {
        Some(match v {
            1 => Stage::CloseFds,
            2 => Stage::Signals,
            3 => Stage::Hostname,
            4 => Stage::Mount,
            5 => Stage::Loopback,
            6 => Stage::Release,
            7 => Stage::ForkMain,
            8 => Stage::ProcessGroup,
            9 => Stage::Stdio,
            10 => Stage::Chdir,
            11 => Stage::Exec,
            12 => Stage::JoinCgroup,
            13 => Stage::CgroupNamespace,
            14 => Stage::Capabilities,
            15 => Stage::Session,
            16 => Stage::Keyring,
            17 => Stage::UserNamespace,
            18 => Stage::RunNetns,
            19 => Stage::JoinNetns,
            _ => return None,
        })
    }
}

const KIND_STARTED: u32 = 1;
const KIND_FAILED: u32 = 2;
const KIND_EXITED: u32 = 3;
const KIND_NETNS: u32 = 4;

/// The wire form: `#[repr(C)]`, fixed size, native endianness (both ends are one machine).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Wire {
    kind: u32,
    stage: u32,
    step: u32,
    value: i32,
}

pub(crate) const MESSAGE_SIZE: usize = 16;

impl Message {
    /// Encodes without allocating (the init calls this between clone and exec).
    pub(crate) fn encode(self) -> [u8; MESSAGE_SIZE] {
        let w = match self {
            Message::Started { pid, overlay_errno } => {
                Wire { kind: KIND_STARTED, stage: 0, step: overlay_errno as u32, value: pid }
            }
            Message::Failed { stage, step, errno } => {
                Wire { kind: KIND_FAILED, stage: stage as u32, step, value: errno }
            }
            Message::Exited { status, alone } => {
                Wire { kind: KIND_EXITED, stage: 0, step: u32::from(alone), value: status }
            }
            Message::Netns { host_socket, container_socket } => {
                Wire { kind: KIND_NETNS, stage: 0, step: host_socket as u32, value: container_socket }
            }
        };
        let mut out = [0u8; MESSAGE_SIZE];
        out[0..4].copy_from_slice(&w.kind.to_ne_bytes());
        out[4..8].copy_from_slice(&w.stage.to_ne_bytes());
        out[8..12].copy_from_slice(&w.step.to_ne_bytes());
        out[12..16].copy_from_slice(&w.value.to_ne_bytes());
        out
    }

    /// Decodes; `None` for anything the init never sends.
    pub(crate) fn decode(buf: &[u8; MESSAGE_SIZE]) -> Option<Message> {
        let word = |i: usize| [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
        let w = Wire {
            kind: u32::from_ne_bytes(word(0)),
            stage: u32::from_ne_bytes(word(4)),
            step: u32::from_ne_bytes(word(8)),
            value: i32::from_ne_bytes(word(12)),
        };
        match w.kind {
            KIND_STARTED => Some(Message::Started { pid: w.value, overlay_errno: w.step as i32 }),
            KIND_FAILED => {
                Some(Message::Failed { stage: Stage::from_u32(w.stage)?, step: w.step, errno: w.value })
            }
            KIND_EXITED => Some(Message::Exited { status: w.value, alone: w.step == 1 }),
            KIND_NETNS => Some(Message::Netns { host_socket: w.step as i32, container_socket: w.value }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_size_matches_the_struct() {
        assert_eq!(std::mem::size_of::<Wire>(), MESSAGE_SIZE);
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Started { pid: 2, overlay_errno: 0 },
            Message::Started { pid: 2, overlay_errno: libc::EPERM },
            Message::Failed { stage: Stage::Mount, step: 7, errno: libc::EROFS },
            Message::Failed { stage: Stage::Exec, step: 0, errno: libc::ENOEXEC },
            Message::Exited { status: 0x0900, alone: false },
            Message::Exited { status: 0, alone: true },
            Message::Netns { host_socket: 8, container_socket: 9 },
        ] {
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
    }

    #[test]
    fn garbage_is_refused() {
        let mut b = Message::Failed { stage: Stage::Exec, step: 0, errno: 1 }.encode();
        b[4] = 99;
        assert_eq!(Message::decode(&b), None);
        assert_eq!(Message::decode(&[0; MESSAGE_SIZE]), None);
    }
}
