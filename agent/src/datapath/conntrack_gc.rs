//! Garbage collection of the per-packet conntrack: every interval, entries past their
//! timeout (the same [`CtValue::expired`] the kernel applies on lookup) are removed, and
//! the fill levels of the kernel-written maps are recorded. The maps are LRU, so a full map
//! evicts the oldest flows rather than refusing new ones; collecting keeps it from filling
//! with dead flows in the first place.

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use skiff_ebpf_common::{
    affinity::AFFINITY_MAP, conntrack::CONNTRACK_MAP, conntrack::CtKey, sock::SOCK_REV_NAT_MAP,
};
use tracing::{debug, warn};

use super::{maps::StateMaps, stats::DatapathMetrics};

/// Monotonic time in nanoseconds, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64),
        Err(_) => 0,
    }
}

/// Capacities of the kernel-written maps.
#[derive(Clone, Copy, Debug)]
pub struct StateCapacities {
    /// `CONNTRACK`.
    pub conntrack: u32,
    /// `AFFINITY`.
    pub affinity: u32,
    /// `SOCK_REV_NAT`.
    pub sock_rev_nat: u32,
}

/// One pass: remove expired conntrack entries, record fill levels. Returns how many were
/// removed.
pub fn collect(
    state: &mut StateMaps,
    capacities: StateCapacities,
    metrics: &DatapathMetrics,
) -> usize {
    let now = monotonic_ns();
    let mut expired: Vec<CtKey> = Vec::new();
    let mut live = 0u64;
    for entry in state.conntrack.iter() {
        let Ok((key, value)) = entry else { continue };
        if value.expired(key.proto, now) {
            expired.push(key);
        } else {
            live += 1;
        }
    }
    let mut removed = 0;
    for key in &expired {
        // Read again right before removing: a walk over a full map takes long enough for
        // the datapath to reuse a key for a new flow meanwhile, and that entry must stay.
        // (What is left is the gap between this read and the removal, microseconds.)
        let still_expired = state
            .conntrack
            .get(key, 0)
            .is_ok_and(|value| value.expired(key.proto, monotonic_ns()));
        if still_expired && state.conntrack.remove(key).is_ok() {
            removed += 1;
        }
    }
    metrics.set_fill(CONNTRACK_MAP, live, u64::from(capacities.conntrack));
    let affinity = state.affinity.keys().filter(Result::is_ok).count() as u64;
    metrics.set_fill(AFFINITY_MAP, affinity, u64::from(capacities.affinity));
    let sockets = state.sock_rev_nat.keys().filter(Result::is_ok).count() as u64;
    metrics.set_fill(
        SOCK_REV_NAT_MAP,
        sockets,
        u64::from(capacities.sock_rev_nat),
    );
    metrics
        .conntrack_collected
        .fetch_add(removed as u64, Ordering::Relaxed);
    removed
}

/// Collect every `interval`, forever.
pub async fn run(
    state: Arc<Mutex<StateMaps>>,
    capacities: StateCapacities,
    metrics: Arc<DatapathMetrics>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        let state = state.clone();
        let metrics = metrics.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut state = state.lock().map_err(|_| "state maps lock poisoned")?;
            Ok::<usize, &str>(collect(&mut state, capacities, &metrics))
        })
        .await;
        match result {
            Ok(Ok(removed)) => debug!(removed, "conntrack garbage collected"),
            Ok(Err(e)) => warn!(error = e, "conntrack garbage collection skipped"),
            Err(e) => warn!(error = %e, "conntrack garbage collection failed"),
        }
    }
}
