//! The eBPF Service datapath: load the embedded programs with their maps pinned in bpffs
//! (so they outlive the agent), attach them — socket LB at the node's pod cgroup parent, tc
//! on the underlay interface and on every pod veth, XDP on the underlay — and program
//! Services into the maps.
//!
//! - [`maps`]: typed handles on every map, from the object or from the pins.
//! - [`attach`]: attaching programs with pinned links that a restarted agent updates in
//!   place, so there is never a moment without translation.
//! - [`model`], [`desired`]: what one Service should look like in the maps (pure).
//! - [`table`]: the programmed maps mirrored in memory; diffs, stable ids, write order.
//! - [`maglev`]: Maglev tables.
//! - [`sync`]: the programming loop; [`health`]: health check node ports; [`pods`]: the
//!   program on every pod veth.
//! - [`conntrack_gc`]: expiring per-packet flows; [`sockets`]: closing UDP sockets whose
//!   backend is gone.
//! - [`stats`]: metrics; [`inspect`]: the `skiff-agent bpf …` commands.

pub mod attach;
pub mod conntrack_gc;
pub mod desired;
pub mod health;
pub mod inspect;
pub mod maglev;
pub mod maps;
pub mod model;
mod object;
pub mod pods;
pub mod programs;
pub mod sockets;
pub mod stats;
pub mod sync;
pub mod table;

use std::path::{Path, PathBuf};

use aya::{Ebpf, EbpfLoader, maps::MapData};
use skiff_ebpf_common::{
    affinity::{AFFINITY_MAP, AFFINITY_MAX_ENTRIES},
    conntrack::{CONNTRACK_MAP, CONNTRACK_MAX_ENTRIES},
    lb::{
        BACKENDS_MAP, BACKENDS_MAX_ENTRIES, REV_NAT_MAP, REV_NAT_MAX_ENTRIES, SERVICES_MAP,
        SERVICES_MAX_ENTRIES,
    },
    sock::{SOCK_REV_NAT_MAP, SOCK_REV_NAT_MAX_ENTRIES},
};
use thiserror::Error;
use tracing::warn;

pub use maps::Maps;

/// Errors of the datapath.
#[derive(Debug, Error)]
pub enum DatapathError {
    /// The object could not be loaded (verifier, map creation…).
    #[error("loading the eBPF object: {0}")]
    Load(#[from] Box<aya::EbpfError>),
    /// A program failed to load or attach.
    #[error("program {program}: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// Underlying error.
        source: Box<aya::programs::ProgramError>,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Underlying error.
        source: Box<aya::maps::MapError>,
    },
    /// A pinned map could not be opened.
    #[error("opening pinned map {path}: {source} (is the agent running on this node?)")]
    Pinned {
        /// The pin.
        path: PathBuf,
        /// Underlying error.
        source: Box<aya::maps::MapError>,
    },
    /// A map has no room for another entry.
    #[error("map {map} is full")]
    Full {
        /// Map name.
        map: &'static str,
    },
    /// A frontend has more backends than a frontend entry can count.
    #[error("frontend {frontend} has {count} backends; at most 65535 fit")]
    TooManyBackends {
        /// The frontend.
        frontend: String,
        /// Its backends.
        count: usize,
    },
    /// A link could not be converted or pinned.
    #[error("link of program {program}: {reason}")]
    Link {
        /// Program name.
        program: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The object lacks a program or map this agent expects.
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    /// A setting is out of range.
    #[error("{0}")]
    Setting(String),
    /// A filesystem operation on bpffs or the cgroup tree failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Map sizes (entries), from the agent's flags.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    /// `SERVICES` (frontend entries + backend slots).
    pub services: u32,
    /// `BACKENDS`.
    pub backends: u32,
    /// `CONNTRACK` (flows × 2).
    pub conntrack: u32,
    /// `AFFINITY`.
    pub affinity: u32,
    /// `SOCK_REV_NAT`.
    pub sock_rev_nat: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            services: SERVICES_MAX_ENTRIES,
            backends: BACKENDS_MAX_ENTRIES,
            conntrack: CONNTRACK_MAX_ENTRIES,
            affinity: AFFINITY_MAX_ENTRIES,
            sock_rev_nat: SOCK_REV_NAT_MAX_ENTRIES,
        }
    }
}

impl MapSizes {
    /// The conntrack size for a host with `memory_bytes` of RAM: 1/512 of memory at 80
    /// bytes an entry (~45 MiB for 24 GiB, as Cilium's `bpf-map-dynamic-size-ratio` of
    /// 0.0025 gives), between 64 Ki and 4 Mi entries.
    pub fn conntrack_for_memory(memory_bytes: u64) -> u32 {
        let entries = memory_bytes / 512 / 80;
        entries.clamp(65_536, 4 << 20) as u32
    }

    fn by_name(&self) -> [(&'static str, u32); 6] {
        [
            (SERVICES_MAP, self.services),
            (BACKENDS_MAP, self.backends),
            (REV_NAT_MAP, REV_NAT_MAX_ENTRIES),
            (CONNTRACK_MAP, self.conntrack),
            (AFFINITY_MAP, self.affinity),
            (SOCK_REV_NAT_MAP, self.sock_rev_nat),
        ]
    }

    /// (name, key size, value size, capacity) of every pinned map whose layout could
    /// change between agent versions.
    fn layouts(&self) -> [(&'static str, usize, usize, Option<u32>); 9] {
        use std::mem::size_of;

        use skiff_ebpf_common::{
            affinity::{AffinityKey, AffinityValue},
            config::{CONFIG_MAP, Config},
            conntrack::{CtKey, CtValue},
            events::{METRICS_ENTRIES, METRICS_MAP},
            lb::{Backend, RevNat, ServiceKey, ServiceValue},
            sock::{SockRevKey, SockRevValue},
        };
        [
            (
                SERVICES_MAP,
                size_of::<ServiceKey>(),
                size_of::<ServiceValue>(),
                Some(self.services),
            ),
            (BACKENDS_MAP, 4, size_of::<Backend>(), Some(self.backends)),
            (
                REV_NAT_MAP,
                4,
                size_of::<RevNat>(),
                Some(REV_NAT_MAX_ENTRIES),
            ),
            (
                CONNTRACK_MAP,
                size_of::<CtKey>(),
                size_of::<CtValue>(),
                Some(self.conntrack),
            ),
            (
                AFFINITY_MAP,
                size_of::<AffinityKey>(),
                size_of::<AffinityValue>(),
                Some(self.affinity),
            ),
            (
                SOCK_REV_NAT_MAP,
                size_of::<SockRevKey>(),
                size_of::<SockRevValue>(),
                Some(self.sock_rev_nat),
            ),
            (CONFIG_MAP, 4, size_of::<Config>(), Some(1)),
            (METRICS_MAP, 4, 8, Some(METRICS_ENTRIES)),
            (skiff_ebpf_common::maglev::MAGLEV_MAP, 4, 4, None),
        ]
    }
}

/// The loaded programs of one node (maps are taken out as [`Maps`]).
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
}

/// Remove pins whose map no longer fits the object (another capacity or layout, from an
/// older agent or other flags): reusing them would fail the load. Loud, because what they
/// held is lost.
fn drop_incompatible_pins(dir: &Path, sizes: &MapSizes) {
    for (name, key_size, value_size, capacity) in sizes.layouts() {
        let path = dir.join(name);
        let Ok(map) = MapData::from_pin(&path) else {
            continue;
        };
        let Ok(info) = map.info() else { continue };
        let fits = info.key_size() as usize == key_size
            && info.value_size() as usize == value_size
            && capacity.is_none_or(|c| c == info.max_entries());
        if !fits {
            warn!(
                map = name,
                pinned = ?(info.key_size(), info.value_size(), info.max_entries()),
                wanted = ?(key_size, value_size, capacity),
                "a pinned map has another layout or size; recreating it (its entries are lost)"
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}

impl Datapath {
    /// Load the embedded programs. With `pin_dir`, maps are opened from their pins there if
    /// present (keeping their contents: restarts reconcile instead of flushing) or created
    /// and pinned there; without, they live only as long as the returned values.
    pub fn load(pin_dir: Option<&Path>, sizes: &MapSizes) -> Result<(Self, Maps), DatapathError> {
        let mut loader = EbpfLoader::new();
        let set_retval = u32::from(
            aya::util::KernelVersion::current()
                .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 18, 0)),
        );
        loader.override_global("SET_RETVAL", &set_retval, true);
        for (name, size) in sizes.by_name() {
            loader.map_max_entries(name, size);
        }
        if let Some(dir) = pin_dir {
            std::fs::create_dir_all(dir).map_err(|source| DatapathError::Io {
                what: "creating bpffs directory",
                path: dir.to_path_buf(),
                source,
            })?;
            drop_incompatible_pins(dir, sizes);
            for name in maps::PINNED_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(object::BYTES).map_err(Box::new)?;
        let maps = Maps::take_from(&mut ebpf)?;
        Ok((
            Self {
                ebpf,
                pin_dir: pin_dir.map(Path::to_path_buf),
            },
            maps,
        ))
    }
}

/// Runtime settings written to the `CONFIG` map at start.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Socket-level load balancing for in-cluster clients.
    pub socket_lb: bool,
    /// XDP handles NodePort/LoadBalancer traffic on the underlay.
    pub xdp: bool,
    /// The node's address (SNAT source towards other nodes' backends).
    pub node_address: std::net::Ipv4Addr,
    /// Source address of hairpin flows (a pod reaching itself through its Service); must not
    /// be an address of the node, or the kernel drops the packets as martians.
    pub hairpin_address: std::net::Ipv4Addr,
    /// Maglev table size M.
    pub maglev_table_size: u32,
}

/// Write `settings` (monitor and trace start off).
pub fn configure(maps: &mut Maps, settings: &Settings) -> Result<(), DatapathError> {
    use skiff_ebpf_common::config::{CONFIG_SOCKET_LB, CONFIG_XDP, Config};
    let mut flags = 0;
    if settings.socket_lb {
        flags |= CONFIG_SOCKET_LB;
    }
    if settings.xdp {
        flags |= CONFIG_XDP;
    }
    maps.config.set(Config {
        flags,
        node_address: model::ip_to_be(settings.node_address),
        hairpin_address: model::ip_to_be(settings.hairpin_address),
        maglev_table_size: settings.maglev_table_size,
        ..Config::default()
    })
}
