//! Cells of services, endpoints, nodes, namespaces, configuration and storage objects.

use serde_json::{Value, json};

use super::{created, list, n, name, or_none, s, selector};
use crate::api::table::age;
use crate::model::meta;

pub(super) fn service(o: &Value) -> Vec<Value> {
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

pub(super) fn endpoint_list(addresses: Vec<String>) -> String {
    match addresses.len() {
        0 => "<none>".to_owned(),
        1..=3 => addresses.join(","),
        more => format!("{} + {} more...", addresses[..3].join(","), more - 3),
    }
}

pub(super) fn endpoints(o: &Value) -> Vec<Value> {
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

pub(super) fn endpoint_slice(o: &Value) -> Vec<Value> {
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

pub(super) fn node(o: &Value) -> Vec<Value> {
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

pub(super) fn namespace(o: &Value) -> Vec<Value> {
    vec![name(o), json!(s(o, "status.phase")), created(o)]
}

pub(super) fn config_map(o: &Value) -> Vec<Value> {
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

pub(super) fn secret(o: &Value) -> Vec<Value> {
    let data = o
        .get("data")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    vec![name(o), json!(s(o, "type")), json!(data), created(o)]
}

pub(super) fn service_account(o: &Value) -> Vec<Value> {
    vec![name(o), json!(list(o, "secrets").len()), created(o)]
}

pub(super) fn event(o: &Value) -> Vec<Value> {
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

pub(super) fn access_modes(modes: &[Value]) -> String {
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

pub(super) fn pvc(o: &Value) -> Vec<Value> {
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

pub(super) fn pv(o: &Value) -> Vec<Value> {
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

pub(super) fn storage_class(o: &Value) -> Vec<Value> {
    let annotations = o.pointer("/metadata/annotations");
    let default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| annotations.and_then(|a| a.get(key)).and_then(Value::as_str) == Some("true"));
    let mut shown = meta::name(o).to_owned();
    if default {
        shown.push_str(" (default)");
    }
    let or = |field: &str, default: &str| match s(o, field) {
        "" => default.to_owned(),
        value => value.to_owned(),
    };
    vec![
        json!(shown),
        json!(s(o, "provisioner")),
        json!(or("reclaimPolicy", "Delete")),
        json!(or("volumeBindingMode", "Immediate")),
        json!(
            o.get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        created(o),
    ]
}

pub(super) fn lease(o: &Value) -> Vec<Value> {
    vec![name(o), json!(s(o, "spec.holderIdentity")), created(o)]
}

pub(super) fn runtime_class(o: &Value) -> Vec<Value> {
    vec![name(o), json!(s(o, "handler")), created(o)]
}

pub(super) fn role(o: &Value) -> Vec<Value> {
    vec![name(o), json!(meta::meta_str(o, "creationTimestamp"))]
}

/// A binding's role (`ClusterRole/view`) and its subjects by kind, comma separated.
pub(super) fn role_binding(o: &Value) -> Vec<Value> {
    let subjects = list(o, "subjects");
    let of_kind = |kind: &str| {
        subjects
            .iter()
            .filter(|subject| s(subject, "kind") == kind)
            .map(|subject| match (kind, s(subject, "namespace")) {
                ("ServiceAccount", ns) => format!("{ns}/{}", s(subject, "name")),
                _ => s(subject, "name").to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name(o),
        json!(format!("{}/{}", s(o, "roleRef.kind"), s(o, "roleRef.name"))),
        created(o),
        json!(of_kind("User")),
        json!(of_kind("Group")),
        json!(of_kind("ServiceAccount")),
    ]
}
