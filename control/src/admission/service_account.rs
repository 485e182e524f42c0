//! ServiceAccount admission, as kube-apiserver's plugin: a pod runs as a ServiceAccount of
//! its namespace (`default` unless it names one), which must exist, and — unless the pod
//! or the account sets `automountServiceAccountToken: false` — gets the projected
//! `kube-api-access-<suffix>` volume (a bound token refreshed by its node, the cluster CA,
//! the namespace) mounted at `/var/run/secrets/kubernetes.io/serviceaccount` in every
//! container, as in-cluster clients expect.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin};
use crate::{
    model::{ApiError, meta},
    registry::metadata::name_suffix,
    resources,
    store::{Store, StoreError, WatchCache, object_key},
};

/// Where in-cluster clients look for their credentials.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Prefix of the token volume's name.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// Lifetime the projected token asks for (kube's 3607 s: an hour and a marker).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// How long a pod waits for its namespace's `default` ServiceAccount when it is not
/// there yet (a namespace created a moment ago: the ServiceAccount controller is about to
/// create it).
const DEFAULT_ACCOUNT_WAIT: Duration = Duration::from_secs(2);

/// The ServiceAccount admission plugin.
pub struct ServiceAccountAdmission {
    store: Arc<Store>,
    /// The serviceaccounts watch cache: most pods find their account here without a read
    /// from etcd.
    accounts: Arc<WatchCache>,
}

impl ServiceAccountAdmission {
    /// The plugin, reading ServiceAccounts from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        let accounts = resources::watch_cache(&store, "", "v1", "serviceaccounts");
        Self { store, accounts }
    }

    /// The ServiceAccount `name` of `namespace`, waiting briefly for `default`.
    async fn account(&self, attributes: &Attributes<'_>, name: &str) -> Result<Value, ApiError> {
        let key = object_key("", "serviceaccounts", attributes.namespace, name);
        if let Some(cached) = self.accounts.get(&key)
            && let Ok(account) = serde_json::from_slice(&cached.raw)
        {
            return Ok(account);
        }
        let deadline = tokio::time::Instant::now() + DEFAULT_ACCOUNT_WAIT;
        loop {
            match self.store.get(&key).await {
                Ok(account) => return Ok(account),
                Err(StoreError::NotFound)
                    if name == "default" && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(StoreError::NotFound) => {
                    return Err(attributes.forbidden(&format!(
                        "error looking up service account {}/{name}: serviceaccount \"{name}\" not found",
                        attributes.namespace
                    )));
                }
                Err(e) => return Err(ApiError::unavailable(e.to_string())),
            }
        }
    }
}

/// The projected volume kube mounts for in-cluster clients.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    })
}

/// Mount `volume` at [`MOUNT_PATH`] in every container of `list` that has nothing there.
fn mount_everywhere(spec: &mut serde_json::Map<String, Value>, list: &str, volume: &str) {
    let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
        return;
    };
    for container in containers {
        let mounts = container
            .as_object_mut()
            .map(|c| c.entry("volumeMounts").or_insert_with(|| json!([])));
        let Some(Value::Array(mounts)) = mounts else {
            continue;
        };
        if mounts
            .iter()
            .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH))
        {
            continue;
        }
        mounts.push(json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH}));
    }
}

#[async_trait]
impl Plugin for ServiceAccountAdmission {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        pod: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if attributes.operation != Operation::Create || !attributes.is("", "pods") {
            return Ok(());
        }
        // Mirror pods (static pods of a node) run as no ServiceAccount and may reference no
        // secrets (kube's plugin refuses both, whoever asks).
        if meta::string_map(pod, "annotations").contains_key("kubernetes.io/config.mirror") {
            let typed: Option<k8s_openapi::api::core::v1::Pod> =
                serde_json::from_value(pod.clone()).ok();
            let account = typed
                .as_ref()
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.service_account_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if account {
                return Err(attributes.forbidden("a mirror pod may not reference service accounts"));
            }
            let secrets = typed
                .as_ref()
                .map(|p| !crate::authz::node::References::of(p).secrets.is_empty())
                .unwrap_or(false);
            if secrets {
                return Err(attributes.forbidden("a mirror pod may not reference secrets"));
            }
            return Ok(());
        }
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let name = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .or_else(|| spec.get("serviceAccount").and_then(Value::as_str))
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_owned();
        spec.insert("serviceAccountName".to_owned(), json!(name));
        let account = self.account(attributes, &name).await?;
        let automount = spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
            .or_else(|| {
                account
                    .get("automountServiceAccountToken")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(true);
        if !automount {
            return Ok(());
        }
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        let Some(volumes) = volumes.as_array_mut() else {
            return Ok(());
        };
        let volume = format!("{VOLUME_PREFIX}{}", name_suffix());
        volumes.push(token_volume(&volume));
        for list in ["initContainers", "containers"] {
            mount_everywhere(spec, list, &volume);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::user::UserInfo;

    async fn admitted(store: &Arc<Store>, pod: Value) -> Result<Value, ApiError> {
        let user = UserInfo::authenticated("u", vec![]);
        let attributes = Attributes {
            operation: Operation::Create,
            resource: crate::resources::find("", "v1", "pods").expect("pods"),
            subresource: "",
            namespace: "ns",
            name: "p",
            user: &user,
            dry_run: false,
        };
        let mut pod = pod;
        ServiceAccountAdmission::new(Arc::clone(store))
            .admit(&attributes, &mut pod, None, &mut Vec::new())
            .await
            .map(|()| pod)
    }

    #[tokio::test(start_paused = true)]
    async fn pods_get_the_token_volume_in_every_container() {
        let store = Store::in_memory();
        store
            .create(
                &object_key("", "serviceaccounts", "ns", "default"),
                &json!({"metadata": {"name": "default", "namespace": "ns"}}),
            )
            .await
            .expect("account");
        let pod = admitted(
            &store,
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b",
                "volumeMounts": [{"name": "x", "mountPath": "/data"}]}]}}),
        )
        .await
        .expect("admitted");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        let volume = pod["spec"]["volumes"][0]["name"].as_str().expect("volume");
        assert!(volume.starts_with(VOLUME_PREFIX));
        for container in pod["spec"]["containers"].as_array().expect("containers") {
            let mounts = container["volumeMounts"].as_array().expect("mounts");
            assert!(
                mounts
                    .iter()
                    .any(|m| m["name"] == volume && m["mountPath"] == MOUNT_PATH)
            );
        }
        let opted_out = admitted(
            &store,
            json!({"spec": {"automountServiceAccountToken": false, "containers": [{"name": "a"}]}}),
        )
        .await
        .expect("admitted");
        assert!(opted_out["spec"].get("volumes").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_account_is_refused() {
        let store = Store::in_memory();
        let refused = admitted(
            &store,
            json!({"spec": {"serviceAccountName": "app", "containers": [{"name": "a"}]}}),
        )
        .await
        .expect_err("no such account");
        assert_eq!(refused.code, 403);
        assert!(
            refused.message.contains(
                "error looking up service account ns/app: serviceaccount \"app\" not found"
            ),
            "{}",
            refused.message
        );
    }
}
