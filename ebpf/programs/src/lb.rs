//! Service lookup and backend selection, shared by every hook that translates a frontend.

use aya_ebpf::{btf_maps::HashMap, helpers::bpf_get_prandom_u32, macros::btf_map};
use skiff_ebpf_common::lb::{
    BACKEND_ACTIVE, BACKENDS_MAX_ENTRIES, Backend, SCOPE_ALL, SERVICES_MAX_ENTRIES, ServiceKey,
    ServiceValue,
};

/// Frontend (VIP, port, proto, scope, slot) → service entry or backend slot.
#[btf_map]
static SERVICES: HashMap<ServiceKey, ServiceValue, { SERVICES_MAX_ENTRIES as usize }> =
    HashMap::new();

/// Backend id → backend address.
#[btf_map]
static BACKENDS: HashMap<u32, Backend, { BACKENDS_MAX_ENTRIES as usize }> = HashMap::new();

/// Pick a backend for a connection to `address:port` (network byte order) over `proto`.
/// `None` if the destination is not a service frontend, or it has no active backend.
#[inline(always)]
pub fn select_backend(address: u32, port: u16, proto: u8) -> Option<Backend> {
    let mut key = ServiceKey {
        address,
        port,
        proto,
        scope: SCOPE_ALL,
        slot: 0,
        pad: 0,
    };
    // SAFETY: the value is copied out at once; a concurrent update can at worst make us read
    // a slot of the previous or next version of the service, both valid.
    let service = unsafe { SERVICES.get(&key) }?;
    let count = service.count;
    if count == 0 {
        return None;
    }
    // SAFETY: bpf_get_prandom_u32 has no preconditions.
    let random = unsafe { bpf_get_prandom_u32() };
    key.slot = (random % u32::from(count)) as u16 + 1;
    // SAFETY: as above.
    let slot = unsafe { SERVICES.get(&key) }?;
    let backend_id = slot.backend_id;
    // SAFETY: as above.
    let backend = unsafe { BACKENDS.get(&backend_id) }?;
    (backend.state == BACKEND_ACTIVE).then_some(*backend)
}
