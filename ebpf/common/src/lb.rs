//! Service load-balancing maps: `SERVICES` (frontend → backend slots), `BACKENDS` and
//! `REV_NAT` (service id → frontend, for inspection and events).
//!
//! A Service frontend (address, port, protocol, scope) has `count + 1` entries in
//! `SERVICES`: slot 0 describes the frontend (backend count, flags, service id), slots
//! `1..=count` each name one backend id. Backends live once in `BACKENDS`, so a backend
//! shared by several frontends is stored once and updated in one place.
//!
//! Scope separates who is asking: [`SCOPE_INTERNAL`] entries answer clients inside the
//! cluster (socket LB, pods through their veth), [`SCOPE_EXTERNAL`] entries answer traffic
//! arriving from outside the node (NodePort, LoadBalancer, externalIPs) and follow the
//! Service's `externalTrafficPolicy`.

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Lookup scope of clients inside the cluster (pods, node processes in the pod cgroup).
pub const SCOPE_INTERNAL: u8 = 0;
/// Lookup scope of traffic that arrives at the node from outside (NodePort, LB, externalIP).
pub const SCOPE_EXTERNAL: u8 = 1;

/// Backend accepts new connections.
pub const BACKEND_ACTIVE: u8 = 0;
/// Backend is shutting down: existing connections only, never chosen for new ones.
pub const BACKEND_TERMINATING: u8 = 1;

/// Backend flag: the backend runs on this node (no SNAT needed for external traffic).
pub const BACKEND_LOCAL: u8 = 1;

/// Frontend flag: reachable from outside the node (NodePort, LoadBalancer, externalIP).
pub const SVC_EXTERNAL: u16 = 1 << 0;
/// Frontend flag: traffic policy `Local` — only this node's backends, client IP kept.
pub const SVC_LOCAL_ONLY: u16 = 1 << 1;
/// Frontend flag: `sessionAffinity: ClientIP` (timeout in `affinity_timeout`).
pub const SVC_AFFINITY: u16 = 1 << 2;
/// Frontend flag: a Maglev table exists for this frontend (external scope).
pub const SVC_MAGLEV: u16 = 1 << 3;
/// Frontend kind: the Service's cluster IP.
pub const SVC_CLUSTER_IP: u16 = 1 << 4;
/// Frontend kind: a node port on a node address.
pub const SVC_NODE_PORT: u16 = 1 << 5;
/// Frontend kind: a `status.loadBalancer.ingress` address.
pub const SVC_LOAD_BALANCER: u16 = 1 << 6;
/// Frontend kind: one of the Service's `externalIPs`.
pub const SVC_EXTERNAL_IP: u16 = 1 << 7;

/// Name of the services map in the object and in bpffs.
pub const SERVICES_MAP: &str = "SERVICES";
/// Name of the backends map in the object and in bpffs.
pub const BACKENDS_MAP: &str = "BACKENDS";
/// Name of the reverse-NAT map (service id → frontend).
pub const REV_NAT_MAP: &str = "REV_NAT";
/// Default capacity of the services map (frontend entries + backend slots).
pub const SERVICES_MAX_ENTRIES: u32 = 262_144;
/// Default capacity of the backends map.
pub const BACKENDS_MAX_ENTRIES: u32 = 131_072;
/// Default capacity of the reverse-NAT map (frontends).
pub const REV_NAT_MAX_ENTRIES: u32 = 65_536;

/// Key of the `SERVICES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Frontend IPv4 address, network byte order.
    pub address: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub proto: u8,
    /// [`SCOPE_INTERNAL`] or [`SCOPE_EXTERNAL`].
    pub scope: u8,
    /// 0 for the frontend entry, `1..=count` for backend slots.
    pub slot: u16,
    /// Explicit padding; always 0.
    pub pad: u16,
}

/// Value of the `SERVICES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Slot > 0: the backend id (key of `BACKENDS`). Slot 0: 0.
    pub backend_id: u32,
    /// Slot 0: number of backend slots. Slot > 0: 0.
    pub count: u16,
    /// Slot 0: `SVC_*` flags.
    pub flags: u16,
    /// The frontend's id: key of `REV_NAT`, `MAGLEV` and the affinity map.
    pub service_id: u32,
    /// Slot 0 with [`SVC_AFFINITY`]: ClientIP affinity timeout in seconds.
    pub affinity_timeout: u32,
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
    /// `BACKEND_*` flags ([`BACKEND_LOCAL`]).
    pub flags: u8,
    /// Explicit padding; always 0.
    pub pad: [u8; 3],
}

/// Value of the `REV_NAT` map (key: service id, `u32`): the frontend a translated
/// connection was addressed to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevNat {
    /// Frontend IPv4 address, network byte order.
    pub address: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    /// Protocol.
    pub proto: u8,
    /// Explicit padding; always 0.
    pub pad: u8,
}

const _: () = assert!(core::mem::size_of::<ServiceKey>() == 12);
const _: () = assert!(core::mem::size_of::<ServiceValue>() == 16);
const _: () = assert!(core::mem::size_of::<Backend>() == 12);
const _: () = assert!(core::mem::size_of::<RevNat>() == 8);
