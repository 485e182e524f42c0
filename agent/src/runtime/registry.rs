//! Where images come from: reference normalisation (`busybox` →
//! `docker.io/library/busybox:latest`), registry mirrors in k3s's `registries.yaml` shape, and
//! fetching manifests and blobs over the OCI distribution API.
//!
//! ```yaml
//! mirrors:
//!   "*":                       # every registry…
//!     endpoint: ["http://172.30.0.1:5001"]   # …is fetched from the lab registry first
//!   docker.io:
//!     endpoint: ["https://mirror.example"]
//! ```
//! An `http://` endpoint is plain HTTP (an insecure registry); the upstream registry itself is
//! tried after its mirrors.

use std::{collections::BTreeMap, path::Path};

use oci_client::{
    Client, Reference,
    client::{ClientConfig, ClientProtocol},
    manifest::{OciDescriptor, OciImageIndex, OciImageManifest},
    secrets::RegistryAuth,
};
use serde::Deserialize;

use super::{RuntimeError, reference::ImageReference};

/// Manifest media types this agent understands.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// `registries.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistryConfig {
    /// Mirrors by registry host (`*` for every registry).
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
}

/// The mirrors of one registry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mirror {
    /// Endpoints (`http://host:port` or `https://host`), tried in order.
    #[serde(default)]
    pub endpoint: Vec<String>,
}

impl RegistryConfig {
    /// Read a registries.yaml; a missing file means no mirrors.
    pub fn load(path: Option<&Path>) -> Result<Self, RuntimeError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeError::Io {
            what: format!("reading registry config {}", path.display()),
            source,
        })?;
        serde_saphyr::from_str(&text)
            .map_err(|e| RuntimeError::BadImage(format!("registry config {}: {e}", path.display())))
    }

    /// Hosts to fetch `registry`'s images from, in order: its mirrors, `*` mirrors, itself.
    fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mirrors = self
            .mirrors
            .get(registry)
            .into_iter()
            .chain(self.mirrors.get("*"))
            .flat_map(|m| m.endpoint.iter())
            .map(|e| Endpoint::parse(e));
        let upstream = Endpoint {
            host: if registry == "docker.io" {
                "registry-1.docker.io".to_owned()
            } else {
                registry.to_owned()
            },
            insecure: false,
        };
        mirrors.chain(std::iter::once(upstream)).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    host: String,
    insecure: bool,
}

impl Endpoint {
    fn parse(url: &str) -> Self {
        let (insecure, rest) = match url.split_once("://") {
            Some(("http", rest)) => (true, rest),
            Some((_, rest)) => (false, rest),
            None => (false, url),
        };
        Self {
            host: rest.trim_end_matches('/').to_owned(),
            insecure,
        }
    }
}

/// The canonical form of an image reference, as kubelet and containerd name images:
/// `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize(image: &str) -> Result<String, RuntimeError> {
    Ok(parse(image)?.to_string())
}

fn parse(image: &str) -> Result<ImageReference, RuntimeError> {
    ImageReference::parse(image)
        .map_err(|e| RuntimeError::BadImage(format!("invalid image reference {image:?}: {e}")))
}

/// A fetched image: raw manifest (as the registry served it, so the digest holds), its
/// parsed form, and the raw config.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Digest of the manifest.
    pub manifest_digest: String,
    /// Media type of the manifest.
    pub manifest_media_type: String,
    /// Raw manifest bytes.
    pub manifest: Vec<u8>,
    /// Parsed manifest.
    pub parsed: OciImageManifest,
    /// Raw config bytes.
    pub config: Vec<u8>,
}

/// Fetches images through mirrors.
pub struct Fetcher {
    config: RegistryConfig,
}

impl Fetcher {
    /// A fetcher with these mirrors.
    pub fn new(config: RegistryConfig) -> Self {
        Self { config }
    }

    /// Fetch the manifest (resolving a multi-platform index to linux/amd64) and config of
    /// `image` (normalised), trying each endpoint; the error names every endpoint's failure.
    pub async fn fetch(
        &self,
        image: &str,
        credentials: &super::credentials::Credentials,
    ) -> Result<(Fetched, Source), RuntimeError> {
        let reference = parse(image)?;
        let mut failures = Vec::new();
        for endpoint in self.config.endpoints(&reference.registry) {
            let source = Source::new(&endpoint, &reference, credentials.for_host(&endpoint.host));
            match source.fetch().await {
                Ok(fetched) => return Ok((fetched, source)),
                Err(e) => failures.push(format!("{}: {e}", endpoint.host)),
            }
        }
        Err(RuntimeError::Pull(format!(
            "failed to pull and unpack image \"{image}\": {}",
            failures.join("; ")
        )))
    }
}

/// One endpoint that serves one image.
pub struct Source {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
}

impl Source {
    fn new(endpoint: &Endpoint, image: &ImageReference, auth: RegistryAuth) -> Self {
        let protocol = if endpoint.insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(5)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..ClientConfig::default()
        });
        Self {
            client,
            reference: image.at(&endpoint.host),
            auth,
        }
    }

    async fn fetch(&self) -> Result<Fetched, String> {
        let auth = self.auth.clone();
        let (mut raw, mut digest) = self
            .client
            .pull_manifest_raw(&self.reference, &auth, MANIFEST_TYPES)
            .await
            .map_err(|e| e.to_string())?;
        let mut media_type = media_type_of(&raw);
        if media_type.contains("index") || media_type.contains("manifest.list") {
            let index: OciImageIndex =
                serde_json::from_slice(&raw).map_err(|e| format!("bad image index: {e}"))?;
            let entry = index
                .manifests
                .iter()
                .find(|m| {
                    m.platform.as_ref().is_some_and(|p| {
                        p.os.to_string() == "linux" && p.architecture.to_string() == "amd64"
                    })
                })
                .ok_or("the image index has no linux/amd64 manifest")?;
            let by_digest = Reference::with_digest(
                self.reference.registry().to_owned(),
                self.reference.repository().to_owned(),
                entry.digest.clone(),
            );
            (raw, digest) = self
                .client
                .pull_manifest_raw(&by_digest, &auth, MANIFEST_TYPES)
                .await
                .map_err(|e| e.to_string())?;
            media_type = media_type_of(&raw);
        }
        let parsed: OciImageManifest =
            serde_json::from_slice(&raw).map_err(|e| format!("bad image manifest: {e}"))?;
        let config = self.blob(&parsed.config).await?;
        Ok(Fetched {
            manifest_digest: digest,
            manifest_media_type: media_type,
            manifest: raw.to_vec(),
            parsed,
            config,
        })
    }

    /// Download one blob (verified against its digest by the client).
    pub async fn blob(&self, descriptor: &OciDescriptor) -> Result<Vec<u8>, String> {
        let mut data = Vec::new();
        self.client
            .pull_blob(&self.reference, descriptor, &mut data)
            .await
            .map_err(|e| format!("fetching {}: {e}", descriptor.digest))?;
        Ok(data)
    }
}

fn media_type_of(raw: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalized_like_kubelet() {
        let n = |s| normalize(s).expect("valid");
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("skiff/echo"), "docker.io/skiff/echo:latest");
        assert_eq!(n("registry.k8s.io/pause:3.9"), "registry.k8s.io/pause:3.9");
        assert!(normalize("UPPER/Case").is_err());
    }

    #[test]
    fn mirrors_come_before_the_registry() {
        let config: RegistryConfig = serde_saphyr::from_str(
            "mirrors:\n  \"*\":\n    endpoint: [\"http://172.30.0.1:5001\"]\n  docker.io:\n    endpoint: [\"https://m.example/\"]\n",
        )
        .expect("yaml");
        let hosts: Vec<(String, bool)> = config
            .endpoints("docker.io")
            .into_iter()
            .map(|e| (e.host, e.insecure))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("m.example".to_owned(), false),
                ("172.30.0.1:5001".to_owned(), true),
                ("registry-1.docker.io".to_owned(), false),
            ]
        );
    }
}
