//! Images in containerd: pulled through the registry mirrors or imported from an OCI archive,
//! written to the content store with garbage-collection labels, recorded as containerd
//! images, and unpacked layer by layer into committed snapshots named by chain ID.

use std::{collections::HashMap, io::Read, path::Path};

use containerd_client::{
    services::v1::{
        ApplyRequest, CreateImageRequest, GetImageRequest, Image, UpdateImageRequest,
        diff_client::DiffClient,
        images_client::ImagesClient,
        snapshots::{
            CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
            StatSnapshotRequest, snapshots_client::SnapshotsClient,
        },
    },
    types::Descriptor,
};
use oci_client::manifest::OciImageManifest;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    Runtime, RuntimeError, SNAPSHOTTER, call_error,
    registry::{Fetcher, normalize},
};

/// When to contact the registry (`imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always resolve the tag again.
    Always,
    /// Pull only when the image is missing.
    IfNotPresent,
    /// Never pull; the image must be present.
    Never,
}

impl PullPolicy {
    /// From the pod spec, with kubelet's default (`Always` for `:latest` or no tag).
    pub fn from_spec(policy: Option<&str>, image: &str) -> Self {
        match policy {
            Some("Always") => Self::Always,
            Some("Never") => Self::Never,
            Some("IfNotPresent") => Self::IfNotPresent,
            _ => {
                let last = image.rsplit('/').next().unwrap_or(image);
                if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
                    Self::IfNotPresent
                } else {
                    Self::Always
                }
            }
        }
    }
}

/// The parts of an image config a container needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// ENTRYPOINT.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// ENV (`K=V`).
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// WORKDIR.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// USER.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// An image ready to run: unpacked, with its run config.
#[derive(Debug, Clone)]
pub struct ReadyImage {
    /// Normalised name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// `<name>@<manifest digest>` as kubelet reports imageID.
    pub image_id: String,
    /// Chain ID of the top layer: the snapshot containers are prepared from.
    pub chain_id: String,
    /// ENTRYPOINT/CMD/ENV/WORKDIR/USER.
    pub config: RunConfig,
}

/// `sha256:<hex>` of bytes.
pub fn sha256(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Chain IDs of a stack of layers (OCI image spec: chain(n) = sha256(chain(n-1) + " " + diff(n))).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match chains.last() {
            None => diff.clone(),
            Some(parent) => sha256(format!("{parent} {diff}").as_bytes()),
        };
        chains.push(next);
    }
    chains
}

/// GC labels for a manifest: it keeps its config and layers alive.
fn manifest_labels(manifest: &OciImageManifest) -> HashMap<String, String> {
    let mut labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_owned(),
        manifest.config.digest.clone(),
    )]);
    for (i, layer) in manifest.layers.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    labels
}

impl Runtime {
    /// Whether [`Runtime::ensure_image`] would answer at once from the cache of ready images
    /// (no pull, no containerd round trip).
    pub fn image_is_ready(&self, image: &str, policy: PullPolicy) -> bool {
        policy != PullPolicy::Always
            && normalize(image).is_ok_and(|name| self.cached_image(&name).is_some())
    }

    /// Make `image` ready according to `policy`: pull through `fetcher` when needed, then
    /// unpack. Errors read like kubelet's ErrImagePull messages.
    pub async fn ensure_image(
        &self,
        image: &str,
        policy: PullPolicy,
        fetcher: &Fetcher,
        credentials: &super::credentials::Credentials,
    ) -> Result<ReadyImage, RuntimeError> {
        let name = normalize(image)?;
        if policy != PullPolicy::Always
            && let Some(ready) = self.cached_image(&name)
        {
            return Ok(ready);
        }
        let lock = self.image_lock(&name);
        let _serialised = lock.lock().await;
        if policy != PullPolicy::Always
            && let Some(ready) = self.local_image(&name).await?
        {
            self.cache_image(&name, Some(&ready));
            return Ok(ready);
        }
        if policy == PullPolicy::Never {
            return Err(RuntimeError::Pull(format!(
                "Container image \"{image}\" is not present with pull policy of Never"
            )));
        }
        let ready = self.pull(&name, fetcher, credentials).await?;
        self.cache_image(&name, Some(&ready));
        Ok(ready)
    }

    /// The image if containerd has it (unpacking it if a snapshot is missing).
    pub async fn local_image(&self, name: &str) -> Result<Option<ReadyImage>, RuntimeError> {
        let request = self.request(
            GetImageRequest {
                name: name.to_owned(),
            },
            None,
        );
        let image = match ImagesClient::new(self.channel()).get(request).await {
            Ok(reply) => reply.into_inner().image,
            Err(status) if status.code() == containerd_client::tonic::Code::NotFound => None,
            Err(status) => return Err(call_error(format!("image get {name}"))(status)),
        };
        let Some(target) = image.and_then(|i| i.target) else {
            return Ok(None);
        };
        let manifest_bytes = self.read_content(&target.digest).await?;
        let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| RuntimeError::BadImage(format!("manifest of {name}: {e}")))?;
        let config = self.read_content(&manifest.config.digest).await?;
        let lease = self.create_lease().await?;
        let result = self
            .unpack(name, &target.digest, &manifest, &config, &lease)
            .await;
        self.delete_lease(&lease).await;
        result.map(Some)
    }

    async fn pull(
        &self,
        name: &str,
        fetcher: &Fetcher,
        credentials: &super::credentials::Credentials,
    ) -> Result<ReadyImage, RuntimeError> {
        let (fetched, source) = fetcher.fetch(name, credentials).await?;
        let lease = self.create_lease().await?;
        let result = async {
            for layer in &fetched.parsed.layers {
                if !self.has_content(&layer.digest).await? {
                    let data = source.blob(layer).await.map_err(|e| {
                        RuntimeError::Pull(format!(
                            "failed to pull and unpack image \"{name}\": {e}"
                        ))
                    })?;
                    self.write_content(&layer.digest, &data, HashMap::new(), &lease)
                        .await?;
                }
            }
            let chain = self.store_manifest_and_config(
                &fetched.manifest_digest,
                &fetched.manifest,
                &fetched.parsed,
                &fetched.config,
                &lease,
            );
            chain.await?;
            self.record_image(
                name,
                &fetched.manifest_digest,
                &fetched.manifest_media_type,
                fetched.manifest.len(),
            )
            .await?;
            self.unpack(
                name,
                &fetched.manifest_digest,
                &fetched.parsed,
                &fetched.config,
                &lease,
            )
            .await
        }
        .await;
        self.delete_lease(&lease).await;
        result
    }

    /// Write config (labelled with its unpacked snapshot) and manifest (labelled with its
    /// blobs) to the content store.
    async fn store_manifest_and_config(
        &self,
        manifest_digest: &str,
        manifest_bytes: &[u8],
        manifest: &OciImageManifest,
        config: &[u8],
        lease: &str,
    ) -> Result<(), RuntimeError> {
        let parsed: ConfigFile = serde_json::from_slice(config)
            .map_err(|e| RuntimeError::BadImage(format!("image config: {e}")))?;
        let top = chain_ids(&parsed.rootfs.diff_ids)
            .last()
            .cloned()
            .ok_or_else(|| RuntimeError::BadImage("image has no layers".to_owned()))?;
        let config_labels =
            HashMap::from([(format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"), top)]);
        self.write_content(&manifest.config.digest, config, config_labels, lease)
            .await?;
        self.write_content(
            manifest_digest,
            manifest_bytes,
            manifest_labels(manifest),
            lease,
        )
        .await
    }

    /// Create or update the containerd image record pointing at the manifest.
    async fn record_image(
        &self,
        name: &str,
        digest: &str,
        media_type: &str,
        size: usize,
    ) -> Result<(), RuntimeError> {
        let image = Image {
            name: name.to_owned(),
            target: Some(Descriptor {
                media_type: media_type.to_owned(),
                digest: digest.to_owned(),
                size: i64::try_from(size).unwrap_or(i64::MAX),
                annotations: HashMap::new(),
            }),
            ..Image::default()
        };
        let mut client = ImagesClient::new(self.channel());
        let create = self.request(
            CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            },
            None,
        );
        match client.create(create).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == containerd_client::tonic::Code::AlreadyExists => {
                let update = self.request(
                    UpdateImageRequest {
                        image: Some(image),
                        update_mask: None,
                        source_date_epoch: None,
                    },
                    None,
                );
                client
                    .update(update)
                    .await
                    .map(drop)
                    .map_err(call_error(format!("image update {name}")))
            }
            Err(status) => Err(call_error(format!("image create {name}"))(status)),
        }
    }

    /// Apply each layer onto its parent snapshot, committing it under its chain ID; layers
    /// already unpacked are skipped.
    async fn unpack(
        &self,
        name: &str,
        manifest_digest: &str,
        manifest: &OciImageManifest,
        config: &[u8],
        lease: &str,
    ) -> Result<ReadyImage, RuntimeError> {
        let parsed: ConfigFile = serde_json::from_slice(config)
            .map_err(|e| RuntimeError::BadImage(format!("config of {name}: {e}")))?;
        if parsed.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(RuntimeError::BadImage(format!(
                "image {name}: {} layers but {} diff IDs",
                manifest.layers.len(),
                parsed.rootfs.diff_ids.len()
            )));
        }
        let chains = chain_ids(&parsed.rootfs.diff_ids);
        let mut snapshots = SnapshotsClient::new(self.channel());
        let mut parent = String::new();
        for (layer, chain) in manifest.layers.iter().zip(&chains) {
            let stat = self.request(
                StatSnapshotRequest {
                    snapshotter: SNAPSHOTTER.to_owned(),
                    key: chain.clone(),
                },
                Some(lease),
            );
            if snapshots.stat(stat).await.is_ok() {
                parent.clone_from(chain);
                continue;
            }
            let key = format!(
                "extract-{}-{chain}",
                jiff::Timestamp::now().as_nanosecond().unsigned_abs()
            );
            let prepare = self.request(
                PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.to_owned(),
                    key: key.clone(),
                    parent: parent.clone(),
                    labels: HashMap::new(),
                },
                Some(lease),
            );
            let mounts = snapshots
                .prepare(prepare)
                .await
                .map_err(call_error(format!("snapshot prepare for {name}")))?
                .into_inner()
                .mounts;
            let apply = self.request(
                ApplyRequest {
                    diff: Some(Descriptor {
                        media_type: layer.media_type.clone(),
                        digest: layer.digest.clone(),
                        size: layer.size,
                        annotations: HashMap::new(),
                    }),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                },
                Some(lease),
            );
            let applied = DiffClient::new(self.channel()).apply(apply).await;
            let commit = match applied {
                Ok(_) => {
                    let commit = self.request(
                        CommitSnapshotRequest {
                            snapshotter: SNAPSHOTTER.to_owned(),
                            name: chain.clone(),
                            key: key.clone(),
                            labels: HashMap::new(),
                        },
                        Some(lease),
                    );
                    snapshots.commit(commit).await
                }
                Err(status) => Err(status),
            };
            if let Err(status) = commit {
                let remove = self.request(
                    RemoveSnapshotRequest {
                        snapshotter: SNAPSHOTTER.to_owned(),
                        key,
                    },
                    Some(lease),
                );
                let _ = snapshots.remove(remove).await;
                // Another worker unpacking the same image may have committed it first.
                if status.code() != containerd_client::tonic::Code::AlreadyExists {
                    return Err(call_error(format!("unpacking {} of {name}", layer.digest))(
                        status,
                    ));
                }
            }
            parent.clone_from(chain);
        }
        Ok(ReadyImage {
            name: name.to_owned(),
            image_id: format!(
                "{}@{manifest_digest}",
                name.rsplit_once(':')
                    .filter(|(_, t)| !t.contains('/'))
                    .map_or(name, |(n, _)| n)
            ),
            chain_id: parent,
            config: parsed.config.unwrap_or_default(),
        })
    }

    /// Import every image of an OCI archive (`oci-layout`, `index.json`, `blobs/`), naming
    /// each by its `io.containerd.image.name` annotation. Returns the names imported.
    pub async fn import_archive(&self, archive: &Path) -> Result<Vec<String>, RuntimeError> {
        let io = |what: &str| {
            let what = format!("{what} {}", archive.display());
            move |source| RuntimeError::Io { what, source }
        };
        let file = std::fs::File::open(archive).map_err(io("opening"))?;
        let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
        let mut index = None;
        let mut entries = tar::Archive::new(file);
        for entry in entries.entries().map_err(io("reading"))? {
            let mut entry = entry.map_err(io("reading"))?;
            let path = entry
                .path()
                .map_err(io("reading"))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(io("reading"))?;
            if path == "index.json" {
                index = Some(data);
            } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                blobs.insert(format!("sha256:{hex}"), data);
            }
        }
        let index: serde_json::Value = serde_json::from_slice(
            &index.ok_or_else(|| RuntimeError::BadImage("the archive has no index.json".into()))?,
        )
        .map_err(|e| RuntimeError::BadImage(format!("index.json: {e}")))?;
        let manifests = index
            .get("manifests")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        let mut names = Vec::new();
        for entry in manifests {
            let digest = entry["digest"].as_str().unwrap_or_default().to_owned();
            let annotations = &entry["annotations"];
            let Some(name) = annotations["io.containerd.image.name"]
                .as_str()
                .or_else(|| annotations["org.opencontainers.image.ref.name"].as_str())
            else {
                continue;
            };
            let name = normalize(name)?;
            let blob = |d: &str| {
                blobs
                    .get(d)
                    .cloned()
                    .ok_or_else(|| RuntimeError::BadImage(format!("the archive lacks blob {d}")))
            };
            let manifest_bytes = blob(&digest)?;
            if sha256(&manifest_bytes) != digest {
                return Err(RuntimeError::BadImage(format!("blob {digest} is corrupt")));
            }
            let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
                .map_err(|e| RuntimeError::BadImage(format!("manifest {digest}: {e}")))?;
            let config = blob(&manifest.config.digest)?;
            let lease = self.create_lease().await?;
            let result = async {
                for layer in &manifest.layers {
                    let data = blob(&layer.digest)?;
                    if sha256(&data) != layer.digest {
                        return Err(RuntimeError::BadImage(format!(
                            "blob {} is corrupt",
                            layer.digest
                        )));
                    }
                    self.write_content(&layer.digest, &data, HashMap::new(), &lease)
                        .await?;
                }
                self.store_manifest_and_config(
                    &digest,
                    &manifest_bytes,
                    &manifest,
                    &config,
                    &lease,
                )
                .await?;
                let media_type = manifest
                    .media_type
                    .clone()
                    .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_owned());
                self.record_image(&name, &digest, &media_type, manifest_bytes.len())
                    .await?;
                self.unpack(&name, &digest, &manifest, &config, &lease)
                    .await
            }
            .await;
            self.delete_lease(&lease).await;
            result?;
            names.push(name);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let diffs = vec!["sha256:a".to_owned(), "sha256:b".to_owned()];
        let chains = chain_ids(&diffs);
        assert_eq!(chains[0], "sha256:a");
        assert_eq!(chains[1], sha256(b"sha256:a sha256:b"));
    }

    #[test]
    fn default_pull_policy_is_kubelets() {
        assert_eq!(PullPolicy::from_spec(None, "busybox"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::from_spec(None, "busybox:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::from_spec(None, "busybox:1.36"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::from_spec(None, "localhost:5000/busybox"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::from_spec(Some("Never"), "busybox"),
            PullPolicy::Never
        );
    }
}
