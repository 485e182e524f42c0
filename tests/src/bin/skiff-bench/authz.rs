//! What authorization costs: ConfigMap creates by an ordinary user (authorized by a
//! RoleBinding among 1,000 others in the same namespace) against an API server running
//! `Node,RBAC`, beside the same creates against a second server on the same etcd running
//! `AlwaysAllow`. Rounds alternate A B B A, so drift on the machine falls on both sides;
//! both use the same client identity and the same etcd.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, stream};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace},
    rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use serde_json::{Value, json};
use skiff_tests::bench::{Latency, Row};

/// The benchmark's namespace.
const NAMESPACE: &str = "bench-authz";
/// RoleBindings present besides the benchmark user's.
const OTHER_BINDINGS: usize = 1_000;
/// Creates in flight.
const CONCURRENCY: usize = 8;

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(NAMESPACE.to_owned()),
        ..ObjectMeta::default()
    }
}

fn binding(name: &str, user: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: "configmap-writer".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "User".to_owned(),
            name: user.to_owned(),
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            namespace: None,
        }]),
    }
}

/// The namespace, the role, the user's binding and 1,000 bindings for other users.
async fn prepare(admin: &Client, user: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let roles: Api<Role> = Api::namespaced(admin.clone(), NAMESPACE);
    let role = Role {
        metadata: meta("configmap-writer"),
        rules: Some(vec![PolicyRule {
            verbs: vec!["create".to_owned()],
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_owned()]),
            ..PolicyRule::default()
        }]),
    };
    let _ = roles.create(&PostParams::default(), &role).await;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), NAMESPACE);
    let results: Vec<bool> = stream::iter(0..OTHER_BINDINGS)
        .map(|i| {
            let bindings = bindings.clone();
            async move {
                let b = binding(&format!("other-{i}"), &format!("other-user-{i}"));
                match bindings.create(&PostParams::default(), &b).await {
                    Ok(_) => true,
                    Err(kube::Error::Api(s)) => s.code == 409,
                    Err(_) => false,
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    anyhow::ensure!(
        results.iter().all(|ok| *ok),
        "could not create the 1,000 RoleBindings"
    );
    let _ = bindings
        .create(&PostParams::default(), &binding("bench-user", user))
        .await;
    Ok(())
}

/// `count` ConfigMap creates through `client`, `CONCURRENCY` in flight.
async fn creates(client: &Client, prefix: &str, count: usize) -> (Latency, Duration) {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    let results: Vec<Latency> = stream::iter(0..count)
        .map(|i| {
            let maps = maps.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let mut latency = Latency::new();
                let map = ConfigMap {
                    metadata: meta(&name),
                    ..ConfigMap::default()
                };
                let t = Instant::now();
                match maps.create(&PostParams::default(), &map).await {
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

/// Wait until `client` may create ConfigMaps (the server's RBAC caches hold the binding).
async fn allowed(client: &Client) -> Result<()> {
    for attempt in 0.. {
        let (latency, _) = creates(client, &format!("probe-{attempt}"), 1).await;
        if latency.row("", Duration::ZERO).errors == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            attempt < 100,
            "the benchmark user is never allowed to create"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The benchmark: `rbac` and `open` are the same user's clients of the RBAC server and of
/// the AlwaysAllow server.
pub async fn run(
    admin: &Client,
    user: &str,
    rbac: &Client,
    open: &Client,
    quick: bool,
) -> Result<Value> {
    prepare(admin, user)
        .await
        .context("preparing RoleBindings")?;
    allowed(rbac).await?;
    allowed(open).await?;
    let (rounds, per_round) = if quick { (2, 200) } else { (4, 500) };
    let mut with_rbac = Latency::new();
    let mut without = Latency::new();
    let (mut rbac_time, mut open_time) = (Duration::ZERO, Duration::ZERO);
    // Warm both servers once, unmeasured.
    creates(rbac, "warm-rbac", 100).await;
    creates(open, "warm-open", 100).await;
    for round in 0..rounds {
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for rbac_first in order {
            let (client, target, time) = if rbac_first {
                (rbac, &mut with_rbac, &mut rbac_time)
            } else {
                (open, &mut without, &mut open_time)
            };
            let prefix = format!("r{round}-{}", if rbac_first { "rbac" } else { "open" });
            let (latency, took) = creates(client, &prefix, per_round).await;
            target.merge(&latency);
            *time += took;
        }
    }
    let on: Row = with_rbac.row(
        &format!("create configmap, Node,RBAC ({OTHER_BINDINGS} RoleBindings in the namespace)"),
        rbac_time,
    );
    let off: Row = without.row(
        "create configmap, authorization off (AlwaysAllow)",
        open_time,
    );
    let ratio = if off.p99_ms > 0.0 {
        on.p99_ms / off.p99_ms
    } else {
        0.0
    };
    let ratio_p50 = if off.p50_ms > 0.0 {
        on.p50_ms / off.p50_ms
    } else {
        0.0
    };
    Ok(json!({
        "bindings": OTHER_BINDINGS + 1,
        "rounds": rounds,
        "per_round": per_round,
        "rows": [on, off],
        "p99_ratio": ratio,
        "p50_ratio": ratio_p50,
    }))
}
