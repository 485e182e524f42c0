//! The record `up` writes of what it started, read by `status` and `down`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::layout::Layout;

/// A daemon the lab started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Daemon {
    /// Component name (`etcd`, `containerd`, `skiff-control`, `agent/skiff-node-1`…).
    pub name: String,
    /// Its process id.
    pub pid: i32,
    /// Its log file.
    pub log: PathBuf,
    /// URL or probe used for its health.
    pub health: String,
    /// Program and arguments, to start it again.
    #[serde(default)]
    pub command: Vec<String>,
}

/// Everything one `up` created.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// Number of nodes.
    pub nodes: usize,
    /// Daemons in start order.
    pub daemons: Vec<Daemon>,
}

impl Record {
    /// Read the record, if a lab was brought up.
    pub fn load(layout: &Layout) -> Result<Option<Self>> {
        let path = layout.record_file();
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} is not a lab record", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Write the record (after every daemon start, so a failed `up` is still cleaned up).
    pub fn save(&self, layout: &Layout) -> Result<()> {
        let path = layout.record_file();
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}
