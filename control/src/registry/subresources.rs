//! Subresources with object shapes of their own: `scale` (autoscaling/v1 Scale over
//! `.spec.replicas`, or a custom resource's scale paths) and `pods/binding`.

use serde_json::{Value, json};

use super::{Intent, Registry, RegistryError, Request, Written};
use crate::{
    admission::Operation,
    model::{ApiError, meta, validation::FieldError},
    resources::{ResourceInfo, ScalePaths},
};

/// Where a resource keeps what its Scale shows: its CRD's scale paths, or the built-in
/// workloads' `.spec.replicas`, `.status.replicas` and `.spec.selector`.
fn paths(resource: &ResourceInfo) -> (ScalePaths, bool) {
    match resource.strategy.scale_paths() {
        Some(paths) => (paths, true),
        None => (
            ScalePaths {
                spec_replicas: ".spec.replicas".to_owned(),
                status_replicas: ".status.replicas".to_owned(),
                label_selector: None,
            },
            false,
        ),
    }
}

/// `.spec.replicas` as a JSON pointer (`/spec/replicas`).
fn pointer(path: &str) -> String {
    path.replace('.', "/")
}

/// The Scale view of a workload or a scalable custom resource.
pub fn scale_of(resource: &ResourceInfo, object: &Value) -> Value {
    const KEEP: [&str; 5] = [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ];
    let metadata: serde_json::Map<String, Value> = object
        .get("metadata")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| KEEP.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (paths, custom) = paths(resource);
    // Built-in workloads default to one replica; a custom resource reads 0 when unset.
    let spec_replicas = object
        .pointer(&pointer(&paths.spec_replicas))
        .and_then(Value::as_i64)
        .unwrap_or(if custom { 0 } else { 1 });
    let status_replicas = object
        .pointer(&pointer(&paths.status_replicas))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = match (&paths.label_selector, custom) {
        (Some(path), _) => object
            .pointer(&pointer(path))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        (None, true) => String::new(),
        (None, false) => object
            .pointer("/spec/selector")
            .map(crate::model::selector::render)
            .unwrap_or_default(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": spec_replicas},
        "status": {"replicas": status_replicas, "selector": selector},
    })
}

/// The object `current` with the replicas of `scale`, carrying the Scale's
/// resourceVersion precondition.
fn scaled(
    resource: &ResourceInfo,
    name: &str,
    current: &Value,
    scale: &Value,
) -> Result<Value, ApiError> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::unprocessable("Scale.spec.replicas: Required value"))?;
    let why = if replicas < 0 {
        Some("must be greater than or equal to 0")
    } else if replicas > i64::from(i32::MAX) {
        Some("must be less than or equal to 2147483647")
    } else {
        None
    };
    if let Some(why) = why {
        let error = FieldError::invalid("spec.replicas", replicas, why);
        return Err(ApiError::invalid("autoscaling", "Scale", name, &[error]));
    }
    let mut updated = current.clone();
    let (paths, _) = paths(resource);
    let mut at = &mut updated;
    let fields: Vec<&str> = paths
        .spec_replicas
        .split('.')
        .filter(|f| !f.is_empty())
        .collect();
    for (i, field) in fields.iter().enumerate() {
        let Some(object) = at.as_object_mut() else {
            return Err(ApiError::unprocessable(format!(
                "{} is not an object",
                fields[..i].join(".")
            )));
        };
        if i + 1 == fields.len() {
            object.insert((*field).to_owned(), json!(replicas));
            break;
        }
        at = object.entry(*field).or_insert_with(|| json!({}));
    }
    let precondition = meta::resource_version(scale);
    if !precondition.is_empty() {
        meta::set_meta(&mut updated, "resourceVersion", json!(precondition));
    }
    Ok(updated)
}

impl Registry {
    /// Write a Scale onto the workload: `change` turns the current Scale into the new one.
    /// Returns the workload's Scale after the write.
    pub async fn scale(
        &self,
        request: &Request<'_>,
        name: &str,
        change: impl Fn(&Value) -> Result<Value, ApiError> + Send + Sync,
    ) -> Result<Value, RegistryError> {
        let written = self
            .guaranteed_update(request, name, |current| {
                let scale = change(&scale_of(request.resource, current))?;
                Ok(Intent::Update(scaled(
                    request.resource,
                    name,
                    current,
                    &scale,
                )?))
            })
            .await?;
        Ok(scale_of(request.resource, &written.object))
    }

    /// `pods/{name}/binding`: assign the pod to `node` (once).
    pub async fn bind(
        &self,
        request: &Request<'_>,
        name: &str,
        binding: &Value,
    ) -> Result<Written, RegistryError> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "",
                    "Binding",
                    name,
                    &[FieldError::required("target.name", "")],
                )
            })?
            .to_owned();
        let attributes = request.admission(Operation::Create, name);
        let mut warnings = Vec::new();
        self.admission
            .validate(&attributes, binding, None, &mut warnings)
            .await?;
        let resource = request.resource;
        self.guaranteed_update(request, name, |pod| {
            let conflict = |message: String| RegistryError::Precondition {
                resource,
                name: name.to_owned(),
                message,
            };
            let assigned = meta::field_value(pod, "spec.nodeName");
            if !assigned.is_empty() {
                return Err(conflict(format!(
                    "pod {name} is already assigned to node {assigned:?}"
                )));
            }
            if !meta::meta_str(pod, "deletionTimestamp").is_empty() {
                return Err(conflict(
                    "pod is being deleted, cannot be assigned to a host".to_owned(),
                ));
            }
            let mut pod = pod.clone();
            pod["spec"]["nodeName"] = json!(node);
            let mut conditions: Vec<Value> = pod["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conditions.push(
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                                   "lastTransitionTime": super::metadata::now()}),
            );
            pod["status"]["conditions"] = Value::Array(conditions);
            Ok(Intent::Write(pod))
        })
        .await
    }
}
