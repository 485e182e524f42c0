//! The addresses skiff-load may send to: loopback and the lab's own networks. Anything else
//! is refused before a packet leaves.

use std::net::Ipv4Addr;

/// `(network, prefix length, what it is)`.
const ALLOWED: [(Ipv4Addr, u8, &str); 4] = [
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (
        Ipv4Addr::new(172, 30, 0, 0),
        24,
        "the lab underlay (node ports, LoadBalancer pool)",
    ),
    (Ipv4Addr::new(10, 244, 0, 0), 16, "the lab's pod network"),
    (Ipv4Addr::new(10, 96, 0, 0), 12, "the lab's service network"),
];

fn within(ip: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

/// `Ok` if `ip` is a lab address.
pub fn check(ip: Ipv4Addr) -> Result<(), String> {
    if ALLOWED.iter().any(|(net, len, _)| within(ip, *net, *len)) {
        return Ok(());
    }
    let allowed: Vec<String> = ALLOWED
        .iter()
        .map(|(net, len, what)| format!("{net}/{len} ({what})"))
        .collect();
    Err(format!(
        "not a lab address; allowed: {}",
        allowed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lab_networks_pass() {
        assert!(check(Ipv4Addr::new(10, 96, 0, 1)).is_ok());
        assert!(check(Ipv4Addr::new(10, 111, 2, 3)).is_ok());
        assert!(check(Ipv4Addr::new(10, 244, 3, 7)).is_ok());
        assert!(check(Ipv4Addr::new(172, 30, 0, 200)).is_ok());
        assert!(check(Ipv4Addr::new(127, 0, 0, 1)).is_ok());
        assert!(check(Ipv4Addr::new(10, 0, 0, 1)).is_err());
        assert!(check(Ipv4Addr::new(8, 8, 8, 8)).is_err());
        assert!(check(Ipv4Addr::new(172, 30, 1, 1)).is_err());
    }
}
