//! Closing connected UDP sockets whose backend is gone. The socket LB translates a UDP
//! `connect()` once, so a connected socket (a DNS client's, say) would keep sending to a
//! backend that no longer exists; as Cilium does, the agent destroys such sockets
//! (`SOCK_DESTROY` over sock_diag) in every pod's network namespace and the node's, and
//! the application's next call fails and it reconnects — through the Service, to a live
//! backend. TCP is left alone, as kube-proxy leaves it.
//!
//! The netlink structures are defined here (`linux/inet_diag.h`); this is the only unsafe
//! code of the module, each block explained.

use std::{
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use tracing::{debug, info, warn};

use super::{model::Address, model::Protocol, sync::BackendsGone};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IPPROTO_UDP: u8 = 17;
/// Connected UDP sockets report TCP_ESTABLISHED.
const STATE_ESTABLISHED: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SockId {
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DiagRequest {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DiagMessage {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: SockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Request {
    header: NlMsgHdr,
    body: DiagRequest,
}

const _: () = assert!(std::mem::size_of::<SockId>() == 48);
const _: () = assert!(std::mem::size_of::<DiagRequest>() == 56);
const _: () = assert!(std::mem::size_of::<DiagMessage>() == 72);

fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send(fd: &OwnedFd, request: &Request) -> io::Result<()> {
    // SAFETY: `request` is a plain #[repr(C)] value of the length passed.
    let sent = unsafe {
        libc::send(
            fd.as_raw_fd(),
            std::ptr::from_ref(request).cast(),
            std::mem::size_of::<Request>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn receive(fd: &OwnedFd, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the buffer is valid for writes of its length.
    let read = unsafe { libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(read as usize)
}

fn read_struct<T: Copy + Default>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    let mut value = T::default();
    // SAFETY: T is a plain #[repr(C)] integer struct (any bit pattern is valid) and the
    // source holds at least size_of::<T>() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            std::ptr::from_mut(&mut value).cast::<u8>(),
            std::mem::size_of::<T>(),
        );
    }
    Some(value)
}

/// Connected UDP sockets of the current network namespace talking to one of `targets`.
fn connected_to(fd: &OwnedFd, targets: &[(Ipv4Addr, u16)]) -> io::Result<Vec<SockId>> {
    let request = Request {
        header: NlMsgHdr {
            len: std::mem::size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST | NLM_F_DUMP,
            seq: 1,
            pid: 0,
        },
        body: DiagRequest {
            family: libc::AF_INET as u8,
            protocol: IPPROTO_UDP,
            states: 1 << STATE_ESTABLISHED,
            ..DiagRequest::default()
        },
    };
    send(fd, &request)?;
    let mut found = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = receive(fd, &mut buffer)?;
        let mut offset = 0;
        while offset + std::mem::size_of::<NlMsgHdr>() <= read {
            let Some(header) = read_struct::<NlMsgHdr>(&buffer[offset..read]) else {
                break;
            };
            let len = header.len as usize;
            if len < std::mem::size_of::<NlMsgHdr>() || offset + len > read {
                return Ok(found);
            }
            match header.kind {
                NLMSG_DONE => return Ok(found),
                NLMSG_ERROR => {
                    return Err(io::Error::other("sock_diag dump answered with an error"));
                }
                _ => {
                    let body = &buffer[offset + std::mem::size_of::<NlMsgHdr>()..offset + len];
                    if let Some(message) = read_struct::<DiagMessage>(body) {
                        let dst = Ipv4Addr::from(u32::from_be(message.id.dst[0]));
                        let dport = u16::from_be(message.id.dport);
                        if targets.contains(&(dst, dport)) {
                            found.push(message.id);
                        }
                    }
                }
            }
            // Messages are 4-byte aligned.
            offset += (len + 3) & !3;
        }
    }
}

fn destroy(fd: &OwnedFd, id: SockId) -> io::Result<()> {
    let request = Request {
        header: NlMsgHdr {
            len: std::mem::size_of::<Request>() as u32,
            kind: SOCK_DESTROY,
            flags: NLM_F_REQUEST | NLM_F_ACK,
            seq: 2,
            pid: 0,
        },
        body: DiagRequest {
            family: libc::AF_INET as u8,
            protocol: IPPROTO_UDP,
            states: u32::MAX,
            id,
            ..DiagRequest::default()
        },
    };
    send(fd, &request)?;
    let mut buffer = [0u8; 512];
    let read = receive(fd, &mut buffer)?;
    let header =
        read_struct::<NlMsgHdr>(&buffer[..read]).ok_or_else(|| io::Error::other("short ack"))?;
    if header.kind == NLMSG_ERROR {
        let code = read_struct::<i32>(&buffer[std::mem::size_of::<NlMsgHdr>()..read]).unwrap_or(0);
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok(())
}

/// Destroy the matching sockets in the current namespace; how many went.
fn destroy_in_current(targets: &[(Ipv4Addr, u16)]) -> io::Result<usize> {
    let fd = open()?;
    let mut destroyed = 0;
    for id in connected_to(&fd, targets)? {
        match destroy(&fd, id) {
            Ok(()) => destroyed += 1,
            Err(e) => debug!(error = %e, "a UDP socket could not be destroyed"),
        }
    }
    Ok(destroyed)
}

/// Closes UDP sockets connected to gone backends, in the node's namespace and in every pod
/// namespace pinned under a directory.
pub struct UdpTerminator {
    netns_dir: PathBuf,
}

impl UdpTerminator {
    /// Pods' network namespaces are pinned in `netns_dir`.
    pub fn new(netns_dir: &Path) -> Self {
        Self {
            netns_dir: netns_dir.to_path_buf(),
        }
    }
}

fn terminate(netns_dir: &Path, targets: &[(Ipv4Addr, u16)]) -> usize {
    let mut destroyed = destroy_in_current(targets).unwrap_or_else(|e| {
        warn!(error = %e, "sock_diag in the node namespace failed");
        0
    });
    let Ok(entries) = std::fs::read_dir(netns_dir) else {
        return destroyed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        if nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            continue;
        }
        destroyed += destroy_in_current(targets).unwrap_or(0);
    }
    destroyed
}

impl BackendsGone for UdpTerminator {
    fn gone(&mut self, backends: &[Address]) {
        let targets: Vec<(Ipv4Addr, u16)> = backends
            .iter()
            .filter(|b| b.protocol == Protocol::Udp)
            .map(|b| (b.ip, b.port))
            .collect();
        if targets.is_empty() {
            return;
        }
        let dir = self.netns_dir.clone();
        // setns changes only the calling thread: a short-lived thread walks the namespaces
        // and exits, so no runtime thread ever leaves the node namespace.
        let spawned = std::thread::Builder::new()
            .name("udp-terminator".to_owned())
            .spawn(move || {
                let destroyed = terminate(&dir, &targets);
                if destroyed > 0 {
                    info!(
                        destroyed,
                        backends = targets.len(),
                        "closed UDP sockets connected to removed backends"
                    );
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the UDP socket terminator");
        }
    }
}
