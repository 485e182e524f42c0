//! Maglev consistent hashing for traffic from outside the cluster: every frontend with
//! external scope has a lookup table of M backend ids (M prime), computed by the agent from
//! the backends' addresses with the same seed on every node, so whichever node a flow
//! lands on picks the same backend. The table lives in `MAGLEV`, a hash of maps keyed by
//! the frontend's service id; the kernel indexes it with a hash of the flow's 5-tuple.

/// Name of the Maglev hash-of-maps.
pub const MAGLEV_MAP: &str = "MAGLEV";
/// Default table size M (prime), as Cilium's default.
pub const MAGLEV_DEFAULT_TABLE_SIZE: u32 = 16_381;
/// Capacity of the outer map: frontends with a Maglev table.
pub const MAGLEV_MAX_TABLES: u32 = 8_192;
/// `BPF_F_INNER_MAP`: inner maps of different sizes may be stored (M is a runtime setting).
pub const BPF_F_INNER_MAP: u32 = 1 << 12;

/// The flow hash the kernel uses to index a Maglev table (Jenkins' one-at-a-time over
/// the 5-tuple, then finalised). Defined once here so the agent's `trace` shows the same
/// index the kernel chose.
#[inline(always)]
#[must_use]
pub fn flow_hash(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h: u32 = 0x9e37_79b9;
    h = mix(h, saddr);
    h = mix(h, daddr);
    h = mix(h, (u32::from(sport) << 16) | u32::from(dport));
    h = mix(h, u32::from(proto));
    // Final avalanche (murmur3 fmix32).
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[inline(always)]
fn mix(h: u32, word: u32) -> u32 {
    let mut k = word.wrapping_mul(0xcc9e_2d51);
    k = k.rotate_left(15);
    k = k.wrapping_mul(0x1b87_3593);
    let h = (h ^ k).rotate_left(13);
    h.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_hash_spreads_ports() {
        let mut buckets = [0u32; 16];
        for port in 0..16_000u16 {
            let h = flow_hash(0x0a00_0001, 0xac1e_000b, port, 30080, 6);
            buckets[(h % 16) as usize] += 1;
        }
        for count in buckets {
            assert!((800..1200).contains(&count), "{buckets:?}");
        }
        assert_ne!(flow_hash(1, 2, 3, 4, 6), flow_hash(1, 2, 3, 4, 17));
    }
}
