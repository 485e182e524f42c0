//! IPv4/TCP/UDP header parsing with direct packet access, shared by tc and XDP: bounds are
//! checked against `data_end` before every read, as the verifier requires.

use core::mem::size_of;

use skiff_ebpf_common::lb::{PROTO_TCP, PROTO_UDP};

/// EtherType of IPv4, network byte order.
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
/// Length of an Ethernet header.
pub const ETH_LEN: usize = 14;
/// Offset of the IPv4 checksum in the IPv4 header.
pub const IP_CHECK: usize = 10;
/// Offset of the IPv4 source address.
pub const IP_SADDR: usize = 12;
/// Offset of the IPv4 destination address.
pub const IP_DADDR: usize = 16;
/// Offset of the TCP checksum in the TCP header.
pub const TCP_CHECK: usize = 16;
/// Offset of the UDP checksum in the UDP header.
pub const UDP_CHECK: usize = 6;

/// TCP FIN flag.
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

#[repr(C)]
struct Ipv4Header {
    version_ihl: u8,
    tos: u8,
    total_len: u16,
    id: u16,
    frag_off: u16,
    ttl: u8,
    proto: u8,
    check: u16,
    saddr: u32,
    daddr: u32,
}

#[repr(C)]
struct Ports {
    source: u16,
    dest: u16,
}

/// A parsed IPv4 TCP/UDP packet (addresses and ports in network byte order).
#[derive(Clone, Copy)]
pub struct Flow {
    /// Source address.
    pub saddr: u32,
    /// Destination address.
    pub daddr: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol (TCP or UDP).
    pub proto: u8,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// Total length from the IPv4 header (host order).
    pub total_len: u16,
    /// Offset of the IPv4 header from the start of the packet.
    pub l3: usize,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
}

impl Flow {
    /// Offset of the L4 checksum field.
    #[inline(always)]
    pub fn l4_check(&self) -> usize {
        self.l4
            + if self.proto == PROTO_TCP {
                TCP_CHECK
            } else {
                UDP_CHECK
            }
    }
}

/// Why a packet was not parsed into a [`Flow`].
pub enum NotParsed {
    /// Not IPv4 TCP/UDP: none of the datapath's business.
    Other,
    /// Shorter than its headers say.
    Malformed,
    /// An IPv4 fragment (no ports in it, or not only in it).
    Fragment,
}

#[inline(always)]
fn at<T>(data: usize, data_end: usize, offset: usize) -> Option<*const T> {
    let start = data + offset;
    if start + size_of::<T>() > data_end {
        return None;
    }
    Some(start as *const T)
}

/// Parse the Ethernet frame in `data..data_end`.
#[inline(always)]
pub fn parse(data: usize, data_end: usize) -> Result<Flow, NotParsed> {
    let ether_type: *const u16 = at(data, data_end, 12).ok_or(NotParsed::Malformed)?;
    // SAFETY: bounds checked by `at`.
    if unsafe { *ether_type } != ETH_P_IP_BE {
        return Err(NotParsed::Other);
    }
    let ip: *const Ipv4Header = at(data, data_end, ETH_LEN).ok_or(NotParsed::Malformed)?;
    // SAFETY: bounds checked by `at`.
    let ip = unsafe { &*ip };
    if ip.version_ihl >> 4 != 4 {
        return Err(NotParsed::Malformed);
    }
    let header_len = usize::from(ip.version_ihl & 0x0f) * 4;
    if header_len < 20 {
        return Err(NotParsed::Malformed);
    }
    let proto = ip.proto;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(NotParsed::Other);
    }
    // More-fragments flag or a fragment offset.
    if u16::from_be(ip.frag_off) & 0x3fff != 0 {
        return Err(NotParsed::Fragment);
    }
    let l4 = ETH_LEN + header_len;
    let ports: *const Ports = at(data, data_end, l4).ok_or(NotParsed::Malformed)?;
    let mut tcp_flags = 0;
    if proto == PROTO_TCP {
        // The TCP header is 20 bytes at least; flags are its 14th byte.
        let flags: *const [u8; 20] = at(data, data_end, l4).ok_or(NotParsed::Malformed)?;
        // SAFETY: bounds checked by `at`.
        tcp_flags = unsafe { (*flags)[13] };
    } else {
        let _udp: *const [u8; 8] = at(data, data_end, l4).ok_or(NotParsed::Malformed)?;
    }
    // SAFETY: bounds checked by `at`.
    let ports = unsafe { &*ports };
    Ok(Flow {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: ports.source,
        dport: ports.dest,
        proto,
        tcp_flags,
        total_len: u16::from_be(ip.total_len),
        l3: ETH_LEN,
        l4,
    })
}
