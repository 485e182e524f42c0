//! The cluster DNS: the `cluster.local` zone built from Services and EndpointSlices
//! ([`Zone`], CoreDNS `kubernetes`-plugin semantics) and a UDP/TCP server answering it
//! ([`serve`]). Every agent runs one as its node's resolver, fed by its watches.

mod server;
mod zone;

#[cfg(test)]
mod tests;

pub use server::{Metrics, ServerConfig, serve};
pub use zone::{Resolution, Zone};
