//! Resource quota accounting without I/O, as kube's quota evaluators (`pkg/quota/v1`): what
//! an object costs a ResourceQuota (`pods`, `requests.cpu`, `services.nodeports`,
//! `count/deployments.apps`…), whether a quota's scopes cover it, what a pod must declare
//! under a quota, and whether a charge fits. Objects are JSON values, so the admission plugin
//! (request bodies) and the quota controller (cached objects) share one implementation.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use skiff_quantity::Quantity;

/// Resource names and their amounts.
pub type ResourceList = BTreeMap<String, Quantity>;

/// The quota scopes kube knows.
pub const SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// Resources a pod is charged under that force every container to declare them (kube's
/// backward-compatible "must specify" rule).
const CONTAINER_REQUIRED: &[&str] = &[
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "cpu",
    "memory",
];

/// The core kinds whose object count also has a legacy name (`pods`, `services`…).
const LEGACY_COUNTS: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
];

/// Every resource list at `value` that parses; entries that do not are skipped.
pub fn parse_list(value: Option<&Value>) -> ResourceList {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), Quantity::parse(q.as_str()?).ok()?)))
        .collect()
}

/// A resource list as JSON.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(name, q)| (name.clone(), json!(q.to_string())))
            .collect::<Map<_, _>>(),
    )
}

/// `name=value` pairs joined by commas, in name order (kube's prettyPrint).
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(name, q)| format!("{name}={q}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `a + b`, entry by entry.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut sum = a.clone();
    for (name, q) in b {
        let total = sum.get(name).map_or_else(|| q.clone(), |have| have.add(q));
        sum.insert(name.clone(), total);
    }
    sum
}

/// `a - b`, entry by entry, never below zero (kube's SubtractWithNonNegativeResult).
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    a.iter()
        .map(|(name, q)| {
            let left = b.get(name).map_or_else(|| q.clone(), |minus| q.sub(minus));
            let left = if left.is_negative() {
                q.zero_like()
            } else {
                left
            };
            (name.clone(), left)
        })
        .collect()
}

/// The entries of `list` named in `names`.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|name| Some((name.clone(), list.get(name)?.clone())))
        .collect()
}

/// The object-count resource name of `group`/`plural` (`count/pods`,
/// `count/deployments.apps`).
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

fn one() -> Quantity {
    Quantity::from_i64(1)
}

/// True if the pod has reached the end of its life (Succeeded or Failed): its compute
/// resources are no longer charged (kube's QuotaV1Pod).
fn terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// The containers of a pod spec at `key` (`containers`, `initContainers`).
fn containers<'a>(pod: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    pod.get("spec")
        .and_then(|s| s.get(key))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A container's requests (limits standing in for missing requests, as pod defaulting
/// does) and limits.
pub fn container_resources(container: &Value) -> (ResourceList, ResourceList) {
    let resources = container.get("resources");
    let limits = parse_list(resources.and_then(|r| r.get("limits")));
    let mut requests = parse_list(resources.and_then(|r| r.get("requests")));
    for (name, q) in &limits {
        requests.entry(name.clone()).or_insert_with(|| q.clone());
    }
    (requests, limits)
}

/// The entrywise maximum of `a` and `b`.
fn max_list(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (name, q) in b {
        if out.get(name).is_none_or(|have| have < q) {
            out.insert(name.clone(), q.clone());
        }
    }
    out
}

/// A pod's effective requests and limits: the sum over its containers, at least the
/// largest init container, plus the pod overhead if `overhead` (kube's PodRequests /
/// PodLimits).
pub fn pod_requests_and_limits(pod: &Value, with_overhead: bool) -> (ResourceList, ResourceList) {
    let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
    for container in containers(pod, "containers") {
        let (r, l) = container_resources(container);
        requests = add(&requests, &r);
        limits = add(&limits, &l);
    }
    for container in containers(pod, "initContainers") {
        let (r, l) = container_resources(container);
        requests = max_list(&requests, &r);
        limits = max_list(&limits, &l);
    }
    let overhead = parse_list(pod.pointer("/spec/overhead"));
    if with_overhead && !overhead.is_empty() {
        requests = add(&requests, &overhead);
        // Overhead is added to limits only for resources that have a limit.
        let limited: ResourceList =
            mask(&overhead, limits.keys().cloned().collect::<Vec<_>>().iter());
        limits = add(&limits, &limited);
    }
    (requests, limits)
}

/// The compute usage of requests and limits (kube's podComputeUsageHelper).
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut usage = ResourceList::new();
    for (name, q) in requests {
        match name.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                usage.insert(name.clone(), q.clone());
                usage.insert(format!("requests.{name}"), q.clone());
            }
            other if other.starts_with("hugepages-") || other.contains('/') => {
                usage.insert(format!("requests.{name}"), q.clone());
            }
            _ => {}
        }
    }
    for (name, q) in limits {
        if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            usage.insert(format!("limits.{name}"), q.clone());
        }
    }
    usage
}

/// What a pod costs: `count/pods` always; `pods` and compute resources while it is not
/// terminal.
fn pod_usage(pod: &Value) -> ResourceList {
    let mut usage = ResourceList::from([("count/pods".to_owned(), one())]);
    if terminal(pod) {
        return usage;
    }
    usage.insert("pods".to_owned(), one());
    let (requests, limits) = pod_requests_and_limits(pod, true);
    usage.extend(compute_usage(&requests, &limits));
    usage
}

/// What a Service costs: its count, node ports for NodePort and LoadBalancer services
/// (every port, or only explicit ones when a load balancer allocates none), load balancers.
fn service_usage(service: &Value) -> ResourceList {
    let mut usage = ResourceList::from([
        ("services".to_owned(), one()),
        ("count/services".to_owned(), one()),
    ]);
    let spec = service.get("spec");
    let ports = spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let all = i64::try_from(ports.len()).unwrap_or(i64::MAX);
    match spec.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("NodePort") => {
            usage.insert("services.nodeports".to_owned(), Quantity::from_i64(all));
        }
        Some("LoadBalancer") => {
            let allocate = spec
                .and_then(|s| s.get("allocateLoadBalancerNodePorts"))
                .and_then(Value::as_bool)
                != Some(false);
            let node_ports = if allocate {
                all
            } else {
                let explicit = ports
                    .iter()
                    .filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0)
                    .count();
                i64::try_from(explicit).unwrap_or(i64::MAX)
            };
            usage.insert(
                "services.nodeports".to_owned(),
                Quantity::from_i64(node_ports),
            );
            usage.insert("services.loadbalancers".to_owned(), one());
        }
        _ => {}
    }
    usage
}

/// What a PersistentVolumeClaim costs: its count and requested storage, also per storage
/// class (`gold.storageclass.storage.k8s.io/requests.storage`).
fn claim_usage(claim: &Value) -> ResourceList {
    let mut usage = ResourceList::from([
        ("persistentvolumeclaims".to_owned(), one()),
        ("count/persistentvolumeclaims".to_owned(), one()),
    ]);
    let class = claim
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    if let Some(class) = class {
        usage.insert(
            format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
            one(),
        );
    }
    let requests = parse_list(claim.pointer("/spec/resources/requests"));
    if let Some(storage) = requests.get("storage") {
        usage.insert("requests.storage".to_owned(), storage.clone());
        if let Some(class) = class {
            usage.insert(
                format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                storage.clone(),
            );
        }
    }
    usage
}

/// What `object` of `group`/`plural` costs a quota.
pub fn usage(group: &str, plural: &str, object: &Value) -> ResourceList {
    let mut usage = match (group, plural) {
        ("", "pods") => pod_usage(object),
        ("", "services") => service_usage(object),
        ("", "persistentvolumeclaims") => claim_usage(object),
        _ => ResourceList::new(),
    };
    usage.insert(count_name(group, plural), one());
    if group.is_empty()
        && LEGACY_COUNTS.contains(&plural)
        && !(plural == "pods" && terminal(object))
    {
        usage.insert(plural.to_owned(), one());
    }
    usage
}

/// True if `name` is a resource the evaluator of `group`/`plural` may charge (kube's
/// MatchingResources).
pub fn charges(group: &str, plural: &str, name: &str) -> bool {
    if name == count_name(group, plural)
        || (group.is_empty() && name == plural && LEGACY_COUNTS.contains(&plural))
    {
        return true;
    }
    match (group, plural) {
        ("", "pods") => {
            matches!(name, "cpu" | "memory" | "ephemeral-storage")
                || (name.starts_with("requests.") && name != "requests.storage")
                || matches!(
                    name,
                    "limits.cpu" | "limits.memory" | "limits.ephemeral-storage"
                )
        }
        ("", "services") => matches!(name, "services.nodeports" | "services.loadbalancers"),
        ("", "persistentvolumeclaims") => {
            name == "requests.storage"
                || name.ends_with(".storageclass.storage.k8s.io/requests.storage")
                || name.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims")
        }
        _ => false,
    }
}

/// A quota scope requirement: the scope, the operator and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequirement {
    /// `Terminating`, `PriorityClass`…
    pub scope: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    pub values: Vec<String>,
}

/// A quota's scopes (`spec.scopes`, each as `Exists`) and scope selector, as requirements.
pub fn scope_requirements(quota: &Value) -> Vec<ScopeRequirement> {
    let mut out: Vec<ScopeRequirement> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|scope| ScopeRequirement {
            scope: scope.to_owned(),
            operator: "Exists".to_owned(),
            values: Vec::new(),
        })
        .collect();
    for expression in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |key: &str| {
            expression
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        out.push(ScopeRequirement {
            scope: text("scopeName"),
            operator: text("operator"),
            values: expression
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        });
    }
    out
}

/// kube's BestEffort QoS: no container requests or limits cpu or memory.
fn best_effort(pod: &Value) -> bool {
    containers(pod, "containers")
        .chain(containers(pod, "initContainers"))
        .all(|c| {
            let (requests, limits) = container_resources(c);
            ["cpu", "memory"]
                .iter()
                .all(|r| !requests.contains_key(*r) && !limits.contains_key(*r))
        })
}

/// True if the pod has an affinity term reaching other namespaces.
fn cross_namespace_affinity(pod: &Value) -> bool {
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(affinity) = pod.pointer(&format!("/spec/affinity/{kind}")) else {
            return false;
        };
        let required = affinity
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let preferred = affinity
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("podAffinityTerm"));
        required.chain(preferred).any(|term| {
            term.get("namespaceSelector").is_some_and(|s| !s.is_null())
                || term
                    .get("namespaces")
                    .and_then(Value::as_array)
                    .is_some_and(|n| !n.is_empty())
        })
    })
}

/// True if the pod satisfies one scope requirement.
fn pod_matches(pod: &Value, requirement: &ScopeRequirement) -> bool {
    let terminating = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0);
    match requirement.scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        "CrossNamespacePodAffinity" => cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match requirement.operator.as_str() {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => requirement.values.iter().any(|v| v == class),
                "NotIn" => !requirement.values.iter().any(|v| v == class),
                _ => false,
            }
        }
        _ => false,
    }
}

/// True if `quota`'s scopes cover `object` of `group`/`plural`: an unscoped quota covers
/// everything, a scoped one only pods that satisfy every requirement.
pub fn covers(quota: &Value, group: &str, plural: &str, object: &Value) -> bool {
    let requirements = scope_requirements(quota);
    if requirements.is_empty() {
        return true;
    }
    (group, plural) == ("", "pods") && requirements.iter().all(|r| pod_matches(object, r))
}

/// kube's pod Constraints: when a quota limits cpu or memory, every container must declare
/// them. `required` are the quota's resources the pod evaluator charges. Err: `must specify
/// requests.cpu for: a,b; limits.memory for: a`.
pub fn pod_constraints(required: &BTreeSet<String>, pod: &Value) -> Result<(), String> {
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| CONTAINER_REQUIRED.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for container in containers(pod, "containers").chain(containers(pod, "initContainers")) {
        let (requests, limits) = container_resources(container);
        let usage = compute_usage(&requests, &limits);
        let name = container
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for resource in &required {
            if !usage.contains_key(*resource) {
                missing.entry(resource).or_default().insert(name.to_owned());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(resource, names)| {
            format!(
                "{resource} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// Charge `delta` to a quota named `name` with `hard` limits and `used` usage: the new
/// usage, or kube's refusal (`exceeded quota: q, requested: cpu=2, used: cpu=1, limited:
/// cpu=2`). Only resources the quota limits are charged.
pub fn charge(
    name: &str,
    hard: &ResourceList,
    used: &ResourceList,
    delta: &ResourceList,
) -> Result<ResourceList, String> {
    let requested: ResourceList = mask(delta, hard.keys());
    let new_used = add(used, &requested);
    let exceeded: Vec<String> = requested
        .keys()
        .filter(|r| match (new_used.get(*r), hard.get(*r)) {
            (Some(u), Some(h)) => u > h,
            _ => false,
        })
        .cloned()
        .collect();
    if exceeded.is_empty() {
        return Ok(new_used);
    }
    Err(format!(
        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
        pretty(&mask(&requested, &exceeded)),
        pretty(&mask(used, &exceeded)),
        pretty(&mask(hard, &exceeded)),
    ))
}

/// Drop zero entries.
pub fn without_zeros(list: ResourceList) -> ResourceList {
    list.into_iter().filter(|(_, q)| !q.is_zero()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(n, q)| ((*n).to_owned(), Quantity::parse(q).expect("quantity")))
            .collect()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn pods_cost_their_requests_and_limits() {
        let p = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "overhead": {"cpu": "10m"}}});
        let usage = usage("", "pods", &p);
        let text: BTreeMap<&str, String> = usage
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        assert_eq!(text["pods"], "1");
        assert_eq!(text["count/pods"], "1");
        // max(100m + 200m, 2) + 10m overhead.
        assert_eq!(text["requests.cpu"], "2010m");
        assert_eq!(text["cpu"], "2010m");
        assert_eq!(text["requests.memory"], "128Mi");
        assert_eq!(text["limits.cpu"], "1210m");
        assert_eq!(text["limits.memory"], "64Mi");
        let mut done = p.clone();
        done["status"] = json!({"phase": "Succeeded"});
        let usage = super::usage("", "pods", &done);
        assert_eq!(usage.keys().collect::<Vec<_>>(), ["count/pods"]);
    }

    #[test]
    fn services_claims_and_other_kinds() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        let usage = usage("", "services", &svc);
        assert_eq!(usage["services.nodeports"], Quantity::from_i64(2));
        assert_eq!(usage["services.loadbalancers"], Quantity::from_i64(1));
        let pvc = json!({"spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "1Gi"}}}});
        let usage = super::usage("", "persistentvolumeclaims", &pvc);
        assert_eq!(usage["requests.storage"].to_string(), "1Gi");
        assert!(usage.contains_key("gold.storageclass.storage.k8s.io/requests.storage"));
        let usage = super::usage("apps", "deployments", &json!({}));
        assert_eq!(usage.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
        let usage = super::usage("", "configmaps", &json!({}));
        assert_eq!(
            usage.keys().collect::<Vec<_>>(),
            ["configmaps", "count/configmaps"]
        );
        assert!(charges("", "pods", "requests.cpu"));
        assert!(!charges("", "pods", "requests.storage"));
        assert!(charges("apps", "deployments", "count/deployments.apps"));
        assert!(!charges("", "secrets", "configmaps"));
    }

    #[test]
    fn scopes_pick_pods() {
        let quota = json!({"spec": {"scopes": ["BestEffort"]}});
        let plain = pod(json!([{"name": "a"}]));
        let sized = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        assert!(covers(&quota, "", "pods", &plain));
        assert!(!covers(&quota, "", "pods", &sized));
        assert!(!covers(&quota, "", "services", &json!({})));
        assert!(covers(&json!({"spec": {}}), "", "services", &json!({})));
        let by_class = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let mut high = plain.clone();
        high["spec"]["priorityClassName"] = json!("high");
        assert!(covers(&by_class, "", "pods", &high));
        assert!(!covers(&by_class, "", "pods", &plain));
        let terminating = json!({"spec": {"scopes": ["Terminating"]}});
        let mut deadline = plain.clone();
        deadline["spec"]["activeDeadlineSeconds"] = json!(30);
        assert!(covers(&terminating, "", "pods", &deadline));
        assert!(!covers(&terminating, "", "pods", &plain));
    }

    #[test]
    fn pods_must_declare_what_a_quota_limits() {
        let required: BTreeSet<String> = ["pods", "limits.cpu", "requests.memory"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let p = pod(json!([
            {"name": "a", "resources": {"requests": {"memory": "1Mi"}}},
            {"name": "b"}]));
        assert_eq!(
            pod_constraints(&required, &p),
            Err("must specify limits.cpu for: a,b; requests.memory for: b".to_owned())
        );
        let ok =
            pod(json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Mi"}}}]));
        assert_eq!(pod_constraints(&required, &ok), Ok(()));
    }

    #[test]
    fn charges_fit_or_are_refused_as_kube_words_it() {
        let hard = list(&[("cpu", "2"), ("pods", "2")]);
        let used = list(&[("cpu", "1"), ("pods", "1")]);
        let fits = charge(
            "q",
            &hard,
            &used,
            &list(&[("cpu", "500m"), ("pods", "1"), ("memory", "1Gi")]),
        );
        assert_eq!(fits, Ok(list(&[("cpu", "1500m"), ("pods", "2")])));
        assert_eq!(
            charge("q", &hard, &used, &list(&[("cpu", "2"), ("pods", "1")])),
            Err("exceeded quota: q, requested: cpu=2, used: cpu=1, limited: cpu=2".to_owned())
        );
        assert_eq!(
            subtract_non_negative(&list(&[("a", "1"), ("b", "1")]), &list(&[("a", "2")])),
            list(&[("a", "0"), ("b", "1")])
        );
    }
}
