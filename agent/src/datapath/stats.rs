//! The datapath's metrics: programming (sync time, errors, full maps), map fill levels,
//! and the kernel's per-CPU decision counters by hook and reason, all rendered in the
//! Prometheus text format for the agent's /metrics.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use skiff_ebpf_common::events::{HOOK_COUNT, HOOK_NAMES, REASON_COUNT, REASON_NAMES, metric_index};

use super::maps::StateMaps;
use crate::metrics::Histogram;

/// A map's name, entries in use and capacity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fill {
    /// Entries in use.
    pub used: u64,
    /// Capacity.
    pub capacity: u64,
}

/// Counters of the service programming loop and the maps.
#[derive(Default)]
pub struct DatapathMetrics {
    /// Time to apply one batch of Service changes to the maps.
    pub sync_duration: Histogram,
    /// Time from an EndpointSlice change in the API to this node's datapath holding it.
    pub programming_latency: Histogram,
    /// Batches that failed (retried).
    pub sync_errors: AtomicU64,
    /// Services programmed.
    pub services: AtomicU64,
    /// Inserts refused because a map was full, by map.
    pub full: Mutex<BTreeMap<&'static str, u64>>,
    /// Fill level by map.
    pub fill: Mutex<BTreeMap<&'static str, Fill>>,
    /// Conntrack entries removed by garbage collection.
    pub conntrack_collected: AtomicU64,
}

impl DatapathMetrics {
    /// Count a refused insert into `map`.
    pub fn map_full(&self, map: &'static str) {
        if let Ok(mut full) = self.full.lock() {
            *full.entry(map).or_default() += 1;
        }
    }

    /// Record the fill level of `map`.
    pub fn set_fill(&self, map: &'static str, used: u64, capacity: u64) {
        if let Ok(mut fill) = self.fill.lock() {
            fill.insert(map, Fill { used, capacity });
        }
    }

    /// Append every datapath metric; the kernel counters are read from `state` if given.
    pub fn render(&self, out: &mut String, state: Option<&StateMaps>) {
        self.sync_duration.render(
            out,
            "skiff_datapath_sync_duration_seconds",
            "Time to apply one batch of Service and EndpointSlice changes to the eBPF maps.",
        );
        self.programming_latency.render(
            out,
            "skiff_network_programming_duration_seconds",
            "Time from an EndpointSlice change in the API to this node's datapath holding it.",
        );
        counter(
            out,
            "skiff_datapath_sync_errors_total",
            "Batches of Service changes that failed and were retried.",
            self.sync_errors.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP skiff_datapath_services Services programmed.");
        let _ = writeln!(out, "# TYPE skiff_datapath_services gauge");
        let _ = writeln!(
            out,
            "skiff_datapath_services {}",
            self.services.load(Ordering::Relaxed)
        );
        counter(
            out,
            "skiff_datapath_conntrack_collected_total",
            "Expired conntrack entries removed by the agent.",
            self.conntrack_collected.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP skiff_datapath_map_full_total Inserts a full map refused, by map."
        );
        let _ = writeln!(out, "# TYPE skiff_datapath_map_full_total counter");
        if let Ok(full) = self.full.lock() {
            for (map, count) in full.iter() {
                let _ = writeln!(
                    out,
                    "skiff_datapath_map_full_total{{map=\"{map}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP skiff_datapath_map_entries Entries in use per map (capacity in skiff_datapath_map_capacity)."
        );
        let _ = writeln!(out, "# TYPE skiff_datapath_map_entries gauge");
        let fill = self.fill.lock().map(|f| f.clone()).unwrap_or_default();
        for (map, fill) in &fill {
            let _ = writeln!(
                out,
                "skiff_datapath_map_entries{{map=\"{map}\"}} {}",
                fill.used
            );
        }
        let _ = writeln!(out, "# HELP skiff_datapath_map_capacity Capacity per map.");
        let _ = writeln!(out, "# TYPE skiff_datapath_map_capacity gauge");
        for (map, fill) in &fill {
            let _ = writeln!(
                out,
                "skiff_datapath_map_capacity{{map=\"{map}\"}} {}",
                fill.capacity
            );
        }
        if let Some(state) = state {
            render_kernel_counters(out, &kernel_counters(state));
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

/// The kernel's counters summed over CPUs: `[hook][reason]`.
pub fn kernel_counters(state: &StateMaps) -> [[u64; REASON_COUNT]; HOOK_COUNT] {
    let mut totals = [[0u64; REASON_COUNT]; HOOK_COUNT];
    for (hook, row) in totals.iter_mut().enumerate() {
        for (reason, total) in row.iter_mut().enumerate() {
            let index = metric_index(hook as u8, reason as u8);
            if let Ok(values) = state.metrics.get(&index, 0) {
                *total = values.iter().sum();
            }
        }
    }
    totals
}

/// Append the kernel counters as `skiff_datapath_decisions_total{hook,reason}`.
pub fn render_kernel_counters(out: &mut String, totals: &[[u64; REASON_COUNT]; HOOK_COUNT]) {
    let _ = writeln!(
        out,
        "# HELP skiff_datapath_decisions_total Decisions of the eBPF programs, by hook and reason (translations, passes, drops)."
    );
    let _ = writeln!(out, "# TYPE skiff_datapath_decisions_total counter");
    for (hook, row) in totals.iter().enumerate() {
        for (reason, total) in row.iter().enumerate() {
            if *total == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "skiff_datapath_decisions_total{{hook=\"{}\",reason=\"{}\"}} {total}",
                HOOK_NAMES[hook], REASON_NAMES[reason]
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_fill_levels() {
        let metrics = DatapathMetrics::default();
        metrics.map_full("SERVICES");
        metrics.set_fill("SERVICES", 12, 100);
        let mut out = String::new();
        metrics.render(&mut out, None);
        assert!(out.contains("skiff_datapath_map_full_total{map=\"SERVICES\"} 1\n"));
        assert!(out.contains("skiff_datapath_map_entries{map=\"SERVICES\"} 12\n"));
        assert!(out.contains("skiff_datapath_map_capacity{map=\"SERVICES\"} 100\n"));
        let mut totals = [[0u64; REASON_COUNT]; HOOK_COUNT];
        totals[0][0] = 5;
        render_kernel_counters(&mut out, &totals);
        assert!(out.contains(
            "skiff_datapath_decisions_total{hook=\"connect4\",reason=\"translated\"} 5\n"
        ));
        assert!(
            out.lines()
                .all(|l| l.starts_with('#') || l.rsplit_once(' ').is_some())
        );
    }
}
