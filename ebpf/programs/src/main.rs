//! Skiff's eBPF programs, built for `bpfel-unknown-none` by the agent's build script and
//! embedded in the agent binary.
//!
//! One module per datapath concept (`lb`: service lookup and backend selection); programs
//! per attach point (`sock`: cgroup socket hooks) stay thin.
#![no_std]
#![no_main]

mod lb;
mod sock;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic; this is never called.
    loop {}
}

/// Programs are GPL so they may call GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
