//! Connection tracking for the per-packet path (tc and XDP): an LRU hash of flows, each
//! translated flow stored twice — once in the direction the client sent it
//! ([`CT_FORWARD`], keyed by the client's original tuple: which backend, which SNAT) and
//! once in the direction replies come back ([`CT_REPLY`], keyed by the translated tuple
//! reversed: what to rewrite replies to).
//!
//! Expiry is decided by [`CtValue::expired`], the same function in the kernel (a stale
//! entry is treated as absent) and in the agent's garbage collection.

/// Name of the conntrack map.
pub const CONNTRACK_MAP: &str = "CONNTRACK";
/// Default capacity of the conntrack map (flows × 2 directions).
pub const CONNTRACK_MAX_ENTRIES: u32 = 262_144;

/// Entry describes the client → frontend direction.
pub const CT_FORWARD: u8 = 0;
/// Entry describes the backend → client direction (replies).
pub const CT_REPLY: u8 = 1;

/// The flow's source was rewritten (SNAT to the node address for a remote backend).
pub const CT_SNAT: u16 = 1 << 0;
/// A pod reached its own Service and was chosen as backend: source rewritten to the node.
pub const CT_HAIRPIN: u16 = 1 << 1;
/// A FIN or RST was seen: the flow is closing.
pub const CT_CLOSING: u16 = 1 << 2;
/// A reply was seen.
pub const CT_SEEN_REPLY: u16 = 1 << 3;
/// The flow arrived from outside the node (external scope).
pub const CT_EXTERNAL: u16 = 1 << 4;

/// Nanoseconds in a second.
pub const NSEC_PER_SEC: u64 = 1_000_000_000;
/// A TCP flow that has not seen a reply yet.
pub const CT_TIMEOUT_SYN: u64 = 60 * NSEC_PER_SEC;
/// An established TCP flow (kube-proxy's conntrack default for established is 24 h;
/// Cilium uses 6 h).
pub const CT_TIMEOUT_TCP: u64 = 6 * 3600 * NSEC_PER_SEC;
/// A TCP flow after FIN or RST.
pub const CT_TIMEOUT_CLOSING: u64 = 10 * NSEC_PER_SEC;
/// A UDP flow.
pub const CT_TIMEOUT_UDP: u64 = 60 * NSEC_PER_SEC;
/// How stale `last_seen` may get before a packet refreshes it (keeps writes off the hot
/// path of busy flows).
pub const CT_REFRESH_INTERVAL: u64 = NSEC_PER_SEC;

/// Key of the conntrack map: a flow as it appears on the wire in one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    /// Source address, network byte order.
    pub saddr: u32,
    /// Destination address, network byte order.
    pub daddr: u32,
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`CT_FORWARD`] or [`CT_REPLY`].
    pub direction: u8,
    /// Explicit padding; always 0.
    pub pad: u16,
}

/// Value of the conntrack map.
///
/// Forward entries: `nat_daddr:nat_dport` is the chosen backend (also named by
/// `backend_id`, so a backend that is gone is noticed), `nat_saddr:nat_sport` the SNAT
/// source (0: none). Reply entries: the packet's source becomes `nat_saddr:nat_sport` (the
/// frontend) and, when non-zero, its destination becomes `nat_daddr:nat_dport` (the
/// original client, for SNAT'd flows).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// Monotonic time (bpf_ktime_get_ns) of the last packet, refreshed at most every
    /// [`CT_REFRESH_INTERVAL`].
    pub last_seen: u64,
    /// The frontend's service id.
    pub service_id: u32,
    /// The backend chosen for the flow.
    pub backend_id: u32,
    /// Rewritten source address (0: unchanged).
    pub nat_saddr: u32,
    /// Rewritten destination address (0: unchanged).
    pub nat_daddr: u32,
    /// Rewritten source port (with `nat_saddr`).
    pub nat_sport: u16,
    /// Rewritten destination port (with `nat_daddr`).
    pub nat_dport: u16,
    /// `CT_*` flags.
    pub flags: u16,
    /// Explicit padding; always 0.
    pub pad: u16,
}

impl CtKey {
    /// The key of the opposite direction of this tuple (addresses and ports swapped).
    #[inline(always)]
    #[must_use]
    pub fn reversed(&self, direction: u8) -> Self {
        Self {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            direction,
            pad: 0,
        }
    }
}

impl CtValue {
    /// How long this entry lives after its last packet.
    #[inline(always)]
    #[must_use]
    pub fn timeout(&self, proto: u8) -> u64 {
        if proto != crate::lb::PROTO_TCP {
            CT_TIMEOUT_UDP
        } else if self.flags & CT_CLOSING != 0 {
            CT_TIMEOUT_CLOSING
        } else if self.flags & CT_SEEN_REPLY == 0 {
            CT_TIMEOUT_SYN
        } else {
            CT_TIMEOUT_TCP
        }
    }

    /// Whether the entry is stale at monotonic time `now` (nanoseconds).
    #[inline(always)]
    #[must_use]
    pub fn expired(&self, proto: u8, now: u64) -> bool {
        now.saturating_sub(self.last_seen) > self.timeout(proto) + CT_REFRESH_INTERVAL
    }
}

const _: () = assert!(core::mem::size_of::<CtKey>() == 16);
const _: () = assert!(core::mem::size_of::<CtValue>() == 32);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::{PROTO_TCP, PROTO_UDP};

    #[test]
    fn timeouts_follow_the_flow_state() {
        let mut v = CtValue {
            last_seen: 0,
            ..CtValue::default()
        };
        assert_eq!(v.timeout(PROTO_TCP), CT_TIMEOUT_SYN);
        v.flags |= CT_SEEN_REPLY;
        assert_eq!(v.timeout(PROTO_TCP), CT_TIMEOUT_TCP);
        v.flags |= CT_CLOSING;
        assert_eq!(v.timeout(PROTO_TCP), CT_TIMEOUT_CLOSING);
        assert_eq!(v.timeout(PROTO_UDP), CT_TIMEOUT_UDP);
        assert!(!v.expired(PROTO_TCP, CT_TIMEOUT_CLOSING));
        assert!(v.expired(PROTO_TCP, CT_TIMEOUT_CLOSING + 2 * CT_REFRESH_INTERVAL));
    }

    #[test]
    fn reversing_swaps_both_ends() {
        let k = CtKey {
            saddr: 1,
            daddr: 2,
            sport: 3,
            dport: 4,
            proto: PROTO_TCP,
            direction: CT_FORWARD,
            pad: 0,
        };
        let r = k.reversed(CT_REPLY);
        assert_eq!((r.saddr, r.daddr, r.sport, r.dport), (2, 1, 4, 3));
        assert_eq!(r.direction, CT_REPLY);
    }
}
