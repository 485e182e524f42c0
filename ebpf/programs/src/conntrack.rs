//! The `CONNTRACK` LRU: per-packet flows in both directions (see
//! `skiff_ebpf_common::conntrack` for the layout and timeouts).

use aya_ebpf::{btf_maps::LruHashMap, macros::btf_map};
use skiff_ebpf_common::conntrack::{
    CONNTRACK_MAX_ENTRIES, CT_CLOSING, CT_REFRESH_INTERVAL, CtKey, CtValue,
};

use crate::packet::{TCP_FIN, TCP_RST};

/// Flow (one direction) → translation state.
#[btf_map]
static CONNTRACK: LruHashMap<CtKey, CtValue, { CONNTRACK_MAX_ENTRIES as usize }> =
    LruHashMap::new();

/// The live entry of `key` (a stale one is removed and reported absent).
#[inline(always)]
pub fn get(key: &CtKey, now: u64) -> Option<*mut CtValue> {
    let entry = CONNTRACK.get_ptr_mut(key)?;
    // SAFETY: a pointer into the map's value storage, valid for this program run.
    let value = unsafe { &*entry };
    if value.expired(key.proto, now) {
        let _ = CONNTRACK.remove(key);
        return None;
    }
    Some(entry)
}

/// Store a new entry; `Err` if the map refused it.
#[inline(always)]
pub fn insert(key: &CtKey, value: &CtValue) -> Result<(), i32> {
    CONNTRACK.insert(key, value, 0)
}

/// Forget a flow direction.
#[inline(always)]
pub fn remove(key: &CtKey) {
    let _ = CONNTRACK.remove(key);
}

/// Note a packet of the flow: refresh `last_seen` (at most once per refresh interval, so
/// busy flows do not write the entry on every packet), add `flags`, and mark the flow
/// closing on FIN or RST.
#[inline(always)]
pub fn touch(entry: *mut CtValue, now: u64, tcp_flags: u8, flags: u16) {
    // SAFETY: `entry` comes from `get`; concurrent writers only ever store whole fields
    // with the same meaning (times and flags), so a lost update costs a refresh.
    let value = unsafe { &mut *entry };
    let mut add = flags;
    if tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        add |= CT_CLOSING;
    }
    if value.flags & add != add {
        value.flags |= add;
    }
    if now.saturating_sub(value.last_seen) > CT_REFRESH_INTERVAL {
        value.last_seen = now;
    }
}
