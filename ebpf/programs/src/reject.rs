//! Refusing a TCP connection to a frontend that has no ready backend from the datapath
//! itself, as Cilium's "no backend" response does: the segment is turned into the RST the
//! service would have sent and goes back out of the interface it came in on, so the
//! client's `connect()` fails with ECONNREFUSED at once.
//!
//! Leaving it to the kernel is not enough: a cluster IP has no route, and the kernel's
//! "network unreachable" answer is rate-limited per client by two limiters sharing one
//! token bucket (`ip_error` and `icmpv4_xrlim_allow`), so a client that keeps retrying
//! is starved of refusals and its connects time out.
//!
//! The RST is made in place with the kernel's checksum helpers (every changed field is
//! replaced through them, so packets with checksum offload pending stay right), then the
//! TCP options are cut off. UDP is left to the kernel (ICMP port/net unreachable).

use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, TC_ACT_REDIRECT, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use skiff_ebpf_common::lb::PROTO_TCP;

use crate::packet::{
    ETH_LEN, Flow, IP_CHECK, IP_DADDR, IP_SADDR, TCP_ACK, TCP_CHECK, TCP_FIN, TCP_RST, TCP_SYN,
};

/// Length of an IPv4 header without options.
const IP_LEN: usize = 20;
/// Offset of the TCP header (IPv4 without options).
const L4: usize = ETH_LEN + IP_LEN;
/// Length of a TCP header without options.
const TCP_LEN: usize = 20;
/// The most TCP options a header can carry, in 32-bit words.
const TCP_OPTION_WORDS: usize = 10;
/// Offset of the IPv4 total length.
const IP_TOTAL_LEN: usize = 2;
/// Offsets in the TCP header.
const TCP_SEQ: usize = 4;
const TCP_ACK_SEQ: usize = 8;
const TCP_DOFF_FLAGS: usize = 12;
const TCP_WINDOW: usize = 14;
const TCP_URGENT: usize = 18;

/// What the RST carries, read from the segment before anything is changed.
struct Reset {
    header_len: usize,
    seq: u32,
    ack_seq: u32,
    doff_flags: u16,
    window: u16,
    urgent: u16,
    macs: [u8; 12],
    new_seq: u32,
    new_ack: u32,
    new_doff_flags: u16,
}

/// Answer `flow` (a TCP segment to a frontend without backends, arrived on `ifindex`)
/// with a RST sent back where it came from. `None` when the packet is not one this
/// answers (UDP, a RST, IP options, payload) or cannot be read: nothing was changed and
/// the caller passes it to the kernel. Once rewriting started, a failure drops it.
#[inline(always)]
pub fn tcp_reset(ctx: &TcContext, flow: &Flow, ifindex: u32) -> Option<i32> {
    let reset = read(ctx, flow)?;
    if rewrite(ctx, flow, &reset).is_none() {
        return Some(TC_ACT_SHOT as i32);
    }
    // SAFETY: no preconditions; egress of the interface the segment arrived on.
    let redirected = unsafe { bpf_redirect(ifindex, 0) } as i32;
    Some(if redirected == TC_ACT_REDIRECT as i32 {
        redirected
    } else {
        TC_ACT_SHOT as i32
    })
}

#[inline(always)]
fn read(ctx: &TcContext, flow: &Flow) -> Option<Reset> {
    if flow.proto != PROTO_TCP || flow.tcp_flags & TCP_RST != 0 || flow.l4 != L4 {
        return None;
    }
    let doff_flags: u16 = ctx.load(L4 + TCP_DOFF_FLAGS).ok()?;
    let header_len = usize::from(u16::from_be(doff_flags) >> 12) * 4;
    if header_len < TCP_LEN || usize::from(flow.total_len) != IP_LEN + header_len {
        return None;
    }
    let seq: u32 = ctx.load(L4 + TCP_SEQ).ok()?;
    let ack_seq: u32 = ctx.load(L4 + TCP_ACK_SEQ).ok()?;
    let macs: [u8; 12] = ctx.load(0).ok()?;
    // RFC 9293 3.10.7.1: answer an ACK with a RST at its sequence, anything else with a
    // RST|ACK acknowledging what it occupied.
    let (new_seq, new_ack, new_flags) = if flow.tcp_flags & TCP_ACK != 0 {
        (ack_seq, 0u32, TCP_RST)
    } else {
        let occupied =
            u32::from(flow.tcp_flags & TCP_SYN != 0) + u32::from(flow.tcp_flags & TCP_FIN != 0);
        let ack = u32::from_be(seq).wrapping_add(occupied).to_be();
        (0u32, ack, TCP_RST | TCP_ACK)
    };
    Some(Reset {
        header_len,
        seq,
        ack_seq,
        doff_flags,
        window: ctx.load(L4 + TCP_WINDOW).ok()?,
        urgent: ctx.load(L4 + TCP_URGENT).ok()?,
        macs,
        new_seq,
        new_ack,
        new_doff_flags: ((5u16 << 12) | u16::from(new_flags)).to_be(),
    })
}

#[inline(always)]
fn rewrite(ctx: &TcContext, flow: &Flow, reset: &Reset) -> Option<()> {
    let check = L4 + TCP_CHECK;
    let replace4 = |offset: usize, from: u32, to: u32| -> Option<()> {
        ctx.l4_csum_replace(check, u64::from(from), u64::from(to), 4)
            .ok()?;
        ctx.store(offset, &to, 0).ok()
    };
    let replace2 = |offset: usize, from: u16, to: u16| -> Option<()> {
        ctx.l4_csum_replace(check, u64::from(from), u64::from(to), 2)
            .ok()?;
        ctx.store(offset, &to, 0).ok()
    };
    // Addresses and ports swap places: the sums stay as they are.
    ctx.store(ETH_LEN + IP_SADDR, &flow.daddr, 0).ok()?;
    ctx.store(ETH_LEN + IP_DADDR, &flow.saddr, 0).ok()?;
    ctx.store(L4, &flow.dport, 0).ok()?;
    ctx.store(L4 + 2, &flow.sport, 0).ok()?;
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&reset.macs[6..]);
    swapped[6..].copy_from_slice(&reset.macs[..6]);
    ctx.store(0, &swapped, 0).ok()?;

    replace4(L4 + TCP_SEQ, reset.seq, reset.new_seq)?;
    replace4(L4 + TCP_ACK_SEQ, reset.ack_seq, reset.new_ack)?;
    replace2(L4 + TCP_DOFF_FLAGS, reset.doff_flags, reset.new_doff_flags)?;
    replace2(L4 + TCP_WINDOW, reset.window, 0)?;
    replace2(L4 + TCP_URGENT, reset.urgent, 0)?;
    // The options go: take them out of the sum before cutting them off.
    let option_words = (reset.header_len - TCP_LEN) / 4;
    for i in 0..TCP_OPTION_WORDS {
        if i < option_words {
            let word: u32 = ctx.load(L4 + TCP_LEN + i * 4).ok()?;
            ctx.l4_csum_replace(check, u64::from(word), 0, 4).ok()?;
        }
    }
    // The segment's length is in the pseudo header and in the IPv4 header.
    let old_tcp_len = (reset.header_len as u16).to_be();
    let new_tcp_len = (TCP_LEN as u16).to_be();
    ctx.l4_csum_replace(
        check,
        u64::from(old_tcp_len),
        u64::from(new_tcp_len),
        u64::from(BPF_F_PSEUDO_HDR) | 2,
    )
    .ok()?;
    let old_total = flow.total_len.to_be();
    let new_total = ((IP_LEN + TCP_LEN) as u16).to_be();
    ctx.l3_csum_replace(
        ETH_LEN + IP_CHECK,
        u64::from(old_total),
        u64::from(new_total),
        2,
    )
    .ok()?;
    ctx.store(ETH_LEN + IP_TOTAL_LEN, &new_total, 0).ok()?;
    // SAFETY: the context pointer is the program's skb.
    let trimmed = unsafe { bpf_skb_change_tail(ctx.skb.skb, (L4 + TCP_LEN) as u32, 0) };
    (trimmed == 0).then_some(())
}
