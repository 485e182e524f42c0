//! limit/continue pagination: pages of one consistent list, even when objects are written
//! between pages (the continuation is served at the first page's revision).

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;
use skiff_tests::Lab;

/// A Secret (a kind no controller adds to a namespace; ConfigMaps have kube-root-ca.crt),
/// stored encrypted, so the pages are decrypted as they are read.
fn configmap(name: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name}})).expect("secret")
}

#[tokio::test]
async fn pages_form_one_consistent_list() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("pages");
    let maps: Api<Secret> = Api::namespaced(lab.client().await, &ns);
    for i in 0..7 {
        maps.create(&PostParams::default(), &configmap(&format!("cm-{i}")))
            .await
            .expect("create");
    }
    let first = maps
        .list(&ListParams::default().limit(3))
        .await
        .expect("first page");
    assert_eq!(first.items.len(), 3);
    let revision = first.metadata.resource_version.clone();
    let mut token = first.metadata.continue_.clone().expect("a continue token");
    assert!(
        first.metadata.remaining_item_count.is_some_and(|r| r == 4),
        "{:?}",
        first.metadata
    );

    // A write between pages must not show up in this list.
    maps.create(&PostParams::default(), &configmap("cm-late"))
        .await
        .expect("create late");

    let mut names: Vec<String> = first
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    loop {
        let page = maps
            .list(&ListParams::default().limit(3).continue_token(&token))
            .await
            .expect("next page");
        assert_eq!(
            page.metadata.resource_version, revision,
            "pages come from one revision"
        );
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        match page.metadata.continue_ {
            Some(next) if !next.is_empty() => token = next,
            _ => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
    assert_eq!(names, expected);

    // A fresh list sees the late object.
    let all = maps.list(&ListParams::default()).await.expect("list");
    assert_eq!(all.items.len(), 8);
}
