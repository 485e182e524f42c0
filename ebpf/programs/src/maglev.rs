//! Maglev lookup: the `MAGLEV` hash of maps, service id → table of M backend ids.

use aya_ebpf::{
    btf_maps::{Array, HashOfMaps},
    macros::btf_map,
};
use skiff_ebpf_common::maglev::{BPF_F_INNER_MAP, MAGLEV_DEFAULT_TABLE_SIZE, MAGLEV_MAX_TABLES};

/// Inner table type: M backend ids. `BPF_F_INNER_MAP` lets the agent store tables of any
/// size M (its `--maglev-table-size`), not only the default this template declares.
type Table = Array<u32, { MAGLEV_DEFAULT_TABLE_SIZE as usize }, { BPF_F_INNER_MAP as usize }>;

/// Service id → Maglev table.
#[btf_map]
static MAGLEV: HashOfMaps<u32, Table, { MAGLEV_MAX_TABLES as usize }> = HashOfMaps::new();

/// The backend id the table of `service_id` gives for a flow hash; `size` is M.
#[inline(always)]
pub fn lookup(service_id: u32, hash: u32, size: u32) -> Option<u32> {
    if size == 0 {
        return None;
    }
    let index = hash % size;
    // SAFETY: inner arrays are preallocated; the id is copied out at once.
    let id = unsafe { MAGLEV.get_value(&service_id, &index) }.copied()?;
    (id != 0).then_some(id)
}
