//! ClientIP session affinity: the `AFFINITY` LRU of (client, frontend) → backend.

use aya_ebpf::{btf_maps::LruHashMap, macros::btf_map};
use skiff_ebpf_common::{
    affinity::{AFFINITY_MAX_ENTRIES, AffinityKey, AffinityValue},
    conntrack::NSEC_PER_SEC,
};

/// (client, service id) → last backend.
#[btf_map]
static AFFINITY: LruHashMap<AffinityKey, AffinityValue, { AFFINITY_MAX_ENTRIES as usize }> =
    LruHashMap::new();

/// The backend `key`'s client used last, if within `timeout_seconds`.
#[inline(always)]
pub fn lookup(key: &AffinityKey, timeout_seconds: u32, now: u64) -> Option<u32> {
    // SAFETY: the value is copied out at once.
    let value = unsafe { AFFINITY.get(key) }.copied()?;
    let timeout = u64::from(timeout_seconds) * NSEC_PER_SEC;
    (now.saturating_sub(value.last_used) <= timeout).then_some(value.backend_id)
}

/// Remember that `key`'s client uses `backend_id` now.
#[inline(always)]
pub fn touch(key: &AffinityKey, backend_id: u32, now: u64) {
    let value = AffinityValue {
        last_used: now,
        backend_id,
        pad: 0,
    };
    let _ = AFFINITY.insert(key, value, 0);
}
