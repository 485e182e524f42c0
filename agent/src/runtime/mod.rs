//! containerd, the agent's container runtime: one gRPC channel, every request tagged with the
//! node's containerd namespace. Images (pull, import, unpack) and containers (create, start,
//! wait, kill, remove) are built on it; the kubelet never talks gRPC itself.

pub mod containers;
pub mod content;
pub mod credentials;
pub mod devices;
pub mod exec;
pub mod images;
pub mod passwd;
pub mod reference;
pub mod registry;
pub mod rootfs_users;
pub mod seccomp;
pub mod spec;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use containerd_client::tonic::{self, Code, transport::Channel};
use thiserror::Error;

/// The snapshotter every container and image uses.
pub const SNAPSHOTTER: &str = "overlayfs";

/// A runtime failure, with the operation it happened in.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// containerd could not be reached.
    #[error("connecting to containerd at {socket}: {source}")]
    Connect {
        /// Socket path.
        socket: PathBuf,
        /// Transport error.
        source: tonic::transport::Error,
    },
    /// A containerd call failed.
    #[error("containerd {op}: {status}", status = .source.message())]
    Call {
        /// What was being done.
        op: String,
        /// gRPC status.
        source: tonic::Status,
    },
    /// An image could not be fetched from its registry.
    #[error("{0}")]
    Pull(String),
    /// An image or archive is malformed.
    #[error("{0}")]
    BadImage(String),
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// I/O error.
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// True if containerd said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Call { source, .. } if source.code() == Code::NotFound)
    }

    /// True if containerd said the object already exists.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::Call { source, .. } if source.code() == Code::AlreadyExists)
    }
}

/// Wrap a gRPC status with the operation it failed.
pub(crate) fn call_error(op: impl Into<String>) -> impl FnOnce(tonic::Status) -> RuntimeError {
    let op = op.into();
    move |source| RuntimeError::Call { op, source }
}

/// A connection to containerd scoped to one containerd namespace.
#[derive(Clone, Debug)]
pub struct Runtime {
    channel: Channel,
    namespace: String,
    /// One lock per image name: pulls and unpacks of the same image are serialised (as
    /// kubelet serialises image pulls), so concurrent pods never race on its snapshots.
    image_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Images known ready (unpacked) by name, so pods of a present image start without a
    /// round trip to containerd's image and content services.
    ready_images: Arc<Mutex<HashMap<String, images::ReadyImage>>>,
    /// Images' `/etc/passwd` and `/etc/group` by chain ID, once read (see
    /// [`Runtime::image_accounts`]).
    accounts: Arc<Mutex<HashMap<String, Arc<passwd::ImageAccounts>>>>,
}

impl Runtime {
    /// Connect to the containerd socket; calls use `namespace`.
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Self, RuntimeError> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|source| RuntimeError::Connect {
                    socket: socket.to_path_buf(),
                    source,
                })?;
        Ok(Self {
            channel,
            namespace: namespace.to_owned(),
            image_locks: Arc::default(),
            ready_images: Arc::default(),
            accounts: Arc::default(),
        })
    }

    /// The lock that serialises work on one image.
    pub fn image_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .image_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(name.to_owned()).or_default().clone()
    }

    /// A ready image remembered from an earlier ensure.
    pub fn cached_image(&self, name: &str) -> Option<images::ReadyImage> {
        self.ready_images.lock().ok()?.get(name).cloned()
    }

    /// Remember (or, with `None`, forget) a ready image.
    pub fn cache_image(&self, name: &str, image: Option<&images::ReadyImage>) {
        if let Ok(mut cache) = self.ready_images.lock() {
            match image {
                Some(image) => cache.insert(name.to_owned(), image.clone()),
                None => cache.remove(name),
            };
        }
    }

    /// An image's account files read earlier.
    fn accounts_cache(&self, chain_id: &str) -> Option<Arc<passwd::ImageAccounts>> {
        self.accounts.lock().ok()?.get(chain_id).cloned()
    }

    /// Remember an image's account files.
    fn remember_accounts(&self, chain_id: &str, accounts: &Arc<passwd::ImageAccounts>) {
        if let Ok(mut cache) = self.accounts.lock() {
            cache.insert(chain_id.to_owned(), accounts.clone());
        }
    }

    /// The gRPC channel (cheap to clone).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The containerd namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A request carrying the namespace header (and a lease, if given: content and
    /// snapshots made under a lease are safe from garbage collection until it ends).
    pub fn request<T>(&self, message: T, lease: Option<&str>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Ok(value) = self.namespace.parse() {
            metadata.insert("containerd-namespace", value);
        }
        if let Some(value) = lease.and_then(|l| l.parse().ok()) {
            metadata.insert("containerd-lease", value);
        }
        request
    }
}
