//! The service maps as the agent programmed them: frontends with their slots, backends
//! with stable ids, service ids and Maglev tables — mirrored in memory so an update writes
//! only what changed, and rebuilt from the pinned maps at start so a restarted agent
//! continues where the last one stopped instead of flushing.
//!
//! Write order keeps concurrent kernel readers safe: a backend exists before any slot
//! names it, a Maglev table and the slots exist before slot 0 announces them, surplus
//! slots go only after slot 0 shrank, and backends go only after no slot names them.

use std::collections::{BTreeMap, HashMap};

use aya::maps::{MapData, MapError};
use skiff_ebpf_common::{
    lb::{
        BACKEND_LOCAL, BACKENDS_MAP, Backend, REV_NAT_MAP, RevNat, SERVICES_MAP, SVC_MAGLEV,
        ServiceValue,
    },
    maglev::{BPF_F_INNER_MAP, MAGLEV_MAP},
};
use tracing::warn;

use super::{
    DatapathError,
    desired::{DesiredBackend, DesiredFrontend},
    maglev,
    maps::{LbMaps, MaglevTable, map_error},
    model::{Address, FrontendKey, Protocol, ip_from_be, ip_to_be},
};

/// `E2BIG`: what a full hash map answers to an insert.
const E2BIG: i32 = 7;

/// Maglev settings (the same on every node).
#[derive(Clone, Copy, Debug)]
pub struct MaglevSettings {
    /// Table size M (prime).
    pub table_size: u32,
    /// Hash seed.
    pub seed: u64,
}

/// A frontend as it is in the map.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Programmed {
    value: ServiceValue,
    slots: Vec<u32>,
}

/// A Maglev table as it is in the kernel.
struct ProgrammedMaglev {
    map: MaglevTable,
    entries: Vec<u32>,
}

/// The programmed service maps.
pub struct Table {
    maps: LbMaps,
    maglev: MaglevSettings,
    frontends: BTreeMap<FrontendKey, Programmed>,
    backends: HashMap<Address, (u32, Backend)>,
    service_ids: HashMap<Address, u32>,
    tables: HashMap<u32, ProgrammedMaglev>,
    next_backend_id: u32,
    next_service_id: u32,
}

/// Turn a map insert error into `Full` when the map is out of room.
fn insert_error(map: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |error| match &error {
        MapError::SyscallError(e) if e.io_error.raw_os_error() == Some(E2BIG) => {
            DatapathError::Full { map }
        }
        _ => map_error(map)(error),
    }
}

fn ignore_missing(result: Result<(), MapError>, map: &'static str) -> Result<(), DatapathError> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        Err(e) => Err(map_error(map)(e)),
    }
}

impl Table {
    /// Take over the maps, reading back what a previous agent left in them.
    pub fn load(maps: LbMaps, maglev: MaglevSettings) -> Result<Self, DatapathError> {
        let mut table = Self {
            maps,
            maglev,
            frontends: BTreeMap::new(),
            backends: HashMap::new(),
            service_ids: HashMap::new(),
            tables: HashMap::new(),
            next_backend_id: 1,
            next_service_id: 1,
        };
        for entry in table.maps.backends.iter() {
            let (id, backend) = entry.map_err(map_error(BACKENDS_MAP))?;
            let Some(protocol) = Protocol::from_number(backend.proto) else {
                continue;
            };
            let address = Address {
                ip: ip_from_be(backend.address),
                port: u16::from_be(backend.port),
                protocol,
            };
            table.backends.insert(address, (id, backend));
            table.next_backend_id = table.next_backend_id.max(id.saturating_add(1));
        }
        for entry in table.maps.rev_nat.iter() {
            let (id, frontend) = entry.map_err(map_error(REV_NAT_MAP))?;
            let Some(protocol) = Protocol::from_number(frontend.proto) else {
                continue;
            };
            let address = Address {
                ip: ip_from_be(frontend.address),
                port: u16::from_be(frontend.port),
                protocol,
            };
            table.service_ids.insert(address, id);
            table.next_service_id = table.next_service_id.max(id.saturating_add(1));
        }
        let mut heads = Vec::new();
        for entry in table.maps.services.iter() {
            let (key, value) = entry.map_err(map_error(SERVICES_MAP))?;
            if key.slot != 0 {
                continue;
            }
            if let Some(frontend) = FrontendKey::from_map_key(&key) {
                heads.push((frontend, value));
            }
        }
        for (frontend, value) in heads {
            let mut slots = Vec::with_capacity(usize::from(value.count));
            for slot in 1..=value.count {
                match table.maps.services.get(&frontend.map_key(slot), 0) {
                    Ok(v) => slots.push(v.backend_id),
                    Err(e) => {
                        warn!(%slot, frontend = %frontend.address, error = %e, "a programmed slot is missing; it will be rewritten")
                    }
                }
            }
            table
                .frontends
                .insert(frontend, Programmed { value, slots });
        }
        Ok(table)
    }

    /// Frontends currently programmed.
    pub fn frontends(&self) -> impl Iterator<Item = &FrontendKey> {
        self.frontends.keys()
    }

    /// Backends currently programmed.
    pub fn backend_addresses(&self) -> impl Iterator<Item = &Address> {
        self.backends.keys()
    }

    /// Number of frontends and backends programmed (for fill metrics).
    pub fn counts(&self) -> (usize, usize, usize) {
        let slots = self
            .frontends
            .values()
            .map(|p| p.slots.len() + 1)
            .sum::<usize>();
        (slots, self.backends.len(), self.tables.len())
    }

    /// The backend count the kernel's map holds for `key` (0 if absent) — read from the
    /// map, not from this mirror.
    pub fn count_in_map(&self, key: &FrontendKey) -> u16 {
        self.maps
            .services
            .get(&key.map_key(0), 0)
            .map_or(0, |v| v.count)
    }

    /// Program a backend (new or changed) and return its id, stable for its lifetime.
    /// Ids are never reused, so a stale conntrack entry can never reach a new backend.
    pub fn set_backend(
        &mut self,
        address: Address,
        desired: DesiredBackend,
    ) -> Result<u32, DatapathError> {
        let value = Backend {
            address: ip_to_be(address.ip),
            port: address.port.to_be(),
            proto: address.protocol.number(),
            state: desired.state,
            flags: if desired.local { BACKEND_LOCAL } else { 0 },
            pad: [0; 3],
        };
        let id = match self.backends.get(&address) {
            Some((id, current)) if *current == value => return Ok(*id),
            Some((id, _)) => *id,
            None => {
                let id = self.next_backend_id;
                self.next_backend_id = self.next_backend_id.saturating_add(1);
                id
            }
        };
        self.maps
            .backends
            .insert(id, value, 0)
            .map_err(insert_error(BACKENDS_MAP))?;
        self.backends.insert(address, (id, value));
        Ok(id)
    }

    /// The id of a programmed backend.
    pub fn backend_id(&self, address: &Address) -> Option<u32> {
        self.backends.get(address).map(|(id, _)| *id)
    }

    /// Remove a backend no slot names any more.
    pub fn remove_backend(&mut self, address: &Address) -> Result<(), DatapathError> {
        if let Some((id, _)) = self.backends.remove(address) {
            ignore_missing(self.maps.backends.remove(&id), BACKENDS_MAP)?;
        }
        Ok(())
    }

    /// The service id of a frontend address, allocated (and its reverse entry written) on
    /// first use.
    fn service_id(&mut self, address: Address) -> Result<u32, DatapathError> {
        if let Some(id) = self.service_ids.get(&address) {
            return Ok(*id);
        }
        let id = self.next_service_id;
        self.next_service_id = self.next_service_id.saturating_add(1);
        let rev = RevNat {
            address: ip_to_be(address.ip),
            port: address.port.to_be(),
            proto: address.protocol.number(),
            pad: 0,
        };
        self.maps
            .rev_nat
            .insert(id, rev, 0)
            .map_err(insert_error(REV_NAT_MAP))?;
        self.service_ids.insert(address, id);
        Ok(id)
    }

    /// Program `desired` with backend ids `ids` (one per slot). Returns whether anything
    /// was written.
    pub fn set_frontend(
        &mut self,
        desired: &DesiredFrontend,
        ids: &[u32],
    ) -> Result<bool, DatapathError> {
        let count = u16::try_from(ids.len())
            .ok()
            .ok_or(DatapathError::TooManyBackends {
                frontend: desired.key.address.to_string(),
                count: ids.len(),
            })?;
        let service_id = self.service_id(desired.key.address)?;
        let mut flags = desired.flags;
        if flags & SVC_MAGLEV != 0 {
            let with_ids: Vec<(Address, u32)> = desired
                .slots
                .iter()
                .copied()
                .zip(ids.iter().copied())
                .collect();
            match self.set_maglev(service_id, &with_ids) {
                Ok(true) => {}
                Ok(false) => flags &= !SVC_MAGLEV,
                Err(e) => {
                    // Random selection still works; the failure is reported by the caller.
                    flags &= !SVC_MAGLEV;
                    self.write_frontend(desired.key, count, flags, desired, service_id, ids)?;
                    return Err(e);
                }
            }
        }
        self.write_frontend(desired.key, count, flags, desired, service_id, ids)
    }

    fn write_frontend(
        &mut self,
        key: FrontendKey,
        count: u16,
        flags: u16,
        desired: &DesiredFrontend,
        service_id: u32,
        ids: &[u32],
    ) -> Result<bool, DatapathError> {
        let value = ServiceValue {
            backend_id: 0,
            count,
            flags,
            service_id,
            affinity_timeout: desired.affinity_timeout,
        };
        let wanted = Programmed {
            value,
            slots: ids.to_vec(),
        };
        let previous = self.frontends.get(&key).cloned();
        if previous.as_ref() == Some(&wanted) {
            return Ok(false);
        }
        let old_slots = previous.as_ref().map_or(&[][..], |p| &p.slots[..]);
        for (index, id) in ids.iter().enumerate() {
            if old_slots.get(index) == Some(id) {
                continue;
            }
            let slot = ServiceValue {
                backend_id: *id,
                service_id,
                ..ServiceValue::default()
            };
            let map_key = key.map_key(index as u16 + 1);
            self.maps
                .services
                .insert(map_key, slot, 0)
                .map_err(insert_error(SERVICES_MAP))?;
        }
        self.maps
            .services
            .insert(key.map_key(0), value, 0)
            .map_err(insert_error(SERVICES_MAP))?;
        for slot in ids.len()..old_slots.len() {
            let map_key = key.map_key(slot as u16 + 1);
            ignore_missing(self.maps.services.remove(&map_key), SERVICES_MAP)?;
        }
        self.frontends.insert(key, wanted);
        Ok(true)
    }

    /// Write the Maglev table of `service_id` for `backends`; `Ok(false)` if there are none
    /// (no table is kept).
    fn set_maglev(
        &mut self,
        service_id: u32,
        backends: &[(Address, u32)],
    ) -> Result<bool, DatapathError> {
        if backends.is_empty() {
            self.remove_maglev(service_id)?;
            return Ok(false);
        }
        let entries = maglev::table(backends, self.maglev.table_size, self.maglev.seed);
        if let Some(current) = self.tables.get_mut(&service_id) {
            for (index, (old, new)) in current.entries.iter_mut().zip(&entries).enumerate() {
                if old != new {
                    current
                        .map
                        .set(index as u32, *new, 0)
                        .map_err(map_error(MAGLEV_MAP))?;
                    *old = *new;
                }
            }
            return Ok(true);
        }
        let mut map: MaglevTable =
            aya::maps::Array::<MapData, u32>::create(self.maglev.table_size, BPF_F_INNER_MAP)
                .map_err(map_error(MAGLEV_MAP))?;
        for (index, id) in entries.iter().enumerate() {
            if *id != 0 {
                map.set(index as u32, *id, 0)
                    .map_err(map_error(MAGLEV_MAP))?;
            }
        }
        self.maps
            .maglev
            .insert(service_id, &map, 0)
            .map_err(insert_error(MAGLEV_MAP))?;
        self.tables
            .insert(service_id, ProgrammedMaglev { map, entries });
        Ok(true)
    }

    fn remove_maglev(&mut self, service_id: u32) -> Result<(), DatapathError> {
        if self.tables.remove(&service_id).is_some() {
            ignore_missing(self.maps.maglev.remove(&service_id), MAGLEV_MAP)?;
        }
        Ok(())
    }

    /// Remove a frontend entry and its slots; the service id (and its Maglev table) go with
    /// the last scope of its address.
    pub fn remove_frontend(&mut self, key: &FrontendKey) -> Result<(), DatapathError> {
        let Some(programmed) = self.frontends.remove(key) else {
            return Ok(());
        };
        ignore_missing(self.maps.services.remove(&key.map_key(0)), SERVICES_MAP)?;
        for slot in 1..=programmed.slots.len() {
            ignore_missing(
                self.maps.services.remove(&key.map_key(slot as u16)),
                SERVICES_MAP,
            )?;
        }
        let address_in_use = self.frontends.keys().any(|k| k.address == key.address);
        if !address_in_use {
            if let Some(id) = self.service_ids.remove(&key.address) {
                self.remove_maglev(id)?;
                ignore_missing(self.maps.rev_nat.remove(&id), REV_NAT_MAP)?;
            }
        } else if key.scope == super::model::Scope::External
            && let Some(id) = self.service_ids.get(&key.address).copied()
        {
            self.remove_maglev(id)?;
        }
        Ok(())
    }
}
