//! The eviction subresource over the in-memory store: budgets decide, the pod goes (or stays).

use serde_json::{Value, json};

use super::{
    DeleteOptions, Registry, RegistryError, Request,
    eviction::{MORE_THAN_ONE_BUDGET, VIOLATES_BUDGET},
    tests::{admin, registry_with, request},
};
use crate::model::{ApiError, meta, user::UserInfo};

/// A pod labelled `app=web` in `phase`, ready or not.
async fn pod(registry: &Registry, user: &UserInfo, name: &str, phase: &str, ready: bool) -> Value {
    let pods = request("pods", "ns", user);
    registry
        .create(
            &pods,
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await
        .expect("pod");
    let status = json!({"phase": phase, "conditions": [
        {"type": "Ready", "status": if ready {"True"} else {"False"}}]});
    set_status(registry, &pods, name, status).await
}

/// Replace the status of `name` (through the status subresource).
async fn set_status(
    registry: &Registry,
    request: &Request<'_>,
    name: &str,
    status: Value,
) -> Value {
    let statuses = Request {
        subresource: "status",
        ..*request
    };
    registry
        .patch(&statuses, name, |current| {
            let mut updated = current.clone();
            updated["status"] = status.clone();
            Ok(updated)
        })
        .await
        .expect("status")
        .object
}

/// A budget over `app=web` with `spec`, whose controller has written `status`.
async fn budget(registry: &Registry, user: &UserInfo, name: &str, spec: Value, status: Value) {
    let budgets = request("poddisruptionbudgets", "ns", user);
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    registry
        .create(
            &budgets,
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": name}, "spec": spec}),
        )
        .await
        .expect("budget");
    set_status(registry, &budgets, name, status).await;
}

fn healthy(allowed: i32) -> Value {
    json!({"currentHealthy": 2, "desiredHealthy": 2 - allowed, "expectedPods": 2,
           "disruptionsAllowed": allowed, "observedGeneration": 1})
}

fn eviction<'a>(user: &'a UserInfo, dry_run: bool) -> Request<'a> {
    Request {
        subresource: "eviction",
        dry_run,
        ..request("pods", "ns", user)
    }
}

async fn exists(registry: &Registry, user: &UserInfo, name: &str) -> bool {
    match registry.get(&request("pods", "ns", user), name).await {
        Ok(pod) => meta::meta_str(&pod, "deletionTimestamp").is_empty(),
        Err(RegistryError::NotFound { .. }) => false,
        Err(e) => panic!("reading pod {name}: {e}"),
    }
}

async fn budget_status(registry: &Registry, user: &UserInfo, name: &str) -> Value {
    registry
        .get(&request("poddisruptionbudgets", "ns", user), name)
        .await
        .expect("budget")["status"]
        .clone()
}

#[tokio::test]
async fn a_budget_without_room_refuses_and_one_with_room_gives_a_disruption() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    pod(&registry, &user, "a", "Running", true).await;
    pod(&registry, &user, "b", "Running", true).await;
    budget(
        &registry,
        &user,
        "web",
        json!({"minAvailable": 2}),
        healthy(0),
    )
    .await;

    let refused = ApiError::from(
        registry
            .evict(&eviction(&user, false), "a", &DeleteOptions::default())
            .await
            .expect_err("the budget has no room"),
    );
    assert_eq!((refused.code, refused.reason), (429, "TooManyRequests"));
    assert_eq!(refused.message, VIOLATES_BUDGET);
    assert_eq!(refused.details.causes[0].reason, "DisruptionBudget");
    assert!(exists(&registry, &user, "a").await, "the pod keeps running");
    assert_eq!(budget_status(&registry, &user, "web").await, healthy(0));

    // The budget is lowered (the controller says one disruption is allowed now).
    let budgets = request("poddisruptionbudgets", "ns", &user);
    set_status(&registry, &budgets, "web", healthy(1)).await;

    // A dry run is allowed and writes nothing.
    registry
        .evict(&eviction(&user, true), "a", &DeleteOptions::default())
        .await
        .expect("dry run allowed");
    assert!(exists(&registry, &user, "a").await);
    assert_eq!(budget_status(&registry, &user, "web").await, healthy(1));

    registry
        .evict(&eviction(&user, false), "a", &DeleteOptions::default())
        .await
        .expect("evicted");
    assert!(!exists(&registry, &user, "a").await, "the pod goes");
    let status = budget_status(&registry, &user, "web").await;
    assert_eq!(status["disruptionsAllowed"], 0);
    assert!(status["disruptedPods"]["a"].is_string(), "{status}");
    assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");

    // The next one finds no room.
    let refused = ApiError::from(
        registry
            .evict(&eviction(&user, false), "b", &DeleteOptions::default())
            .await
            .expect_err("no room left"),
    );
    assert_eq!(refused.code, 429);
    assert!(exists(&registry, &user, "b").await);
}

#[tokio::test]
async fn pods_that_do_not_run_or_are_unready_in_a_healthy_budget_go_without_taking_from_it() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    pod(&registry, &user, "pending", "Pending", false).await;
    pod(&registry, &user, "unready", "Running", false).await;
    budget(
        &registry,
        &user,
        "web",
        json!({"minAvailable": 2}),
        healthy(0),
    )
    .await;
    for name in ["pending", "unready"] {
        registry
            .evict(&eviction(&user, false), name, &DeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{name} evicted: {e}"));
        assert!(!exists(&registry, &user, name).await, "{name} is gone");
    }
    assert_eq!(
        budget_status(&registry, &user, "web").await,
        healthy(0),
        "nothing taken from the budget"
    );
}

#[tokio::test]
async fn a_pod_under_two_budgets_cannot_be_evicted() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    pod(&registry, &user, "a", "Running", true).await;
    budget(
        &registry,
        &user,
        "one",
        json!({"minAvailable": 0}),
        healthy(2),
    )
    .await;
    budget(
        &registry,
        &user,
        "two",
        json!({"maxUnavailable": 1}),
        healthy(1),
    )
    .await;
    let refused = ApiError::from(
        registry
            .evict(&eviction(&user, false), "a", &DeleteOptions::default())
            .await
            .expect_err("two budgets"),
    );
    assert_eq!(refused.code, 500);
    assert_eq!(refused.message, MORE_THAN_ONE_BUDGET);
    assert!(refused.to_status().get("reason").is_none());
    assert!(exists(&registry, &user, "a").await);
}

#[tokio::test]
async fn the_eviction_honours_the_preconditions_of_its_delete_options() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    let stored = pod(&registry, &user, "a", "Running", true).await;
    let other_uid = DeleteOptions {
        uid: Some("not-the-pod".to_owned()),
        ..DeleteOptions::default()
    };
    let conflict = ApiError::from(
        registry
            .evict(&eviction(&user, false), "a", &other_uid)
            .await
            .expect_err("wrong uid"),
    );
    assert_eq!(conflict.code, 409);
    let stale = DeleteOptions {
        resource_version: Some("1".to_owned()),
        ..DeleteOptions::default()
    };
    let conflict = ApiError::from(
        registry
            .evict(&eviction(&user, false), "a", &stale)
            .await
            .expect_err("stale resourceVersion"),
    );
    assert_eq!(conflict.code, 409);
    assert!(exists(&registry, &user, "a").await);
    let exact = DeleteOptions {
        uid: Some(meta::meta_str(&stored, "uid").to_owned()),
        resource_version: Some(meta::resource_version(&stored).to_owned()),
        ..DeleteOptions::default()
    };
    registry
        .evict(&eviction(&user, false), "a", &exact)
        .await
        .expect("evicted");
    assert!(!exists(&registry, &user, "a").await);
}
