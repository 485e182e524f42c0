//! tc programs: `tc_external` on the node's underlay interface (NodePort, LoadBalancer and
//! externalIP traffic arriving from outside; replies of translated flows coming back from
//! other nodes) and `tc_pod` on every pod's host-side veth (traffic leaving a pod: Services
//! per packet when the socket LB is off or bypassed, replies of flows to a local backend).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_ktime_get_ns,
    macros::classifier,
    programs::TcContext,
};
use skiff_ebpf_common::events::{
    Event, HOOK_TC_EXTERNAL, HOOK_TC_POD, REASON_FRAGMENT, REASON_MALFORMED, REASON_NO_BACKEND,
    REASON_REWRITE_FAILED,
};

use crate::{
    config, events,
    flow::{self, Decision, Verdict},
    nat,
    packet::{self, Flow, NotParsed},
    reject,
};

/// Bytes pulled into the linear area when headers are not there: Ethernet, IPv4 with
/// options, TCP.
const HEADERS_MAX: u32 = 14 + 60 + 20;

/// What [`process`] returns for a packet to a frontend without backends (not a tc
/// action: no action is this negative).
const REFUSE: i32 = i32::MIN;

/// Traffic arriving at the node from outside.
#[classifier]
pub fn tc_external(ctx: TcContext) -> i32 {
    act(&ctx, HOOK_TC_EXTERNAL)
}

/// Traffic leaving a pod.
#[classifier]
pub fn tc_pod(ctx: TcContext) -> i32 {
    act(&ctx, HOOK_TC_POD)
}

/// The decision, then the refusal of connections to frontends without backends: each a
/// BPF function of its own, so their stack frames are not added up (the decision's is
/// close to the 512-byte limit already).
#[inline(always)]
fn act(ctx: &TcContext, hook: u8) -> i32 {
    let action = process(ctx, hook);
    if action != REFUSE {
        return action;
    }
    refuse(ctx)
}

/// Refuse the packet's connection from here: the kernel's own answer for an address
/// without a route is rate-limited and starves a retrying client (see [`reject`]).
#[inline(never)]
fn refuse(ctx: &TcContext) -> i32 {
    let Ok(flow) = parse(ctx) else {
        return TC_ACT_OK as i32;
    };
    // SAFETY: the context pointer is the program's skb.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    reject::tcp_reset(ctx, &flow, ifindex).unwrap_or(TC_ACT_OK as i32)
}

#[inline(always)]
fn parse(ctx: &TcContext) -> Result<Flow, NotParsed> {
    match packet::parse(ctx.data(), ctx.data_end()) {
        Err(NotParsed::Malformed) if (ctx.len() as usize) > ctx.data_end() - ctx.data() => {
            // Headers beyond the linear area: pull them in and look again.
            let want = if ctx.len() < HEADERS_MAX {
                ctx.len()
            } else {
                HEADERS_MAX
            };
            ctx.pull_data(want).map_err(|_| NotParsed::Malformed)?;
            packet::parse(ctx.data(), ctx.data_end())
        }
        other => other,
    }
}

/// The event describing `decision` about `flow`.
#[inline(always)]
pub fn event(hook: u8, ifindex: u32, flow: &Flow, decision: &Decision) -> Event {
    Event {
        timestamp: 0,
        hook,
        reason: decision.reason,
        select: decision.select,
        proto: flow.proto,
        ifindex,
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        new_saddr: decision.new.saddr,
        new_daddr: decision.new.daddr,
        new_sport: decision.new.sport,
        new_dport: decision.new.dport,
        service_id: decision.service_id,
        backend_id: decision.backend_id,
        ct_flags: decision.ct_flags,
        pad: 0,
        pad2: 0,
    }
}

/// Decide about the packet and carry the decision out; [`REFUSE`] for a connection to a
/// frontend without backends.
#[inline(never)]
fn process(ctx: &TcContext, hook: u8) -> i32 {
    let flow = match parse(ctx) {
        Ok(flow) => flow,
        Err(NotParsed::Other) => return TC_ACT_OK as i32,
        Err(NotParsed::Malformed) => {
            events::count(hook, REASON_MALFORMED);
            return TC_ACT_OK as i32;
        }
        Err(NotParsed::Fragment) => {
            events::count(hook, REASON_FRAGMENT);
            return TC_ACT_OK as i32;
        }
    };
    let config = config::get();
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut decision = flow::decide(&flow, hook, &config, now);
    // SAFETY: the context pointer is the program's skb.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match decision.verdict {
        Verdict::Pass => {
            events::report(&config, &mut event(hook, ifindex, &flow, &decision));
            if decision.reason == REASON_NO_BACKEND {
                REFUSE
            } else {
                TC_ACT_OK as i32
            }
        }
        Verdict::Drop => {
            events::report(&config, &mut event(hook, ifindex, &flow, &decision));
            TC_ACT_SHOT as i32
        }
        Verdict::Translate => {
            if nat::rewrite_skb(ctx, &flow, &decision.new).is_err() {
                decision.reason = REASON_REWRITE_FAILED;
                events::report(&config, &mut event(hook, ifindex, &flow, &decision));
                return TC_ACT_SHOT as i32;
            }
            events::report(&config, &mut event(hook, ifindex, &flow, &decision));
            nat::forward_skb(ctx, &flow, &decision.new)
        }
    }
}
