//! What each test image contains.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, Result};

use super::oci::{Entry, ImageSpec};
use crate::cmd::{cargo, command, output, run_cmd, workspace_root};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The directories and account files every image has.
fn base() -> BTreeMap<String, Entry> {
    let mut files = BTreeMap::new();
    for dir in [
        "bin", "dev", "etc", "proc", "root", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var",
    ] {
        files.insert(dir.to_owned(), Entry::Dir(0o755));
    }
    files.insert("tmp".to_owned(), Entry::Dir(0o1777));
    files.insert(
        "etc/passwd".to_owned(),
        Entry::Bytes(
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .to_vec(),
            0o644,
        ),
    );
    files.insert(
        "etc/group".to_owned(),
        Entry::Bytes(b"root:x:0:\nnogroup:x:65534:\n".to_vec(), 0o644),
    );
    files
}

/// `docker.io/library/busybox:latest` from Debian's busybox-static.
pub fn busybox() -> Result<ImageSpec> {
    let busybox = PathBuf::from("/bin/busybox");
    let applets = output(&mut command("/bin/busybox", ["--list-full"]))
        .context("listing busybox applets (is busybox-static installed? run cargo xtask setup)")?;
    let mut files = base();
    files.insert("bin/busybox".to_owned(), Entry::HostFile(busybox, 0o755));
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet != "bin/busybox" {
            files
                .entry(applet.to_owned())
                .or_insert_with(|| Entry::Symlink("/bin/busybox".to_owned()));
        }
    }
    Ok(ImageSpec {
        reference: "docker.io/library/busybox:latest".to_owned(),
        files,
        entrypoint: vec![],
        cmd: vec!["sh".to_owned()],
        env: vec![PATH.to_owned()],
        exposed_ports: vec![],
    })
}

/// `docker.io/skiff/echo:latest`: the echo server alone.
pub fn echo(binary: &std::path::Path) -> ImageSpec {
    let mut files = base();
    files.insert(
        "skiff-echo".to_owned(),
        Entry::HostFile(binary.to_path_buf(), 0o755),
    );
    ImageSpec {
        reference: "docker.io/skiff/echo:latest".to_owned(),
        files,
        entrypoint: vec!["/skiff-echo".to_owned()],
        cmd: vec![],
        env: vec![PATH.to_owned()],
        exposed_ports: vec!["8080/tcp".into(), "9000/tcp".into(), "9001/udp".into()],
    }
}

/// Build `images/echo` as a static release binary in its own target dir (so the workspace's
/// builds are not invalidated by the different RUSTFLAGS); returns its path.
pub fn build_echo_binary() -> Result<PathBuf> {
    let target_dir = workspace_root().join("target").join("image-build");
    run_cmd(
        cargo()
            .args(["build", "--quiet", "--release", "-p", "skiff-echo"])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static"),
    )?;
    Ok(target_dir.join("release").join("skiff-echo"))
}
