//! The watch cache fed by the in-memory store: lists, live events, relists after a broken
//! watch, progress for consistent reads — without etcd, in paused time.

use std::{sync::Arc, time::Duration};

use serde_json::json;

use super::*;
use crate::store::{MemoryStorage, Store, object_key};

const NONE: Projection = Projection { fields: &[] };

async fn put(store: &Store, name: &str) -> i64 {
    store
        .create(
            &object_key("", "configmaps", "ns", name),
            &json!({"metadata": {"name": name, "namespace": "ns"}}),
        )
        .await
        .expect("created")
}

#[tokio::test(start_paused = true)]
async fn lists_then_follows_and_relists_after_a_broken_watch() {
    let memory = Arc::new(MemoryStorage::new());
    let store = Store::on(memory.clone());
    put(&store, "a").await;
    let last = put(&store, "b").await;
    let cache = store.cache("/registry/core/configmaps/", NONE);
    cache
        .wait_for(last, Duration::from_secs(5))
        .await
        .expect("synced");
    let (mut subscription, snapshot) = cache.subscribe(None, "ns/").expect("subscribed");
    assert_eq!(snapshot.expect("snapshot").objects.len(), 2);

    let c = put(&store, "c").await;
    let event = subscription.live.recv().await.expect("live event");
    assert_eq!(
        (event.kind, event.object.name.as_str()),
        (EventType::Added, "c")
    );
    assert_eq!(event.revision, c);

    // A broken watch: what changes meanwhile comes out of the relist as events.
    memory.break_watches();
    let revision = store
        .get(&object_key("", "configmaps", "ns", "a"))
        .await
        .expect("a")["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse::<i64>().ok())
        .expect("revision");
    store
        .delete(&object_key("", "configmaps", "ns", "a"), revision)
        .await
        .expect("deleted");
    let event = subscription.live.recv().await.expect("relisted event");
    assert_eq!(
        (event.kind, event.object.name.as_str()),
        (EventType::Deleted, "a")
    );
    assert_eq!(cache.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_consistent_read_waits_for_progress_not_for_writes() {
    let store = Store::in_memory();
    put(&store, "a").await;
    let cache = store.cache("/registry/core/configmaps/", NONE);
    // Writes elsewhere move the store's revision; the cache learns of it by progress.
    store
        .create(
            "/registry/core/secrets/ns/s",
            &json!({"metadata": {"name": "s"}}),
        )
        .await
        .expect("secret");
    let current = store.current_revision().await.expect("revision");
    cache
        .wait_for(current, Duration::from_secs(5))
        .await
        .expect("caught up through a progress notification");
    assert!(cache.revision() >= current);
}

#[tokio::test(start_paused = true)]
async fn resuming_from_a_revision_replays_the_backlog() {
    let store = Store::in_memory();
    let first = put(&store, "a").await;
    let cache = store.cache("/registry/core/configmaps/", NONE);
    cache
        .wait_for(first, Duration::from_secs(5))
        .await
        .expect("synced");
    let second = put(&store, "b").await;
    cache
        .wait_for(second, Duration::from_secs(5))
        .await
        .expect("b seen");
    let (subscription, snapshot) = cache.subscribe(Some(first), "").expect("resumed");
    assert!(snapshot.is_none());
    let names: Vec<&str> = subscription
        .backlog
        .iter()
        .map(|e| e.object.name.as_str())
        .collect();
    assert_eq!(names, ["b"]);
}
