//! An in-process webhook for unit tests: a [`Caller`] answering with a function of the
//! hook and the review, recording every call.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};

use super::{CallError, Caller, Hook, Source};
use crate::{
    admission::{Attributes, Operation},
    model::user::UserInfo,
    resources,
    store::{Store, object_key},
};

/// What the fake does for one call.
pub enum Answer {
    /// Answer this AdmissionReview.
    Review(Value),
    /// Fail the call.
    Fail(String),
    /// Never answer (the caller's timeout fires).
    Hang,
}

type Respond = dyn Fn(&Hook, &Value) -> Answer + Send + Sync;

/// The fake webhook server.
pub struct Fake {
    respond: Box<Respond>,
    /// (webhook name, review) of every call, in order.
    pub calls: Mutex<Vec<(String, Value)>>,
}

impl Fake {
    /// A fake answering with `respond`.
    pub fn new(respond: impl Fn(&Hook, &Value) -> Answer + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            respond: Box::new(respond),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// The names of the webhooks called, in order.
    pub fn called(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[async_trait]
impl Caller for Fake {
    async fn call(&self, hook: &Hook, review: &Value) -> Result<Value, CallError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((hook.name.clone(), review.clone()));
        match (self.respond)(hook, review) {
            Answer::Review(answer) => Ok(answer),
            Answer::Fail(why) => Err(CallError::Failed(why)),
            Answer::Hang => std::future::pending().await,
        }
    }
}

/// The answer of a webhook to `review`: allowed or not, with an optional JSON patch,
/// status and warnings.
pub fn answer(
    review: &Value,
    allowed: bool,
    patch: Option<Value>,
    status: Option<Value>,
) -> Answer {
    let mut response = json!({"uid": review["request"]["uid"], "allowed": allowed});
    if let Some(patch) = patch {
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        response["patchType"] = json!("JSONPatch");
    }
    if let Some(status) = status {
        response["status"] = status;
    }
    Answer::Review(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                          "response": response}),
    )
}

/// A store holding `configurations` (each `(plural, object)`) and `namespaces`
/// (`(name, labels)`), and a [`Source`] over it calling `fake`.
pub async fn source(
    configurations: &[(&str, Value)],
    namespaces: &[(&str, Value)],
    fake: Arc<Fake>,
) -> Arc<Source> {
    let store = Store::in_memory();
    for (plural, configuration) in configurations {
        let name = configuration["metadata"]["name"].as_str().unwrap_or("c");
        store
            .create(
                &object_key("admissionregistration.k8s.io", plural, "", name),
                configuration,
            )
            .await
            .expect("configuration");
    }
    for (name, labels) in namespaces {
        store
            .create(
                &object_key("", "namespaces", "", name),
                &json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": name, "labels": labels}}),
            )
            .await
            .expect("namespace");
    }
    Source::new(store, fake)
}

/// A webhook (as in a configuration) on ConfigMap creates and updates.
pub fn hook(name: &str, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": {"url": "https://hook.example.com/x"},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                   "resources": ["configmaps"], "scope": "*"}],
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "timeoutSeconds": 1,
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(hook), Some(extra)) = (hook.as_object_mut(), extra.as_object()) {
        hook.extend(extra.clone());
    }
    hook
}

/// A configuration of `webhooks`.
pub fn configuration(name: &str, webhooks: Vec<Value>) -> Value {
    json!({"metadata": {"name": name}, "webhooks": webhooks})
}

/// The attributes of `operation` on ConfigMap `name` in `namespace`.
pub fn configmap<'a>(
    user: &'a UserInfo,
    operation: Operation,
    namespace: &'a str,
) -> Attributes<'a> {
    Attributes {
        operation,
        resource: resources::find("", "v1", "configmaps").expect("configmaps"),
        subresource: "",
        namespace,
        name: "cm",
        user,
        dry_run: false,
    }
}
