//! RuntimeClass admission of pods, as kube-apiserver's RuntimeClass plugin: a pod that
//! names a RuntimeClass is refused when the class does not exist, takes the class's pod
//! overhead, and takes its scheduling constraints (node selector and tolerations).

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use k8s_openapi::api::{core::v1::Pod, node::v1::RuntimeClass};
use serde_json::Value;

use super::{Attributes, Operation, Plugin};
use crate::{
    model::ApiError,
    registry::RegistryError,
    store::{Store, StoreError},
};

/// The RuntimeClass admission plugin.
pub struct RuntimeClassAdmission {
    store: Arc<Store>,
}

impl RuntimeClassAdmission {
    /// The plugin, reading RuntimeClasses from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Plugin for RuntimeClassAdmission {
    fn name(&self) -> &'static str {
        "RuntimeClass"
    }

    /// Apply the pod's RuntimeClass to a created pod, or refuse it.
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
        let Some(class_name) = pod
            .pointer("/spec/runtimeClassName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let name = attributes.name;
        let forbidden = |why: String| attributes.forbidden(&why);
        let key = crate::store::object_key("node.k8s.io", "runtimeclasses", "", &class_name);
        let class: RuntimeClass = match self.store.get(&key).await {
            Ok(object) => serde_json::from_value(object).map_err(|e| {
                ApiError::internal(format!("stored RuntimeClass {class_name}: {e}"))
            })?,
            Err(StoreError::NotFound) => {
                return Err(forbidden(format!(
                    "pod rejected: RuntimeClass \"{class_name}\" not found"
                )));
            }
            Err(e) => return Err(RegistryError::storage(attributes.resource, name, e).into()),
        };
        // A pod the typed form cannot hold is left to validation, which says what is wrong.
        let Ok(mut typed) = serde_json::from_value::<Pod>(pod.clone()) else {
            return Ok(());
        };
        apply(&class, &mut typed).map_err(forbidden)?;
        // Only the fields the class sets are written back: the body keeps everything else
        // as sent, so strict field validation still sees fields the typed form would drop.
        let spec = typed.spec.unwrap_or_default();
        let written = [
            ("overhead", serde_json::to_value(spec.overhead)),
            ("nodeSelector", serde_json::to_value(spec.node_selector)),
            ("tolerations", serde_json::to_value(spec.tolerations)),
        ];
        if let Some(body) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            for (field, value) in written {
                match value.map_err(|e| ApiError::internal(format!("admitted pod {name}: {e}")))? {
                    Value::Null => body.remove(field),
                    value => body.insert(field.to_owned(), value),
                };
            }
        }
        Ok(())
    }
}

/// The class's overhead and scheduling onto `pod`; Err(why the pod is refused).
fn apply(class: &RuntimeClass, pod: &mut Pod) -> Result<(), String> {
    let spec = pod.spec.get_or_insert_with(Default::default);
    let fixed = class.overhead.as_ref().and_then(|o| o.pod_fixed.clone());
    match (spec.overhead.clone(), fixed) {
        (None, Some(fixed)) => spec.overhead = Some(fixed),
        (Some(set), Some(fixed)) if set != fixed => {
            return Err(
                "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
                    .to_owned(),
            );
        }
        (Some(_), None) => {
            return Err(
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                    .to_owned(),
            );
        }
        _ => {}
    }
    let Some(scheduling) = &class.scheduling else {
        return Ok(());
    };
    let selector = spec.node_selector.get_or_insert_with(BTreeMap::new);
    for (key, value) in scheduling.node_selector.iter().flatten() {
        match selector.get(key) {
            Some(set) if set != value => {
                return Err(format!(
                    "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {value}; \
                     pod.spec.nodeSelector[{key}] = {set}"
                ));
            }
            _ => {
                selector.insert(key.clone(), value.clone());
            }
        }
    }
    if selector.is_empty() {
        spec.node_selector = None;
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for toleration in scheduling.tolerations.iter().flatten() {
        if !tolerations.contains(toleration) {
            tolerations.push(toleration.clone());
        }
    }
    if tolerations.is_empty() {
        spec.tolerations = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn class(value: Value) -> RuntimeClass {
        serde_json::from_value(value).expect("a RuntimeClass")
    }

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("a Pod")
    }

    #[test]
    fn a_class_without_overhead_or_scheduling_changes_nothing() {
        let mut p = pod(json!({"containers": [{"name": "c"}], "runtimeClassName": "fast"}));
        let before = p.clone();
        apply(
            &class(json!({"metadata": {"name": "fast"}, "handler": "crun"})),
            &mut p,
        )
        .expect("admitted");
        assert_eq!(p, before);
    }

    #[test]
    fn overhead_is_copied_and_a_different_one_refused() {
        let fast = class(json!({"metadata": {"name": "fast"}, "handler": "crun",
                                "overhead": {"podFixed": {"memory": "10Mi"}}}));
        let mut p = pod(json!({"containers": [{"name": "c"}]}));
        apply(&fast, &mut p).expect("admitted");
        assert_eq!(
            serde_json::to_value(&p).expect("json")["spec"]["overhead"],
            json!({"memory": "10Mi"})
        );
        let mut other = pod(json!({"containers": [{"name": "c"}], "overhead": {"memory": "1Mi"}}));
        let why = apply(&fast, &mut other).expect_err("refused");
        assert!(why.contains("doesn't match"), "{why}");
        let bare = class(json!({"metadata": {"name": "b"}, "handler": "runc"}));
        let why = apply(&bare, &mut other).expect_err("refused");
        assert!(why.contains("without corresponding"), "{why}");
    }

    #[test]
    fn scheduling_merges_selectors_and_tolerations_and_refuses_conflicts() {
        let pinned = class(json!({"metadata": {"name": "pinned"}, "handler": "crun",
            "scheduling": {"nodeSelector": {"runtime": "crun"},
                           "tolerations": [{"key": "crun", "operator": "Exists"}]}}));
        let mut p = pod(
            json!({"containers": [{"name": "c"}], "nodeSelector": {"zone": "a"},
                                "tolerations": [{"key": "crun", "operator": "Exists"}]}),
        );
        apply(&pinned, &mut p).expect("admitted");
        let spec = serde_json::to_value(&p).expect("json")["spec"].clone();
        assert_eq!(
            spec["nodeSelector"],
            json!({"runtime": "crun", "zone": "a"})
        );
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "crun", "operator": "Exists"}])
        );
        let mut conflict = pod(json!({"containers": [{"name": "c"}],
                                       "nodeSelector": {"runtime": "runc"}}));
        let why = apply(&pinned, &mut conflict).expect_err("refused");
        assert_eq!(
            why,
            "conflict: runtimeClass.scheduling.nodeSelector[runtime] = crun; \
             pod.spec.nodeSelector[runtime] = runc"
        );
    }
}
