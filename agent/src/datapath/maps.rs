//! Typed handles on every map of the datapath, taken from a freshly loaded object or
//! opened from their pins (the inspection CLI, which runs beside a live agent).

use std::path::Path;

use aya::{
    Ebpf,
    maps::{Array, HashMap, HashOfMaps, Map, MapData, MapError, PerCpuArray, RingBuf},
};
use skiff_ebpf_common::{
    affinity::{AFFINITY_MAP, AffinityKey, AffinityValue},
    config::{CONFIG_MAP, Config},
    conntrack::{CONNTRACK_MAP, CtKey, CtValue},
    events::{EVENTS_MAP, METRICS_MAP},
    lb::{BACKENDS_MAP, Backend, REV_NAT_MAP, RevNat, SERVICES_MAP, ServiceKey, ServiceValue},
    maglev::MAGLEV_MAP,
    sock::{SOCK_REV_NAT_MAP, SockRevKey, SockRevValue},
};

use super::DatapathError;

/// Every map the agent pins, by name (the order `down` and the CLI list them in).
pub const PINNED_MAPS: [&str; 10] = [
    SERVICES_MAP,
    BACKENDS_MAP,
    REV_NAT_MAP,
    MAGLEV_MAP,
    CONNTRACK_MAP,
    AFFINITY_MAP,
    SOCK_REV_NAT_MAP,
    CONFIG_MAP,
    METRICS_MAP,
    EVENTS_MAP,
];

/// A Maglev table stored in `MAGLEV`.
pub type MaglevTable = Array<MapData, u32>;

/// The service-programming maps (written by the sync loop).
pub struct LbMaps {
    /// Frontends and backend slots.
    pub services: HashMap<MapData, ServiceKey, ServiceValue>,
    /// Backend id → backend.
    pub backends: HashMap<MapData, u32, Backend>,
    /// Service id → frontend.
    pub rev_nat: HashMap<MapData, u32, RevNat>,
    /// Service id → Maglev table.
    pub maglev: HashOfMaps<MapData, u32, MaglevTable>,
}

/// The state maps the kernel writes (read by metrics, garbage collection, inspection).
pub struct StateMaps {
    /// Per-packet flows.
    pub conntrack: HashMap<MapData, CtKey, CtValue>,
    /// ClientIP affinity.
    pub affinity: HashMap<MapData, AffinityKey, AffinityValue>,
    /// Socket-LB reverse entries.
    pub sock_rev_nat: HashMap<MapData, SockRevKey, SockRevValue>,
    /// Counters by (hook, reason), per CPU.
    pub metrics: PerCpuArray<MapData, u64>,
}

/// The runtime configuration entry.
pub struct ConfigMap {
    map: Array<MapData, Config>,
}

impl ConfigMap {
    /// The current configuration.
    pub fn get(&self) -> Result<Config, DatapathError> {
        self.map.get(&0, 0).map_err(map_error(CONFIG_MAP))
    }

    /// Replace the configuration.
    pub fn set(&mut self, config: Config) -> Result<(), DatapathError> {
        self.map.set(0, config, 0).map_err(map_error(CONFIG_MAP))
    }

    /// Change the configuration in place.
    pub fn update(&mut self, change: impl FnOnce(&mut Config)) -> Result<Config, DatapathError> {
        let mut config = self.get()?;
        change(&mut config);
        self.set(config)?;
        Ok(config)
    }
}

/// All maps, split by who writes them.
pub struct Maps {
    /// Written by the sync loop.
    pub lb: LbMaps,
    /// Written by the kernel.
    pub state: StateMaps,
    /// Written by the agent at start and by the CLI.
    pub config: ConfigMap,
    /// Flow events (read by `monitor`/`trace`).
    pub events: RingBuf<MapData>,
}

/// Wrap a map error with the map's name.
pub fn map_error(map: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map {
        map,
        source: Box::new(source),
    }
}

/// Where a map comes from.
trait Source {
    fn take(&mut self, name: &'static str) -> Result<Map, DatapathError>;
}

impl Source for Ebpf {
    fn take(&mut self, name: &'static str) -> Result<Map, DatapathError> {
        self.take_map(name).ok_or(DatapathError::Missing(name))
    }
}

struct Pins<'a>(&'a Path);

impl Source for Pins<'_> {
    fn take(&mut self, name: &'static str) -> Result<Map, DatapathError> {
        let path = self.0.join(name);
        let data = MapData::from_pin(&path).map_err(|source| DatapathError::Pinned {
            path,
            source: Box::new(source),
        })?;
        Map::from_map_data(data).map_err(map_error(name))
    }
}

fn typed<T>(source: &mut impl Source, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(source.take(name)?).map_err(map_error(name))
}

impl Maps {
    /// Take every map out of a loaded object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Self::from_source(ebpf)
    }

    /// Open the maps a running agent pinned in `dir`.
    pub fn open_pinned(dir: &Path) -> Result<Self, DatapathError> {
        Self::from_source(&mut Pins(dir))
    }

    fn from_source(source: &mut impl Source) -> Result<Self, DatapathError> {
        Ok(Self {
            lb: LbMaps {
                services: typed(source, SERVICES_MAP)?,
                backends: typed(source, BACKENDS_MAP)?,
                rev_nat: typed(source, REV_NAT_MAP)?,
                maglev: typed(source, MAGLEV_MAP)?,
            },
            state: StateMaps {
                conntrack: typed(source, CONNTRACK_MAP)?,
                affinity: typed(source, AFFINITY_MAP)?,
                sock_rev_nat: typed(source, SOCK_REV_NAT_MAP)?,
                metrics: typed(source, METRICS_MAP)?,
            },
            config: ConfigMap {
                map: typed(source, CONFIG_MAP)?,
            },
            events: typed(source, EVENTS_MAP)?,
        })
    }
}
