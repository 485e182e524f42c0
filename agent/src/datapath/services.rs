//! Programming service frontends and their backends into the `SERVICES`/`BACKENDS` maps.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError},
};
use skiff_ebpf_common::lb::{
    BACKEND_ACTIVE, BACKENDS_MAP, Backend, PROTO_TCP, PROTO_UDP, SCOPE_ALL, SERVICES_MAP,
    ServiceKey, ServiceValue,
};

use super::DatapathError;

/// Transport protocol of a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn number(self) -> u8 {
        match self {
            Self::Tcp => PROTO_TCP,
            Self::Udp => PROTO_UDP,
        }
    }
}

/// A service frontend: the address clients connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frontend {
    /// Virtual IP.
    pub address: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl Frontend {
    fn key(&self, slot: u16) -> ServiceKey {
        ServiceKey {
            address: u32::from(self.address).to_be(),
            port: self.port.to_be(),
            proto: self.protocol.number(),
            scope: SCOPE_ALL,
            slot,
            pad: 0,
        }
    }
}

/// One backend of a frontend, with the stable id it is stored under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceBackend {
    /// Backend id, stable for the backend's lifetime (key of `BACKENDS`).
    pub id: u32,
    /// Backend address.
    pub address: Ipv4Addr,
    /// Backend port.
    pub port: u16,
}

/// The `SERVICES` and `BACKENDS` maps.
pub struct ServiceTable {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, u32, Backend>,
}

fn map_error(map: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map {
        map,
        source: Box::new(source),
    }
}

impl ServiceTable {
    /// Take the two maps out of a loaded object.
    pub(super) fn take_from(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        let services = ebpf
            .take_map(SERVICES_MAP)
            .ok_or(DatapathError::Missing(SERVICES_MAP))?;
        let backends = ebpf
            .take_map(BACKENDS_MAP)
            .ok_or(DatapathError::Missing(BACKENDS_MAP))?;
        Ok(Self {
            services: HashMap::try_from(services).map_err(map_error(SERVICES_MAP))?,
            backends: HashMap::try_from(backends).map_err(map_error(BACKENDS_MAP))?,
        })
    }

    /// Set the backends of `frontend` (replacing any previous set).
    ///
    /// Order matters for readers running concurrently in the kernel: backends first, then
    /// the backend slots, then the slot-0 count, and only then are surplus slots removed, so
    /// a connection never selects a slot that is not written yet.
    pub fn upsert(
        &mut self,
        frontend: Frontend,
        backends: &[ServiceBackend],
    ) -> Result<(), DatapathError> {
        let count = u16::try_from(backends.len()).map_err(|_| DatapathError::Map {
            map: SERVICES_MAP,
            source: Box::new(MapError::OutOfBounds {
                index: backends.len() as u32,
                max_entries: u32::from(u16::MAX),
            }),
        })?;
        let protocol = frontend.protocol.number();
        for backend in backends {
            let value = Backend {
                address: u32::from(backend.address).to_be(),
                port: backend.port.to_be(),
                proto: protocol,
                state: BACKEND_ACTIVE,
            };
            self.backends
                .insert(backend.id, value, 0)
                .map_err(map_error(BACKENDS_MAP))?;
        }
        for (slot, backend) in (1..=count).zip(backends) {
            let value = ServiceValue {
                backend_id: backend.id,
                ..ServiceValue::default()
            };
            self.services
                .insert(frontend.key(slot), value, 0)
                .map_err(map_error(SERVICES_MAP))?;
        }
        let previous = self.count(frontend);
        let service = ServiceValue {
            count,
            ..ServiceValue::default()
        };
        self.services
            .insert(frontend.key(0), service, 0)
            .map_err(map_error(SERVICES_MAP))?;
        for slot in count.saturating_add(1)..=previous {
            self.remove_key(frontend.key(slot))?;
        }
        Ok(())
    }

    /// Remove `frontend` and its slots (backends are left to their owner to release).
    pub fn remove(&mut self, frontend: Frontend) -> Result<(), DatapathError> {
        let previous = self.count(frontend);
        self.remove_key(frontend.key(0))?;
        for slot in 1..=previous {
            self.remove_key(frontend.key(slot))?;
        }
        Ok(())
    }

    /// Number of backend slots programmed for `frontend` (0 if absent).
    pub fn count(&self, frontend: Frontend) -> u16 {
        self.services
            .get(&frontend.key(0), 0)
            .map_or(0, |v| v.count)
    }

    fn remove_key(&mut self, key: ServiceKey) -> Result<(), DatapathError> {
        match self.services.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_error(SERVICES_MAP)(e)),
        }
    }
}
