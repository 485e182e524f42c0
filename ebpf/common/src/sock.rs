//! Socket-LB reverse translation: what a socket connected (or sent) to before the
//! connect4/sendmsg4 hook rewrote the address, so recvmsg4 and getpeername4 can show the
//! Service's address instead of the backend's.

/// Name of the socket reverse-NAT map.
pub const SOCK_REV_NAT_MAP: &str = "SOCK_REV_NAT";
/// Default capacity of the socket reverse-NAT map (LRU: old sockets fall out).
pub const SOCK_REV_NAT_MAX_ENTRIES: u32 = 262_144;

/// Key: the socket and the backend it talks to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockRevKey {
    /// The socket's cookie (bpf_get_socket_cookie).
    pub cookie: u64,
    /// Backend address, network byte order.
    pub address: u32,
    /// Backend port, network byte order.
    pub port: u16,
    /// Explicit padding; always 0.
    pub pad: u16,
}

/// Value: the frontend the application addressed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevValue {
    /// Frontend address, network byte order.
    pub address: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    /// Explicit padding; always 0.
    pub pad: u16,
    /// The frontend's service id.
    pub service_id: u32,
}

const _: () = assert!(core::mem::size_of::<SockRevKey>() == 16);
const _: () = assert!(core::mem::size_of::<SockRevValue>() == 12);
