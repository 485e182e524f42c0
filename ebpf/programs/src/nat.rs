//! Packet rewriting and forwarding after a decision: tc rewrites through the skb helpers
//! (which keep checksum offload state right) and sends the packet to its next hop found
//! by a FIB lookup; XDP rewrites in place with incremental checksums (RFC 1624).

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    bindings::{
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, bpf_fib_lookup as FibParams,
    },
    helpers::{bpf_fib_lookup, bpf_redirect_neigh},
    programs::TcContext,
};
use skiff_ebpf_common::lb::PROTO_UDP;

use crate::{
    flow::Tuple,
    packet::{Flow, IP_CHECK, IP_DADDR, IP_SADDR, TCP_CHECK, UDP_CHECK},
};

/// `AF_INET`.
const AF_INET: u8 = 2;

/// Rewrite the packet in the skb to `new` with the kernel's checksum helpers.
#[inline(always)]
pub fn rewrite_skb(ctx: &TcContext, flow: &Flow, new: &Tuple) -> Result<(), i64> {
    let l4_check = flow.l4_check();
    let mangled = if flow.proto == PROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    let pseudo = u64::from(BPF_F_PSEUDO_HDR) | mangled;
    if new.saddr != flow.saddr {
        let (from, to) = (u64::from(flow.saddr), u64::from(new.saddr));
        ctx.l4_csum_replace(l4_check, from, to, pseudo | 4)?;
        ctx.l3_csum_replace(flow.l3 + IP_CHECK, from, to, 4)?;
        ctx.store(flow.l3 + IP_SADDR, &new.saddr, 0)?;
    }
    if new.daddr != flow.daddr {
        let (from, to) = (u64::from(flow.daddr), u64::from(new.daddr));
        ctx.l4_csum_replace(l4_check, from, to, pseudo | 4)?;
        ctx.l3_csum_replace(flow.l3 + IP_CHECK, from, to, 4)?;
        ctx.store(flow.l3 + IP_DADDR, &new.daddr, 0)?;
    }
    if new.sport != flow.sport {
        ctx.l4_csum_replace(
            l4_check,
            u64::from(flow.sport),
            u64::from(new.sport),
            mangled | 2,
        )?;
        ctx.store(flow.l4, &new.sport, 0)?;
    }
    if new.dport != flow.dport {
        ctx.l4_csum_replace(
            l4_check,
            u64::from(flow.dport),
            u64::from(new.dport),
            mangled | 2,
        )?;
        ctx.store(flow.l4 + 2, &new.dport, 0)?;
    }
    Ok(())
}

/// Ones'-complement update of checksum `check` for a 32-bit field changing `from` → `to`
/// (values as loaded from the packet; the sum is byte-order independent).
#[inline(always)]
fn checksum_update32(check: u16, from: u32, to: u32) -> u16 {
    let mut sum = u32::from(!check);
    sum += u32::from(!(from as u16)) + u32::from(!((from >> 16) as u16));
    sum += u32::from(to as u16) + u32::from((to >> 16) as u16);
    fold(sum)
}

/// As [`checksum_update32`] for a 16-bit field.
#[inline(always)]
fn checksum_update16(check: u16, from: u16, to: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!from) + u32::from(to);
    fold(sum)
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn field<T>(data: usize, data_end: usize, offset: usize) -> Option<*mut T> {
    let start = data + offset;
    if start + size_of::<T>() > data_end {
        return None;
    }
    Some(start as *mut T)
}

/// Rewrite the packet in `data..data_end` (XDP) to `new`, updating the IPv4 and L4
/// checksums incrementally. `None` if a header is out of bounds (nothing written then).
///
/// Every field is addressed from one bounds-checked base pointer per header: the verifier
/// tracks a checked range per pointer, and pointers recomputed from `data` lose it.
#[inline(always)]
pub fn rewrite_direct(data: usize, data_end: usize, flow: &Flow, new: &Tuple) -> Option<()> {
    let ip: *mut u8 = field::<[u8; 20]>(data, data_end, flow.l3)?.cast();
    let udp = flow.proto == PROTO_UDP;
    let (l4, check_offset): (*mut u8, usize) = if udp {
        (field::<[u8; 8]>(data, data_end, flow.l4)?.cast(), UDP_CHECK)
    } else {
        (
            field::<[u8; 18]>(data, data_end, flow.l4)?.cast(),
            TCP_CHECK,
        )
    };
    // SAFETY: every offset below lies inside the range checked for its base pointer (20
    // bytes of IPv4 header; 8 of UDP or 18 of TCP header).
    unsafe {
        let ip_check = ip.add(IP_CHECK).cast::<u16>();
        let saddr = ip.add(IP_SADDR).cast::<u32>();
        let daddr = ip.add(IP_DADDR).cast::<u32>();
        let sport = l4.cast::<u16>();
        let dport = l4.add(2).cast::<u16>();
        let l4_check = l4.add(check_offset).cast::<u16>();
        let mut ip_sum = ip_check.read_unaligned();
        let mut l4_sum = l4_check.read_unaligned();
        // A UDP checksum of 0 means "none" and stays so.
        let l4_present = !(udp && l4_sum == 0);
        if new.saddr != flow.saddr {
            ip_sum = checksum_update32(ip_sum, flow.saddr, new.saddr);
            l4_sum = checksum_update32(l4_sum, flow.saddr, new.saddr);
            saddr.write_unaligned(new.saddr);
        }
        if new.daddr != flow.daddr {
            ip_sum = checksum_update32(ip_sum, flow.daddr, new.daddr);
            l4_sum = checksum_update32(l4_sum, flow.daddr, new.daddr);
            daddr.write_unaligned(new.daddr);
        }
        if new.sport != flow.sport {
            l4_sum = checksum_update16(l4_sum, flow.sport, new.sport);
            sport.write_unaligned(new.sport);
        }
        if new.dport != flow.dport {
            l4_sum = checksum_update16(l4_sum, flow.dport, new.dport);
            dport.write_unaligned(new.dport);
        }
        ip_check.write_unaligned(ip_sum);
        if l4_present {
            l4_check.write_unaligned(if udp && l4_sum == 0 { 0xffff } else { l4_sum });
        }
    }
    Some(())
}

/// The interface the kernel's FIB sends a packet with tuple `new` (arrived on `ifindex`)
/// out of; `None` if it is not forwarded (local delivery, no route, …): the caller lets
/// the stack handle it.
#[inline(always)]
pub fn next_hop(ctx: *mut c_void, flow: &Flow, new: &Tuple, ifindex: u32) -> Option<u32> {
    // SAFETY: bpf_fib_lookup is plain data; all-zero is a valid starting point.
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.l4_protocol = flow.proto;
    params.sport = new.sport;
    params.dport = new.dport;
    params.__bindgen_anon_1.tot_len = flow.total_len;
    params.ifindex = ifindex;
    params.__bindgen_anon_3.ipv4_src = new.saddr;
    params.__bindgen_anon_4.ipv4_dst = new.daddr;
    // SAFETY: params is a valid bpf_fib_lookup of the size passed.
    let ret = unsafe { bpf_fib_lookup(ctx, &mut params, size_of::<FibParams>() as i32, 0) };
    let ret = ret as u32;
    if ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH {
        return None;
    }
    Some(params.ifindex)
}

/// After a tc rewrite: send the packet straight to its next hop (so translated packets
/// whose new source is a local address never meet the stack's martian checks), or hand it
/// to the stack when the FIB does not forward it.
#[inline(always)]
pub fn forward_skb(ctx: &TcContext, flow: &Flow, new: &Tuple) -> i32 {
    // SAFETY: the context pointer is the program's skb.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(out) = next_hop(ctx.skb.skb.cast(), flow, new, ifindex) else {
        return TC_ACT_OK as i32;
    };
    // SAFETY: NULL params: the helper resolves the neighbour of the packet's destination.
    unsafe { bpf_redirect_neigh(out, core::ptr::null_mut(), 0, 0) as i32 }
}
