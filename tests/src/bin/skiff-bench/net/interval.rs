//! How far a path's ratio to its floor would move on another run of the same rounds: a
//! paired bootstrap over the rounds. A path and its floor ran in the same rounds, one
//! right after the other, so round `i` of both is one pair; a resample draws as many pairs
//! as were measured, with replacement, pools each side's drawn rounds as [`super::pool`]
//! does, and takes the ratio. The 2.5th and 97.5th percentiles of the resampled ratios are
//! the interval. A ratio whose interval holds 1.0 cannot be told from the floor by this
//! run; the A/A row (the floor measured a second time as a path of its own) shows the same
//! for the floor against itself.

use serde_json::{Value, json};

/// Resamples per interval: enough for stable 2.5/97.5 percentiles, a fraction of a second
/// per row in a release build.
const RESAMPLES: usize = 2_000;

/// A fixed seed: the same report renders the same interval on every run of the bench.
const SEED: u64 = 0x5eed_5c1f;

/// The latency quantiles whose ratios get an interval (the targets' p50 and p99).
const P50: f64 = 0.5;
const P99: f64 = 0.99;

/// One round of one path: request counts over a value axis shared with the rounds it is
/// compared with, its requests and its seconds. Dense counts over the few hundred values
/// the rounds hold, not [`super::pool`]'s HDR histogram: a resample sums them in
/// microseconds, where a fresh histogram of skiff-load's range per resample would cost
/// tens of thousands of buckets.
struct Round {
    counts: Vec<u64>,
    requests: f64,
    seconds: f64,
}

/// The value axis of a set of runs: every latency (ns) any round's histogram holds, sorted.
fn axis(runs: &[&Value]) -> Vec<u64> {
    let mut values: Vec<u64> = runs
        .iter()
        .flat_map(|run| histogram(run).map(|(value, _)| value))
        .collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// skiff-load's `histogram_ns` (`[nanoseconds, count]` pairs) of `run`.
fn histogram(run: &Value) -> impl Iterator<Item = (u64, u64)> + '_ {
    run["histogram_ns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| Some((pair[0].as_u64()?, pair[1].as_u64()?)))
}

fn round(run: &Value, axis: &[u64]) -> Round {
    let mut counts = vec![0; axis.len()];
    for (value, count) in histogram(run) {
        if let Ok(at) = axis.binary_search(&value) {
            counts[at] += count;
        }
    }
    Round {
        counts,
        requests: run["requests"].as_f64().unwrap_or(0.0),
        seconds: run["seconds"].as_f64().unwrap_or(0.0),
    }
}

/// The `q` quantile of pooled counts: the first value whose cumulative count reaches
/// `q` of the total.
fn quantile(counts: &[u64], axis: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (count, value) in counts.iter().zip(axis) {
        seen += count;
        if seen >= rank {
            return Some(*value as f64);
        }
    }
    axis.last().map(|v| *v as f64)
}

/// The figures of one pooled resample: p50, p99 (ns) and requests per second.
fn pooled_figures(rounds: &[Round], drawn: &[usize], axis: &[u64]) -> Option<[f64; 3]> {
    let mut counts = vec![0u64; axis.len()];
    let (mut requests, mut seconds) = (0.0, 0.0);
    for &i in drawn {
        let round = &rounds[i];
        for (sum, count) in counts.iter_mut().zip(&round.counts) {
            *sum += count;
        }
        requests += round.requests;
        seconds += round.seconds;
    }
    if seconds <= 0.0 {
        return None;
    }
    Some([
        quantile(&counts, axis, P50)?,
        quantile(&counts, axis, P99)?,
        requests / seconds,
    ])
}

/// The 95 % interval of `path`'s p50, p99 and rate ratios to `floor`'s, round `i` of one
/// paired with round `i` of the other; `None` when the rounds do not pair up (different
/// counts) or fewer than two were measured.
pub fn floor_ratio_interval(path: &[Value], floor: &[Value]) -> Option<Value> {
    if path.len() != floor.len() || path.len() < 2 {
        return None;
    }
    let all: Vec<&Value> = path.iter().chain(floor).collect();
    let axis = axis(&all);
    let path: Vec<Round> = path.iter().map(|run| round(run, &axis)).collect();
    let floor: Vec<Round> = floor.iter().map(|run| round(run, &axis)).collect();
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut ratios: [Vec<f64>; 3] = Default::default();
    let mut drawn = vec![0; path.len()];
    for _ in 0..RESAMPLES {
        for slot in drawn.iter_mut() {
            *slot = rng.usize(..path.len());
        }
        let (Some(p), Some(f)) = (
            pooled_figures(&path, &drawn, &axis),
            pooled_figures(&floor, &drawn, &axis),
        ) else {
            continue;
        };
        for (k, list) in ratios.iter_mut().enumerate() {
            let ratio = p[k] / f[k];
            if ratio.is_finite() {
                list.push(ratio);
            }
        }
    }
    let bounds = |list: &mut Vec<f64>| -> Value {
        list.sort_by(f64::total_cmp);
        if list.is_empty() {
            return Value::Null;
        }
        let at =
            |q: f64| list[((q * (list.len() - 1) as f64).round() as usize).min(list.len() - 1)];
        json!([at(0.025), at(0.975)])
    };
    let [p50, p99, rate] = &mut ratios;
    Some(json!({
        "p50_us": bounds(p50),
        "p99_us": bounds(p99),
        "per_second": bounds(rate),
        "resamples": RESAMPLES,
        "pairs": path.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[(u64, u64)]) -> Value {
        let requests: u64 = values.iter().map(|(_, n)| n).sum();
        json!({
            "requests": requests, "seconds": 1.0,
            "histogram_ns": values.iter().map(|(v, n)| json!([v, n])).collect::<Vec<_>>(),
        })
    }

    /// A path twice as slow as its floor in every round has a ratio of exactly 2 in every
    /// resample.
    #[test]
    fn a_constant_ratio_has_a_point_interval() {
        let path: Vec<Value> = (0..8).map(|_| run(&[(200, 99), (2000, 1)])).collect();
        let floor: Vec<Value> = (0..8).map(|_| run(&[(100, 99), (1000, 1)])).collect();
        let interval = floor_ratio_interval(&path, &floor).expect("paired rounds");
        assert_eq!(interval["p50_us"], json!([2.0, 2.0]));
        assert_eq!(interval["per_second"], json!([1.0, 1.0]));
    }

    /// Rounds that differ make an interval that holds the pooled ratio and has width.
    #[test]
    fn rounds_that_differ_make_an_interval_around_the_ratio() {
        let path: Vec<Value> = (0..16)
            .map(|i| run(&[(100, 95), (300 + 40 * i, 5)]))
            .collect();
        let floor: Vec<Value> = (0..16).map(|_| run(&[(100, 95), (500, 5)])).collect();
        let interval = floor_ratio_interval(&path, &floor).expect("paired rounds");
        let low = interval["p99_us"][0].as_f64().expect("low");
        let high = interval["p99_us"][1].as_f64().expect("high");
        // Pooled: rank 1584 of 1600 is the 64th of the 80 slow requests, 780 against 500.
        assert!(low < 780.0 / 500.0 && 780.0 / 500.0 < high, "{interval}");
    }

    #[test]
    fn unpaired_rounds_have_no_interval() {
        let one = vec![run(&[(100, 1)]); 3];
        let two = vec![run(&[(100, 1)]); 2];
        assert!(floor_ratio_interval(&one, &two).is_none());
        assert!(floor_ratio_interval(&one[..1], &two[..1]).is_none());
    }
}
