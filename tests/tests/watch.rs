//! Watch semantics clients depend on: streaming lists (`sendInitialEvents=true` ending in
//! the `k8s.io/initial-events-end` bookmark), selector transitions, and resuming from a
//! resourceVersion.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use skiff_tests::Lab;

fn configmap(name: &str, tier: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": tier}}}))
        .expect("cm")
}

#[tokio::test]
async fn streaming_list_ends_with_the_initial_events_bookmark() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("streaming");
    let client = lab.client().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for name in ["a", "b"] {
        maps.create(&PostParams::default(), &configmap(name, "front"))
            .await
            .expect("create");
    }
    let path = format!(
        // The test's own maps (every namespace also holds kube-root-ca.crt).
        "/api/v1/namespaces/{ns}/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1&labelSelector=tier%3Dfront"
    );
    let text = client
        .request_text(http::Request::get(path).body(Vec::new()).expect("request"))
        .await
        .expect("watch");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["ADDED", "ADDED", "BOOKMARK"], "{text}");
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
        "{text}"
    );

    // kube-runtime's streaming-list watcher works against it.
    let stream = watcher(
        maps.clone(),
        watcher::Config::default()
            .streaming_lists()
            .labels("tier=front"),
    )
    .default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut initial = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitApply(cm)) => {
                    initial.push(cm.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::InitDone) => return true,
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(done, Ok(true));
    initial.sort();
    assert_eq!(initial, ["a", "b"]);
}

#[tokio::test]
async fn label_selected_watches_see_objects_enter_and_leave() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("transitions");
    let client = lab.client().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let created = maps
        .create(&PostParams::default(), &configmap("moving", "back"))
        .await
        .expect("create");
    let rv = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    // Move the object into the selection and out again; a watch from the create's
    // resourceVersion with tier=front sees ADDED then DELETED.
    for tier in ["front", "back"] {
        let patch = json!({"metadata": {"labels": {"tier": tier}}});
        maps.patch("moving", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch");
    }
    let path = format!(
        "/api/v1/namespaces/{ns}/configmaps?watch=true&labelSelector=tier%3Dfront&resourceVersion={rv}&timeoutSeconds=1"
    );
    let text = client
        .request_text(http::Request::get(path).body(Vec::new()).expect("request"))
        .await
        .expect("watch");
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["ADDED", "DELETED"], "{text}");
}
