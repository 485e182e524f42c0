//! Per-CPU counters by (hook, reason), always on; flow events into the `EVENTS` ring buffer
//! only while `monitor` or `trace` asked for them (one config read per decision otherwise).

use aya_ebpf::{
    btf_maps::{PerCpuArray, RingBuf},
    helpers::bpf_ktime_get_ns,
    macros::btf_map,
};
use skiff_ebpf_common::{
    config::Config,
    events::{EVENTS_BYTES, Event, METRICS_ENTRIES, REASON_PASSED, metric_index},
};

/// Counters, indexed by [`metric_index`].
#[btf_map]
static METRICS: PerCpuArray<u64, { METRICS_ENTRIES as usize }> = PerCpuArray::new();

/// Flow events for `skiff-agent bpf monitor` / `trace`.
#[btf_map]
static EVENTS: RingBuf<Event, { EVENTS_BYTES as usize }> = RingBuf::new();

/// Count one decision.
#[inline(always)]
pub fn count(hook: u8, reason: u8) {
    if let Some(counter) = METRICS.get_ptr_mut(metric_index(hook, reason)) {
        // SAFETY: per-CPU slot of this CPU; programs do not migrate while running.
        unsafe { *counter += 1 };
    }
}

/// Count a decision and, if someone is watching, report it. Monitor sees everything but
/// plain passes; trace sees every decision about the flow it follows.
#[inline(always)]
pub fn report(config: &Config, event: &mut Event) {
    count(event.hook, event.reason);
    if config.monitor_until == 0 && config.trace_until == 0 {
        return;
    }
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let monitored = now < config.monitor_until && event.reason != REASON_PASSED;
    let traced = now < config.trace_until
        && (config.trace.matches(
            event.saddr,
            event.daddr,
            event.sport,
            event.dport,
            event.proto,
        ) || config.trace.matches(
            event.new_saddr,
            event.new_daddr,
            event.new_sport,
            event.new_dport,
            event.proto,
        ));
    if monitored || traced {
        event.timestamp = now;
        let _ = EVENTS.output(*event, 0);
    }
}
