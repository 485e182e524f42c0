//! Publishing images to the lab registry (Docker Distribution, HTTP API v2) with curl:
//! blobs first (skipped when the registry has them), then the manifest under its tag.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::oci::{Blob, Image, MANIFEST_MEDIA_TYPE};
use crate::cmd::{command, output, succeeds};

/// Split `docker.io/library/busybox:latest` into (`library/busybox`, `latest`): the path a
/// mirror serves it under.
pub fn repository_and_tag(reference: &str) -> Result<(String, String)> {
    let (name, tag) = reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .unwrap_or((reference, "latest"));
    let Some((_, repository)) = name.split_once('/') else {
        bail!("image reference {reference} has no registry host");
    };
    Ok((repository.to_owned(), tag.to_owned()))
}

/// Push every blob and the manifest of `image` to `registry` (`host:port`, plain HTTP).
pub fn push(registry: &str, image: &Image, scratch: &Path) -> Result<()> {
    let (repository, tag) = repository_and_tag(&image.reference)?;
    let base = format!("http://{registry}/v2/{repository}");
    for blob in image.layers.iter().chain([&image.config]) {
        push_blob(&base, blob, scratch)
            .with_context(|| format!("pushing {} of {}", blob.digest, image.reference))?;
    }
    let file = scratch.join("manifest.json");
    std::fs::write(&file, &image.manifest.data)?;
    output(&mut command(
        "curl",
        [
            "-sS",
            "-f",
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {MANIFEST_MEDIA_TYPE}"),
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("{base}/manifests/{tag}"),
        ],
    ))
    .with_context(|| format!("pushing the manifest of {}", image.reference))?;
    Ok(())
}

fn push_blob(base: &str, blob: &Blob, scratch: &Path) -> Result<()> {
    let exists = succeeds(&mut command(
        "curl",
        ["-sS", "-f", "-I", &format!("{base}/blobs/{}", blob.digest)],
    ));
    if exists {
        return Ok(());
    }
    let headers = output(&mut command(
        "curl",
        [
            "-sS",
            "-f",
            "-X",
            "POST",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{base}/blobs/uploads/"),
        ],
    ))?;
    let location = headers
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        })
        .context("the registry did not answer the upload with a Location")?;
    let separator = if location.contains('?') { '&' } else { '?' };
    let file = scratch.join("blob");
    std::fs::write(&file, &blob.data)?;
    output(&mut command(
        "curl",
        [
            "-sS",
            "-f",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("{location}{separator}digest={}", blob.digest),
        ],
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_map_to_mirror_paths() {
        let split = |r| repository_and_tag(r).expect("valid");
        assert_eq!(
            split("docker.io/library/busybox:latest"),
            ("library/busybox".to_owned(), "latest".to_owned())
        );
        assert_eq!(
            split("docker.io/skiff/echo"),
            ("skiff/echo".to_owned(), "latest".to_owned())
        );
        assert_eq!(
            split("localhost:5000/a/b:v1"),
            ("a/b".to_owned(), "v1".to_owned())
        );
        assert!(repository_and_tag("busybox").is_err());
    }
}
