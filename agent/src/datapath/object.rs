//! The eBPF object built from `ebpf/programs` by `build.rs`, embedded in the agent binary.

/// The ELF object with every Skiff eBPF program and map (with BTF).
pub static BYTES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/skiff-ebpf"));
