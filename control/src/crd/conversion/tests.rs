//! Conversion through the registry, over the in-memory store: the None strategy, and the
//! ConversionReview exchange with an in-process fake webhook.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::*;
use crate::{
    admission::{
        Chain,
        webhook::fake::{Answer, Fake},
    },
    crd::serve::resources_of,
    model::user::UserInfo,
    registry::{FieldValidation, Registry, Request},
    resources::{Names, ResourceInfo, VERBS},
    store::{Store, object_key},
};

/// Widgets: v1beta1 (spec.size) and v1 (spec.sizeInches, the storage version), both
/// served, converted under `conversion`.
fn widgets(conversion: Value) -> CustomResourceDefinition {
    let schema = |field: &str| {
        json!({"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {field: {"type": "integer"}}}}}})
    };
    serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                           "listKind": "WidgetList"},
                 "conversion": conversion,
                 "versions": [
                     {"name": "v1beta1", "served": true, "storage": false,
                      "deprecated": true, "schema": schema("size")},
                     {"name": "v1", "served": true, "storage": true,
                      "schema": schema("sizeInches")}]},
        "status": {"conditions": [{"type": "Established", "status": "True"}]}
    }))
    .expect("a CRD")
}

/// The served versions of `crd`, as the catalog would describe them.
fn served(crd: &CustomResourceDefinition) -> Vec<&'static ResourceInfo> {
    resources_of(crd)
        .into_iter()
        .map(|r| {
            let strategy: &'static Arc<dyn crate::resources::Strategy> =
                Box::leak(Box::new(r.strategy));
            let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
            let info: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
                group: leak(&r.group),
                version: leak(&r.version),
                kind: leak(&r.kind),
                plural: leak(&r.plural),
                singular: leak(&r.singular),
                namespaced: r.namespaced,
                verbs: VERBS,
                short_names: &[],
                categories: &[],
                subresources: &[],
                field_selectors: &[],
                names: Names::Subdomain,
                strategy: strategy.as_ref(),
            }));
            info
        })
        .collect()
}

fn version<'a>(infos: &[&'a ResourceInfo], name: &str) -> &'a ResourceInfo {
    infos
        .iter()
        .find(|i| i.version == name)
        .copied()
        .expect("served version")
}

fn request<'a>(resource: &'static ResourceInfo, user: &'a UserInfo) -> Request<'a> {
    Request {
        resource,
        namespace: "ns",
        subresource: "",
        user,
        dry_run: false,
        field_validation: FieldValidation::Strict,
    }
}

fn admin() -> UserInfo {
    UserInfo::authenticated("admin", vec!["system:masters".to_owned()])
}

fn stored_key() -> String {
    object_key("example.com", "widgets", "ns", "w")
}

#[test]
fn versions_are_served_in_kube_order_with_one_conversion() {
    let crd = widgets(json!({"strategy": "None"}));
    let infos = served(&crd);
    let versions: Vec<&str> = infos.iter().map(|i| i.version).collect();
    assert_eq!(versions, ["v1", "v1beta1"], "v1 is preferred");
    let conversion = infos[0].strategy.conversion().expect("conversion");
    assert_eq!(conversion.storage, "v1");
    assert!(conversion.webhook.is_none());
    assert_eq!(
        version(&infos, "v1beta1")
            .strategy
            .deprecation_warning()
            .as_deref(),
        Some("example.com/v1beta1 Widget is deprecated; use example.com/v1 Widget")
    );
    assert_eq!(version(&infos, "v1").strategy.deprecation_warning(), None);
}

#[tokio::test]
async fn none_rewrites_the_api_version_on_write_and_read() {
    let infos = served(&widgets(json!({"strategy": "None"})));
    let (v1, v1beta1) = (version(&infos, "v1"), version(&infos, "v1beta1"));
    let store = Store::in_memory();
    let registry = Registry::new(Arc::clone(&store), Chain::default());
    let user = admin();
    let written = registry
        .create(
            &request(v1beta1, &user),
            json!({"apiVersion": "example.com/v1beta1", "kind": "Widget",
                   "metadata": {"name": "w"}, "spec": {"size": 3}}),
        )
        .await
        .expect("created through v1beta1");
    assert_eq!(written.object["apiVersion"], "example.com/v1beta1");
    let stored = store.get(&stored_key()).await.expect("stored");
    assert_eq!(
        stored["apiVersion"], "example.com/v1",
        "stored as the storage version"
    );
    let as_v1 = registry.get(&request(v1, &user), "w").await.expect("v1");
    assert_eq!(as_v1["apiVersion"], "example.com/v1");
    assert_eq!(
        as_v1["spec"],
        json!({"size": 3}),
        "None changes nothing else"
    );
    let as_beta = registry
        .get(&request(v1beta1, &user), "w")
        .await
        .expect("v1beta1");
    assert_eq!(as_beta["apiVersion"], "example.com/v1beta1");

    // An update through v1beta1 is validated as v1beta1 and stored as v1.
    registry
        .patch(&request(v1beta1, &user), "w", |current| {
            let mut next = current.clone();
            next["spec"]["size"] = json!(4);
            Ok(next)
        })
        .await
        .expect("patched");
    let stored = store.get(&stored_key()).await.expect("stored");
    assert_eq!(stored["apiVersion"], "example.com/v1");
    assert_eq!(stored["spec"]["size"], 4);

    // Objects left in an older storage version are converted when read, alone or listed.
    let mut old = stored.clone();
    old["apiVersion"] = json!("example.com/v1alpha1");
    let revision: i64 = stored["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("revision");
    store
        .update(&stored_key(), &old, revision)
        .await
        .expect("rewritten");
    let read = registry.get(&request(v1, &user), "w").await.expect("read");
    assert_eq!(read["apiVersion"], "example.com/v1");
    let listed = registry
        .converter()
        .raw_to_served(
            v1beta1,
            vec![
                bytes::Bytes::from(old.to_string()),
                bytes::Bytes::from(stored.to_string()),
            ],
        )
        .await
        .expect("listed");
    for item in listed {
        let item: Value = serde_json::from_slice(&item).expect("json");
        assert_eq!(item["apiVersion"], "example.com/v1beta1");
    }
}

/// A conversion webhook renaming spec.size (v1beta1) ↔ spec.sizeInches (v1).
fn renaming_webhook() -> Arc<Fake> {
    Fake::new(|_, review| {
        let desired = review["request"]["desiredAPIVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (from, to) = if desired.ends_with("/v1") {
            ("size", "sizeInches")
        } else {
            ("sizeInches", "size")
        };
        let converted: Vec<Value> = review["request"]["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let mut o = o.clone();
                o["apiVersion"] = json!(desired);
                if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut)
                    && let Some(value) = spec.remove(from)
                {
                    spec.insert(to.to_owned(), value);
                }
                o
            })
            .collect();
        Answer::Review(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": review["request"]["uid"], "result": {"status": "Success"},
                         "convertedObjects": converted}}),
        )
    })
}

fn webhook_conversion() -> Value {
    json!({"strategy": "Webhook", "webhook": {
        "clientConfig": {"url": "https://convert.example.com/convert"},
        "conversionReviewVersions": ["v1"]}})
}

#[tokio::test]
async fn webhook_conversion_goes_through_a_conversion_review() {
    let infos = served(&widgets(webhook_conversion()));
    let (v1, v1beta1) = (version(&infos, "v1"), version(&infos, "v1beta1"));
    let store = Store::in_memory();
    let fake = renaming_webhook();
    let registry = Registry::new(Arc::clone(&store), Chain::default())
        .with_converter(Converter::with_caller(Arc::clone(&store), fake.clone()));
    let user = admin();
    let written = registry
        .create(
            &request(v1beta1, &user),
            json!({"apiVersion": "example.com/v1beta1", "kind": "Widget",
                   "metadata": {"name": "w"}, "spec": {"size": 3}}),
        )
        .await
        .expect("created through v1beta1");
    assert_eq!(written.object["spec"], json!({"size": 3}));
    let stored = store.get(&stored_key()).await.expect("stored");
    assert_eq!(stored["apiVersion"], "example.com/v1");
    assert_eq!(
        stored["spec"],
        json!({"sizeInches": 3}),
        "converted by the webhook"
    );
    {
        let calls = fake.calls.lock().expect("calls");
        assert_eq!(calls.len(), 1);
        let (name, review) = &calls[0];
        assert_eq!(name, "conversion_webhook_for_widgets.example.com");
        assert_eq!(review["kind"], "ConversionReview");
        assert_eq!(review["request"]["desiredAPIVersion"], "example.com/v1");
        assert_eq!(review["request"]["objects"][0]["spec"]["size"], 3);
    }
    let as_beta = registry
        .get(&request(v1beta1, &user), "w")
        .await
        .expect("v1beta1");
    assert_eq!(as_beta["spec"], json!({"size": 3}));
    assert_eq!(as_beta["apiVersion"], "example.com/v1beta1");
    // Reading the storage version calls nobody.
    let as_v1 = registry.get(&request(v1, &user), "w").await.expect("v1");
    assert_eq!(as_v1["spec"], json!({"sizeInches": 3}));
    assert_eq!(fake.called().len(), 2);
}

#[tokio::test]
async fn webhook_failures_are_kubes_500s() {
    let crd = widgets(webhook_conversion());
    let infos = served(&crd);
    let conversion = version(&infos, "v1")
        .strategy
        .conversion()
        .expect("conversion");
    let object = json!({"apiVersion": "example.com/v1beta1", "kind": "Widget",
                        "metadata": {"name": "w", "namespace": "ns"}, "spec": {"size": 1}});
    let store = Store::in_memory();
    let failing = Fake::new(|_, _| {
        Answer::Fail(
            "Post \"https://convert.example.com/convert?timeout=30s\": connection refused"
                .to_owned(),
        )
    });
    let converter = Converter::with_caller(Arc::clone(&store), failing);
    let error = converter
        .convert(&conversion, vec![object.clone()], "v1")
        .await
        .expect_err("refused");
    let status = ApiError::from(error);
    assert_eq!(status.code, 500);
    assert_eq!(
        status.message,
        "Internal error occurred: conversion webhook for example.com/v1beta1, Kind=Widget failed: \
         Post \"https://convert.example.com/convert?timeout=30s\": connection refused"
    );

    let refusing = Fake::new(|_, review| {
        Answer::Review(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": review["request"]["uid"],
                         "result": {"status": "Failure", "message": "size must be even"}}}),
        )
    });
    let error = Converter::with_caller(Arc::clone(&store), refusing)
        .convert(&conversion, vec![object.clone()], "v1")
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "conversion webhook for example.com/v1beta1, Kind=Widget failed: size must be even"
    );

    let losing = Fake::new(|_, review| {
        Answer::Review(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": review["request"]["uid"], "result": {"status": "Success"},
                         "convertedObjects": []}}),
        )
    });
    let error = Converter::with_caller(Arc::clone(&store), losing)
        .convert(&conversion, vec![object.clone()], "v1")
        .await
        .expect_err("lost");
    assert!(
        matches!(
            error,
            ConversionError::Count {
                got: 0,
                expected: 1,
                ..
            }
        ),
        "{error}"
    );

    // Objects already in the desired version are not sent at all.
    let silent = Fake::new(|_, _| Answer::Fail("must not be called".to_owned()));
    let mut current = object.clone();
    current["apiVersion"] = json!("example.com/v1");
    let same = Converter::with_caller(Arc::clone(&store), silent.clone())
        .convert(&conversion, vec![current.clone()], "v1")
        .await
        .expect("nothing to convert");
    assert_eq!(same, vec![current]);
    assert!(silent.called().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_silent_webhook_times_out() {
    let infos = served(&widgets(webhook_conversion()));
    let conversion = infos[0].strategy.conversion().expect("conversion");
    let store = Store::in_memory();
    let converter = Converter::with_caller(store, Fake::new(|_, _| Answer::Hang));
    let error = converter
        .convert(
            &conversion,
            vec![json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})],
            "v1beta1",
        )
        .await
        .expect_err("timed out");
    assert_eq!(
        error.to_string(),
        "conversion webhook for example.com/v1, Kind=Widget failed: \
         Post \"https://convert.example.com/convert?timeout=30s\": context deadline exceeded"
    );
}
