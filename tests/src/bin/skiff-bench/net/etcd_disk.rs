//! etcd's disk during a measurement: the WAL fsync and backend commit histograms of the
//! lab etcd's /metrics, read before and after, as bucket bounds of their p50 and p99. An
//! API write → datapath sample holds two etcd commits (the Service, then its
//! EndpointSlice), so on a slow disk the commits' tail is that measurement's tail.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use serde_json::{Value, json};

/// Where the lab's etcd serves /metrics (`--listen-metrics-urls` in xtask's `lab/up.rs`).
const METRICS_ADDRESS: &str = "127.0.0.1:2381";

/// The histograms read.
const HISTOGRAMS: [(&str, &str); 2] = [
    ("wal_fsync", "etcd_disk_wal_fsync_duration_seconds"),
    (
        "backend_commit",
        "etcd_disk_backend_commit_duration_seconds",
    ),
];

/// Cumulative bucket counts (upper bound in seconds, count) per histogram name.
#[derive(Debug, Default)]
pub struct Snapshot(BTreeMap<String, Vec<(f64, f64)>>);

/// etcd's histograms now; `None` if /metrics cannot be read (the report then has no etcd
/// figures, and says nothing false).
pub fn snapshot() -> Option<Snapshot> {
    let mut stream = TcpStream::connect(METRICS_ADDRESS).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(parse(&text))
}

/// The buckets of [`HISTOGRAMS`] in Prometheus text.
fn parse(text: &str) -> Snapshot {
    let mut histograms: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        for (_, metric) in HISTOGRAMS {
            let Some(rest) = line.strip_prefix(metric) else {
                continue;
            };
            let Some(rest) = rest.strip_prefix("_bucket{le=\"") else {
                continue;
            };
            let Some((bound, count)) = rest.split_once("\"} ") else {
                continue;
            };
            let bound = if bound == "+Inf" {
                Some(f64::INFINITY)
            } else {
                bound.parse().ok()
            };
            if let (Some(bound), Ok(count)) = (bound, count.trim().parse::<f64>()) {
                histograms
                    .entry(metric.to_owned())
                    .or_default()
                    .push((bound, count));
            }
        }
    }
    Snapshot(histograms)
}

/// Where the `q` quantile of `deltas` (cumulative) falls: `{"at_most": ms}` for the
/// smallest bucket bound holding it, `{"above": ms}` past the last finite bound.
fn quantile_bound(deltas: &[(f64, f64)], q: f64) -> Value {
    let Some(&(_, total)) = deltas.last() else {
        return Value::Null;
    };
    if total <= 0.0 {
        return Value::Null;
    }
    let Some(&(bound, _)) = deltas.iter().find(|(_, count)| *count >= q * total) else {
        return Value::Null;
    };
    if bound.is_finite() {
        json!({"at_most": bound * 1000.0})
    } else {
        let last = deltas
            .iter()
            .map(|(b, _)| *b)
            .filter(|b| b.is_finite())
            .fold(0.0, f64::max);
        json!({"above": last * 1000.0})
    }
}

/// What etcd's disk did between `before` and `after`: per histogram the number of
/// operations and the bucket bounds (ms) their p50 and p99 fall in. Nothing when a count
/// went down (etcd restarted in between).
pub fn between(before: &Snapshot, after: &Snapshot) -> Value {
    let mut out = serde_json::Map::new();
    for (name, metric) in HISTOGRAMS {
        let (Some(old), Some(new)) = (before.0.get(metric), after.0.get(metric)) else {
            continue;
        };
        let deltas: Vec<(f64, f64)> = new
            .iter()
            .map(|(bound, count)| {
                let earlier = old
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map_or(0.0, |(_, c)| *c);
                (*bound, count - earlier)
            })
            .collect();
        if deltas.iter().any(|(_, count)| *count < 0.0) {
            return Value::Null;
        }
        out.insert(
            name.to_owned(),
            json!({
                "operations": deltas.last().map_or(0, |(_, c)| *c as u64),
                "p50_ms": quantile_bound(&deltas, 0.5),
                "p99_ms": quantile_bound(&deltas, 0.99),
            }),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.064\"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 10
etcd_disk_wal_fsync_duration_seconds_sum 0.01
";
    const AFTER: &str = "\
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 60
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 108
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.064\"} 109
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 110
";

    /// 100 fsyncs between the snapshots: 50 within 1 ms, 48 more within 2 ms, one within
    /// 64 ms and one slower, so p50 ≤ 1 ms and p99 ≤ 64 ms.
    #[test]
    fn quantiles_come_from_the_buckets_filled_in_between() {
        let figures = between(&parse(BEFORE), &parse(AFTER));
        let fsync = &figures["wal_fsync"];
        assert_eq!(fsync["operations"], json!(100));
        assert_eq!(fsync["p50_ms"], json!({"at_most": 1.0}));
        assert_eq!(fsync["p99_ms"], json!({"at_most": 64.0}));
        assert!(figures.get("backend_commit").is_none());
    }

    /// A quantile past the last finite bucket says so, and a restart in between (counts
    /// going down) gives no figures at all.
    #[test]
    fn off_the_scale_and_restarts_are_told_apart() {
        let slow = AFTER.replace("} 110", "} 200");
        let figures = between(&parse(BEFORE), &parse(&slow));
        assert_eq!(figures["wal_fsync"]["p99_ms"], json!({"above": 64.0}));
        assert_eq!(between(&parse(AFTER), &parse(BEFORE)), Value::Null);
    }
}
