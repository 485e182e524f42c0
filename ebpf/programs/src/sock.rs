//! Socket-level load balancing at the pod cgroup parent: translate a Service frontend to a
//! backend once, at `connect()` (TCP, connected UDP) or per `sendmsg()` (unconnected UDP),
//! so established connections carry no per-packet NAT; `recvmsg()` and `getpeername()`
//! show the frontend again, from the socket's reverse entry, which `sock_release` removes
//! when the socket goes (as Cilium's `cil_sock_release` does): the map then holds live
//! sockets only, and a connect never pays for evicting a dead one.

use aya_ebpf::{
    EbpfContext,
    btf_maps::LruHashMap,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_set_retval},
    macros::{btf_map, cgroup_sock, cgroup_sock_addr},
    programs::{SockAddrContext, SockContext},
};
use skiff_ebpf_common::{
    affinity::{AffinityKey, CLIENT_NETNS},
    config::CONFIG_SOCKET_LB,
    events::{
        Event, HOOK_CONNECT4, HOOK_GETPEERNAME4, HOOK_RECVMSG4, HOOK_SENDMSG4, REASON_NO_BACKEND,
        REASON_REVERSE_TRANSLATED, REASON_TRANSLATED, SELECT_NONE,
    },
    lb::{SCOPE_INTERNAL, ServiceKey},
    sock::{SOCK_REV_NAT_MAX_ENTRIES, SockRevKey, SockRevValue},
};

use crate::{
    config, events,
    lb::{self, Client},
};

/// Let the syscall proceed (with or without a rewritten address).
const ALLOW: i32 = 1;
/// Refuse the syscall (with the errno set by `bpf_set_retval`).
const REFUSE: i32 = 0;
/// `ECONNREFUSED`, what a connect to a Service without ready backends returns.
const ECONNREFUSED: i32 = 111;

/// 1 when the kernel has `bpf_set_retval` (≥ 5.18), set by the agent at load time: a
/// connect to a frontend without backends then fails with ECONNREFUSED; older kernels
/// refuse it with EPERM (the helper call is dead code there, pruned by the verifier since
/// this value is read-only and known when the program is loaded).
#[unsafe(no_mangle)]
static SET_RETVAL: u32 = 0;

/// (socket, backend) → the frontend the application addressed.
#[btf_map]
static SOCK_REV_NAT: LruHashMap<SockRevKey, SockRevValue, { SOCK_REV_NAT_MAX_ENTRIES as usize }> =
    LruHashMap::new();

/// cgroup/connect4: TCP and connected UDP.
#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, HOOK_CONNECT4)
}

/// cgroup/sendmsg4: unconnected UDP, per datagram.
#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, HOOK_SENDMSG4)
}

/// cgroup/recvmsg4: a datagram's source becomes the frontend it was sent to.
#[cgroup_sock_addr(recvmsg4)]
pub fn recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, HOOK_RECVMSG4)
}

/// cgroup/getpeername4: the peer of a translated socket is the frontend.
#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, HOOK_GETPEERNAME4)
}

/// `AF_INET`.
const AF_INET: u32 = 2;

/// cgroup/sock_release: a closing socket's reverse entry goes with it. A connected socket's
/// peer is the backend its connect was sent to, which is the entry's key; an unconnected
/// UDP socket's entries (one per backend it sent to) are left to the LRU.
#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    let sock = ctx.sock;
    // SAFETY: the kernel passes a valid bpf_sock; these fields are readable at release.
    let (family, address, port) = unsafe { ((*sock).family, (*sock).dst_ip4, (*sock).dst_port) };
    if family != AF_INET || address == 0 {
        return ALLOW;
    }
    // SAFETY: the helper accepts this program type's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = SockRevKey {
        cookie,
        address,
        port,
        pad: 0,
    };
    let _ = SOCK_REV_NAT.remove(&key);
    ALLOW
}

#[inline(always)]
fn sock_event(hook: u8, reason: u8, proto: u8, address: u32, port: u16) -> Event {
    Event {
        timestamp: 0,
        hook,
        reason,
        select: SELECT_NONE,
        proto,
        ifindex: 0,
        saddr: 0,
        daddr: address,
        sport: 0,
        dport: port,
        new_saddr: 0,
        new_daddr: address,
        new_sport: 0,
        new_dport: port,
        service_id: 0,
        backend_id: 0,
        ct_flags: 0,
        pad: 0,
        pad2: 0,
    }
}

#[inline(always)]
fn translate(ctx: &SockAddrContext, hook: u8) -> i32 {
    let config = config::get();
    if config.flags & CONFIG_SOCKET_LB == 0 {
        return ALLOW;
    }
    let sock_addr = ctx.sock_addr;
    // SAFETY: the kernel passes a valid bpf_sock_addr; these fields are readable here.
    let (address, port, proto) = unsafe {
        (
            (*sock_addr).user_ip4,
            (*sock_addr).user_port as u16,
            (*sock_addr).protocol as u8,
        )
    };
    let Some(service) = lb::frontend(address, port, proto, SCOPE_INTERNAL) else {
        return ALLOW;
    };
    let mut event = sock_event(hook, REASON_TRANSLATED, proto, address, port);
    event.service_id = service.service_id;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: the helper accepts this program type's context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    let mut client = Client {
        affinity: AffinityKey {
            client: netns,
            service_id: service.service_id,
            kind: CLIENT_NETNS,
        },
        maglev: false,
        flow_hash: 0,
    };
    let frontend = ServiceKey {
        address,
        port,
        proto,
        scope: SCOPE_INTERNAL,
        slot: 0,
        pad: 0,
    };
    match lb::select(hook, frontend, &service, &mut client, 0, now) {
        Ok(selected) => {
            let backend = selected.backend;
            // SAFETY: connect4/sendmsg4 may write the user address and port.
            unsafe {
                (*sock_addr).user_ip4 = backend.address;
                (*sock_addr).user_port = u32::from(backend.port);
            }
            // SAFETY: the helper accepts this program type's context.
            let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
            let key = SockRevKey {
                cookie,
                address: backend.address,
                port: backend.port,
                pad: 0,
            };
            let value = SockRevValue {
                address,
                port,
                pad: 0,
                service_id: service.service_id,
            };
            let _ = SOCK_REV_NAT.insert(&key, &value, 0);
            event.select = selected.how;
            event.backend_id = selected.id;
            event.new_daddr = backend.address;
            event.new_dport = backend.port;
            events::report(&config, &mut event);
            ALLOW
        }
        Err(reason) => {
            event.reason = reason;
            events::report(&config, &mut event);
            // SAFETY: a plain read of a read-only global.
            let set_retval = unsafe { core::ptr::read_volatile(&SET_RETVAL) } != 0;
            if reason == REASON_NO_BACKEND && set_retval {
                // SAFETY: sets the syscall's return value; no other effect.
                unsafe { bpf_set_retval(-ECONNREFUSED) };
            }
            REFUSE
        }
    }
}

#[inline(always)]
fn reverse(ctx: &SockAddrContext, hook: u8) -> i32 {
    let sock_addr = ctx.sock_addr;
    // SAFETY: the kernel passes a valid bpf_sock_addr; these fields are readable here.
    let (address, port) = unsafe { ((*sock_addr).user_ip4, (*sock_addr).user_port as u16) };
    // SAFETY: the helper accepts this program type's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = SockRevKey {
        cookie,
        address,
        port,
        pad: 0,
    };
    // SAFETY: the value is copied out at once.
    let Some(frontend) = (unsafe { SOCK_REV_NAT.get(&key) }).copied() else {
        return ALLOW;
    };
    // SAFETY: recvmsg4/getpeername4 may write the user address and port.
    unsafe {
        (*sock_addr).user_ip4 = frontend.address;
        (*sock_addr).user_port = u32::from(frontend.port);
    }
    let config = config::get();
    let mut event = sock_event(hook, REASON_REVERSE_TRANSLATED, 0, address, port);
    event.new_daddr = frontend.address;
    event.new_dport = frontend.port;
    event.service_id = frontend.service_id;
    events::report(&config, &mut event);
    ALLOW
}
