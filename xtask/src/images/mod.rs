//! `cargo xtask images`: the lab's test images, built offline from this machine's files.
//!
//! - `docker.io/library/busybox:latest` — Debian's static busybox with its applet links.
//! - `docker.io/skiff/echo:latest` (also tagged `:v2`, for rollouts) — `images/echo` (this
//!   repo) linked statically: HTTP hostname on 8080, TCP echo on 9000, UDP hostname on 9001.
//! - `docker.io/library/redis:latest` — Debian's redis-server and redis-cli with their
//!   libraries (the guestbook's database).
//! - `docker.io/skiff/guestbook-frontend:latest` — Debian's PHP with the redis extension
//!   serving `examples/guestbook/frontend`.
//!
//! Each image is written as an OCI archive to `target/images/<name>.tar` (what
//! `skiff-agent images import` reads) and, when the lab is up, pushed to the lab registry
//! under the same repository path, so nodes pull `busybox` through their registry mirror.

mod catalog;
mod debian;
pub mod oci;
mod registry;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::{cmd::Progress, cmd::workspace_root, lab};

/// Arguments of `cargo xtask images`.
#[derive(Args, Debug, Clone, Default)]
pub struct ImagesArgs {
    /// Only build the archives; do not push to the lab registry even if it is up.
    #[arg(long)]
    pub no_push: bool,
}

/// Where the image archives go.
pub fn archive_dir() -> PathBuf {
    workspace_root().join("target").join("images")
}

/// Entry point of `cargo xtask images`.
pub fn run(args: &ImagesArgs) -> Result<()> {
    let registry = lab::registry_if_up();
    build_and_publish(if args.no_push {
        None
    } else {
        registry.as_deref()
    })
}

/// Build every image into [`archive_dir`] and push each to `registry` if given.
pub fn build_and_publish(registry: Option<&str>) -> Result<()> {
    let dir = archive_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut progress = Progress::new("images", 3);
    let echo = progress.step("build images/echo statically", catalog::build_echo_binary)?;
    let images = progress.step(
        "build busybox, skiff/echo, redis, the guestbook frontend and skiff/kubectl",
        || {
            let mut built = Vec::new();
            for (file, spec) in [
                ("busybox.tar", catalog::busybox()?),
                ("echo.tar", catalog::echo(&echo)),
                ("redis.tar", catalog::redis()?),
                ("guestbook-frontend.tar", catalog::guestbook_frontend()?),
                ("kubectl.tar", catalog::kubectl()?),
            ] {
                let image = oci::build(&spec)?;
                oci::write_archive(&image, &dir.join(file))?;
                eprintln!(
                    "      {} {} → {}",
                    image.reference,
                    image.manifest.digest,
                    dir.join(file).display()
                );
                built.push(image);
            }
            Ok(built)
        },
    )?;
    match registry {
        Some(registry) => progress.step(&format!("push to the lab registry {registry}"), || {
            for image in &images {
                registry::push(registry, image, &dir)?;
                // The echo image also answers to :v2, so rollouts can change the image.
                if image.reference.ends_with("/skiff/echo:latest") {
                    let mut v2 = image.clone();
                    v2.reference = image.reference.replace(":latest", ":v2");
                    registry::push(registry, &v2, &dir)?;
                }
            }
            Ok(())
        })?,
        None => progress.step("push: skipped (no lab registry up)", || Ok(()))?,
    }
    Ok(())
}
