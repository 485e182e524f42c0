//! The eBPF Service datapath: load the embedded programs, keep their maps pinned in bpffs
//! so they outlive the agent, attach the socket LB at the node's pod cgroup parent, and
//! program services into the maps.

mod object;
mod services;

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink},
};
use skiff_ebpf_common::lb::{BACKENDS_MAP, SERVICES_MAP};
use thiserror::Error;

pub use services::{Frontend, Protocol, ServiceBackend, ServiceTable};

/// Name of the socket-LB connect4 program in the object.
const CONNECT4: &str = "connect4";

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
    /// A map is missing from the object or has the wrong type.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Underlying error.
        source: Box<aya::maps::MapError>,
    },
    /// A link could not be converted for pinning.
    #[error("link of program {program}: {source}")]
    Link {
        /// Program name.
        program: &'static str,
        /// Underlying error.
        source: Box<aya::programs::links::LinkError>,
    },
    /// The object lacks a program or map this agent expects.
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
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

/// The loaded datapath of one node.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    services: ServiceTable,
}

impl Datapath {
    /// Load the embedded programs. With `pin_dir`, maps are opened from their pins there if
    /// present (keeping their contents: restarts reconcile instead of flushing) or created
    /// and pinned there; without, they live only as long as this value.
    pub fn load(pin_dir: Option<&Path>) -> Result<Self, DatapathError> {
        let mut loader = EbpfLoader::new();
        if let Some(dir) = pin_dir {
            std::fs::create_dir_all(dir).map_err(|source| DatapathError::Io {
                what: "creating bpffs directory",
                path: dir.to_path_buf(),
                source,
            })?;
            loader.map_pin_path(SERVICES_MAP, dir.join(SERVICES_MAP));
            loader.map_pin_path(BACKENDS_MAP, dir.join(BACKENDS_MAP));
        }
        let mut ebpf = loader.load(object::BYTES).map_err(Box::new)?;
        let services = ServiceTable::take_from(&mut ebpf)?;
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.map(Path::to_path_buf),
            services,
        })
    }

    /// Attach the socket LB (connect4) to the cgroup at `cgroup` (a cgroup2 directory) so it
    /// applies to every process below it.
    ///
    /// With a pin directory the link is pinned, so the program stays attached when the agent
    /// exits; a link pinned by a previous agent is replaced only after the new one is
    /// attached, so there is no moment without translation.
    pub fn attach_socket_lb(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        let program_error = |source| DatapathError::Program {
            program: CONNECT4,
            source: Box::new(source),
        };
        let program: &mut CgroupSockAddr = self
            .ebpf
            .program_mut(CONNECT4)
            .ok_or(DatapathError::Missing(CONNECT4))?
            .try_into()
            .map_err(program_error)?;
        program.load().map_err(program_error)?;
        let cgroup_dir = File::open(cgroup).map_err(|source| DatapathError::Io {
            what: "opening cgroup",
            path: cgroup.to_path_buf(),
            source,
        })?;
        // bpf_link attachments (kernel ≥ 5.7) take no flags and always coexist with other
        // links on the cgroup, which is what lets a new agent attach before the old detaches.
        let link_id = program
            .attach(cgroup_dir, CgroupAttachMode::Single)
            .map_err(program_error)?;
        let Some(dir) = &self.pin_dir else {
            return Ok(());
        };
        let link = program.take_link(link_id).map_err(program_error)?;
        let link: FdLink = link.try_into().map_err(|source| DatapathError::Link {
            program: CONNECT4,
            source: Box::new(source),
        })?;
        let final_path = dir.join(format!("{CONNECT4}_link"));
        let new_path = dir.join(format!("{CONNECT4}_link_new"));
        let _ = std::fs::remove_file(&new_path);
        let pinned = link.pin(&new_path).map_err(|e| DatapathError::Io {
            what: "pinning link",
            path: new_path.clone(),
            source: std::io::Error::other(e),
        })?;
        // (bpffs reserves dots in names, hence `_new`.) Replacing the old pin drops the last reference to the previous agent's link, which
        // detaches it; the new link is already attached.
        std::fs::rename(&new_path, &final_path).map_err(|source| DatapathError::Io {
            what: "replacing pinned link",
            path: final_path,
            source,
        })?;
        drop(pinned);
        Ok(())
    }

    /// The services/backends tables, for programming frontends.
    pub fn services(&mut self) -> &mut ServiceTable {
        &mut self.services
    }
}
