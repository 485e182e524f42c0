//! XDP on the node's underlay interface: NodePort/LoadBalancer acceleration. The same
//! decision as tc (shared maps, shared conntrack, shared Maglev tables); XDP completes a
//! translation itself when the result can go straight up the stack — a DNAT to a pod on
//! this node with the client's address kept — and passes anything else untouched for tc,
//! which translates it from the conntrack entry this decision made. Forwarding with
//! XDP_TX to another node's backend is not done: on veth (the lab's underlay) XDP_TX
//! frames are lost unless the peer runs XDP itself, so it could not be verified here.
//! Off (everything passed) unless `CONFIG_XDP` is set.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_ktime_get_ns,
    macros::xdp,
    programs::XdpContext,
};
use skiff_ebpf_common::{
    config::CONFIG_XDP,
    events::{HOOK_XDP, REASON_FRAGMENT, REASON_MALFORMED},
};

use crate::{
    config, events,
    flow::{self, Verdict},
    nat,
    packet::{self, NotParsed},
    tc::event,
};

/// Whether a translation leaves the packet's source as it was.
#[inline(always)]
fn new_source_kept(flow: &packet::Flow, new: &flow::Tuple) -> bool {
    new.saddr == flow.saddr && new.sport == flow.sport
}

/// NodePort acceleration on the external interface.
#[xdp]
pub fn xdp_external(ctx: XdpContext) -> u32 {
    let config = config::get();
    if config.flags & CONFIG_XDP == 0 {
        return XDP_PASS;
    }
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let flow = match packet::parse(data, data_end) {
        Ok(flow) => flow,
        Err(NotParsed::Other) => return XDP_PASS,
        Err(NotParsed::Malformed) => {
            events::count(HOOK_XDP, REASON_MALFORMED);
            return XDP_PASS;
        }
        Err(NotParsed::Fragment) => {
            events::count(HOOK_XDP, REASON_FRAGMENT);
            return XDP_PASS;
        }
    };
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let decision = flow::decide(&flow, HOOK_XDP, &config, now);
    let ifindex = ctx.ingress_ifindex() as u32;
    let mut report = event(HOOK_XDP, ifindex, &flow, &decision);
    match decision.verdict {
        Verdict::Pass => {
            events::report(&config, &mut report);
            XDP_PASS
        }
        Verdict::Drop => {
            events::report(&config, &mut report);
            XDP_DROP
        }
        Verdict::Translate => {
            // XDP finishes a translation only when the stack can take the packet as it is
            // then: a DNAT to a pod on this node, source untouched. Translations that
            // rewrite the source (SNAT towards another node's backend, replies whose new
            // source is a local frontend) go to tc, which sends them straight to their next
            // hop; it finds the conntrack entries this decision just made.
            if new_source_kept(&flow, &decision.new)
                && nat::rewrite_direct(data, data_end, &flow, &decision.new).is_some()
            {
                events::report(&config, &mut report);
            }
            XDP_PASS
        }
    }
}
