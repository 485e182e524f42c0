//! `sessionAffinity: ClientIP`: the backend a client was last sent to, per frontend, kept
//! while the client keeps coming back within the Service's timeout.

/// Name of the affinity map.
pub const AFFINITY_MAP: &str = "AFFINITY";
/// Default capacity of the affinity map (LRU).
pub const AFFINITY_MAX_ENTRIES: u32 = 65_536;

/// The client is identified by its IPv4 address (per-packet path).
pub const CLIENT_ADDRESS: u32 = 0;
/// The client is identified by its network namespace cookie (socket LB, where the source
/// address is not chosen yet at connect time).
pub const CLIENT_NETNS: u32 = 1;

/// Key: client and frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// Client address (network byte order, widened) or netns cookie.
    pub client: u64,
    /// The frontend's service id.
    pub service_id: u32,
    /// [`CLIENT_ADDRESS`] or [`CLIENT_NETNS`].
    pub kind: u32,
}

/// Value: the backend and when the client last used it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    /// Monotonic time (nanoseconds) of the last connection.
    pub last_used: u64,
    /// Backend id.
    pub backend_id: u32,
    /// Explicit padding; always 0.
    pub pad: u32,
}

const _: () = assert!(core::mem::size_of::<AffinityKey>() == 16);
const _: () = assert!(core::mem::size_of::<AffinityValue>() == 16);
