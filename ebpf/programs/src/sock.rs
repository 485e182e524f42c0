//! Socket-level load balancing: translate a service frontend to a backend once, at
//! `connect()`, so established connections carry no per-packet NAT.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::lb::select_backend;

/// Let the syscall proceed (with or without a rewritten address).
const ALLOW: i32 = 1;

/// cgroup/connect4: rewrite the destination of `connect()` (TCP, and connected UDP) from a
/// service frontend to one of its backends.
#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel passes a valid bpf_sock_addr for this program type; the fields read
    // and written are the ones the verifier allows for connect4.
    unsafe {
        let sock_addr = ctx.sock_addr;
        let address = (*sock_addr).user_ip4;
        let port = (*sock_addr).user_port as u16;
        let proto = (*sock_addr).protocol as u8;
        if let Some(backend) = select_backend(address, port, proto) {
            (*sock_addr).user_ip4 = backend.address;
            (*sock_addr).user_port = u32::from(backend.port);
        }
    }
    ALLOW
}
