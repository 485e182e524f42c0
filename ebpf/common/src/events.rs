//! What the datapath tells the agent: per-CPU counters by hook and reason (always on, one
//! increment per decision) and flow events in a ring buffer (only while someone runs
//! `monitor` or `trace`).

/// Name of the per-CPU counters array.
pub const METRICS_MAP: &str = "METRICS";
/// Name of the events ring buffer.
pub const EVENTS_MAP: &str = "EVENTS";
/// Size of the events ring buffer in bytes (a power of two, multiple of the page size).
pub const EVENTS_BYTES: u32 = 1 << 20;

/// cgroup/connect4.
pub const HOOK_CONNECT4: u8 = 0;
/// cgroup/sendmsg4.
pub const HOOK_SENDMSG4: u8 = 1;
/// cgroup/recvmsg4.
pub const HOOK_RECVMSG4: u8 = 2;
/// cgroup/getpeername4.
pub const HOOK_GETPEERNAME4: u8 = 3;
/// tc ingress on the external (underlay) interface.
pub const HOOK_TC_EXTERNAL: u8 = 4;
/// tc ingress on a pod's host-side veth (packets leaving the pod).
pub const HOOK_TC_POD: u8 = 5;
/// XDP on the external interface.
pub const HOOK_XDP: u8 = 6;
/// Number of hooks.
pub const HOOK_COUNT: usize = 7;
/// Hook names, indexed by `HOOK_*`.
pub const HOOK_NAMES: [&str; HOOK_COUNT] = [
    "connect4",
    "sendmsg4",
    "recvmsg4",
    "getpeername4",
    "tc-external",
    "tc-pod",
    "xdp",
];

/// A new connection or datagram to a frontend was sent to a backend.
pub const REASON_TRANSLATED: u8 = 0;
/// A packet of a tracked flow was translated as its first one was.
pub const REASON_TRANSLATED_TRACKED: u8 = 1;
/// A reply (or a socket's view of its peer) was translated back to the frontend.
pub const REASON_REVERSE_TRANSLATED: u8 = 2;
/// The frontend has no backend ready: the connection is refused.
pub const REASON_NO_BACKEND: u8 = 3;
/// Not a frontend and not a tracked flow: passed unchanged.
pub const REASON_PASSED: u8 = 4;
/// Headers shorter than they claim: passed unchanged.
pub const REASON_MALFORMED: u8 = 5;
/// An IP fragment: passed untranslated (ports are only in the first fragment).
pub const REASON_FRAGMENT: u8 = 6;
/// The conntrack map refused an entry: the packet is dropped.
pub const REASON_CT_FULL: u8 = 7;
/// No free SNAT port for the flow: the packet is dropped.
pub const REASON_SNAT_EXHAUSTED: u8 = 8;
/// A tracked flow's backend is gone: a new backend was chosen.
pub const REASON_BACKEND_GONE: u8 = 9;
/// A frontend with a Maglev flag had no table: a random backend was chosen.
pub const REASON_MAGLEV_MISSING: u8 = 10;
/// Packet rewriting failed (helper error): the packet is dropped.
pub const REASON_REWRITE_FAILED: u8 = 11;
/// Number of reasons.
pub const REASON_COUNT: usize = 12;
/// Reason names (metric label values), indexed by `REASON_*`.
pub const REASON_NAMES: [&str; REASON_COUNT] = [
    "translated",
    "translated_tracked",
    "reverse_translated",
    "no_backend",
    "passed",
    "malformed",
    "fragment",
    "conntrack_full",
    "snat_exhausted",
    "backend_gone",
    "maglev_missing",
    "rewrite_failed",
];
/// Entries of the counters array: one per (hook, reason).
pub const METRICS_ENTRIES: u32 = (HOOK_COUNT * REASON_COUNT) as u32;

/// How the backend was chosen.
pub const SELECT_NONE: u8 = 0;
/// Uniformly at random among the ready backends.
pub const SELECT_RANDOM: u8 = 1;
/// By the frontend's Maglev table.
pub const SELECT_MAGLEV: u8 = 2;
/// By ClientIP session affinity.
pub const SELECT_AFFINITY: u8 = 3;
/// By the flow's conntrack entry.
pub const SELECT_CONNTRACK: u8 = 4;
/// Selection names, indexed by `SELECT_*`.
pub const SELECT_NAMES: [&str; 5] = ["-", "random", "maglev", "affinity", "conntrack"];

/// Index of the (hook, reason) counter.
#[inline(always)]
#[must_use]
pub const fn metric_index(hook: u8, reason: u8) -> u32 {
    hook as u32 * REASON_COUNT as u32 + reason as u32
}

/// One flow event: the tuple before and after a hook's decision.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Monotonic time (ns).
    pub timestamp: u64,
    /// `HOOK_*`.
    pub hook: u8,
    /// `REASON_*`.
    pub reason: u8,
    /// `SELECT_*`.
    pub select: u8,
    /// IP protocol.
    pub proto: u8,
    /// Interface index (tc/XDP), 0 for socket hooks.
    pub ifindex: u32,
    /// Source address before (network byte order; 0 when unknown, as at connect).
    pub saddr: u32,
    /// Destination address before.
    pub daddr: u32,
    /// Source port before (network byte order).
    pub sport: u16,
    /// Destination port before.
    pub dport: u16,
    /// Source address after.
    pub new_saddr: u32,
    /// Destination address after.
    pub new_daddr: u32,
    /// Source port after.
    pub new_sport: u16,
    /// Destination port after.
    pub new_dport: u16,
    /// The frontend's service id (0: none).
    pub service_id: u32,
    /// The chosen backend (0: none).
    pub backend_id: u32,
    /// Conntrack flags of the flow, if tracked.
    pub ct_flags: u16,
    /// Explicit padding; always 0.
    pub pad: u16,
    /// Explicit padding; always 0.
    pub pad2: u32,
}

const _: () = assert!(core::mem::size_of::<Event>() == 56);
