//! IP networks in CIDR notation (`10.0.0.0/8`, `fd00::/64`), as NetworkPolicy ipBlocks
//! and other API fields carry them.

use std::{fmt, net::IpAddr, str::FromStr};

/// An IPv4 or IPv6 network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    address: IpAddr,
    prefix: u8,
}

/// Why a text is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a valid CIDR (e.g. 10.0.0.0/16 or fd00::/64): {0}")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| CidrError("no prefix length".to_owned()))?;
        let address: IpAddr = address
            .parse()
            .map_err(|e: std::net::AddrParseError| CidrError(e.to_string()))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| CidrError(format!("the prefix length must be 0..={max}")))?;
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Cidr {
    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True for an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }

    /// The address bits, left-aligned in 128 bits so both families compare alike.
    fn bits(address: IpAddr) -> u128 {
        match address {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn mask(&self) -> u128 {
        match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        }
    }

    /// Whether `address` lies in the network.
    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.is_ipv4()
            && Self::bits(address) & self.mask() == Self::bits(self.address) & self.mask()
    }

    /// Whether `other` lies wholly inside this network (of the same family).
    pub fn covers(&self, other: &Cidr) -> bool {
        other.is_ipv4() == self.is_ipv4()
            && other.prefix >= self.prefix
            && self.contains(other.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().expect("valid CIDR")
    }

    #[test]
    fn parses_both_families_and_refuses_nonsense() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("fd00::/64").prefix(), 64);
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "fd00::/129",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/99999999999",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn containment() {
        assert!(cidr("10.0.0.0/8").covers(&cidr("10.1.0.0/16")));
        assert!(!cidr("10.1.0.0/16").covers(&cidr("10.0.0.0/8")));
        assert!(!cidr("10.0.0.0/8").covers(&cidr("11.0.0.0/16")));
        assert!(!cidr("0.0.0.0/0").covers(&cidr("::/0")));
        assert!(cidr("0.0.0.0/0").contains("192.168.1.1".parse().expect("address")));
        assert!(cidr("fd00::/64").contains("fd00::1".parse().expect("address")));
        assert!(!cidr("fd00::/64").contains("fd01::1".parse().expect("address")));
    }
}
