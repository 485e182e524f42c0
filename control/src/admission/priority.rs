//! Priority admission, as kube-apiserver's `Priority` plugin: a created pod gets the
//! integer priority and preemption policy of the PriorityClass it names (or of the
//! cluster's `globalDefault` class, or 0), and may not claim a different value itself;
//! at most one PriorityClass is the global default.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin};
use crate::{
    model::ApiError,
    resources,
    store::{Store, WatchCache},
};

/// How long a write waits for the PriorityClass cache right after start.
const CACHE_WAIT: Duration = Duration::from_secs(5);
/// The preemption policy of pods that name no class when no class is the default.
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// The Priority admission plugin.
pub struct Priority {
    store: Arc<Store>,
    classes: Arc<WatchCache>,
}

impl Priority {
    /// The plugin, reading PriorityClasses through their watch cache.
    pub fn new(store: Arc<Store>) -> Self {
        let classes = resources::watch_cache(&store, "scheduling.k8s.io", "v1", "priorityclasses");
        Self { store, classes }
    }

    /// Every PriorityClass, from the cache (waiting for it briefly after start).
    async fn classes(&self) -> Result<Vec<PriorityClass>, ApiError> {
        if !self.classes.synced() {
            let revision = self
                .store
                .current_revision()
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            self.classes
                .wait_for(revision, CACHE_WAIT)
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
        }
        let snapshot = self
            .classes
            .snapshot("")
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        Ok(snapshot
            .objects
            .iter()
            .filter_map(|o| serde_json::from_slice(&o.raw).ok())
            .collect())
    }

    /// Set the pod's priority from its class, or refuse it.
    async fn admit_pod(
        &self,
        attributes: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        let named = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let classes = self.classes().await?;
        let class = match &named {
            Some(name) => Some(
                classes
                    .iter()
                    .find(|c| c.metadata.name.as_deref() == Some(name))
                    .ok_or_else(|| {
                        attributes
                            .forbidden(&format!("no PriorityClass with name {name} was found"))
                    })?,
            ),
            None => global_default(&classes),
        };
        let priority = class.map_or(0, |c| c.value);
        let policy = class
            .and_then(|c| c.preemption_policy.clone())
            .unwrap_or_else(|| DEFAULT_PREEMPTION_POLICY.to_owned());
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(given) = spec.get("priority").and_then(Value::as_i64)
            && given != i64::from(priority)
        {
            return Err(attributes.forbidden(&format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority \
                 admission controller computed {priority} from the given PriorityClass name"
            )));
        }
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
            && given != policy
        {
            return Err(attributes.forbidden(&format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; \
                 priority admission controller computed {policy} from the given PriorityClass name"
            )));
        }
        if named.is_none()
            && let Some(name) = class.and_then(|c| c.metadata.name.clone())
        {
            spec.insert("priorityClassName".to_owned(), json!(name));
        }
        spec.insert("priority".to_owned(), json!(priority));
        spec.insert("preemptionPolicy".to_owned(), json!(policy));
        Ok(())
    }
}

/// The class pods get when they name none: the `globalDefault` one (the lowest value if
/// several are, as kube picks).
fn global_default(classes: &[PriorityClass]) -> Option<&PriorityClass> {
    classes
        .iter()
        .filter(|c| c.global_default == Some(true))
        .min_by_key(|c| c.value)
}

#[async_trait]
impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if attributes.operation == Operation::Create && attributes.is("", "pods") {
            return self.admit_pod(attributes, object).await;
        }
        Ok(())
    }

    /// A second `globalDefault` PriorityClass is refused.
    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let writes = matches!(attributes.operation, Operation::Create | Operation::Update);
        if !writes
            || !attributes.is("scheduling.k8s.io", "priorityclasses")
            || object.get("globalDefault").and_then(Value::as_bool) != Some(true)
        {
            return Ok(());
        }
        let classes = self.classes().await?;
        if let Some(other) = classes
            .iter()
            .filter(|c| c.metadata.name.as_deref() != Some(attributes.name))
            .find(|c| c.global_default == Some(true))
        {
            return Err(attributes.forbidden(&format!(
                "PriorityClass {} is already marked as default. Only one default can exist",
                other.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{model::user::UserInfo, store::object_key};

    async fn store_with(classes: &[Value]) -> Arc<Store> {
        let store = Store::in_memory();
        for class in classes {
            let name = class["metadata"]["name"].as_str().expect("name");
            store
                .create(
                    &object_key("scheduling.k8s.io", "priorityclasses", "", name),
                    class,
                )
                .await
                .expect("create");
        }
        store
    }

    fn class(name: &str, value: i32, default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": default,
               "preemptionPolicy": "PreemptLowerPriority"})
    }

    async fn admit(plugin: &Priority, pod: &mut Value) -> Result<(), ApiError> {
        let user = UserInfo::default();
        let attributes = Attributes {
            operation: Operation::Create,
            resource: resources::find("", "v1", "pods").expect("pods"),
            subresource: "",
            namespace: "default",
            name: "web",
            user: &user,
            dry_run: false,
        };
        plugin.admit(&attributes, pod, None, &mut Vec::new()).await
    }

    #[tokio::test]
    async fn pods_take_their_class_or_the_default() {
        let store = store_with(&[class("high", 1000, false), class("normal", 10, true)]).await;
        let plugin = Priority::new(store);
        let mut named = json!({"spec": {"priorityClassName": "high", "containers": []}});
        admit(&plugin, &mut named).await.expect("admitted");
        assert_eq!(named["spec"]["priority"], 1000);
        assert_eq!(named["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        let mut plain = json!({"spec": {"containers": []}});
        admit(&plugin, &mut plain).await.expect("admitted");
        assert_eq!(plain["spec"]["priority"], 10);
        assert_eq!(plain["spec"]["priorityClassName"], "normal");
    }

    #[tokio::test]
    async fn unknown_classes_and_claimed_priorities_are_refused() {
        let plugin = Priority::new(store_with(&[class("high", 1000, false)]).await);
        let mut missing = json!({"spec": {"priorityClassName": "nope"}});
        let error = admit(&plugin, &mut missing).await.expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("no PriorityClass with name nope was found"),
            "{error}"
        );
        let mut claimed = json!({"spec": {"priorityClassName": "high", "priority": 5}});
        let error = admit(&plugin, &mut claimed).await.expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("must not be provided in pod spec"),
            "{error}"
        );
        let mut none = json!({"spec": {}});
        admit(&plugin, &mut none).await.expect("admitted");
        assert_eq!(none["spec"]["priority"], 0);
        assert!(none["spec"].get("priorityClassName").is_none());
    }
}
