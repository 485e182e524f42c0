//! Cells of policy objects: disruption budgets, priority classes and network policies.

use serde_json::{Value, json};

use super::{created, n, name, or_none, s, selector};

/// An IntOrString as kube prints it (`2`, `50%`), or `N/A` when unset.
fn int_or_string(value: Option<&Value>) -> String {
    match value {
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::String(text)) => text.clone(),
        _ => "N/A".to_owned(),
    }
}

pub(super) fn pod_disruption_budget(o: &Value) -> Vec<Value> {
    vec![
        name(o),
        json!(int_or_string(o.pointer("/spec/minAvailable"))),
        json!(int_or_string(o.pointer("/spec/maxUnavailable"))),
        json!(n(o, "status.disruptionsAllowed")),
        created(o),
    ]
}

/// kube's ResourceQuota columns: `resource: used/hard` pairs in name order, requests
/// (and counts) apart from `limits.*`.
pub(super) fn resource_quota(o: &Value) -> Vec<Value> {
    let hard = o.pointer("/status/hard").and_then(Value::as_object);
    let used = o.pointer("/status/used");
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (resource, limit) in hard.into_iter().flatten() {
        let spent = used
            .and_then(|u| u.get(resource))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let cell = format!("{resource}: {spent}/{}", limit.as_str().unwrap_or_default());
        if resource.starts_with("limits.") {
            limits.push(cell);
        } else {
            requests.push(cell);
        }
    }
    vec![
        name(o),
        created(o),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
    ]
}

pub(super) fn priority_class(o: &Value) -> Vec<Value> {
    vec![
        name(o),
        json!(n(o, "value")),
        json!(
            o.get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        created(o),
        json!(s(o, "preemptionPolicy")),
    ]
}

/// APIServices as kube-aggregator prints them: the Service they proxy to (`Local` for
/// none) and `True`, or `False (Reason)`, from the Available condition.
pub(super) fn api_service(o: &Value) -> Vec<Value> {
    let service = match o.pointer("/spec/service") {
        Some(service) if service.is_object() => {
            format!("{}/{}", s(service, "namespace"), s(service, "name"))
        }
        _ => "Local".to_owned(),
    };
    let available = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
        .map_or_else(
            || "Unknown".to_owned(),
            |c| match (s(c, "status"), s(c, "reason")) {
                ("True", _) => "True".to_owned(),
                (status, "") => status.to_owned(),
                (status, reason) => format!("{status} ({reason})"),
            },
        );
    vec![name(o), json!(service), json!(available), created(o)]
}

/// A duration of seconds as kube's `duration.HumanDuration` words it (`60m`, `10d`).
fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 365 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

/// CertificateSigningRequests as kubectl prints them: the condition types in order plus
/// `Issued` once there is a certificate, or `Pending`.
pub(super) fn certificate_signing_request(o: &Value) -> Vec<Value> {
    let mut condition: Vec<String> = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| s(c, "type").to_owned())
        .collect();
    if o.pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
    {
        condition.push("Issued".to_owned());
    }
    let condition = if condition.is_empty() {
        "Pending".to_owned()
    } else {
        condition.join(",")
    };
    let duration = o
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map_or_else(|| "<none>".to_owned(), human_duration);
    let spec = o.get("spec").unwrap_or(&Value::Null);
    vec![
        name(o),
        created(o),
        json!(s(spec, "signerName")),
        json!(s(spec, "username")),
        json!(duration),
        json!(condition),
    ]
}

/// Webhook configurations (both kinds): how many webhooks they hold.
pub(super) fn webhook_configuration(o: &Value) -> Vec<Value> {
    let count = o
        .get("webhooks")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    vec![name(o), json!(count), created(o)]
}

pub(super) fn network_policy(o: &Value) -> Vec<Value> {
    vec![
        name(o),
        or_none(selector(o.pointer("/spec/podSelector"))),
        created(o),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_print_their_bounds_and_allowed_disruptions() {
        let min = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2},
            "status": {"disruptionsAllowed": 1}});
        let cells = pod_disruption_budget(&min);
        assert_eq!(
            (&cells[1], &cells[2], &cells[3]),
            (&json!("2"), &json!("N/A"), &json!(1))
        );
        let max = json!({"metadata": {"name": "web"}, "spec": {"maxUnavailable": "25%"}});
        let cells = pod_disruption_budget(&max);
        assert_eq!(
            (&cells[1], &cells[2], &cells[3]),
            (&json!("N/A"), &json!("25%"), &json!(0))
        );
    }

    #[test]
    fn quotas_print_used_over_hard() {
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "2", "requests.cpu": "500m", "limits.cpu": "1"},
            "used": {"pods": "1", "requests.cpu": "100m"}}});
        let cells = resource_quota(&quota);
        assert_eq!(cells[2], "pods: 1/2, requests.cpu: 100m/500m");
        assert_eq!(cells[3], "limits.cpu: 0/1");
    }

    #[test]
    fn priority_classes_and_network_policies() {
        let pc = json!({"metadata": {"name": "high"}, "value": 1000, "globalDefault": true,
            "preemptionPolicy": "Never"});
        let cells = priority_class(&pc);
        assert_eq!(
            (&cells[1], &cells[2], &cells[4]),
            (&json!(1000), &json!(true), &json!("Never"))
        );
        let all = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(network_policy(&all)[1], "<none>");
        let web = json!({"metadata": {"name": "web"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(network_policy(&web)[1], "app=web");
    }
}
