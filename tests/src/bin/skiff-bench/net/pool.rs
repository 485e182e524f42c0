//! Rounds of one path and mode pooled into one report row: every request of every round
//! in one distribution, rates over the rounds' total time, per-request costs as medians.

use serde_json::{Value, json};

/// One row for several runs of a path and mode. Latency percentiles and the rate are the
/// pooled runs' (every request of every round in one histogram; requests over seconds),
/// which is what a client of that path sees over the whole time; CPU and eBPF time per
/// request are medians of the rounds; `per_round` keeps each round's p50, p99 and rate.
pub fn pool(runs: &[Value]) -> Value {
    // Fields without a median of their own (the eBPF breakdown) come from the run whose
    // eBPF total is the median one.
    let mut by_ebpf: Vec<&Value> = runs.iter().collect();
    by_ebpf.sort_by(|a, b| {
        let ns = |r: &Value| r["ebpf_ns_per_request"].as_f64().unwrap_or(0.0);
        ns(a).total_cmp(&ns(b))
    });
    let mut row = by_ebpf
        .get(by_ebpf.len() / 2)
        .map_or(Value::Null, |r| (*r).clone());
    for field in [
        "bits_per_second",
        "cpu_us_per_request",
        "ebpf_ns_per_request",
    ] {
        let mut values: Vec<f64> = runs.iter().filter_map(|r| r[field].as_f64()).collect();
        values.sort_by(f64::total_cmp);
        if let Some(median) = values.get(values.len() / 2) {
            row[field] = json!(median);
        }
    }
    let sum = |field: &str| -> f64 { runs.iter().filter_map(|r| r[field].as_f64()).sum() };
    let (requests, seconds) = (sum("requests"), sum("seconds"));
    row["requests"] = json!(requests as u64);
    row["errors"] = json!(sum("errors") as u64);
    row["seconds"] = json!(seconds);
    row["per_second"] = json!(if seconds > 0.0 {
        requests / seconds
    } else {
        0.0
    });
    let pooled = pooled_histogram(runs);
    for (field, q) in [
        ("p50_us", 0.5),
        ("p90_us", 0.9),
        ("p99_us", 0.99),
        ("p999_us", 0.999),
    ] {
        row[field] = json!(
            pooled
                .as_ref()
                .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
        );
    }
    if let Some(map) = row.as_object_mut() {
        map.remove("histogram_ns");
    }
    row["rounds"] = json!(runs.len());
    row["pooled"] = json!(true);
    row["per_round"] = runs
        .iter()
        .map(|r| json!({"p50_us": r["p50_us"], "p99_us": r["p99_us"], "per_second": r["per_second"]}))
        .collect();
    row
}

/// Every run's `histogram_ns` (skiff-load's `[nanoseconds, count]` pairs) in one
/// histogram of skiff-load's bounds; `None` when no run recorded anything.
fn pooled_histogram(runs: &[Value]) -> Option<hdrhistogram::Histogram<u64>> {
    const MAX_NS: u64 = 60_000_000_000;
    let mut pooled = hdrhistogram::Histogram::<u64>::new_with_bounds(1, MAX_NS, 3).ok()?;
    for run in runs {
        for pair in run["histogram_ns"].as_array().into_iter().flatten() {
            if let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
                let _ = pooled.record_n(value.clamp(1, MAX_NS), count);
            }
        }
    }
    (!pooled.is_empty()).then_some(pooled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[(u64, u64)], seconds: f64, cpu: f64) -> Value {
        let requests: u64 = values.iter().map(|(_, n)| n).sum();
        json!({
            "path": "p", "mode": "tcp_rr", "requests": requests, "errors": 0, "seconds": seconds,
            "p50_us": 0, "p99_us": 0, "per_second": requests as f64 / seconds,
            "cpu_us_per_request": cpu, "ebpf_ns_per_request": cpu,
            "histogram_ns": values.iter().map(|(v, n)| json!([v * 1000, n])).collect::<Vec<_>>(),
        })
    }

    /// Pooled percentiles are those of every request of every round together, not the
    /// median of the rounds': a slow round moves the pooled p99 by its share of requests.
    #[test]
    fn rounds_pool_into_one_distribution() {
        let fast = run(&[(50, 990), (100, 10)], 1.0, 10.0);
        let slow = run(&[(60, 900), (1000, 100)], 1.0, 30.0);
        let row = pool(&[fast.clone(), fast, slow]);
        assert_eq!(row["requests"], json!(3000));
        assert_eq!(row["per_second"], json!(1000.0));
        // Quantiles are the buckets' highest equivalent values, as skiff-load reports them.
        let bucket = |us: u64| {
            let h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                .expect("bounds");
            json!(h.highest_equivalent(us * 1000) as f64 / 1000.0)
        };
        assert_eq!(row["p50_us"], bucket(50));
        // 100 of 3000 requests (3.3 %) took 1000 µs: the 99th percentile is one of them.
        assert_eq!(row["p99_us"], bucket(1000));
        assert_eq!(row["p90_us"], bucket(60));
        assert_eq!(row["cpu_us_per_request"], json!(10.0));
        assert_eq!(row["pooled"], json!(true));
        assert!(row.get("histogram_ns").is_none());
        assert_eq!(row["per_round"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn runs_without_histograms_pool_to_nothing() {
        assert!(pooled_histogram(&[json!({"requests": 0})]).is_none());
    }
}
