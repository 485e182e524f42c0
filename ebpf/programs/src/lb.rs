//! Service lookup and backend selection, shared by every hook that translates a frontend.

use aya_ebpf::{btf_maps::HashMap, helpers::bpf_get_prandom_u32, macros::btf_map};
use skiff_ebpf_common::{
    affinity::AffinityKey,
    events::{
        REASON_MAGLEV_MISSING, REASON_NO_BACKEND, SELECT_AFFINITY, SELECT_MAGLEV, SELECT_RANDOM,
    },
    lb::{
        BACKEND_ACTIVE, BACKENDS_MAX_ENTRIES, Backend, REV_NAT_MAX_ENTRIES, RevNat,
        SERVICES_MAX_ENTRIES, SVC_AFFINITY, SVC_MAGLEV, ServiceKey, ServiceValue,
    },
};

use crate::{affinity, events, maglev};

/// Frontend (address, port, proto, scope, slot) → frontend entry or backend slot.
#[btf_map]
static SERVICES: HashMap<ServiceKey, ServiceValue, { SERVICES_MAX_ENTRIES as usize }> =
    HashMap::new();

/// Backend id → backend address.
#[btf_map]
static BACKENDS: HashMap<u32, Backend, { BACKENDS_MAX_ENTRIES as usize }> = HashMap::new();

/// Service id → frontend (read by the agent for inspection; kept beside the others so
/// the whole service state is in the kernel).
#[btf_map]
static REV_NAT: HashMap<u32, RevNat, { REV_NAT_MAX_ENTRIES as usize }> = HashMap::new();

/// The frontend entry (slot 0) of `address:port/proto` in `scope`, if it is one.
#[inline(always)]
pub fn frontend(address: u32, port: u16, proto: u8, scope: u8) -> Option<ServiceValue> {
    let key = ServiceKey {
        address,
        port,
        proto,
        scope,
        slot: 0,
        pad: 0,
    };
    // SAFETY: the value is copied out at once; a concurrent update can at worst make us
    // read the previous or next version of the entry, both valid.
    unsafe { SERVICES.get(&key) }.copied()
}

/// The backend stored under `id`.
#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    // SAFETY: as in `frontend`.
    unsafe { BACKENDS.get(&id) }.copied()
}

/// A chosen backend and how it was chosen.
#[derive(Clone, Copy)]
pub struct Selected {
    /// Backend id.
    pub id: u32,
    /// The backend.
    pub backend: Backend,
    /// `SELECT_*`.
    pub how: u8,
}

/// Who is asking, for affinity and Maglev.
#[derive(Clone, Copy)]
pub struct Client {
    /// Affinity key part identifying the client.
    pub affinity: AffinityKey,
    /// Whether to select by Maglev over [`Client::flow_hash`] (external clients); random
    /// selection otherwise, as for in-cluster clients.
    pub maglev: bool,
    /// The flow's hash (0 when not [`Client::maglev`]). A plain field, not an `Option`:
    /// `None` leaves its payload undefined, and the compiler may then store a register the
    /// verifier knows to be unset ("!read_ok").
    pub flow_hash: u32,
}

/// Pick a backend of the frontend `key` (slot 0) whose entry is `service`, or the reason
/// there is none. `hook` is only for counting Maglev fallbacks.
#[inline(always)]
pub fn select(
    hook: u8,
    mut key: ServiceKey,
    service: &ServiceValue,
    client: &mut Client,
    maglev_size: u32,
    now: u64,
) -> Result<Selected, u8> {
    let count = service.count;
    if count == 0 {
        return Err(REASON_NO_BACKEND);
    }
    let with_affinity = service.flags & SVC_AFFINITY != 0;
    client.affinity.service_id = service.service_id;
    if with_affinity {
        if let Some(id) = affinity::lookup(&client.affinity, service.affinity_timeout, now) {
            if let Some(backend) = backend(id).filter(|b| b.state == BACKEND_ACTIVE) {
                affinity::touch(&client.affinity, id, now);
                return Ok(Selected {
                    id,
                    backend,
                    how: SELECT_AFFINITY,
                });
            }
        }
    }
    let mut how = SELECT_RANDOM;
    let mut chosen = None;
    if client.maglev {
        let hash = client.flow_hash;
        if service.flags & SVC_MAGLEV != 0 {
            match maglev::lookup(service.service_id, hash, maglev_size) {
                Some(id) => {
                    chosen = Some(id);
                    how = SELECT_MAGLEV;
                }
                None => events::count(hook, REASON_MAGLEV_MISSING),
            }
        }
    }
    let id = match chosen {
        Some(id) => id,
        None => {
            // SAFETY: bpf_get_prandom_u32 has no preconditions.
            let random = unsafe { bpf_get_prandom_u32() };
            key.slot = (random % u32::from(count)) as u16 + 1;
            // SAFETY: as in `frontend`.
            let slot = unsafe { SERVICES.get(&key) }.ok_or(REASON_NO_BACKEND)?;
            slot.backend_id
        }
    };
    let backend = backend(id).ok_or(REASON_NO_BACKEND)?;
    if with_affinity {
        affinity::touch(&client.affinity, id, now);
    }
    Ok(Selected { id, backend, how })
}
