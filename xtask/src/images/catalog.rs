//! What each test image contains.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use super::{
    debian,
    oci::{Entry, ImageSpec},
};
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

/// The kubectl the in-cluster client image carries (static; the Cloud SDK's 1.33).
const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// `docker.io/skiff/kubectl:latest`: busybox with kubectl, an in-cluster client nobody here
/// wrote (it finds the API through `KUBERNETES_SERVICE_HOST` and the mounted
/// ServiceAccount token, as every in-cluster client does).
pub fn kubectl() -> Result<ImageSpec> {
    let mut image = busybox()?;
    let binary = PathBuf::from(KUBECTL);
    anyhow::ensure!(
        binary.exists(),
        "{KUBECTL} is missing: `cargo xtask setup` installs kubectl"
    );
    image
        .files
        .insert("usr/local".to_owned(), Entry::Dir(0o755));
    image
        .files
        .insert("usr/local/bin".to_owned(), Entry::Dir(0o755));
    image.files.insert(
        "usr/local/bin/kubectl".to_owned(),
        Entry::HostFile(binary, 0o755),
    );
    image.reference = "docker.io/skiff/kubectl:latest".to_owned();
    Ok(image)
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

/// `docker.io/library/redis:latest` from Debian's redis-tools: `redis-server` (the same
/// program as `redis-check-rdb`, chosen by its name) and `redis-cli`, with their libraries.
/// Protected mode is off by default, as in the official image, so other pods may connect.
pub fn redis() -> Result<ImageSpec> {
    let mut files = base();
    for program in ["/usr/bin/redis-check-rdb", "/usr/bin/redis-cli"] {
        debian::add_program(&mut files, Path::new(program))?;
    }
    debian::add(
        &mut files,
        "usr/bin/redis-server",
        Entry::Symlink("redis-check-rdb".to_owned()),
    );
    debian::add(&mut files, "etc/nsswitch.conf", debian::nsswitch());
    debian::add(&mut files, "data", Entry::Dir(0o777));
    Ok(ImageSpec {
        reference: "docker.io/library/redis:latest".to_owned(),
        files,
        entrypoint: vec![],
        cmd: vec![
            "redis-server".to_owned(),
            "--protected-mode".to_owned(),
            "no".to_owned(),
        ],
        env: vec![PATH.to_owned()],
        exposed_ports: vec!["6379/tcp".into()],
    })
}

/// `docker.io/skiff/guestbook-frontend:latest`: Debian's php8.2 CLI with the redis and
/// igbinary extensions, serving `examples/guestbook/frontend` with PHP's built-in server.
pub fn guestbook_frontend() -> Result<ImageSpec> {
    let mut files = base();
    let php = Path::new("/usr/bin/php8.2");
    debian::add_program(&mut files, php)?;
    debian::add(
        &mut files,
        "usr/bin/php",
        Entry::Symlink("php8.2".to_owned()),
    );
    let extension_dir = output(&mut command(
        php.to_string_lossy().as_ref(),
        ["-r", "echo ini_get('extension_dir');"],
    ))
    .context("asking php8.2 for its extension directory (cargo xtask setup installs it)")?;
    let extension_dir = extension_dir.trim();
    for (priority, extension) in [("20", "igbinary"), ("25", "redis")] {
        let library = Path::new(extension_dir).join(format!("{extension}.so"));
        debian::add_program(&mut files, &library)?;
        debian::add(
            &mut files,
            &format!("etc/php/8.2/cli/conf.d/{priority}-{extension}.ini"),
            Entry::Bytes(format!("extension={extension}.so\n").into_bytes(), 0o644),
        );
    }
    debian::add(&mut files, "etc/nsswitch.conf", debian::nsswitch());
    let app = workspace_root().join("examples/guestbook/frontend");
    for page in ["index.html", "guestbook.php"] {
        debian::add(
            &mut files,
            &format!("var/www/html/{page}"),
            Entry::HostFile(app.join(page), 0o644),
        );
    }
    Ok(ImageSpec {
        reference: "docker.io/skiff/guestbook-frontend:latest".to_owned(),
        files,
        entrypoint: vec![],
        cmd: ["php", "-S", "0.0.0.0:80", "-t", "/var/www/html"]
            .map(str::to_owned)
            .to_vec(),
        env: vec![PATH.to_owned(), "PHP_CLI_SERVER_WORKERS=4".to_owned()],
        exposed_ports: vec!["80/tcp".into()],
    })
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
