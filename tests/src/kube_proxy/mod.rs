//! kube-proxy (v1.33), reproduced for the benchmarks: the rules its two netfilter modes
//! write for a set of Service ports and their endpoints, so the bench can load them into a
//! node without Skiff and measure kube-proxy's datapath beside Skiff's.
//!
//! - [`iptables`]: the `iptables-restore` input of the iptables mode (`KUBE-SERVICES`, one
//!   rule per Service port, walked in order).
//! - [`nftables`]: the `nft -f` input of the nftables mode (one `service-ips` verdict map,
//!   looked up once whatever the number of Services).

pub mod iptables;
pub mod nftables;

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// One Service port as kube-proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Port name ("" for an unnamed port).
    pub port_name: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Cluster IP.
    pub cluster_ip: Ipv4Addr,
    /// Service port.
    pub port: u16,
    /// Node port, if any.
    pub node_port: Option<u16>,
    /// Ready endpoints (address, port), in kube-proxy's order.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

impl ServicePort {
    /// kube's `ServicePortName.String()`: `ns/name:port` (`ns/name` for an unnamed port).
    pub fn port_name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }
}

/// kube-proxy's settings that shape the rules.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--cluster-cidr`: traffic from outside it to a cluster IP is masqueraded.
    pub cluster_cidr: String,
    /// The Service CIDR (the nftables mode drops traffic to its unallocated addresses).
    pub service_cidr: String,
    /// The node's primary address (the nftables mode's `nodeport-ips`).
    pub node_ip: Ipv4Addr,
}

/// The base32 of `text`'s SHA-256, as kube's chain names use it.
fn sha256_base32(text: &str) -> String {
    base32(&Sha256::digest(text.as_bytes()))
}

/// RFC 4648 base32 (with the padding kube's `base32.StdEncoding` adds; chain names use
/// only a prefix of it).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    while !out.len().is_multiple_of(8) {
        out.push('=');
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Service port `default/<name>:http` on 10.96.0.10:80 (node port 30080) with
    /// `endpoints` endpoints on 10.244.1.1… port 8080.
    pub(crate) fn service(name: &str, endpoints: usize) -> ServicePort {
        ServicePort {
            namespace: "default".to_owned(),
            name: name.to_owned(),
            port_name: "http".to_owned(),
            protocol: "tcp".to_owned(),
            cluster_ip: Ipv4Addr::new(10, 96, 0, 10),
            port: 80,
            node_port: Some(30080),
            endpoints: (1..=endpoints)
                .map(|i| (Ipv4Addr::new(10, 244, 1, i as u8), 8080))
                .collect(),
        }
    }

    /// The lab's settings.
    pub(crate) fn settings() -> Settings {
        Settings {
            cluster_cidr: "10.244.0.0/16".to_owned(),
            service_cidr: "10.96.0.0/12".to_owned(),
            node_ip: Ipv4Addr::new(172, 30, 0, 50),
        }
    }

    #[test]
    fn base32_is_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI======");
        assert_eq!(base32(b""), "");
    }
}
