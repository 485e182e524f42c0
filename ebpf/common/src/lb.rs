//! Service load-balancing maps: `SERVICES` (frontend → backend slots) and `BACKENDS`.
//!
//! A Service frontend (VIP, port, protocol) has `count + 1` entries in `SERVICES`:
//! slot 0 describes the service (backend count, flags), slots `1..=count` each name one
//! backend id. Backends live once in `BACKENDS`, so a backend shared by several frontends
//! is stored once and updated in one place.

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Lookup scope with every backend (traffic policy `Cluster`).
pub const SCOPE_ALL: u8 = 0;
/// Lookup scope with node-local backends only (traffic policy `Local`).
pub const SCOPE_LOCAL: u8 = 1;

/// Backend accepts new connections.
pub const BACKEND_ACTIVE: u8 = 0;
/// Backend is shutting down: existing connections only.
pub const BACKEND_TERMINATING: u8 = 1;

/// Name of the services map in the object and in bpffs.
pub const SERVICES_MAP: &str = "SERVICES";
/// Name of the backends map in the object and in bpffs.
pub const BACKENDS_MAP: &str = "BACKENDS";
/// Capacity of the services map (frontend slots).
pub const SERVICES_MAX_ENTRIES: u32 = 65_536;
/// Capacity of the backends map.
pub const BACKENDS_MAX_ENTRIES: u32 = 65_536;

/// Key of the `SERVICES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Frontend IPv4 address, network byte order.
    pub address: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub proto: u8,
    /// [`SCOPE_ALL`] or [`SCOPE_LOCAL`].
    pub scope: u8,
    /// 0 for the service entry, `1..=count` for backend slots.
    pub slot: u16,
    /// Explicit padding; always 0.
    pub pad: u16,
}

/// Value of the `SERVICES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Slot > 0: the backend id (key of `BACKENDS`). Slot 0: unused (0).
    pub backend_id: u32,
    /// Slot 0: number of backend slots. Slot > 0: unused (0).
    pub count: u16,
    /// Id used to translate replies back to the frontend.
    pub rev_nat_id: u16,
    /// Service flags (reserved; 0).
    pub flags: u32,
}

/// Value of the `BACKENDS` map (key: backend id, `u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Backend IPv4 address, network byte order.
    pub address: u32,
    /// Backend port, network byte order.
    pub port: u16,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub proto: u8,
    /// [`BACKEND_ACTIVE`] or [`BACKEND_TERMINATING`].
    pub state: u8,
}

const _: () = assert!(core::mem::size_of::<ServiceKey>() == 12);
const _: () = assert!(core::mem::size_of::<ServiceValue>() == 12);
const _: () = assert!(core::mem::size_of::<Backend>() == 8);

#[cfg(feature = "user")]
mod user {
    // SAFETY: each type is #[repr(C)], Copy, has explicit padding fields and no implicit holes
    // (sizes asserted above), so every bit pattern is valid and none is uninitialised.
    unsafe impl aya::Pod for super::ServiceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ServiceValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Backend {}
}
