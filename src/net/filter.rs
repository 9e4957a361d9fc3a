//! The host end's ingress filter: a container reaches its host end's address and nothing else
//! of the host ([`HostAccess::HostEnd`], the default).
//!
//! Forwarding is off on the host end, but the host kernel delivers locally any packet addressed
//! to *any* of its addresses, whatever interface it came in on: without a filter a container
//! reaches every service of the host bound to `0.0.0.0`. Routing inside the container does not
//! stop it (a default test keeps `CAP_NET_RAW` and can address a raw packet anywhere), and a
//! filter on the container's side of the pair can be bypassed (`PACKET_QDISC_BYPASS`), so the
//! filter sits on the host end, where the container cannot touch it.
//!
//! It is a tc classifier in direct-action mode (`cls_bpf`, under the `ingress` qdisc), because
//! it needs nothing but `cls_bpf` and BPF in the kernel (`cls_u32` would need the `gact` action
//! to drop, which kernels without modules often lack). The program, a dozen instructions, lets
//! through ARP and IPv4 addressed to the host end, and drops everything else: IPv4 to any other
//! address (other host addresses, broadcast, multicast), IPv6, any other protocol, runt frames.
//! Both requests travel in the datagram that configures the host end, before the container can
//! send anything; they go away with the link.

use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use netlink_packet_core::DefaultNla;
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcHeader, TcMessage, TcOption,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::NetError;
use crate::sys;

/// The program's name, as `bpftool prog` shows it.
const PROG_NAME: &[u8] = b"cvtest_host_end";
const LICENSE: &CStr = c"Dual MIT/GPL";
/// The partition program's name (at most 15 bytes).
pub(super) const PARTITION_NAME: &[u8] = b"cvtest_cut";

/// `ETH_P_ALL`: the filter sees every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// The ingress qdisc's handle, `ffff:`.
const INGRESS_HANDLE: TcHandle = TcHandle { major: 0xffff, minor: 0 };

/// `TC_ACT_OK` and `TC_ACT_SHOT`, what a direct-action program returns.
const PASS: i32 = 0;
const DROP: i32 = 2;

/// Offsets in `struct __sk_buff` of `data` and `data_end` (at ingress, `data` is the Ethernet
/// header: cls_bpf pushes it back before running the program).
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
/// Offsets in the frame: the EtherType, and the IPv4 destination address.
const ETHERTYPE: i16 = 12;
const IPV4_DST: i16 = 14 + 16;
/// The shortest frame the program reads: Ethernet header + IPv4 header up to the destination.
const MIN_FRAME: i32 = 14 + 20;

/// One eBPF instruction: opcode, `dst | src << 4`, offset, immediate (little-endian fields, as
/// the kernel's `struct bpf_insn` on this machine).
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (dst & 0x0f) | (src << 4);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

// Opcodes (linux/bpf.h: class | size/op | source).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const LDX_H: u8 = 0x69; // BPF_LDX | BPF_MEM | BPF_H: dst = *(u16 *)(src + off)
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X: dst = src
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K: dst += imm
const JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X: if dst > src goto +off
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K: if dst == imm goto +off
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto +off
const JNE32_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K: if (u32)dst != (u32)imm goto +off
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT: return r0

/// The program for a host end at `host`: ARP and IPv4 to `host` pass, the rest is dropped.
/// Packet bytes are loaded in the machine's order, so the constants are too.
fn program(host: Ipv4Addr) -> [[u8; 8]; 14] {
    let arp = i32::from(u16::from_ne_bytes([0x08, 0x06]));
    let ipv4 = i32::from(u16::from_ne_bytes([0x08, 0x00]));
    let host = i32::from_ne_bytes(host.octets());
    let (r0, r1, r2, r3, r4) = (0, 1, 2, 3, 4);
    [
        /* 0 */ insn(LDX_W, r2, r1, SKB_DATA, 0),
        /* 1 */ insn(LDX_W, r3, r1, SKB_DATA_END, 0),
        /* 2 */ insn(MOV64_X, r4, r2, 0, 0),
        /* 3 */ insn(ADD64_K, r4, 0, 0, MIN_FRAME),
        /* 4 */ insn(JGT_X, r4, r3, 7, 0), // shorter than MIN_FRAME: drop
        /* 5 */ insn(LDX_H, r4, r2, ETHERTYPE, 0),
        /* 6 */ insn(JEQ_K, r4, 0, 3, arp), // ARP: pass
        /* 7 */ insn(JNE_K, r4, 0, 4, ipv4), // not IPv4: drop
        /* 8 */ insn(LDX_W, r4, r2, IPV4_DST, 0),
        /* 9 */ insn(JNE32_K, r4, 0, 2, host), // not addressed to the host end: drop
        /* 10: pass */ insn(MOV64_K, r0, 0, 0, PASS),
        /* 11 */ insn(EXIT, 0, 0, 0, 0),
        /* 12: drop */ insn(MOV64_K, r0, 0, 0, DROP),
        /* 13 */ insn(EXIT, 0, 0, 0, 0),
    ]
}

/// `BPF_JMP32 | BPF_JEQ | BPF_K`: if (u32)dst == imm goto +off.
const JEQ32_K: u8 = 0x16;

/// The most addresses one port's partition program names (a lab is one /24 at most).
pub(super) const MAX_BLOCKED: usize = 254;

/// The first two bytes of every lab member's MAC address; the other four are its IPv4 address
/// (`super::switch`), so a filter knows a sender by its MAC as well as by its IPv4 source.
pub(super) const LAB_MAC_PREFIX: [u8; 2] = [0x02, 0xcb];

/// `BPF_JMP | BPF_JA`: goto +off (eBPF), goto +k (classic).
const JA: u8 = 0x05;

/// Offsets in the frame of the source MAC address's two halves and of the IPv4 source address.
const SRC_MAC: i16 = 6;
const SRC_MAC_LOW: i16 = 8;
const IPV4_SRC: i16 = 14 + 12;

/// A lab port's partition program, at the port's egress (the switch side of a member's link, so
/// it sees everything the switch sends that member): a frame from one of `blocked` is dropped,
/// whatever it carries (IPv4, IPv6, broadcasts, raw frames), except ARP: neighbours stay
/// resolved, so traffic flows again the moment a cut heals. The sender is known by its source
/// MAC when that is a lab member's (`LAB_MAC_PREFIX` + its IPv4 address), otherwise by the IPv4
/// source of an IPv4 packet; everything else passes.
fn partition_program(blocked: &[Ipv4Addr]) -> Vec<[u8; 8]> {
    if blocked.is_empty() {
        // Nothing jumps to a drop, and the verifier refuses unreachable code.
        return vec![insn(MOV64_K, 0, 0, 0, PASS), insn(EXIT, 0, 0, 0, 0)];
    }
    let ipv4 = i32::from(u16::from_ne_bytes([0x08, 0x00]));
    let arp = i32::from(u16::from_ne_bytes([0x08, 0x06]));
    let prefix = i32::from(u16::from_ne_bytes(LAB_MAC_PREFIX));
    let n = blocked.len() as i16;
    let (r0, r1, r2, r3, r4) = (0, 1, 2, 3, 4);
    // The comparisons start at 17; pass is at 17 + n, drop at 19 + n.
    let (compare, pass) = (17, 17 + n);
    let to = |pc: i16, target: i16| target - pc - 1;
    let mut prog = vec![
        /* 0 */ insn(LDX_W, r2, r1, SKB_DATA, 0),
        /* 1 */ insn(LDX_W, r3, r1, SKB_DATA_END, 0),
        /* 2 */ insn(MOV64_X, r4, r2, 0, 0),
        /* 3 */ insn(ADD64_K, r4, 0, 0, 14),
        /* 4 */ insn(JGT_X, r4, r3, to(4, pass), 0), // shorter than an Ethernet header: pass
        /* 5 */ insn(LDX_H, r4, r2, ETHERTYPE, 0),
        /* 6 */ insn(JEQ_K, r4, 0, to(6, pass), arp), // ARP: pass
        /* 7 */ insn(LDX_H, r4, r2, SRC_MAC, 0),
        /* 8 */ insn(JNE_K, r4, 0, to(8, 11), prefix), // not a member's MAC: by IPv4 source
        /* 9 */ insn(LDX_W, r4, r2, SRC_MAC_LOW, 0),
        /* 10 */ insn(JA, 0, 0, to(10, compare), 0),
        /* 11 */ insn(MOV64_X, r4, r2, 0, 0),
        /* 12 */ insn(ADD64_K, r4, 0, 0, MIN_FRAME),
        /* 13 */ insn(JGT_X, r4, r3, to(13, pass), 0), // too short for IPv4: pass
        /* 14 */ insn(LDX_H, r4, r2, ETHERTYPE, 0),
        /* 15 */ insn(JNE_K, r4, 0, to(15, pass), ipv4), // not IPv4: pass
        /* 16 */ insn(LDX_W, r4, r2, IPV4_SRC, 0),
    ];
    for (i, addr) in blocked.iter().enumerate() {
        let pc = compare + i as i16;
        prog.push(insn(JEQ32_K, r4, 0, to(pc, pass + 2), i32::from_ne_bytes(addr.octets())));
    }
    prog.extend([
        insn(MOV64_K, r0, 0, 0, PASS),
        insn(EXIT, 0, 0, 0, 0),
        insn(MOV64_K, r0, 0, 0, DROP),
        insn(EXIT, 0, 0, 0, 0),
    ]);
    prog
}

/// The loaded partition program of the port `port` (see [`partition_program`]).
pub(super) fn load_partition(blocked: &[Ipv4Addr], port: &str) -> Result<OwnedFd, NetError> {
    let blocked = &blocked[..blocked.len().min(MAX_BLOCKED)];
    sys::bpf_load_sched_cls(&partition_program(blocked), LICENSE, PARTITION_NAME)
        .map_err(|errno| NetError::HostFilter { name: port.to_owned(), source: errno.into() })
}

/// The loaded program for a host end at `host` (its fd: the tc request names it, the kernel
/// then holds its own reference).
pub(super) fn load(host: Ipv4Addr, host_name: &str) -> Result<OwnedFd, NetError> {
    sys::bpf_load_sched_cls(&program(host), LICENSE, PROG_NAME)
        .map_err(|errno| NetError::HostFilter { name: host_name.to_owned(), source: errno.into() })
}

/// Where a lab port's partition filter hangs: the egress hook of its `clsact` qdisc.
pub(super) const CLSACT_EGRESS: TcHandle = TcHandle { major: 0xffff, minor: TcHandle::MIN_EGRESS };

/// `RTM_NEWQDISC`: the `clsact` qdisc on `index` (hooks at ingress and egress, beside any root
/// qdisc: a lab port's impairment is its root qdisc).
pub(super) fn clsact_message(index: u32) -> RouteNetlinkMessage {
    hook_qdisc_message(index, "clsact")
}

/// `RTM_NEWQDISC`: the `ingress` qdisc on `index`.
pub(super) fn qdisc_message(index: u32) -> RouteNetlinkMessage {
    hook_qdisc_message(index, "ingress")
}

/// `RTM_NEWQDISC` of `kind`, `ingress` or `clsact`: both hang at `ffff:fff1` with handle
/// `ffff:` (`TcHandle::CLSACT` is `TcHandle::INGRESS`).
fn hook_qdisc_message(index: u32, kind: &str) -> RouteNetlinkMessage {
    let header = TcHeader {
        index: index as i32,
        handle: INGRESS_HANDLE,
        parent: TcHandle::INGRESS,
        ..Default::default()
    };
    RouteNetlinkMessage::NewQueueDiscipline(TcMessage::from_parts(
        header,
        vec![TcAttribute::Kind(kind.to_owned())],
    ))
}

/// `RTM_NEWTFILTER`: the program `prog` as a direct-action classifier of every protocol under
/// the ingress qdisc of `index`.
pub(super) fn filter_message(index: u32, prog: &OwnedFd) -> RouteNetlinkMessage {
    bpf_filter_message(index, prog, INGRESS_HANDLE, TcHandle::UNSPEC, PROG_NAME)
}

/// `RTM_NEWTFILTER` of `prog` on `index` under `parent` (the ingress qdisc, or a hook of
/// `clsact`), with the filter handle `handle` (a fixed handle lets a later request with
/// `NLM_F_REPLACE` swap the program).
pub(super) fn bpf_filter_message(
    index: u32,
    prog: &OwnedFd,
    parent: TcHandle,
    handle: TcHandle,
    name: &[u8],
) -> RouteNetlinkMessage {
    let priority = 1u32;
    let header = TcHeader {
        index: index as i32,
        handle,
        parent,
        // The priority in the upper half, the protocol (network order) in the lower.
        info: priority << 16 | u32::from(ETH_P_ALL.to_be()),
        ..Default::default()
    };
    let options = vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(prog.as_raw_fd() as u32)),
        TcOption::Bpf(TcFilterBpfOption::ProgName(String::from_utf8_lossy(name).into_owned())),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ];
    RouteNetlinkMessage::NewTrafficFilter(TcMessage::from_parts(
        header,
        vec![TcAttribute::Kind("bpf".to_owned()), TcAttribute::Options(options)],
    ))
}

/// A lab port's partition filter in classic BPF (what a rootless maker can attach: cls_bpf
/// takes a classic program inline, `TCA_BPF_OPS`, with no `BPF_PROG_LOAD`): the same rule as
/// [`partition_program`]. Classic loads are big-endian and relative to the Ethernet header (at
/// ingress cls_bpf pushes it back); a load past the end of a short frame ends the program with 0,
/// which passes it.
fn classic_partition_program(blocked: &[Ipv4Addr]) -> Vec<[u8; 8]> {
    /// `struct sock_filter`: code, jt, jf, k.
    fn op(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&code.to_ne_bytes());
        b[2] = jt;
        b[3] = jf;
        b[4..8].copy_from_slice(&k.to_ne_bytes());
        b
    }
    const LDH_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LDW_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let blocked = &blocked[..blocked.len().min(MAX_BLOCKED)];
    if blocked.is_empty() {
        return vec![op(RET_K, 0, 0, PASS as u32)];
    }
    let n = blocked.len() as u8;
    // The comparisons start at 11; pass is at 11 + n, drop at 12 + n.
    let mut prog = vec![
        /* 0 */ op(LDH_ABS, 0, 0, ETHERTYPE as u32),
        /* 1 */ op(JEQ_K, 0, 1, 0x0806), // ARP: pass
        /* 2 */ op(RET_K, 0, 0, PASS as u32),
        /* 3 */ op(LDH_ABS, 0, 0, SRC_MAC as u32),
        /* 4 */
        op(JEQ_K, 0, 2, u32::from(u16::from_be_bytes(LAB_MAC_PREFIX))), // not a member's: at 7
        /* 5 */ op(LDW_ABS, 0, 0, SRC_MAC_LOW as u32),
        /* 6 */ op(u16::from(JA), 0, 0, 4), // to the comparisons
        /* 7 */ op(LDH_ABS, 0, 0, ETHERTYPE as u32),
        /* 8 */ op(JEQ_K, 1, 0, 0x0800),
        /* 9 */ op(RET_K, 0, 0, PASS as u32), // not IPv4
        /* 10 */ op(LDW_ABS, 0, 0, IPV4_SRC as u32),
    ];
    for (i, addr) in blocked.iter().enumerate() {
        // At 11 + i; drop is at 12 + n.
        prog.push(op(JEQ_K, n - i as u8, 0, u32::from(*addr)));
    }
    prog.extend([op(RET_K, 0, 0, PASS as u32), op(RET_K, 0, 0, DROP as u32)]);
    prog
}

/// `RTM_NEWTFILTER` of the classic partition program for `blocked` on `index`'s egress hook
/// ([`CLSACT_EGRESS`]), direct-action, with the filter handle `handle`.
pub(super) fn classic_partition_message(
    index: u32,
    blocked: &[Ipv4Addr],
    handle: TcHandle,
) -> RouteNetlinkMessage {
    const TCA_BPF_OPS_LEN: u16 = 4;
    const TCA_BPF_OPS: u16 = 5;
    let prog = classic_partition_program(blocked);
    let priority = 1u32;
    let header = TcHeader {
        index: index as i32,
        handle,
        parent: CLSACT_EGRESS,
        info: priority << 16 | u32::from(ETH_P_ALL.to_be()),
        ..Default::default()
    };
    let options = vec![
        TcOption::Bpf(TcFilterBpfOption::Other(DefaultNla::new(
            TCA_BPF_OPS_LEN,
            (prog.len() as u16).to_ne_bytes().to_vec(),
        ))),
        TcOption::Bpf(TcFilterBpfOption::Other(DefaultNla::new(TCA_BPF_OPS, prog.concat()))),
        TcOption::Bpf(TcFilterBpfOption::ProgName(String::from_utf8_lossy(PARTITION_NAME).into_owned())),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ];
    RouteNetlinkMessage::NewTrafficFilter(TcMessage::from_parts(
        header,
        vec![TcAttribute::Kind("bpf".to_owned()), TcAttribute::Options(options)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_pass_or_drop() {
        let prog = program(Ipv4Addr::new(10, 0, 0, 1));
        for (pc, i) in prog.iter().enumerate() {
            if matches!(i[0], JGT_X | JEQ_K | JNE_K | JNE32_K) {
                let off = i16::from_ne_bytes([i[2], i[3]]);
                let target = pc as i16 + 1 + off;
                let want = if pc == 6 { 10 } else { 12 };
                assert_eq!(target, want, "instruction {pc}");
            }
        }
        assert_eq!(i32::from_ne_bytes(prog[10][4..8].try_into().unwrap()), PASS);
        assert_eq!(i32::from_ne_bytes(prog[12][4..8].try_into().unwrap()), DROP);
        assert_eq!(i32::from_ne_bytes(prog[9][4..8].try_into().unwrap()).to_ne_bytes(), [10, 0, 0, 1]);
    }

    /// Where each jump of an eBPF program lands (`None` for a non-jump).
    fn landing(prog: &[[u8; 8]]) -> Vec<Option<usize>> {
        prog.iter()
            .enumerate()
            .map(|(pc, i)| {
                let off = i16::from_ne_bytes([i[2], i[3]]);
                matches!(i[0], JGT_X | JEQ_K | JNE_K | JEQ32_K | JA).then(|| (pc as i16 + 1 + off) as usize)
            })
            .collect()
    }

    #[test]
    fn partition_jumps_land_on_pass_drop_or_the_comparisons() {
        let blocked = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 9)];
        let prog = partition_program(&blocked);
        let n = blocked.len();
        let (compare, pass, drop) = (17, 17 + n, 19 + n);
        assert_eq!(prog.len(), 21 + n);
        let lands = landing(&prog);
        assert_eq!((lands[4], lands[6]), (Some(pass), Some(pass)), "short frame, or ARP");
        assert_eq!(lands[8], Some(11), "not a member's MAC: the IPv4 source");
        assert_eq!(lands[10], Some(compare), "a member's MAC: its address");
        assert_eq!((lands[13], lands[15]), (Some(pass), Some(pass)), "short, or not IPv4");
        // The two loads read the sender: the MAC's low half, or the IPv4 source.
        assert_eq!(i16::from_ne_bytes([prog[9][2], prog[9][3]]), SRC_MAC_LOW);
        assert_eq!(i16::from_ne_bytes([prog[16][2], prog[16][3]]), IPV4_SRC);
        for (i, addr) in blocked.iter().enumerate() {
            assert_eq!(lands[compare + i], Some(drop), "comparison {i}");
            let k = i32::from_ne_bytes(prog[compare + i][4..8].try_into().unwrap()).to_ne_bytes();
            assert_eq!(k, addr.octets());
        }
        assert_eq!(i32::from_ne_bytes(prog[pass][4..8].try_into().unwrap()), PASS);
        assert_eq!(i32::from_ne_bytes(prog[drop][4..8].try_into().unwrap()), DROP);
        assert_eq!(partition_program(&[]).len(), 2);
        assert_eq!(i32::from_ne_bytes(partition_program(&[])[0][4..8].try_into().unwrap()), PASS);
    }

    /// Runs a classic program (the subset it uses) on `frame`, as the kernel does: big-endian
    /// absolute loads, a load past the end returns 0.
    fn run_classic(prog: &[[u8; 8]], frame: &[u8]) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let (code, jt, jf, k) = (
                u16::from_ne_bytes([i[0], i[1]]),
                i[2],
                i[3],
                u32::from_ne_bytes(i[4..8].try_into().unwrap()),
            );
            let k_at = k as usize;
            pc += 1;
            match code {
                0x28 => match frame.get(k_at..k_at + 2) {
                    Some(b) => a = u32::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return 0,
                },
                0x20 => match frame.get(k_at..k_at + 4) {
                    Some(b) => a = u32::from_be_bytes(b.try_into().unwrap()),
                    None => return 0,
                },
                0x05 => pc += k_at,
                0x15 => pc += usize::from(if a == k { jt } else { jf }),
                0x06 => return k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn frame(src_mac: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend(src_mac);
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f
    }

    fn ipv4_from(src: Ipv4Addr) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0];
        h.extend(src.octets());
        h.extend([10, 0, 0, 255]);
        h
    }

    #[test]
    fn classic_partition_drops_what_a_blocked_sender_sends_and_passes_the_rest() {
        let (cut, other) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3));
        let prog = classic_partition_program(&[cut, Ipv4Addr::new(10, 0, 0, 9)]);
        let mac = |a: Ipv4Addr| {
            let [p, q] = LAB_MAC_PREFIX;
            let [a, b, c, d] = a.octets();
            [p, q, a, b, c, d]
        };
        let drop = DROP as u32;
        let pass = PASS as u32;
        // By source MAC: any protocol but ARP (IPv6, a raw EtherType), broadcast included.
        assert_eq!(run_classic(&prog, &frame(mac(cut), 0x0806, &[0; 28])), pass, "ARP");
        assert_eq!(run_classic(&prog, &frame(mac(cut), 0x86dd, &[0; 40])), drop, "IPv6");
        assert_eq!(run_classic(&prog, &frame(mac(cut), 0x88b5, &[1, 2])), drop, "raw");
        assert_eq!(run_classic(&prog, &frame(mac(cut), 0x0800, &ipv4_from(other))), drop, "by MAC first");
        // By IPv4 source when the MAC is no member's.
        let foreign = [0x0a, 0, 0, 0, 0, 1];
        assert_eq!(run_classic(&prog, &frame(foreign, 0x0800, &ipv4_from(cut))), drop, "IPv4 source");
        assert_eq!(run_classic(&prog, &frame(foreign, 0x0800, &ipv4_from(other))), pass);
        assert_eq!(run_classic(&prog, &frame(foreign, 0x86dd, &[0; 40])), pass);
        // Other members, and runts.
        assert_eq!(run_classic(&prog, &frame(mac(other), 0x0800, &ipv4_from(other))), pass);
        assert_eq!(run_classic(&prog, &frame(mac(other), 0x0806, &[0; 28])), pass);
        assert_eq!(run_classic(&prog, &[0xff; 10]), 0);
        assert_eq!(
            run_classic(&classic_partition_program(&[]), &frame(mac(cut), 0x0800, &ipv4_from(cut))),
            pass
        );
    }
}
