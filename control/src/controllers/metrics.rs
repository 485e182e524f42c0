//! Controller metrics on skiff-control's /metrics: syncs, failures and sync latency per
//! controller, and queue gauges (pods waiting for the scheduler), in the Prometheus names
//! kube-controller-manager uses where one exists.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    future::Future,
    sync::{LazyLock, Mutex},
    time::Instant,
};

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    syncs: u64,
    errors: u64,
    seconds: f64,
}

static SYNCS: LazyLock<Mutex<BTreeMap<&'static str, Stats>>> = LazyLock::new(Mutex::default);
static GAUGES: LazyLock<Mutex<BTreeMap<&'static str, i64>>> = LazyLock::new(Mutex::default);

/// Run one sync of `controller`, recording its outcome and duration.
pub async fn instrumented<T, E>(
    controller: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = work.await;
    if let Ok(mut syncs) = SYNCS.lock() {
        let stats = syncs.entry(controller).or_default();
        stats.syncs += 1;
        stats.errors += u64::from(result.is_err());
        stats.seconds += started.elapsed().as_secs_f64();
    }
    result
}

/// Set a queue gauge (e.g. `scheduler_pending_pods`).
pub fn set_gauge(name: &'static str, value: i64) {
    if let Ok(mut gauges) = GAUGES.lock() {
        gauges.insert(name, value);
    }
}

/// Append the controller metrics to a Prometheus text exposition.
pub fn render(out: &mut String) {
    let syncs = SYNCS.lock().map(|s| s.clone()).unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP controller_syncs_total Syncs (reconciles) per controller."
    );
    let _ = writeln!(out, "# TYPE controller_syncs_total counter");
    for (name, s) in &syncs {
        let _ = writeln!(
            out,
            "controller_syncs_total{{controller=\"{name}\"}} {}",
            s.syncs
        );
    }
    let _ = writeln!(
        out,
        "# HELP controller_sync_errors_total Failed syncs per controller."
    );
    let _ = writeln!(out, "# TYPE controller_sync_errors_total counter");
    for (name, s) in &syncs {
        let _ = writeln!(
            out,
            "controller_sync_errors_total{{controller=\"{name}\"}} {}",
            s.errors
        );
    }
    let _ = writeln!(
        out,
        "# HELP controller_sync_duration_seconds Time spent in syncs."
    );
    let _ = writeln!(out, "# TYPE controller_sync_duration_seconds summary");
    for (name, s) in &syncs {
        let _ = writeln!(
            out,
            "controller_sync_duration_seconds_sum{{controller=\"{name}\"}} {:.6}",
            s.seconds
        );
        let _ = writeln!(
            out,
            "controller_sync_duration_seconds_count{{controller=\"{name}\"}} {}",
            s.syncs
        );
    }
    let gauges = GAUGES.lock().map(|g| g.clone()).unwrap_or_default();
    for (name, value) in gauges {
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    }
}
