//! Maglev lookup tables (Eisenbud et al., NSDI '16, §3.4): each backend gets a permutation
//! of the M slots from two hashes of its address, and backends take turns claiming their
//! next free preferred slot until the table is full. The permutation depends only on the
//! backends' addresses, M and the seed — never on this node's backend ids — so every node
//! builds the same table and a flow picks the same backend wherever it lands; when one
//! backend goes, only about 1/N of the slots change.

use super::model::Address;

/// The default hash seed (every node must use the same one).
pub const DEFAULT_SEED: u64 = 0x736b_6966_665f_6d67;

/// Whether `m` is a usable table size: a prime, and large enough to spread 100 backends.
pub fn valid_table_size(m: u32) -> bool {
    m >= 251 && is_prime(m)
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// A 64-bit hash of bytes under a seed (splitmix64 over 8-byte chunks): stable across
/// builds and machines, unlike `std`'s hasher.
fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = splitmix(h ^ u64::from_le_bytes(word));
    }
    splitmix(h)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The identity a backend is hashed by: its address, port and protocol.
fn identity(address: &Address) -> Vec<u8> {
    let mut bytes = address.ip.octets().to_vec();
    bytes.extend_from_slice(&address.port.to_be_bytes());
    bytes.push(address.protocol.number());
    bytes
}

/// The table of size `m` over `backends` (each with the id to store for it), as indexes
/// into `backends`' ids. Empty backends give an all-zero table (no backend).
pub fn table(backends: &[(Address, u32)], m: u32, seed: u64) -> Vec<u32> {
    let size = m as usize;
    let mut entries = vec![0u32; size];
    if backends.is_empty() || size == 0 {
        return entries;
    }
    let mut sorted: Vec<&(Address, u32)> = backends.iter().collect();
    sorted.sort_by_key(|(address, _)| *address);
    let m64 = u64::from(m);
    let permutations: Vec<(u64, u64)> = sorted
        .iter()
        .map(|(address, _)| {
            let bytes = identity(address);
            let offset = hash(&bytes, seed) % m64;
            let skip = hash(&bytes, seed.rotate_left(17) ^ 0x5bd1_e995) % (m64 - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; sorted.len()];
    let mut taken = vec![false; size];
    let mut filled = 0usize;
    'fill: loop {
        for (i, (offset, skip)) in permutations.iter().enumerate() {
            let mut slot = ((offset + next[i] * skip) % m64) as usize;
            while taken[slot] {
                next[i] += 1;
                slot = ((offset + next[i] * skip) % m64) as usize;
            }
            taken[slot] = true;
            entries[slot] = sorted[i].1;
            next[i] += 1;
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, net::Ipv4Addr};

    use super::*;
    use crate::datapath::model::Protocol;

    fn backends(n: u8) -> Vec<(Address, u32)> {
        (1..=n)
            .map(|i| {
                let address = Address {
                    ip: Ipv4Addr::new(10, 244, 1, i),
                    port: 8080,
                    protocol: Protocol::Tcp,
                };
                (address, u32::from(i) * 10)
            })
            .collect()
    }

    #[test]
    fn every_slot_is_filled_and_backends_share_evenly() {
        let table = table(&backends(10), 16_381, DEFAULT_SEED);
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for id in &table {
            *counts.entry(*id).or_default() += 1;
        }
        assert_eq!(counts.len(), 10);
        for count in counts.values() {
            // 1,638 each on average; Maglev keeps every share within a few percent.
            assert!((1_500..1_800).contains(count), "{counts:?}");
        }
    }

    #[test]
    fn ids_and_order_do_not_matter_only_addresses_do() {
        let mut a = backends(5);
        let t1 = table(&a, 1_021, DEFAULT_SEED);
        a.reverse();
        assert_eq!(table(&a, 1_021, DEFAULT_SEED), t1);
        // Another node stores other ids for the same addresses: the same slots map to the
        // same addresses.
        let renumbered: Vec<(Address, u32)> = a.iter().map(|(addr, id)| (*addr, id + 1)).collect();
        let t2 = table(&renumbered, 1_021, DEFAULT_SEED);
        assert!(t1.iter().zip(&t2).all(|(x, y)| x + 1 == *y));
    }

    #[test]
    fn removing_one_backend_moves_few_slots() {
        let all = backends(10);
        let before = table(&all, 16_381, DEFAULT_SEED);
        let fewer: Vec<_> = all.iter().copied().filter(|(_, id)| *id != 50).collect();
        let after = table(&fewer, 16_381, DEFAULT_SEED);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a && **b != 50)
            .count();
        // Slots of the remaining backends that changed owner: a small fraction.
        assert!(moved < 16_381 / 10, "{moved} slots moved");
        assert!(after.iter().all(|id| *id != 50));
    }

    #[test]
    fn sizes_must_be_prime() {
        assert!(valid_table_size(16_381));
        assert!(valid_table_size(251));
        assert!(!valid_table_size(16_384));
        assert!(!valid_table_size(7));
    }

    #[test]
    fn no_backends_means_an_empty_table() {
        assert!(table(&[], 251, DEFAULT_SEED).iter().all(|id| *id == 0));
    }
}
