//! The per-packet decision shared by tc and XDP: is this packet a reply of a translated
//! flow, a packet of a tracked flow, or the first packet of a new flow to a frontend — and
//! what should its addresses become. Packet rewriting is the caller's (each hook has its
//! own way to write and checksum); conntrack entries are created here.

use aya_ebpf::helpers::bpf_get_prandom_u32;
use skiff_ebpf_common::{
    affinity::{AffinityKey, CLIENT_ADDRESS},
    config::Config,
    conntrack::{
        CT_CLOSING, CT_EXTERNAL, CT_FORWARD, CT_HAIRPIN, CT_REPLY, CT_SEEN_REPLY, CT_SNAT, CtKey,
        CtValue,
    },
    events::{
        HOOK_TC_POD, REASON_BACKEND_GONE, REASON_CT_FULL, REASON_PASSED, REASON_REVERSE_TRANSLATED,
        REASON_SNAT_EXHAUSTED, REASON_TRANSLATED, REASON_TRANSLATED_TRACKED, SELECT_CONNTRACK,
        SELECT_NONE,
    },
    lb::{BACKEND_LOCAL, PROTO_TCP, SCOPE_EXTERNAL, SCOPE_INTERNAL, SVC_LOCAL_ONLY, ServiceKey},
    maglev::flow_hash,
};

use crate::{
    conntrack, events,
    lb::{self, Client},
    packet::{Flow, TCP_ACK, TCP_SYN},
};

/// What to do with the packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it as it is.
    Pass,
    /// Rewrite it to [`Decision::new`].
    Translate,
    /// Drop it (the reason says why).
    Drop,
}

/// A packet's addresses and ports (network byte order).
#[derive(Clone, Copy)]
pub struct Tuple {
    /// Source address.
    pub saddr: u32,
    /// Destination address.
    pub daddr: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// The outcome for one packet, with what `trace`/`monitor` report about it.
#[derive(Clone, Copy)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// `REASON_*`.
    pub reason: u8,
    /// `SELECT_*`.
    pub select: u8,
    /// Frontend's service id (0: none).
    pub service_id: u32,
    /// Chosen backend (0: none).
    pub backend_id: u32,
    /// The flow's conntrack flags.
    pub ct_flags: u16,
    /// The packet's tuple after translation.
    pub new: Tuple,
}

impl Decision {
    #[inline(always)]
    fn pass(flow: &Flow, reason: u8) -> Self {
        Self {
            verdict: Verdict::Pass,
            reason,
            select: SELECT_NONE,
            service_id: 0,
            backend_id: 0,
            ct_flags: 0,
            new: Tuple {
                saddr: flow.saddr,
                daddr: flow.daddr,
                sport: flow.sport,
                dport: flow.dport,
            },
        }
    }
}

#[inline(always)]
fn key(flow: &Flow, direction: u8) -> CtKey {
    CtKey {
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        direction,
        pad: 0,
    }
}

/// Decide about `flow` seen at `hook` (tc-pod: traffic leaving a pod, internal scope;
/// tc-external/XDP: traffic arriving from outside, external scope).
#[inline(always)]
pub fn decide(flow: &Flow, hook: u8, config: &Config, now: u64) -> Decision {
    let mut decision = Decision::pass(flow, REASON_PASSED);
    // A reply of a translated flow?
    let reply_key = key(flow, CT_REPLY);
    if let Some(entry) = conntrack::get(&reply_key, now) {
        // SAFETY: pointer from the map, valid for this run; fields copied out.
        let value = unsafe { *entry };
        conntrack::touch(entry, now, flow.tcp_flags, CT_SEEN_REPLY);
        decision.new.saddr = value.nat_saddr;
        decision.new.sport = value.nat_sport;
        if value.nat_daddr != 0 {
            decision.new.daddr = value.nat_daddr;
            decision.new.dport = value.nat_dport;
        }
        if value.flags & CT_SEEN_REPLY == 0 {
            // First reply: the forward entry now times out as an established flow.
            let forward = CtKey {
                saddr: decision.new.daddr,
                daddr: decision.new.saddr,
                sport: decision.new.dport,
                dport: decision.new.sport,
                proto: flow.proto,
                direction: CT_FORWARD,
                pad: 0,
            };
            if let Some(forward) = conntrack::get(&forward, now) {
                conntrack::touch(forward, now, 0, CT_SEEN_REPLY);
            }
        }
        decision.verdict = Verdict::Translate;
        decision.reason = REASON_REVERSE_TRANSLATED;
        decision.select = SELECT_CONNTRACK;
        decision.service_id = value.service_id;
        decision.backend_id = value.backend_id;
        decision.ct_flags = value.flags | CT_SEEN_REPLY;
        return decision;
    }
    // A packet of a flow translated before?
    let forward_key = key(flow, CT_FORWARD);
    if let Some(entry) = conntrack::get(&forward_key, now) {
        // SAFETY: as above.
        let value = unsafe { *entry };
        // A SYN on a tuple whose flow is closing opens a new connection (the client reused
        // its port within the closing timeout): it is balanced afresh, like any new
        // connection, and never sent to a backend that has started terminating since.
        let reopened = flow.proto == PROTO_TCP
            && flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
            && value.flags & CT_CLOSING != 0;
        if !reopened && lb::backend(value.backend_id).is_some() {
            conntrack::touch(entry, now, flow.tcp_flags, 0);
            decision.new.daddr = value.nat_daddr;
            decision.new.dport = value.nat_dport;
            if value.nat_saddr != 0 {
                decision.new.saddr = value.nat_saddr;
                decision.new.sport = value.nat_sport;
            }
            decision.verdict = Verdict::Translate;
            decision.reason = REASON_TRANSLATED_TRACKED;
            decision.select = SELECT_CONNTRACK;
            decision.service_id = value.service_id;
            decision.backend_id = value.backend_id;
            decision.ct_flags = value.flags;
            return decision;
        }
        // Reopened, or its backend is gone: forget the flow (both directions, so no reply
        // entry of the old backend is left to GC) and choose again below.
        forget_reply(flow, &value, now);
        conntrack::remove(&forward_key);
        if !reopened {
            events::count(hook, REASON_BACKEND_GONE);
        }
    }
    new_flow(flow, hook, config, now, decision)
}

/// The reply entry's key of the flow `flow` belongs to, which was translated as its
/// forward entry `forward` says: from the backend, to the client or its source NAT.
#[inline(always)]
fn reply_key_of(flow: &Flow, forward: &CtValue) -> CtKey {
    let (daddr, dport) = if forward.nat_saddr != 0 {
        (forward.nat_saddr, forward.nat_sport)
    } else {
        (flow.saddr, flow.sport)
    };
    CtKey {
        saddr: forward.nat_daddr,
        daddr,
        sport: forward.nat_dport,
        dport,
        proto: flow.proto,
        direction: CT_REPLY,
        pad: 0,
    }
}

/// Remove the reply entry of the flow `flow` belongs to, if it is still that flow's: the
/// two directions expire apart, and once this one had gone its key may have been handed to
/// another client's flow (a source NAT port is free when its reply key is), whose live
/// entry must stay.
#[inline(always)]
fn forget_reply(flow: &Flow, forward: &CtValue, now: u64) {
    let reply = reply_key_of(flow, forward);
    let Some(entry) = conntrack::get(&reply, now) else {
        return;
    };
    // SAFETY: pointer from the map, valid for this run; fields copied out.
    let value = unsafe { *entry };
    let same_frontend = value.nat_saddr == flow.daddr && value.nat_sport == flow.dport;
    let same_client =
        forward.nat_saddr == 0 || (value.nat_daddr == flow.saddr && value.nat_dport == flow.sport);
    if same_frontend && same_client {
        conntrack::remove(&reply);
    }
}

/// A connection opened straight to an address and port (a pod IP, or a backend the socket
/// LB chose at connect) can reuse the wire tuple of an earlier connection that was
/// translated here: the kernel picks source ports per destination, and it knew that one
/// by the Service's address. The earlier flow's reply entry would then turn the new
/// connection's SYN-ACK into one from the Service, which no socket expects, and the
/// connect times out. A SYN opening such a tuple ends the old flow's reverse translation.
///
/// Only on a pod's interface: tc is the first to see a pod's flows, so an entry there is an
/// old one. On the underlay XDP may have translated this very SYN a moment before (tc then
/// sees it already addressed to the pod), and the reply entry is that flow's own, fresh or
/// reused with its forward twin; telling a stale one apart there would need the packet's
/// address before XDP. (An outside client that reaches pod IPs directly and reuses a node
/// port connection's tuple is the case left.)
#[inline(always)]
fn forget_stale_reply(flow: &Flow, hook: u8) {
    if hook != HOOK_TC_POD
        || flow.proto != PROTO_TCP
        || flow.tcp_flags & (TCP_SYN | TCP_ACK) != TCP_SYN
    {
        return;
    }
    let stale = CtKey {
        saddr: flow.daddr,
        daddr: flow.saddr,
        sport: flow.dport,
        dport: flow.sport,
        proto: flow.proto,
        direction: CT_REPLY,
        pad: 0,
    };
    conntrack::remove(&stale);
}

/// The first packet of a flow: find the frontend, choose a backend, set up NAT and track.
#[inline(always)]
fn new_flow(flow: &Flow, hook: u8, config: &Config, now: u64, mut decision: Decision) -> Decision {
    let external = hook != HOOK_TC_POD;
    let scope = if external {
        SCOPE_EXTERNAL
    } else {
        SCOPE_INTERNAL
    };
    let Some(service) = lb::frontend(flow.daddr, flow.dport, flow.proto, scope) else {
        forget_stale_reply(flow, hook);
        return decision;
    };
    decision.service_id = service.service_id;
    let frontend = ServiceKey {
        address: flow.daddr,
        port: flow.dport,
        proto: flow.proto,
        scope,
        slot: 0,
        pad: 0,
    };
    let mut client = Client {
        affinity: AffinityKey {
            client: u64::from(flow.saddr),
            service_id: service.service_id,
            kind: CLIENT_ADDRESS,
        },
        maglev: external,
        flow_hash: if external {
            flow_hash(flow.saddr, flow.daddr, flow.sport, flow.dport, flow.proto)
        } else {
            0
        },
    };
    let selected = match lb::select(
        hook,
        frontend,
        &service,
        &mut client,
        config.maglev_table_size,
        now,
    ) {
        Ok(selected) => selected,
        Err(reason) => {
            // No backend: leave the packet to the kernel, which refuses it at once (RST or
            // ICMP unreachable for a node address; no route for a cluster IP).
            decision.reason = reason;
            return decision;
        }
    };
    let backend = selected.backend;
    decision.select = selected.how;
    decision.backend_id = selected.id;
    decision.new.daddr = backend.address;
    decision.new.dport = backend.port;
    let mut flags = if external { CT_EXTERNAL } else { 0 };
    // Source NAT: external traffic to another node's backend goes out with the node's
    // address so the reply comes back here; a pod reaching itself gets the hairpin address.
    let snat_address =
        if external && backend.flags & BACKEND_LOCAL == 0 && service.flags & SVC_LOCAL_ONLY == 0 {
            flags |= CT_SNAT;
            config.node_address
        } else if !external && backend.address == flow.saddr {
            flags |= CT_HAIRPIN;
            config.hairpin_address
        } else {
            0
        };
    let mut reply = CtKey {
        saddr: backend.address,
        daddr: flow.saddr,
        sport: backend.port,
        dport: flow.sport,
        proto: flow.proto,
        direction: CT_REPLY,
        pad: 0,
    };
    if snat_address != 0 {
        reply.daddr = snat_address;
        let Some(port) = snat_port(&reply, flow.sport, now) else {
            decision.verdict = Verdict::Drop;
            decision.reason = REASON_SNAT_EXHAUSTED;
            return decision;
        };
        reply.dport = port;
        decision.new.saddr = snat_address;
        decision.new.sport = port;
    }
    let snat = snat_address != 0;
    let reply_value = CtValue {
        last_seen: now,
        service_id: service.service_id,
        backend_id: selected.id,
        nat_saddr: flow.daddr,
        nat_sport: flow.dport,
        nat_daddr: if snat { flow.saddr } else { 0 },
        nat_dport: if snat { flow.sport } else { 0 },
        flags,
        pad: 0,
    };
    let forward_value = CtValue {
        last_seen: now,
        service_id: service.service_id,
        backend_id: selected.id,
        nat_saddr: if snat { snat_address } else { 0 },
        nat_sport: if snat { reply.dport } else { 0 },
        nat_daddr: backend.address,
        nat_dport: backend.port,
        flags,
        pad: 0,
    };
    if conntrack::insert(&reply, &reply_value).is_err()
        || conntrack::insert(&key(flow, CT_FORWARD), &forward_value).is_err()
    {
        decision.verdict = Verdict::Drop;
        decision.reason = REASON_CT_FULL;
        return decision;
    }
    decision.verdict = Verdict::Translate;
    decision.reason = REASON_TRANSLATED;
    decision.ct_flags = flags;
    decision
}

/// A source port for SNAT whose reply tuple is free: the client's own port if possible,
/// else a few random ones from the upper half of the port space.
#[inline(always)]
fn snat_port(reply: &CtKey, preferred: u16, now: u64) -> Option<u16> {
    let mut candidate = *reply;
    candidate.dport = preferred;
    for _ in 0..4 {
        if conntrack::get(&candidate, now).is_none() {
            return Some(candidate.dport);
        }
        // SAFETY: no preconditions.
        let random = unsafe { bpf_get_prandom_u32() };
        candidate.dport = ((32_768 + (random % 32_768)) as u16).to_be();
    }
    None
}
