//! Map keys and values shared by Skiff's eBPF programs (`skiff-ebpf`) and the agent.
//!
//! Every type is `#[repr(C)]` with explicit padding so kernel and userspace agree on the
//! layout byte for byte; sizes are asserted at compile time. Addresses and ports are stored
//! in network byte order, exactly as the kernel hands them to the programs.
#![no_std]

pub mod lb;

pub use lb::{Backend, ServiceKey, ServiceValue};
