//! Map keys and values shared by Skiff's eBPF programs (`skiff-ebpf`) and the agent.
//!
//! Every type is `#[repr(C)]` with explicit padding so kernel and userspace agree on the
//! layout byte for byte; sizes are asserted at compile time and compared with the built
//! object's BTF by the agent's tests. Addresses and ports are stored in network byte
//! order, exactly as the kernel hands them to the programs.
//!
//! One module per datapath concept: [`lb`] (frontends, backends), [`conntrack`],
//! [`sock`] (socket-LB reverse translation), [`affinity`], [`maglev`], [`config`]
//! (runtime switches, monitor/trace) and [`events`] (counters and flow events).
#![no_std]

pub mod affinity;
pub mod config;
pub mod conntrack;
pub mod events;
pub mod lb;
pub mod maglev;
pub mod sock;

pub use lb::{Backend, ServiceKey, ServiceValue};

#[cfg(feature = "user")]
mod user {
    use super::*;

    macro_rules! pod {
        ($($ty:ty),* $(,)?) => {$(
            // SAFETY: the type is #[repr(C)], Copy, has explicit padding fields and no
            // implicit holes (sizes asserted next to its definition), so every bit pattern
            // is valid and none is uninitialised.
            unsafe impl aya::Pod for $ty {}
        )*};
    }

    pod!(
        lb::ServiceKey,
        lb::ServiceValue,
        lb::Backend,
        lb::RevNat,
        conntrack::CtKey,
        conntrack::CtValue,
        sock::SockRevKey,
        sock::SockRevValue,
        affinity::AffinityKey,
        affinity::AffinityValue,
        config::Config,
        events::Event,
    );
}
