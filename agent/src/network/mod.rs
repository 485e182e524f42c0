//! Pod networking on a node: a network namespace per pod with a veth to the node, an address
//! from the node's pod CIDR (persisted IPAM), and routes so pods reach every other pod.
//!
//! Shape (routed, no bridge, as Cilium and Calico do it):
//! - the node holds the pod CIDR's first address (`10.244.N.1`) on `lo`, and answers ARP for
//!   it on every pod veth, so it is every pod's gateway;
//! - a pod's `eth0` has `10.244.N.x/32`, a link route to the gateway and a default route
//!   via it;
//! - the node has `10.244.N.x/32 dev <veth>` per pod and `10.244.M.0/24 via <node M>` per
//!   other node (from the Node objects' podCIDR and InternalIP).
//!
//! Everything goes through rtnetlink; nothing shells out to `ip`.

pub mod ipam;
pub mod netns;
pub mod node_routes;
pub mod sandbox;

use std::net::Ipv4Addr;

use thiserror::Error;

/// A pod-network failure.
#[derive(Debug, Error)]
pub enum NetworkError {
    /// A netlink request failed.
    #[error("netlink: {what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The error.
        source: rtnetlink::Error,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// No address left in the pod CIDR.
    #[error("no free address left in pod CIDR {0}")]
    Exhausted(String),
    /// A malformed CIDR.
    #[error("invalid pod CIDR {0:?}: expected a.b.c.d/len")]
    BadCidr(String),
}

pub(crate) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Netlink { what, source }
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parse `a.b.c.d/len`.
    pub fn parse(text: &str) -> Result<Self, NetworkError> {
        let bad = || NetworkError::BadCidr(text.to_owned());
        let (addr, len) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if prefix > 30 {
            return Err(bad());
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// The gateway: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Host addresses pods may get (after the gateway, before broadcast).
    pub fn pod_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let size = 1u32 << (32 - u32::from(self.prefix));
        let base = u32::from(self.network);
        (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_hosts() {
        let c = Cidr::parse("10.244.1.7/24").expect("valid");
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        let hosts: Vec<_> = c.pod_addresses().collect();
        assert_eq!(hosts.first(), Some(&Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!(hosts.last(), Some(&Ipv4Addr::new(10, 244, 1, 254)));
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(Cidr::parse("10.0.0.0/31").is_err());
    }
}
