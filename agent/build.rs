//! Builds the eBPF programs in `ebpf/programs` (nightly, bpfel-unknown-none, with BTF) via
//! aya-build; `src/datapath/object.rs` embeds the result with `include_bytes_aligned!`.

use std::path::Path;

use anyhow::{Context, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let ebpf = Path::new(&manifest_dir).join("../ebpf");
    let programs = ebpf
        .join("programs")
        .canonicalize()
        .context("ebpf/programs is missing")?;
    let common = ebpf
        .join("common")
        .canonicalize()
        .context("ebpf/common is missing")?;
    println!("cargo:rerun-if-changed={}", common.display());
    let root_dir = programs
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", programs.display()))?;
    // ebpf/programs is its own workspace: build it from its own directory.
    std::env::set_current_dir(&programs).context("entering ebpf/programs")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "skiff-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF programs failed; `cargo xtask setup` installs what they need \
         (nightly rust-src and bpf-linker)",
    )
}
