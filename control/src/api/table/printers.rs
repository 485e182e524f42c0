//! The columns kubectl shows for each kind (kube's printers): one printer per kind, cells
//! computed from the object's JSON.

use serde_json::{Value, json};

use super::age;
use crate::model::meta;

/// A column: name, type, priority (0 = default, 1 = `-o wide`).
pub type Column = (&'static str, &'static str, u8);

/// Computes one row's cells, in column order.
pub type Cells = fn(&Value) -> Vec<Value>;

/// Columns and the cell function of one kind.
pub struct Printer {
    /// Column definitions (Name is always first).
    pub columns: &'static [Column],
    /// One row's cells, in column order.
    pub cells: Cells,
}

const NAME: Column = ("Name", "string", 0);
const AGE: Column = ("Age", "string", 0);

/// The printer of `group`/`kind`.
pub fn printer(group: &str, kind: &str) -> Printer {
    let (columns, cells): (&'static [Column], Cells) = match (group, kind) {
        ("", "Pod") => (
            &[
                NAME,
                ("Ready", "string", 0),
                ("Status", "string", 0),
                ("Restarts", "string", 0),
                AGE,
                ("IP", "string", 1),
                ("Node", "string", 1),
                ("Nominated Node", "string", 1),
                ("Readiness Gates", "string", 1),
            ],
            pod,
        ),
        ("apps", "Deployment") => (
            &[
                NAME,
                ("Ready", "string", 0),
                ("Up-to-date", "integer", 0),
                ("Available", "integer", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            deployment,
        ),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => (
            &[
                NAME,
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            replica_set,
        ),
        ("apps", "StatefulSet") => (
            &[
                NAME,
                ("Ready", "string", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
            ],
            stateful_set,
        ),
        ("apps", "DaemonSet") => (
            &[
                NAME,
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                ("Up-to-date", "integer", 0),
                ("Available", "integer", 0),
                ("Node Selector", "string", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            daemon_set,
        ),
        ("batch", "Job") => (
            &[
                NAME,
                ("Status", "string", 0),
                ("Completions", "string", 0),
                ("Duration", "string", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            job,
        ),
        ("batch", "CronJob") => (
            &[
                NAME,
                ("Schedule", "string", 0),
                ("Timezone", "string", 0),
                ("Suspend", "boolean", 0),
                ("Active", "integer", 0),
                ("Last Schedule", "string", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            cron_job,
        ),
        ("", "Service") => (
            &[
                NAME,
                ("Type", "string", 0),
                ("Cluster-IP", "string", 0),
                ("External-IP", "string", 0),
                ("Port(s)", "string", 0),
                AGE,
                ("Selector", "string", 1),
            ],
            service,
        ),
        ("", "Endpoints") => (&[NAME, ("Endpoints", "string", 0), AGE], endpoints),
        ("discovery.k8s.io", "EndpointSlice") => (
            &[
                NAME,
                ("AddressType", "string", 0),
                ("Ports", "string", 0),
                ("Endpoints", "string", 0),
                AGE,
            ],
            endpoint_slice,
        ),
        ("", "Node") => (
            &[
                NAME,
                ("Status", "string", 0),
                ("Roles", "string", 0),
                AGE,
                ("Version", "string", 0),
                ("Internal-IP", "string", 1),
                ("External-IP", "string", 1),
                ("OS-Image", "string", 1),
                ("Kernel-Version", "string", 1),
                ("Container-Runtime", "string", 1),
            ],
            node,
        ),
        ("", "Namespace") => (&[NAME, ("Status", "string", 0), AGE], namespace),
        ("", "ConfigMap") => (&[NAME, ("Data", "integer", 0), AGE], config_map),
        ("", "Secret") => (
            &[NAME, ("Type", "string", 0), ("Data", "integer", 0), AGE],
            secret,
        ),
        ("", "ServiceAccount") => (&[NAME, ("Secrets", "integer", 0), AGE], service_account),
        ("", "Event") => (
            &[
                ("Last Seen", "string", 0),
                ("Type", "string", 0),
                ("Reason", "string", 0),
                ("Object", "string", 0),
                ("Subobject", "string", 1),
                ("Source", "string", 1),
                ("Message", "string", 0),
                ("First Seen", "string", 1),
                ("Count", "string", 1),
                ("Name", "string", 1),
            ],
            event,
        ),
        ("", "PersistentVolumeClaim") => (
            &[
                NAME,
                ("Status", "string", 0),
                ("Volume", "string", 0),
                ("Capacity", "string", 0),
                ("Access Modes", "string", 0),
                ("StorageClass", "string", 0),
                AGE,
            ],
            pvc,
        ),
        ("", "PersistentVolume") => (
            &[
                NAME,
                ("Capacity", "string", 0),
                ("Access Modes", "string", 0),
                ("Reclaim Policy", "string", 0),
                ("Status", "string", 0),
                ("Claim", "string", 0),
                ("StorageClass", "string", 0),
                AGE,
            ],
            pv,
        ),
        ("coordination.k8s.io", "Lease") => (&[NAME, ("Holder", "string", 0), AGE], lease),
        _ => (&[NAME, AGE], plain),
    };
    Printer { columns, cells }
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    path.split('.')
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn n(v: &Value, path: &str) -> i64 {
    path.split('.')
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn list<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    path.split('.')
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn or_none(text: String) -> Value {
    Value::String(if text.is_empty() {
        "<none>".to_owned()
    } else {
        text
    })
}

fn name(o: &Value) -> Value {
    json!(meta::name(o))
}

fn created(o: &Value) -> Value {
    json!(age(meta::meta_str(o, "creationTimestamp")))
}

/// Label selector as `k=v,k2 in (a,b)` (maps and LabelSelectors).
fn selector(selector: Option<&Value>) -> String {
    selector
        .map(crate::model::selector::render)
        .unwrap_or_default()
}

fn containers_and_images(template_spec: &Value) -> (Value, Value) {
    let containers = list(template_spec, "containers");
    let names: Vec<&str> = containers.iter().map(|c| s(c, "name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

fn plain(o: &Value) -> Vec<Value> {
    vec![name(o), created(o)]
}

/// kube's pod STATUS column.
fn pod_status(o: &Value) -> String {
    let mut reason = s(o, "status.reason").to_owned();
    if reason.is_empty() {
        reason = s(o, "status.phase").to_owned();
    }
    let init = list(o, "status.initContainerStatuses");
    let init_total = list(o, "spec.initContainers").len();
    let mut initializing = false;
    for (i, c) in init.iter().enumerate() {
        let terminated = c.get("state").and_then(|s| s.get("terminated"));
        if terminated.is_some_and(|t| n(t, "exitCode") == 0) {
            continue;
        }
        initializing = true;
        reason = match (terminated, c.get("state").and_then(|s| s.get("waiting"))) {
            (Some(t), _) if !s(t, "reason").is_empty() => format!("Init:{}", s(t, "reason")),
            (Some(t), _) => format!("Init:ExitCode:{}", n(t, "exitCode")),
            (None, Some(w))
                if !s(w, "reason").is_empty() && s(w, "reason") != "PodInitializing" =>
            {
                format!("Init:{}", s(w, "reason"))
            }
            _ => format!("Init:{i}/{init_total}"),
        };
        break;
    }
    if !initializing {
        let mut running = false;
        for c in list(o, "status.containerStatuses").iter().rev() {
            let state = c.get("state");
            if let Some(w) = state
                .and_then(|s| s.get("waiting"))
                .filter(|w| !s(w, "reason").is_empty())
            {
                reason = s(w, "reason").to_owned();
            } else if let Some(t) = state.and_then(|s| s.get("terminated")) {
                reason = if !s(t, "reason").is_empty() {
                    s(t, "reason").to_owned()
                } else if n(t, "signal") != 0 {
                    format!("Signal:{}", n(t, "signal"))
                } else {
                    format!("ExitCode:{}", n(t, "exitCode"))
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && state.and_then(|s| s.get("running")).is_some()
            {
                running = true;
            }
        }
        if reason == "Completed" && running {
            reason = "Running".to_owned();
        }
    }
    if !meta::meta_str(o, "deletionTimestamp").is_empty() && s(o, "status.reason") != "NodeLost" {
        reason = "Terminating".to_owned();
    }
    reason
}

fn pod(o: &Value) -> Vec<Value> {
    let statuses = list(o, "status.containerStatuses");
    let total = list(o, "spec.containers").len();
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .chain(list(o, "status.initContainerStatuses"))
        .map(|c| n(c, "restartCount"))
        .sum();
    let last_restart = statuses
        .iter()
        .filter_map(|c| {
            c.get("lastState")
                .and_then(|l| l.get("terminated"))
                .map(|t| s(t, "finishedAt"))
        })
        .filter(|t| !t.is_empty())
        .max();
    let restarts = match last_restart {
        Some(at) if restarts > 0 => format!("{restarts} ({} ago)", age(at)),
        _ => restarts.to_string(),
    };
    let gates = list(o, "spec.readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let true_gates = gates
            .iter()
            .filter(|g| {
                list(o, "status.conditions")
                    .iter()
                    .any(|c| s(c, "type") == s(g, "conditionType") && s(c, "status") == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        name(o),
        json!(format!("{ready}/{total}")),
        json!(pod_status(o)),
        json!(restarts),
        created(o),
        or_none(s(o, "status.podIP").to_owned()),
        or_none(s(o, "spec.nodeName").to_owned()),
        or_none(s(o, "status.nominatedNodeName").to_owned()),
        json!(gates),
    ]
}

fn deployment(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    vec![
        name(o),
        json!(format!(
            "{}/{}",
            n(o, "status.readyReplicas"),
            n(o, "spec.replicas")
        )),
        json!(n(o, "status.updatedReplicas")),
        json!(n(o, "status.availableReplicas")),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/selector"))),
    ]
}

fn replica_set(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    vec![
        name(o),
        json!(n(o, "spec.replicas")),
        json!(n(o, "status.replicas")),
        json!(n(o, "status.readyReplicas")),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/selector"))),
    ]
}

fn stateful_set(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    vec![
        name(o),
        json!(format!(
            "{}/{}",
            n(o, "status.readyReplicas"),
            n(o, "spec.replicas")
        )),
        created(o),
        containers,
        images,
    ]
}

fn daemon_set(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    vec![
        name(o),
        json!(n(o, "status.desiredNumberScheduled")),
        json!(n(o, "status.currentNumberScheduled")),
        json!(n(o, "status.numberReady")),
        json!(n(o, "status.updatedNumberScheduled")),
        json!(n(o, "status.numberAvailable")),
        or_none(selector(o.pointer("/spec/template/spec/nodeSelector"))),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/selector"))),
    ]
}

fn condition_true(o: &Value, kind: &str) -> bool {
    list(o, "status.conditions")
        .iter()
        .any(|c| s(c, "type") == kind && s(c, "status") == "True")
}

fn job(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    let status = if condition_true(o, "Complete") {
        "Complete"
    } else if condition_true(o, "Failed") {
        "Failed"
    } else if condition_true(o, "FailureTarget") {
        "FailureTarget"
    } else if o.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        "Suspended"
    } else {
        "Running"
    };
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{}/{c}", n(o, "status.succeeded")),
        None => format!(
            "{}/1 of {}",
            n(o, "status.succeeded"),
            n(o, "spec.parallelism").max(1)
        ),
    };
    let start = s(o, "status.startTime");
    let duration = match (
        start.parse::<jiff::Timestamp>(),
        s(o, "status.completionTime").parse::<jiff::Timestamp>(),
    ) {
        (Ok(a), Ok(b)) => super::human_duration(b.as_second() - a.as_second()),
        (Ok(_), Err(_)) => age(start),
        _ => String::new(),
    };
    vec![
        name(o),
        json!(status),
        json!(completions),
        json!(duration),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/selector"))),
    ]
}

fn cron_job(o: &Value) -> Vec<Value> {
    let (containers, images) = containers_and_images(
        o.pointer("/spec/jobTemplate/spec/template/spec")
            .unwrap_or(&Value::Null),
    );
    let last = s(o, "status.lastScheduleTime");
    vec![
        name(o),
        json!(s(o, "spec.schedule")),
        or_none(s(o, "spec.timeZone").to_owned()),
        json!(
            o.pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        json!(list(o, "status.active").len()),
        json!(if last.is_empty() {
            "<none>".to_owned()
        } else {
            age(last)
        }),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/jobTemplate/spec/selector"))),
    ]
}

fn service(o: &Value) -> Vec<Value> {
    let kind = s(o, "spec.type");
    let cluster_ip = match s(o, "spec.clusterIP") {
        "" => "<none>".to_owned(),
        ip => ip.to_owned(),
    };
    let mut external: Vec<String> = list(o, "spec.externalIPs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for ingress in list(o, "status.loadBalancer.ingress") {
        let address = if s(ingress, "ip").is_empty() {
            s(ingress, "hostname")
        } else {
            s(ingress, "ip")
        };
        external.push(address.to_owned());
    }
    let external = match (kind, external.is_empty()) {
        ("ExternalName", _) => s(o, "spec.externalName").to_owned(),
        ("LoadBalancer", true) => "<pending>".to_owned(),
        (_, true) => "<none>".to_owned(),
        _ => external.join(","),
    };
    let ports: Vec<String> = list(o, "spec.ports")
        .iter()
        .map(|p| {
            let node_port = n(p, "nodePort");
            let proto = if s(p, "protocol").is_empty() {
                "TCP"
            } else {
                s(p, "protocol")
            };
            if node_port > 0 {
                format!("{}:{node_port}/{proto}", n(p, "port"))
            } else {
                format!("{}/{proto}", n(p, "port"))
            }
        })
        .collect();
    vec![
        name(o),
        json!(kind),
        json!(cluster_ip),
        json!(external),
        or_none(ports.join(",")),
        created(o),
        or_none(selector(o.pointer("/spec/selector"))),
    ]
}

fn endpoint_list(addresses: Vec<String>) -> String {
    match addresses.len() {
        0 => "<none>".to_owned(),
        1..=3 => addresses.join(","),
        more => format!("{} + {} more...", addresses[..3].join(","), more - 3),
    }
}

fn endpoints(o: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for subset in list(o, "subsets") {
        for address in list(subset, "addresses") {
            let ports = list(subset, "ports");
            if ports.is_empty() {
                all.push(s(address, "ip").to_owned());
            }
            for port in ports {
                all.push(format!("{}:{}", s(address, "ip"), n(port, "port")));
            }
        }
    }
    vec![name(o), json!(endpoint_list(all)), created(o)]
}

fn endpoint_slice(o: &Value) -> Vec<Value> {
    let ports: Vec<String> = list(o, "ports")
        .iter()
        .map(|p| n(p, "port").to_string())
        .collect();
    let addresses: Vec<String> = list(o, "endpoints")
        .iter()
        .flat_map(|e| {
            list(e, "addresses")
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
        })
        .collect();
    vec![
        name(o),
        json!(s(o, "addressType")),
        or_none(ports.join(",")),
        json!(endpoint_list(addresses)),
        created(o),
    ]
}

fn node(o: &Value) -> Vec<Value> {
    let mut status = match list(o, "status.conditions")
        .iter()
        .find(|c| s(c, "type") == "Ready")
        .map(|c| s(c, "status"))
    {
        Some("True") => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let labels = meta::string_map(o, "labels");
    let mut roles: Vec<String> = labels
        .keys()
        .filter_map(|k| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_owned)
        })
        .chain(labels.get("kubernetes.io/role").cloned())
        .collect();
    roles.sort();
    roles.dedup();
    let address = |kind: &str| {
        list(o, "status.addresses")
            .iter()
            .find(|a| s(a, "type") == kind)
            .map_or_else(|| "<none>".to_owned(), |a| s(a, "address").to_owned())
    };
    vec![
        name(o),
        json!(status),
        or_none(roles.join(",")),
        created(o),
        json!(s(o, "status.nodeInfo.kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(s(o, "status.nodeInfo.osImage")),
        json!(s(o, "status.nodeInfo.kernelVersion")),
        json!(s(o, "status.nodeInfo.containerRuntimeVersion")),
    ]
}

fn namespace(o: &Value) -> Vec<Value> {
    vec![name(o), json!(s(o, "status.phase")), created(o)]
}

fn config_map(o: &Value) -> Vec<Value> {
    let count = |f: &str| {
        o.get(f)
            .and_then(Value::as_object)
            .map_or(0, serde_json::Map::len)
    };
    vec![
        name(o),
        json!(count("data") + count("binaryData")),
        created(o),
    ]
}

fn secret(o: &Value) -> Vec<Value> {
    let data = o
        .get("data")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    vec![name(o), json!(s(o, "type")), json!(data), created(o)]
}

fn service_account(o: &Value) -> Vec<Value> {
    vec![name(o), json!(list(o, "secrets").len()), created(o)]
}

fn event(o: &Value) -> Vec<Value> {
    let last = [
        s(o, "lastTimestamp"),
        s(o, "eventTime"),
        meta::meta_str(o, "creationTimestamp"),
    ]
    .into_iter()
    .find(|t| !t.is_empty())
    .unwrap_or("");
    let first = if s(o, "firstTimestamp").is_empty() {
        last
    } else {
        s(o, "firstTimestamp")
    };
    let object = format!(
        "{}/{}",
        s(o, "involvedObject.kind").to_lowercase(),
        s(o, "involvedObject.name")
    );
    let source = if s(o, "source.component").is_empty() {
        s(o, "reportingComponent")
    } else {
        s(o, "source.component")
    };
    vec![
        json!(age(last)),
        json!(s(o, "type")),
        json!(s(o, "reason")),
        json!(object),
        json!(s(o, "involvedObject.fieldPath")),
        json!(source),
        json!(s(o, "message").trim()),
        json!(age(first)),
        json!(n(o, "count").max(1).to_string()),
        name(o),
    ]
}

fn access_modes(modes: &[Value]) -> String {
    modes
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn pvc(o: &Value) -> Vec<Value> {
    vec![
        name(o),
        json!(s(o, "status.phase")),
        json!(s(o, "spec.volumeName")),
        json!(s(o, "status.capacity.storage")),
        json!(access_modes(list(o, "status.accessModes"))),
        json!(s(o, "spec.storageClassName")),
        created(o),
    ]
}

fn pv(o: &Value) -> Vec<Value> {
    let claim = if s(o, "spec.claimRef.name").is_empty() {
        String::new()
    } else {
        format!(
            "{}/{}",
            s(o, "spec.claimRef.namespace"),
            s(o, "spec.claimRef.name")
        )
    };
    vec![
        name(o),
        json!(s(o, "spec.capacity.storage")),
        json!(access_modes(list(o, "spec.accessModes"))),
        json!(s(o, "spec.persistentVolumeReclaimPolicy")),
        json!(s(o, "status.phase")),
        json!(claim),
        json!(s(o, "spec.storageClassName")),
        created(o),
    ]
}

fn lease(o: &Value) -> Vec<Value> {
    vec![name(o), json!(s(o, "spec.holderIdentity")), created(o)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_reads_like_kubectl() {
        let crash = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Running",
        "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "b", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ]}});
        let cells = pod(&crash);
        assert_eq!(
            (cells[1].as_str(), cells[2].as_str(), cells[3].as_str()),
            (Some("1/2"), Some("CrashLoopBackOff"), Some("4"))
        );
        let init = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]}});
        assert_eq!(pod(&init)[2], "Init:0/1");
        let deleting = json!({"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"containers": []}, "status": {"phase": "Running"}});
        assert_eq!(pod(&deleting)[2], "Terminating");
    }

    #[test]
    fn service_columns() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.5",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        let cells = service(&svc);
        assert_eq!(cells[4], "80:30080/TCP,53/UDP");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[6], "app=web");
        let lb = json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "clusterIP": "None", "ports": []}});
        assert_eq!(
            (service(&lb)[2].as_str(), service(&lb)[3].as_str()),
            (Some("None"), Some("<pending>"))
        );
    }

    #[test]
    fn every_printer_has_a_cell_per_column() {
        for (group, kind) in [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("", "Service"),
            ("", "Endpoints"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("", "Node"),
            ("", "Namespace"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Event"),
            ("", "PersistentVolumeClaim"),
            ("", "PersistentVolume"),
            ("coordination.k8s.io", "Lease"),
            ("", "ReplicationController"),
            ("x", "Unknown"),
        ] {
            let p = printer(group, kind);
            assert_eq!(
                p.columns.len(),
                (p.cells)(&json!({"metadata": {"name": "n"}})).len(),
                "{group}/{kind}"
            );
        }
    }
}
