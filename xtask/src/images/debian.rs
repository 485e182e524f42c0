//! Images made of this machine's Debian programs (installed by `cargo xtask setup`): a
//! program and every shared library it loads — the closure `ldd` resolves — copied at the
//! paths the dynamic loader looks them up at. No registry, no network, no compiler.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result, bail};

use super::oci::Entry;
use crate::cmd::{command, output};

/// Put `entry` at `path` (no leading `/`) with every parent directory.
pub fn add(files: &mut BTreeMap<String, Entry>, path: &str, entry: Entry) {
    let mut parent = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !parent.is_empty() {
            files.entry(parent.clone()).or_insert(Entry::Dir(0o755));
            parent.push('/');
        }
        parent.push_str(part);
    }
    files.insert(path.trim_start_matches('/').to_owned(), entry);
}

/// The shared libraries `binary` loads (absolute host paths), the dynamic loader included.
fn libraries(binary: &Path) -> Result<Vec<String>> {
    let text = output(&mut command("ldd", [binary.to_string_lossy().as_ref()]))
        .with_context(|| format!("ldd {}", binary.display()))?;
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("not found") {
            bail!(
                "{}: {line} (cargo xtask setup installs the image packages)",
                binary.display()
            );
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            found.push(path.to_owned());
        }
    }
    Ok(found)
}

/// Copy the host file `binary` to the same path in the image, with its libraries.
pub fn add_program(files: &mut BTreeMap<String, Entry>, binary: &Path) -> Result<()> {
    if !binary.exists() {
        bail!(
            "{} is missing (cargo xtask setup installs the image packages)",
            binary.display()
        );
    }
    add(
        files,
        &binary.to_string_lossy(),
        Entry::HostFile(binary.to_path_buf(), 0o755),
    );
    for library in libraries(binary)? {
        add(
            files,
            &library,
            Entry::HostFile(library.clone().into(), 0o755),
        );
    }
    Ok(())
}

/// Name resolution as glibc expects it (files, then DNS through /etc/resolv.conf, which the
/// kubelet writes).
pub fn nsswitch() -> Entry {
    Entry::Bytes(
        b"hosts: files dns\npasswd: files\ngroup: files\n".to_vec(),
        0o644,
    )
}
