//! What custom resources cost beside built-in kinds, in one run: creates of ConfigMaps,
//! of a custom resource whose CRD has no schema checks (`x-kubernetes-preserve-unknown-fields`)
//! and of one with a typical operator schema (types, formats, enums, patterns, bounds,
//! defaults, a CEL rule), in rounds that rotate which goes first; then lists of 10,000
//! ConfigMaps and 10,000 validated custom resources, alternated. The schema's cost per
//! object is the validated create's p50 minus the unvalidated one's.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, stream};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
};
use serde_json::{Value, json};
use skiff_tests::bench::{Latency, Row};

const NAMESPACE: &str = "bench-custom";
const GROUP: &str = "bench.skiff.dev";
/// Creates in flight.
const CONCURRENCY: usize = 8;

/// The CRDs: `widgets` (validated) and `blobs` (no checks).
fn definitions() -> [Value; 2] {
    let schema = json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "required": ["size", "color"],
        "x-kubernetes-validations": [{"rule": "self.replicas <= self.size * 10",
                                      "message": "too many replicas for the size"}],
        "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 1000},
            "replicas": {"type": "integer", "default": 1, "minimum": 0},
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
            "owner": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$", "maxLength": 63},
            "contact": {"type": "string", "format": "email"},
            "schedule": {"type": "string", "default": "*/5 * * * *"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "required": ["name", "port"], "properties": {
                          "name": {"type": "string"},
                          "port": {"type": "integer", "minimum": 1, "maximum": 65535}}}}}}}});
    let definition = |plural: &str, kind: &str, schema: Value| {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{GROUP}")},
            "spec": {"group": GROUP, "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": schema}}]}})
    };
    [
        definition("widgets", "Widget", schema),
        definition(
            "blobs",
            "Blob",
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        ),
    ]
}

/// The object of each kind, all carrying the same spec/data.
fn object(kind: &str, name: &str) -> Value {
    let spec = json!({"size": 5, "color": "green", "owner": "team-a",
        "contact": "team-a@example.com", "labels": {"tier": "web"},
        "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]});
    match kind {
        "ConfigMap" => json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {"spec": spec.to_string()}}),
        kind => json!({"apiVersion": format!("{GROUP}/v1"), "kind": kind,
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}),
    }
}

fn api(client: &Client, kind: &str) -> Api<DynamicObject> {
    let resource = match kind {
        "ConfigMap" => ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap")),
        "Widget" => ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GROUP, "v1", "Widget"),
            "widgets",
        ),
        _ => {
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", "Blob"), "blobs")
        }
    };
    Api::namespaced_with(client.clone(), NAMESPACE, &resource)
}

/// `count` creates of `kind`, `CONCURRENCY` in flight.
async fn creates(client: &Client, kind: &str, prefix: &str, count: usize) -> (Latency, Duration) {
    let objects = api(client, kind);
    let started = Instant::now();
    let results: Vec<Latency> = stream::iter(0..count)
        .map(|i| {
            let objects = objects.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let mut latency = Latency::new();
                let Ok(object) = serde_json::from_value::<DynamicObject>(object(kind, &name))
                else {
                    latency.error();
                    return latency;
                };
                let t = Instant::now();
                match objects.create(&PostParams::default(), &object).await {
                    Ok(_) => latency.record(t.elapsed()),
                    Err(_) => latency.error(),
                }
                latency
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut all = Latency::new();
    for latency in &results {
        all.merge(latency);
    }
    (all, started.elapsed())
}

async fn prepare(client: &Client) -> Result<()> {
    let namespaces: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Namespace")),
    );
    let namespace = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE}}))?;
    let _ = namespaces.create(&PostParams::default(), &namespace).await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    for definition in definitions() {
        let definition = serde_json::from_value(definition)?;
        match crds.create(&PostParams::default(), &definition).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Served once established: probe until a create goes through.
    for kind in ["Widget", "Blob"] {
        for attempt in 0.. {
            let (latency, _) = creates(client, kind, &format!("probe-{attempt}"), 1).await;
            if latency.row("", Duration::ZERO).errors == 0 {
                break;
            }
            anyhow::ensure!(attempt < 100, "{kind}s are never served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The benchmark.
pub async fn run(client: &Client, quick: bool) -> Result<Value> {
    prepare(client).await.context("creating the CRDs")?;
    let kinds = ["ConfigMap", "Blob", "Widget"];
    let (rounds, per_round, listed) = if quick {
        (3, 100, 1_000)
    } else {
        (6, 400, 10_000)
    };
    let mut latencies = [Latency::new(), Latency::new(), Latency::new()];
    let mut times = [Duration::ZERO; 3];
    for (kind, _) in kinds.iter().zip(0..) {
        creates(client, kind, "warm", 100).await;
    }
    for round in 0..rounds {
        for offset in 0..kinds.len() {
            let k = (round + offset) % kinds.len();
            let (latency, took) = creates(client, kinds[k], &format!("r{round}"), per_round).await;
            latencies[k].merge(&latency);
            times[k] += took;
        }
    }
    let create_rows: Vec<Row> = kinds
        .iter()
        .zip(latencies.iter().zip(times))
        .map(|(kind, (latency, took))| {
            let label = match *kind {
                "ConfigMap" => "create ConfigMap".to_owned(),
                "Blob" => "create custom resource, no schema checks".to_owned(),
                _ => "create custom resource, validated schema (CEL rule, defaults, list map)"
                    .to_owned(),
            };
            latency.row(&label, took)
        })
        .collect();

    // Fill both kinds to `listed` objects, then list each (unpaginated) in turns.
    let existing = 100 + rounds * per_round + 1;
    for kind in ["ConfigMap", "Widget"] {
        if listed > existing {
            creates(client, kind, "fill", listed - existing).await;
        }
    }
    let mut lists = [Latency::new(), Latency::new()];
    let mut list_times = [Duration::ZERO; 2];
    let mut counts = [0usize; 2];
    for turn in 0..(if quick { 4 } else { 10 }) {
        for offset in 0..2 {
            let k = (turn + offset) % 2;
            let kind = ["ConfigMap", "Widget"][k];
            let t = Instant::now();
            match api(client, kind).list(&ListParams::default()).await {
                Ok(list) => {
                    lists[k].record(t.elapsed());
                    counts[k] = list.items.len();
                }
                Err(_) => lists[k].error(),
            }
            list_times[k] += t.elapsed();
        }
    }
    let list_rows: Vec<Row> = ["ConfigMaps", "custom resources (validated kind)"]
        .iter()
        .zip(lists.iter().zip(list_times).zip(counts))
        .map(|(what, ((latency, took), count))| latency.row(&format!("list {count} {what}"), took))
        .collect();
    let ratio = |a: &Row, b: &Row| {
        if b.p99_ms > 0.0 {
            a.p99_ms / b.p99_ms
        } else {
            0.0
        }
    };
    let create_ratio = ratio(&create_rows[2], &create_rows[0]);
    let list_ratio = ratio(&list_rows[1], &list_rows[0]);
    let schema_cost_ms = create_rows[2].p50_ms - create_rows[1].p50_ms;
    let mut rows = create_rows;
    rows.extend(list_rows);
    Ok(json!({
        "rounds": rounds,
        "per_round": per_round,
        "listed": listed,
        "rows": rows,
        "create_p99_ratio": create_ratio,
        "list_p99_ratio": list_ratio,
        "schema_cost_p50_ms": schema_cost_ms,
    }))
}
