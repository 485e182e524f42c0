//! Cells of Ingresses and IngressClasses.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{created, list, name, s};

/// The first three hosts of the rules (`*` when none names one).
fn hosts(rules: &[Value]) -> String {
    const SHOWN: usize = 3;
    let mut shown = Vec::new();
    let mut more = false;
    for rule in rules {
        if shown.len() == SHOWN {
            more = true;
        }
        let host = s(rule, "host");
        if !more && !host.is_empty() {
            shown.push(host);
        }
    }
    if shown.is_empty() {
        return "*".to_owned();
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - SHOWN)
    } else {
        joined
    }
}

pub(super) fn ingress(o: &Value) -> Vec<Value> {
    let class = match s(o, "spec.ingressClassName") {
        "" if o.pointer("/spec/ingressClassName").is_none() => "<none>",
        class => class,
    };
    // The load balancer's addresses, sorted and unique (the server prints the wide form).
    let addresses: BTreeSet<&str> = list(o, "status.loadBalancer.ingress")
        .iter()
        .filter_map(|i| match (s(i, "ip"), s(i, "hostname")) {
            ("", "") => None,
            ("", hostname) => Some(hostname),
            (ip, _) => Some(ip),
        })
        .collect();
    let ports = if list(o, "spec.tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(o),
        json!(class),
        json!(hosts(list(o, "spec.rules"))),
        json!(addresses.into_iter().collect::<Vec<_>>().join(",")),
        json!(ports),
        created(o),
    ]
}

pub(super) fn ingress_class(o: &Value) -> Vec<Value> {
    let parameters = match o.pointer("/spec/parameters") {
        Some(p) if p.is_object() => {
            let group = match s(p, "apiGroup") {
                "" if p.get("apiGroup").is_none() => String::new(),
                group => format!(".{group}"),
            };
            format!("{}{group}/{}", s(p, "kind"), s(p, "name"))
        }
        _ => "<none>".to_owned(),
    };
    vec![
        name(o),
        json!(s(o, "spec.controller")),
        json!(parameters),
        created(o),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingresses_read_like_kubectl() {
        let plain = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"http": {}}]}});
        let cells = ingress(&plain);
        assert_eq!(
            (&cells[1], &cells[2], &cells[3], &cells[4]),
            (&json!("<none>"), &json!("*"), &json!(""), &json!("80"))
        );
        let busy = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "nginx",
            "tls": [{"hosts": ["a.example"]}],
            "rules": [{"host": "a.example"}, {"host": "b.example"}, {}, {"host": "c.example"},
                      {"host": "d.example"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb.example"},
                                                    {"ip": "10.0.0.1"}]}}});
        let cells = ingress(&busy);
        assert_eq!(cells[1], "nginx");
        assert_eq!(cells[2], "a.example,b.example,c.example + 2 more...");
        assert_eq!(cells[3], "10.0.0.1,10.0.0.2,lb.example");
        assert_eq!(cells[4], "80, 443");
    }

    #[test]
    fn ingress_classes_name_their_parameters() {
        let class = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external"}}});
        let cells = ingress_class(&class);
        assert_eq!(cells[1], "k8s.io/ingress-nginx");
        assert_eq!(cells[2], "IngressParameters.k8s.example.com/external");
        let bare = json!({"metadata": {"name": "x"}, "spec": {"controller": "c"}});
        assert_eq!(ingress_class(&bare)[2], "<none>");
    }
}
