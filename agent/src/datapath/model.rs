//! The datapath's vocabulary in userspace types (host byte order, `Ipv4Addr`), converted to
//! the kernel's map layouts in one place.

use std::{fmt, net::Ipv4Addr};

use skiff_ebpf_common::lb::{PROTO_TCP, PROTO_UDP, SCOPE_EXTERNAL, SCOPE_INTERNAL, ServiceKey};

/// Transport protocol of a frontend or backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => PROTO_TCP,
            Self::Udp => PROTO_UDP,
        }
    }

    /// From an IP protocol number.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            PROTO_TCP => Some(Self::Tcp),
            PROTO_UDP => Some(Self::Udp),
            _ => None,
        }
    }

    /// From a Kubernetes protocol name (`TCP`, `UDP`; others are not served).
    pub fn from_kubernetes(name: Option<&str>) -> Option<Self> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        })
    }
}

/// Which clients a frontend entry answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Clients inside the cluster.
    Internal,
    /// Traffic arriving from outside the node.
    External,
}

impl Scope {
    /// The map's scope number.
    pub fn number(self) -> u8 {
        match self {
            Self::Internal => SCOPE_INTERNAL,
            Self::External => SCOPE_EXTERNAL,
        }
    }

    /// From the map's scope number.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            SCOPE_INTERNAL => Some(Self::Internal),
            SCOPE_EXTERNAL => Some(Self::External),
            _ => None,
        }
    }
}

/// An address clients send to: a cluster IP, node port, LoadBalancer or external IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.ip, self.port, self.protocol)
    }
}

/// A frontend entry: an address in one scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendKey {
    /// The address.
    pub address: Address,
    /// The scope.
    pub scope: Scope,
}

impl FrontendKey {
    /// The map key of slot `slot` of this frontend.
    pub fn map_key(&self, slot: u16) -> ServiceKey {
        ServiceKey {
            address: u32::from(self.address.ip).to_be(),
            port: self.address.port.to_be(),
            proto: self.address.protocol.number(),
            scope: self.scope.number(),
            slot,
            pad: 0,
        }
    }

    /// The frontend a map key belongs to (`None` for keys this agent never writes).
    pub fn from_map_key(key: &ServiceKey) -> Option<Self> {
        Some(Self {
            address: Address {
                ip: Ipv4Addr::from(u32::from_be(key.address)),
                port: u16::from_be(key.port),
                protocol: Protocol::from_number(key.proto)?,
            },
            scope: Scope::from_number(key.scope)?,
        })
    }
}

/// Convert a kernel (network order) address to `Ipv4Addr`.
pub fn ip_from_be(address: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(address))
}

/// Convert `Ipv4Addr` to the kernel's network-order `u32`.
pub fn ip_to_be(ip: Ipv4Addr) -> u32 {
    u32::from(ip).to_be()
}
