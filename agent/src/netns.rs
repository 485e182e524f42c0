//! Entering a node's network namespace (the lab runs each node's agent in `skiff-node-N`).

use std::{fs::File, path::PathBuf};

use nix::sched::{CloneFlags, setns};
use thiserror::Error;

/// Failure to enter a network namespace.
#[derive(Debug, Error)]
pub enum NetnsError {
    /// The namespace file could not be opened.
    #[error("network namespace {name} not found at {path}: {source}")]
    Open {
        /// Namespace name.
        name: String,
        /// Path tried.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// setns(2) failed.
    #[error("entering network namespace {name}: {source}")]
    Enter {
        /// Namespace name.
        name: String,
        /// Underlying error.
        source: nix::Error,
    },
}

/// Move the calling thread into the named network namespace (`/run/netns/<name>`, as
/// `ip netns add` creates it). Call before starting other threads: they inherit it.
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let path = PathBuf::from("/run/netns").join(name);
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        name: name.to_owned(),
        path: path.clone(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        name: name.to_owned(),
        source,
    })
}
