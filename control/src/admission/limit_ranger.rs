//! LimitRanger admission, as kube-apiserver's plugin: the LimitRanges of a namespace give a
//! created pod's containers their default requests and limits (`defaultRequest`, `default`;
//! recorded in the `kubernetes.io/limit-ranger` annotation) and bound what containers, pods
//! and PersistentVolumeClaims may ask (`min`, `max`, `maxLimitRequestRatio`); a pod or
//! claim outside the bounds is refused with 403 and kube's words (`maximum cpu usage per
//! Container is 1, but limit is 2`).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use skiff_quantity::Quantity;

use super::{Attributes, Operation, Plugin};
use crate::{
    model::{
        ApiError,
        quota::{ResourceList, container_resources, parse_list, pod_requests_and_limits},
    },
    resources,
    store::{Store, WatchCache},
};

/// How long a write waits for a cache right after start.
const CACHE_WAIT: Duration = Duration::from_secs(5);
/// The annotation naming what the plugin defaulted.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The objects of `namespace` in `cache` (waiting for it briefly after start).
pub(super) async fn cached(
    store: &Store,
    cache: &WatchCache,
    namespace: &str,
) -> Result<Vec<Value>, ApiError> {
    if !cache.synced() {
        let revision = store
            .current_revision()
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        cache
            .wait_for(revision, CACHE_WAIT)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
    }
    let snapshot = cache
        .snapshot(&format!("{namespace}/"))
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(snapshot
        .objects
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.raw).ok())
        .collect())
}

/// The items of `range` of `kind` (`Container`, `Pod`, `PersistentVolumeClaim`).
fn items<'a>(range: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |item| item.get("type").and_then(Value::as_str) == Some(kind))
}

/// The default requests and limits a range's Container items give.
fn container_defaults(range: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let (mut requests, mut limits) = (Map::new(), Map::new());
    for item in items(range, "Container") {
        for (key, into) in [("defaultRequest", &mut requests), ("default", &mut limits)] {
            if let Some(list) = item.get(key).and_then(Value::as_object) {
                into.extend(list.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    (requests, limits)
}

/// Give `pod`'s containers the defaults of `ranges`, one range after the other; returns
/// what was set, as kube words it in the annotation.
pub fn default_pod(pod: &mut Value, ranges: &[Value]) -> Vec<String> {
    let mut notes = Vec::new();
    for range in ranges {
        let (default_requests, default_limits) = container_defaults(range);
        if default_requests.is_empty() && default_limits.is_empty() {
            continue;
        }
        for (key, prefix) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            let Some(containers) = pod
                .pointer_mut(&format!("/spec/{key}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for container in containers.iter_mut() {
                notes.extend(default_container(
                    container,
                    prefix,
                    &default_requests,
                    &default_limits,
                ));
            }
        }
    }
    notes
}

/// Merge defaults into one container (kube's mergeContainerResources). Requests the client
/// left out but limited are the limits first, as pod defaulting makes them.
fn default_container(
    container: &mut Value,
    prefix: &str,
    default_requests: &Map<String, Value>,
    default_limits: &Map<String, Value>,
) -> Vec<String> {
    let name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(fields) = container.as_object_mut() else {
        return Vec::new();
    };
    let resources = fields.entry("resources").or_insert_with(|| json!({}));
    if !resources.is_object() {
        *resources = json!({});
    }
    let Some(resources) = resources.as_object_mut() else {
        return Vec::new();
    };
    let given_limits = resources
        .get("limits")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut set = |key: &str, defaults: &Map<String, Value>, extra: &Map<String, Value>| {
        let list = resources.entry(key).or_insert_with(|| json!({}));
        if !list.is_object() {
            *list = json!({});
        }
        let mut names = Vec::new();
        if let Some(list) = list.as_object_mut() {
            for (resource, value) in extra {
                list.entry(resource.clone())
                    .or_insert_with(|| value.clone());
            }
            for (resource, value) in defaults {
                if !list.contains_key(resource) {
                    list.insert(resource.clone(), value.clone());
                    names.push(resource.clone());
                }
            }
        }
        names.sort();
        names
    };
    let limits = set("limits", default_limits, &Map::new());
    let requests = set("requests", default_requests, &given_limits);
    let mut notes = Vec::new();
    if !requests.is_empty() {
        notes.push(format!(
            "{} request for {prefix} {name}",
            requests.join(", ")
        ));
    }
    if !limits.is_empty() {
        notes.push(format!("{} limit for {prefix} {name}", limits.join(", ")));
    }
    notes
}

/// kube's minConstraint.
fn min_constraint(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(request) = requests.get(resource) else {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if request < enforced {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but request is {request}"
        ));
    }
    match limits.get(resource) {
        Some(limit) if limit < enforced => Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but limit is {limit}"
        )),
        _ => None,
    }
}

/// kube's maxConstraint.
fn max_constraint(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(limit) = limits.get(resource) else {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if limit > enforced {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but limit is {limit}"
        ));
    }
    match requests.get(resource) {
        Some(request) if request > enforced => Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but request is {request}"
        )),
        _ => None,
    }
}

/// kube's maxRequestConstraint (claims: only the request counts).
fn max_request_constraint(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
) -> Option<String> {
    match requests.get(resource) {
        None => Some(format!(
            "maximum {resource} usage per {kind} is {enforced}.  No request is specified"
        )),
        Some(request) if request > enforced => Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but request is {request}"
        )),
        Some(_) => None,
    }
}

/// kube's limitRequestRatioConstraint.
fn ratio_constraint(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let request = requests.get(resource).map_or(0, Quantity::milli_value);
    let limit = limits.get(resource).map_or(0, Quantity::milli_value);
    if request == 0 {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if limit == 0 {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = limit as f64 / request as f64;
    let allowed = enforced.milli_value() as f64 / 1000.0;
    (observed > allowed).then(|| {
        format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        )
    })
}

/// Check `requests`/`limits` against one item's min, max and ratio.
fn check_item(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errors: &mut Vec<String>,
) {
    for (resource, min) in parse_list(item.get("min")) {
        errors.extend(min_constraint(kind, &resource, &min, requests, limits));
    }
    for (resource, max) in parse_list(item.get("max")) {
        errors.extend(max_constraint(kind, &resource, &max, requests, limits));
    }
    for (resource, ratio) in parse_list(item.get("maxLimitRequestRatio")) {
        errors.extend(ratio_constraint(kind, &resource, &ratio, requests, limits));
    }
}

/// Every bound of `ranges` the pod breaks (per container, then per pod).
pub fn validate_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    for range in ranges {
        for item in items(range, "Container") {
            for key in ["containers", "initContainers"] {
                for container in pod
                    .pointer(&format!("/spec/{key}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (requests, limits) = container_resources(container);
                    check_item(item, "Container", &requests, &limits, &mut errors);
                }
            }
        }
        for item in items(range, "Pod") {
            let (requests, limits) = pod_requests_and_limits(pod, false);
            check_item(item, "Pod", &requests, &limits, &mut errors);
        }
    }
    errors
}

/// Every bound of `ranges` the claim's storage request breaks.
pub fn validate_claim(claim: &Value, ranges: &[Value]) -> Vec<String> {
    let requests = parse_list(claim.pointer("/spec/resources/requests"));
    let mut errors = Vec::new();
    for range in ranges {
        for item in items(range, "PersistentVolumeClaim") {
            for (resource, min) in parse_list(item.get("min")) {
                errors.extend(min_constraint(
                    "PersistentVolumeClaim",
                    &resource,
                    &min,
                    &requests,
                    &ResourceList::new(),
                ));
            }
            for (resource, max) in parse_list(item.get("max")) {
                errors.extend(max_request_constraint(
                    "PersistentVolumeClaim",
                    &resource,
                    &max,
                    &requests,
                ));
            }
        }
    }
    errors
}

/// kube's aggregate error text: the one message, or `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The LimitRanger admission plugin.
pub struct LimitRanger {
    store: Arc<Store>,
    ranges: Arc<WatchCache>,
}

impl LimitRanger {
    /// The plugin, reading LimitRanges through their watch cache.
    pub fn new(store: Arc<Store>) -> Self {
        let ranges = resources::watch_cache(&store, "", "v1", "limitranges");
        Self { store, ranges }
    }

    /// The namespace's LimitRanges.
    async fn ranges(&self, namespace: &str) -> Result<Vec<Value>, ApiError> {
        cached(&self.store, &self.ranges, namespace).await
    }
}

/// True for a pod create (the only pod write LimitRanger looks at).
fn pod_create(attributes: &Attributes<'_>) -> bool {
    attributes.operation == Operation::Create && attributes.is("", "pods")
}

/// True for a claim create or update.
fn claim_write(attributes: &Attributes<'_>) -> bool {
    matches!(attributes.operation, Operation::Create | Operation::Update)
        && attributes.is("", "persistentvolumeclaims")
}

#[async_trait]
impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !pod_create(attributes) {
            return Ok(());
        }
        let ranges = self.ranges(attributes.namespace).await?;
        if ranges.is_empty() {
            return Ok(());
        }
        let notes = default_pod(object, &ranges);
        if !notes.is_empty()
            && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
            if !annotations.is_object() {
                *annotations = json!({});
            }
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(
                    ANNOTATION.to_owned(),
                    json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
                );
            }
        }
        Ok(())
    }

    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        // As kube: objects marked for deletion are not held to new bounds (their
        // finalizers must still come off).
        if old.is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_some()) {
            return Ok(());
        }
        let errors = if pod_create(attributes) {
            validate_pod(object, &self.ranges(attributes.namespace).await?)
        } else if claim_write(attributes) {
            validate_claim(object, &self.ranges(attributes.namespace).await?)
        } else {
            return Ok(());
        };
        if errors.is_empty() {
            Ok(())
        } else {
            Err(attributes.forbidden(&aggregate(&errors)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::user::UserInfo, store::object_key};

    fn range(limits: Value) -> Value {
        json!({"metadata": {"name": "limits"}, "spec": {"limits": limits}})
    }

    #[test]
    fn containers_get_the_defaults_they_lack() {
        let ranges = [range(json!([{"type": "Container",
            "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
            "default": {"cpu": "500m", "memory": "128Mi"}}]))];
        let mut pod = json!({"spec": {"containers": [
            {"name": "web"},
            {"name": "side", "resources": {"limits": {"cpu": "1"}}}]}});
        let notes = default_pod(&mut pod, &ranges);
        assert_eq!(
            notes,
            [
                "cpu, memory request for container web",
                "cpu, memory limit for container web",
                "memory request for container side",
                "memory limit for container side",
            ]
        );
        let web = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(web["requests"]["cpu"], "100m");
        assert_eq!(web["limits"]["memory"], "128Mi");
        // A limit the client gave is also its request, not the default request.
        let side = &pod["spec"]["containers"][1]["resources"];
        assert_eq!(side["requests"]["cpu"], "1");
        assert_eq!(side["limits"]["cpu"], "1");
        assert_eq!(side["requests"]["memory"], "64Mi");
    }

    #[test]
    fn bounds_are_checked_with_kubes_words() {
        let ranges = [range(json!([
            {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"},
             "maxLimitRequestRatio": {"cpu": "2"}},
            {"type": "Pod", "max": {"memory": "1Gi"}}]))];
        let pod = |cpu_request: &str, cpu_limit: &str| {
            json!({"spec": {"containers": [{"name": "c", "resources": {
                "requests": {"cpu": cpu_request, "memory": "512Mi"},
                "limits": {"cpu": cpu_limit, "memory": "512Mi"}}}]}})
        };
        assert!(validate_pod(&pod("500m", "1"), &ranges).is_empty());
        assert_eq!(
            validate_pod(&pod("1", "2"), &ranges),
            ["maximum cpu usage per Container is 1, but limit is 2"]
        );
        assert_eq!(
            validate_pod(&pod("50m", "50m"), &ranges),
            ["minimum cpu usage per Container is 100m, but request is 50m"]
        );
        assert_eq!(
            validate_pod(&pod("200m", "1"), &ranges),
            ["cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"]
        );
        let two = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "100m", "memory": "768Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "100m", "memory": "768Mi"}}}]}});
        assert_eq!(
            validate_pod(&two, &ranges),
            ["maximum memory usage per Pod is 1Gi, but limit is 1536Mi"]
        );
        let claims = [range(
            json!([{"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}, "min": {"storage": "100Mi"}}]),
        )];
        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        assert!(validate_claim(&claim("500Mi"), &claims).is_empty());
        assert_eq!(
            validate_claim(&claim("2Gi"), &claims),
            ["maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"]
        );
        assert_eq!(
            aggregate(&validate_claim(&json!({"spec": {}}), &claims)),
            "[minimum storage usage per PersistentVolumeClaim is 100Mi.  No request is specified, maximum storage usage per PersistentVolumeClaim is 1Gi.  No request is specified]"
        );
    }

    #[tokio::test]
    async fn the_plugin_defaults_and_refuses_pods() {
        let store = Store::in_memory();
        store
            .create(
                &object_key("", "limitranges", "team", "limits"),
                &range(
                    json!([{"type": "Container", "defaultRequest": {"cpu": "100m"},
                    "default": {"cpu": "200m"}, "max": {"cpu": "1"}}]),
                ),
            )
            .await
            .expect("create");
        let plugin = LimitRanger::new(store);
        let user = UserInfo::default();
        let attributes = Attributes {
            operation: Operation::Create,
            resource: resources::find("", "v1", "pods").expect("pods"),
            subresource: "",
            namespace: "team",
            name: "web",
            user: &user,
            dry_run: false,
        };
        let mut pod =
            json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web"}]}});
        plugin
            .admit(&attributes, &mut pod, None, &mut Vec::new())
            .await
            .expect("admitted");
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "100m"
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu request for container web; cpu limit for container web"
        );
        plugin
            .validate(&attributes, &pod, None, &mut Vec::new())
            .await
            .expect("within bounds");
        let big = json!({"spec": {"containers": [{"name": "web", "resources": {"limits": {"cpu": "2"}}}]}});
        let error = plugin
            .validate(&attributes, &big, None, &mut Vec::new())
            .await
            .expect_err("refused");
        assert_eq!(error.code, 403);
        assert!(
            error.to_string().contains(
                "pods \"web\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
            ),
            "{error}"
        );
    }
}
