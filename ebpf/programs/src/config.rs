//! The `CONFIG` array: runtime switches and the monitor/trace state.

use aya_ebpf::{btf_maps::Array, macros::btf_map};
use skiff_ebpf_common::config::Config;

/// The one runtime configuration entry (index 0), written by the agent.
#[btf_map]
static CONFIG: Array<Config, 1> = Array::new();

/// A copy of the current configuration (all zero before the agent wrote it).
#[inline(always)]
pub fn get() -> Config {
    CONFIG.get(0).copied().unwrap_or_default()
}
