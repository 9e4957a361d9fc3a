//! A synchronous rtnetlink socket, optionally opened inside another network namespace.
//!
//! Requests go out in batches: several messages in one datagram, each asking for an ACK, their
//! answers matched by sequence number, so a batch costs one `sendto` and usually one `recvfrom`.
//! Answers that belong to an earlier exchange (say one abandoned half-way by an error) carry an
//! older sequence number and are skipped, so a socket stays usable after any failure.
//!
//! A netlink socket stays bound to the network namespace it was created in, whatever the
//! creating thread does afterwards: [`Netlink::open_in`] enters a namespace only for the
//! `socket(2)` call.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;

use super::netns::{self, NetnsGuard};
use super::NetError;

/// Receive buffer. The kernel sizes dump datagrams to at most 32 KiB; twice that leaves room.
const RECV_BUF: usize = 64 * 1024;
/// `NLMSGERR_ATTR_MSG`: the human-readable part of an extended ACK.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Length of a netlink message header.
const NLMSG_HDRLEN: usize = 16;
/// How often a dump that the kernel marked inconsistent (`NLM_F_DUMP_INTR`) is retried.
const DUMP_RETRIES: usize = 5;

/// What went wrong with one netlink request.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel answered with an error, and perhaps said why (extended ACK).
    #[error("the kernel answered {errno}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel { errno: Errno, message: Option<String> },
    #[error("failed to {op} on the netlink socket")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot decode the kernel's answer: {0}")]
    Decode(String),
}

impl NetlinkError {
    /// The kernel's errno, when it refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Io { .. } | NetlinkError::Decode(_) => None,
        }
    }
}

/// One request's answer: the messages it returned (none for a plain ACK), or its error.
pub type Answer = Result<Vec<RouteNetlinkMessage>, NetlinkError>;

/// A route-netlink socket in one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
    /// Where the socket lives, for error messages: `network namespace net:[4026531840]`.
    netns: String,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("netns", &self.netns).field("seq", &self.seq).finish()
    }
}

impl Netlink {
    /// A socket in the calling thread's current network namespace.
    pub fn open() -> Result<Netlink, NetError> {
        let netns = match std::fs::metadata("/proc/thread-self/ns/net") {
            Ok(meta) => format!("network namespace net:[{}]", std::os::unix::fs::MetadataExt::ino(&meta)),
            Err(_) => "the current network namespace".to_owned(),
        };
        Netlink::open_here(netns)
    }

    /// A socket inside the network namespace `netns`. The calling thread enters it for the
    /// `socket(2)` call only and is back in its own namespace when this returns, on every path.
    /// The socket holds a reference to the namespace: while it is open the namespace, and any
    /// veth in it, stays alive, so close it once the namespace is configured.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Netlink, NetError> {
        let label = netns::describe(netns);
        let guard = NetnsGuard::enter(netns)?;
        let opened = Netlink::open_here(label);
        drop(guard);
        opened
    }

    /// Wraps a route-netlink socket made elsewhere (by a rootless container's init, in a
    /// namespace this process may not enter; see `sandbox::init::run_netns`). `netns` says
    /// where it lives, for error messages. Requests go out with the credentials of whoever
    /// opened it.
    pub(crate) fn from_socket(fd: OwnedFd, netns: String) -> Result<Netlink, NetError> {
        Netlink::configure(crate::sys::netlink_socket(fd), netns)
    }

    fn open_here(netns: String) -> Result<Netlink, NetError> {
        let socket =
            Socket::new(NETLINK_ROUTE).map_err(|source| NetError::Socket { netns: netns.clone(), source })?;
        Netlink::configure(socket, netns)
    }

    fn configure(socket: Socket, netns: String) -> Result<Netlink, NetError> {
        let fail = |source: io::Error| NetError::Socket { netns: netns.clone(), source };
        // Short ACKs (no copy of our request) that carry the kernel's reason, and dump requests
        // checked strictly, so a filter we send is applied or refused, never ignored.
        socket.set_cap_ack(true).map_err(fail)?;
        socket.set_ext_ack(true).map_err(fail)?;
        socket.set_netlink_get_strict_chk(true).map_err(fail)?;
        Ok(Netlink { socket, seq: 0, send_buf: Vec::new(), recv_buf: Vec::with_capacity(RECV_BUF), netns })
    }

    /// The namespace this socket lives in, as error messages name it.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Wraps a failed request into a [`NetError`] that names it and this socket's namespace.
    pub fn error(&self, request: impl Into<String>, source: NetlinkError) -> NetError {
        NetError::Netlink { request: request.into(), netns: self.netns.clone(), source }
    }

    /// Sends `requests` (message and `NLM_F_*` flags; `NLM_F_REQUEST | NLM_F_ACK` are added) in
    /// one datagram and waits for all their answers, in order. The kernel handles them one after
    /// the other; one failing does not stop the next. `Err` only when the socket itself failed.
    pub fn batch(&mut self, requests: Vec<(RouteNetlinkMessage, u16)>) -> Result<Vec<Answer>, NetlinkError> {
        let n = requests.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let first = self.seq.wrapping_add(1);
        self.send_buf.clear();
        for (msg, flags) in requests {
            self.seq = self.seq.wrapping_add(1);
            self.append(msg, flags | NLM_F_REQUEST | NLM_F_ACK);
        }
        self.send()?;

        let mut data: Vec<Vec<RouteNetlinkMessage>> = (0..n).map(|_| Vec::new()).collect();
        let mut bad: Vec<Option<NetlinkError>> = (0..n).map(|_| None).collect();
        let mut answers: Vec<Option<Answer>> = (0..n).map(|_| None).collect();
        let mut pending = n;
        while pending > 0 {
            self.recv()?;
            for_each_message(&self.recv_buf, |seq, flags, parsed| {
                let i = seq.wrapping_sub(first) as usize;
                if i >= n || answers[i].is_some() {
                    return; // an answer to an earlier exchange
                }
                match parsed {
                    Err(e) => bad[i] = Some(e),
                    Ok(NetlinkPayload::InnerMessage(msg)) => data[i].push(msg),
                    Ok(NetlinkPayload::Error(err)) => {
                        let answer = match (err.code, bad[i].take()) {
                            (Some(code), _) => Err(kernel_error(code.get(), flags, &err.header)),
                            (None, Some(e)) => Err(e),
                            (None, None) => Ok(std::mem::take(&mut data[i])),
                        };
                        answers[i] = Some(answer);
                        pending -= 1;
                    }
                    Ok(_) => {} // NLMSG_DONE, NOOP, OVERRUN: not answers to a plain request
                }
            })?;
        }
        Ok(answers.into_iter().map(|a| a.expect("every request was answered")).collect())
    }

    /// One request, one answer.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Answer {
        self.batch(vec![(msg, flags)])?.pop().expect("one answer per request")
    }

    /// Dumps (`NLM_F_DUMP`) everything `msg` asks for. A dump the kernel marks inconsistent
    /// because the table changed under it is retried, up to 5 times (then the last is taken). Messages that cannot be decoded come
    /// back as `Err` for the caller to judge.
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<Result<RouteNetlinkMessage, NetlinkError>>, NetlinkError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            self.send_buf.clear();
            self.append(msg.clone(), NLM_F_REQUEST | NLM_F_DUMP);
            self.send()?;
            let mut out = Vec::new();
            let mut interrupted = false;
            let mut end: Option<Result<(), NetlinkError>> = None;
            while end.is_none() {
                self.recv()?;
                for_each_message(&self.recv_buf, |s, flags, parsed| {
                    if s != seq || end.is_some() {
                        return;
                    }
                    interrupted |= flags & NLM_F_DUMP_INTR != 0;
                    match parsed {
                        Err(e) => out.push(Err(e)),
                        Ok(NetlinkPayload::InnerMessage(m)) => out.push(Ok(m)),
                        Ok(NetlinkPayload::Done(done)) => {
                            end = Some(match done.code {
                                0 => Ok(()),
                                code => Err(dump_error(code, flags, &done.extended_ack)),
                            })
                        }
                        Ok(NetlinkPayload::Error(err)) => {
                            end = Some(match err.code {
                                None => Ok(()),
                                Some(code) => Err(kernel_error(code.get(), flags, &err.header)),
                            })
                        }
                        Ok(_) => {} // NLMSG_NOOP, OVERRUN
                    }
                })?;
            }
            end.expect("loop ends with an answer")?;
            if !interrupted || attempt >= DUMP_RETRIES {
                return Ok(out);
            }
        }
    }

    /// The index of the link named `name` in this namespace, `None` if there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(msgs) => Ok(msgs.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(self.error(format!("RTM_GETLINK {name}"), e)),
        }
    }

    /// Brings the link with index `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetError> {
        self.request(set_up_message(index), 0)
            .map(drop)
            .map_err(|e| self.error(format!("RTM_SETLINK index {index} up"), e))
    }

    /// Deletes the link with index `index` (for a veth, both ends). `false` if it was already
    /// gone. Synchronous: the kernel answers once the link is unregistered.
    pub fn delete_link(&mut self, index: u32) -> Result<bool, NetError> {
        match self.request(delete_message(index), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(false),
            Err(e) => Err(self.error(format!("RTM_DELLINK index {index}"), e)),
        }
    }

    fn append(&mut self, msg: RouteNetlinkMessage, flags: u16) {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        msg.finalize();
        let start = self.send_buf.len();
        let len = msg.buffer_len();
        self.send_buf.resize(start + align4(len), 0);
        msg.serialize(&mut self.send_buf[start..start + len]);
    }

    fn send(&mut self) -> Result<(), NetlinkError> {
        let kernel = SocketAddr::new(0, 0);
        loop {
            match self.socket.send_to(&self.send_buf, &kernel, 0) {
                Ok(n) if n == self.send_buf.len() => return Ok(()),
                Ok(n) => {
                    return Err(NetlinkError::Io {
                        op: "send",
                        source: io::Error::other(format!("sent {n} of {} bytes", self.send_buf.len())),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(NetlinkError::Io { op: "send", source }),
            }
        }
    }

    /// Receives one datagram into `recv_buf`.
    fn recv(&mut self) -> Result<(), NetlinkError> {
        loop {
            self.recv_buf.clear();
            match self.socket.recv(&mut self.recv_buf, libc::MSG_TRUNC) {
                Ok(n) if n > self.recv_buf.len() => {
                    return Err(NetlinkError::Decode(format!(
                        "a {n}-byte datagram did not fit the {}-byte buffer",
                        self.recv_buf.len()
                    )))
                }
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(NetlinkError::Io { op: "receive", source }),
            }
        }
    }
}

/// `RTM_SETLINK` that sets `IFF_UP` on `index`.
pub(crate) fn set_up_message(index: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    RouteNetlinkMessage::SetLink(msg)
}

/// `RTM_DELLINK` of `index`.
pub(crate) fn delete_message(index: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    RouteNetlinkMessage::DelLink(msg)
}

/// Calls `f(seq, flags, payload)` for each message of a datagram.
fn for_each_message(
    buf: &[u8],
    mut f: impl FnMut(u32, u16, Result<NetlinkPayload<RouteNetlinkMessage>, NetlinkError>),
) -> Result<(), NetlinkError> {
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let raw = NetlinkBuffer::new_checked(rest).map_err(|e| NetlinkError::Decode(e.to_string()))?;
        let len = raw.length() as usize;
        let (seq, flags) = (raw.sequence_number(), raw.flags());
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
            .map(|m| m.payload)
            .map_err(|e| NetlinkError::Decode(format!("message type {}: {e}", raw.message_type())));
        f(seq, flags, parsed);
        off += align4(len).max(NLMSG_HDRLEN);
    }
    Ok(())
}

/// The error of a NACK (`NLMSG_ERROR`), with the kernel's extended-ACK message when it gave one.
/// `rest` is what follows the error code: the echoed request header (or the whole request when
/// the kernel did not cap it), then the extended-ACK attributes.
fn kernel_error(code: i32, flags: u16, rest: &[u8]) -> NetlinkError {
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        rest.get(..4).map_or(NLMSG_HDRLEN, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    with_ext_ack(code, flags, rest.get(align4(echoed)..))
}

/// The error ending a dump (`NLMSG_DONE` with a negative code): attributes follow the code.
fn dump_error(code: i32, flags: u16, rest: &[u8]) -> NetlinkError {
    with_ext_ack(code, flags, Some(rest))
}

fn with_ext_ack(code: i32, flags: u16, tlvs: Option<&[u8]>) -> NetlinkError {
    let errno = Errno::from_raw(code.abs());
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        if let Some(tlvs) = tlvs {
            message = NlasIterator::new(tlvs)
                .flatten()
                .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
                .map(|nla| String::from_utf8_lossy(nla.value()).trim_end_matches('\0').to_owned());
        }
    }
    NetlinkError::Kernel { errno, message }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

thread_local! {
    /// This thread's socket in its (host) network namespace, opened on first use.
    static HOST: RefCell<Option<Netlink>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's reusable socket in the network namespace the thread was in when
/// it first asked (for cvtest's threads, the host's). Reused: saves the socket setup on every
/// container. Nested calls get a fresh socket rather than a borrow panic.
pub(crate) fn with_host<T>(f: impl FnOnce(&mut Netlink) -> Result<T, NetError>) -> Result<T, NetError> {
    HOST.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(Netlink::open()?);
            }
            f(slot.as_mut().expect("just opened"))
        }
        Err(_) => f(&mut Netlink::open()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_ack_message_is_read_after_the_capped_header() {
        let mut rest = vec![0u8; NLMSG_HDRLEN];
        let text = b"Invalid prefix\0";
        let nla_len = 4 + text.len();
        rest.extend_from_slice(&(nla_len as u16).to_ne_bytes());
        rest.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        rest.extend_from_slice(text);
        rest.resize(align4(rest.len()), 0);
        let e = kernel_error(-22, NLM_F_ACK_TLVS | NLM_F_CAPPED, &rest);
        assert_eq!(e.errno(), Some(Errno::EINVAL));
        assert_eq!(e.to_string(), "the kernel answered EINVAL: Invalid argument (Invalid prefix)");
        let plain = kernel_error(-17, 0, &rest);
        assert_eq!(plain.to_string(), "the kernel answered EEXIST: File exists");
    }
}
