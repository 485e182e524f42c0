//! Skiff's eBPF programs, built for `bpfel-unknown-none` by the agent's build script and
//! embedded in the agent binary.
//!
//! One module per datapath concept, each owning its maps — [`lb`] (frontends, backends,
//! selection), [`maglev`], [`affinity`], [`conntrack`], [`nat`] (packet rewriting),
//! [`packet`] (header parsing), [`flow`] (the per-packet decision shared by tc and XDP),
//! [`config`] and [`events`] (counters, monitor/trace events) — and thin programs per
//! attach point: [`sock`] (cgroup socket hooks), [`tc`] and [`xdp`].
#![no_std]
#![no_main]

mod affinity;
mod config;
mod conntrack;
mod events;
mod flow;
mod lb;
mod maglev;
mod nat;
mod packet;
mod reject;
mod sock;
mod tc;
mod xdp;

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
