//! Building OCI images from files on this machine: deterministic gzip layers, the image
//! config and manifest, and the OCI archive (`oci-layout` + `index.json` + `blobs/`) that
//! `skiff-agent images import` reads.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use flate2::{Compression, write::GzEncoder};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One entry of an image's filesystem.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A directory with a mode.
    Dir(u32),
    /// A file copied from the host with a mode.
    HostFile(PathBuf, u32),
    /// A file with the given contents and mode.
    Bytes(Vec<u8>, u32),
    /// A symbolic link to the target.
    Symlink(String),
}

/// What an image is made of: one layer of files and the runtime config.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Full reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// Files by absolute path inside the image (without the leading `/`).
    pub files: BTreeMap<String, Entry>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `ExposedPorts` keys such as `8080/tcp`.
    pub exposed_ports: Vec<String>,
}

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The bytes.
    pub data: Vec<u8>,
    /// Its media type.
    pub media_type: &'static str,
}

impl Blob {
    fn new(data: Vec<u8>, media_type: &'static str) -> Self {
        Self {
            digest: sha256(&data),
            data,
            media_type,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.data.len()})
    }
}

/// A built image: layers, config and manifest blobs.
#[derive(Debug, Clone)]
pub struct Image {
    /// Full reference.
    pub reference: String,
    /// Layer blobs, bottom first.
    pub layers: Vec<Blob>,
    /// The config blob.
    pub config: Blob,
    /// The manifest blob (its digest is the image's digest).
    pub manifest: Blob,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Build an image from its spec. The same spec and host files give the same digest.
pub fn build(spec: &ImageSpec) -> Result<Image> {
    let tar = layer_tar(&spec.files)?;
    let diff_id = sha256(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&tar)?;
    let layer = Blob::new(gz.finish()?, LAYER_MEDIA_TYPE);
    let exposed: serde_json::Map<String, serde_json::Value> = spec
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": spec.entrypoint,
            "Cmd": spec.cmd,
            "Env": spec.env,
            "ExposedPorts": exposed,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cargo xtask images"}],
    });
    let config = Blob::new(serde_json::to_vec(&config)?, CONFIG_MEDIA_TYPE);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    });
    let manifest = Blob::new(serde_json::to_vec(&manifest)?, MANIFEST_MEDIA_TYPE);
    Ok(Image {
        reference: spec.reference.clone(),
        layers: vec![layer],
        config,
        manifest,
    })
}

/// An uncompressed tar of the files, with fixed owners and times.
fn layer_tar(files: &BTreeMap<String, Entry>) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, entry) in files {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match entry {
            Entry::Dir(mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            Entry::HostFile(source, mode) => {
                let data = std::fs::read(source)
                    .with_context(|| format!("reading {}", source.display()))?;
                append_file(&mut tar, &mut header, path, &data, *mode)?;
            }
            Entry::Bytes(data, mode) => append_file(&mut tar, &mut header, path, data, *mode)?,
            Entry::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target)?;
            }
        }
    }
    Ok(tar.into_inner()?)
}

fn append_file(
    tar: &mut tar::Builder<Vec<u8>>,
    header: &mut tar::Header,
    path: &str,
    data: &[u8],
    mode: u32,
) -> Result<()> {
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    tar.append_data(header, path, data)?;
    Ok(())
}

/// Write the image as an OCI archive (a tar of an OCI image layout) to `out`.
pub fn write_archive(image: &Image, out: &Path) -> Result<()> {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": image.manifest.digest,
            "size": image.manifest.data.len(),
            "annotations": {
                "io.containerd.image.name": image.reference,
                "org.opencontainers.image.ref.name": image.reference.rsplit_once(':').map_or("latest", |(_, tag)| tag),
            },
        }],
    });
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        append_file(&mut tar, &mut header, path, data, 0o644)
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &serde_json::to_vec(&index)?)?;
    for blob in image.layers.iter().chain([&image.config, &image.manifest]) {
        let hex = blob.digest.trim_start_matches("sha256:");
        add(&format!("blobs/sha256/{hex}"), &blob.data)?;
    }
    let bytes = tar.into_inner()?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImageSpec {
        let mut files = BTreeMap::new();
        files.insert("bin".to_owned(), Entry::Dir(0o755));
        files.insert("bin/hello".to_owned(), Entry::Bytes(b"hi".to_vec(), 0o755));
        files.insert("bin/sh".to_owned(), Entry::Symlink("hello".to_owned()));
        ImageSpec {
            reference: "docker.io/library/test:latest".to_owned(),
            files,
            entrypoint: vec![],
            cmd: vec!["sh".to_owned()],
            env: vec![],
            exposed_ports: vec![],
        }
    }

    #[test]
    fn builds_are_reproducible() {
        let a = build(&spec()).expect("build");
        let b = build(&spec()).expect("build");
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a.layers[0].digest, b.layers[0].digest);
    }

    #[test]
    fn manifest_names_its_blobs() {
        let image = build(&spec()).expect("build");
        let manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest.data).expect("json");
        assert_eq!(manifest["config"]["digest"], image.config.digest);
        assert_eq!(manifest["layers"][0]["digest"], image.layers[0].digest);
        assert_eq!(image.config.digest, sha256(&image.config.data));
    }
}
