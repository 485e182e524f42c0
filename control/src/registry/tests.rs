//! The write path without etcd: the registry over the in-memory store, with the default
//! admission chain.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::*;
use crate::{
    admission::{Attributes, Plugin},
    model::{ApiError, meta, user::UserInfo},
    resources,
    store::Store,
};

pub(super) fn admin() -> UserInfo {
    UserInfo::authenticated("admin", vec!["system:masters".into()])
}

pub(super) fn request<'a>(plural: &str, namespace: &'a str, user: &'a UserInfo) -> Request<'a> {
    let (group, version) = match plural {
        "deployments" => ("apps", "v1"),
        "poddisruptionbudgets" => ("policy", "v1"),
        _ => ("", "v1"),
    };
    Request {
        resource: resources::find(group, version, plural).expect("served"),
        namespace,
        subresource: "",
        user,
        dry_run: false,
        field_validation: FieldValidation::Warn,
    }
}

pub(super) async fn registry_with(plugins: Vec<Arc<dyn Plugin>>) -> Registry {
    let store = Store::in_memory();
    let mut all =
        crate::admission::default_chain(&store, None, &crate::admission::Settings::default())
            .plugins()
            .to_vec();
    all.extend(plugins);
    let registry = Registry::new(Arc::clone(&store), crate::admission::Chain::new(all));
    let user = admin();
    registry
        .create(
            &request("namespaces", "", &user),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}),
        )
        .await
        .expect("namespace");
    registry
        .create(
            &request("serviceaccounts", "ns", &user),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        )
        .await
        .expect("default service account");
    registry
}

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": "0"}})
}

#[tokio::test]
async fn create_get_and_the_errors_kube_gives() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    let cms = request("configmaps", "ns", &user);
    let written = registry
        .create(&cms, config_map("a"))
        .await
        .expect("created");
    assert_eq!(meta::namespace(&written.object), "ns");
    assert!(!meta::meta_str(&written.object, "uid").is_empty());
    let stored = registry.get(&cms, "a").await.expect("stored");
    assert_eq!(
        meta::resource_version(&stored),
        meta::resource_version(&written.object)
    );
    let again = ApiError::from(registry.create(&cms, config_map("a")).await.unwrap_err());
    assert_eq!((again.code, again.reason), (409, "AlreadyExists"));
    let elsewhere = request("configmaps", "missing", &user);
    let missing = ApiError::from(
        registry
            .create(&elsewhere, config_map("a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(missing.code, 404);
    assert_eq!(missing.message, "namespaces \"missing\" not found");
    let invalid = ApiError::from(
        registry
            .create(&cms, config_map("Not_A_Name"))
            .await
            .unwrap_err(),
    );
    assert_eq!(invalid.code, 422);
    assert_eq!(invalid.details.causes[0].field, "metadata.name");
    let gone = ApiError::from(registry.get(&cms, "nope").await.unwrap_err());
    assert_eq!(gone.message, "configmaps \"nope\" not found");
}

#[tokio::test]
async fn updates_with_a_stale_resource_version_conflict() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    let cms = request("configmaps", "ns", &user);
    let first = registry.create(&cms, config_map("a")).await.expect("a");
    let mut changed = first.object.clone();
    changed["data"]["n"] = json!("1");
    registry
        .update(&cms, "a", changed.clone())
        .await
        .expect("fresh update");
    // The same resourceVersion again is stale now.
    let stale = ApiError::from(registry.update(&cms, "a", changed).await.unwrap_err());
    assert_eq!((stale.code, stale.reason), (409, "Conflict"));
    assert!(stale.message.contains("the object has been modified"));
}

#[tokio::test]
async fn concurrent_patches_lose_no_update() {
    let registry = Arc::new(registry_with(Vec::new()).await);
    let user = admin();
    registry
        .create(&request("configmaps", "ns", &user), config_map("counter"))
        .await
        .expect("counter");
    let writers: Vec<_> = (0..20)
        .map(|_| {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let user = admin();
                registry
                    .patch(&request("configmaps", "ns", &user), "counter", |current| {
                        let n: u32 = current["data"]["n"]
                            .as_str()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        let mut next = current.clone();
                        next["data"]["n"] = json!((n + 1).to_string());
                        Ok(next)
                    })
                    .await
                    .map(drop)
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("joined").expect("patched");
    }
    let counter = registry
        .get(&request("configmaps", "ns", &user), "counter")
        .await
        .expect("counter");
    assert_eq!(counter["data"]["n"], "20");
}

#[tokio::test]
async fn pods_on_a_node_are_deleted_gracefully() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    let pods = request("pods", "ns", &user);
    registry
        .create(
            &pods,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await
        .expect("pod");
    let binding = json!({"target": {"name": "node-1"}});
    registry
        .bind(
            &Request {
                subresource: "binding",
                ..pods
            },
            "p",
            &binding,
        )
        .await
        .expect("bound");
    let rebind = ApiError::from(
        registry
            .bind(
                &Request {
                    subresource: "binding",
                    ..pods
                },
                "p",
                &binding,
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(rebind.code, 409);
    let marked = registry
        .delete(&pods, "p", &DeleteOptions::default())
        .await
        .expect("marked");
    assert_eq!(marked.object["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(registry.get(&pods, "p").await.is_ok(), "still there");
    let now = DeleteOptions {
        grace: Some(0),
        ..DeleteOptions::default()
    };
    registry.delete(&pods, "p", &now).await.expect("deleted");
    assert!(matches!(
        registry.get(&pods, "p").await,
        Err(RegistryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn system_namespaces_cannot_be_deleted() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    let namespaces = request("namespaces", "", &user);
    registry
        .create(
            &namespaces,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
        )
        .await
        .expect("kube-system");
    let refused = ApiError::from(
        registry
            .delete(&namespaces, "kube-system", &DeleteOptions::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.code, 403);
    assert_eq!(
        refused.message,
        "namespaces \"kube-system\" is forbidden: this namespace may not be deleted"
    );
}

/// Records the phases it sees and refuses objects labelled `refuse`.
#[derive(Default)]
struct Recorder {
    phases: Mutex<Vec<String>>,
    calls: AtomicUsize,
}

#[async_trait]
impl Plugin for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.phases
            .lock()
            .expect("lock")
            .push(format!("admit {}", attributes.operation.as_str()));
        meta::set_meta(object, "annotations", json!({"admitted": "yes"}));
        Ok(())
    }

    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        _old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        self.phases
            .lock()
            .expect("lock")
            .push(format!("validate {}", attributes.operation.as_str()));
        warnings.push("looked at it".into());
        if meta::string_map(object, "labels").contains_key("refuse") {
            return Err(attributes.forbidden("refused by the recorder"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn every_write_passes_the_admission_chain_in_order() {
    let recorder = Arc::new(Recorder::default());
    let registry = registry_with(vec![recorder.clone() as Arc<dyn Plugin>]).await;
    let user = admin();
    let cms = request("configmaps", "ns", &user);
    let written = registry.create(&cms, config_map("a")).await.expect("a");
    assert_eq!(written.object["metadata"]["annotations"]["admitted"], "yes");
    assert_eq!(written.warnings, ["looked at it"]);
    let mut refused = config_map("b");
    refused["metadata"]["labels"] = json!({"refuse": "1"});
    let error = ApiError::from(registry.create(&cms, refused).await.unwrap_err());
    assert_eq!(error.code, 403);
    assert_eq!(
        error.message,
        "configmaps \"b\" is forbidden: refused by the recorder"
    );
    assert!(registry.get(&cms, "b").await.is_err(), "nothing written");
    registry
        .delete(&cms, "a", &DeleteOptions::default())
        .await
        .expect("deleted");
    let phases = recorder.phases.lock().expect("lock").clone();
    assert_eq!(
        phases,
        [
            // The namespace, its ServiceAccount, configmap a, configmap b (refused), the
            // deletion of a.
            "admit CREATE",
            "validate CREATE",
            "admit CREATE",
            "validate CREATE",
            "admit CREATE",
            "validate CREATE",
            "admit CREATE",
            "validate CREATE",
            "admit DELETE",
            "validate DELETE"
        ]
    );
}

#[tokio::test]
async fn dry_runs_write_nothing() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    let dry = Request {
        dry_run: true,
        ..request("configmaps", "ns", &user)
    };
    registry.create(&dry, config_map("a")).await.expect("dry");
    assert!(
        registry
            .get(&request("configmaps", "ns", &user), "a")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_apply_to_a_missing_objects_status_creates_nothing() {
    let registry = registry_with(Vec::new()).await;
    let user = admin();
    let status = Request {
        subresource: "status",
        ..request("pods", "ns", &user)
    };
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evil", "namespace": "ns"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}});
    let refused = registry
        .apply(&status, "evil", &config, "x", false)
        .await
        .expect_err("no object to apply status to");
    assert_eq!(ApiError::from(refused).code, 404);
    assert!(
        registry
            .get(&request("pods", "ns", &user), "evil")
            .await
            .is_err()
    );
}
