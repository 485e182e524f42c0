//! networking.k8s.io/v1: NetworkPolicy (served and validated here; enforced by the node's
//! datapath), Ingress and IngressClass — kube's defaults and validation.

use k8s_openapi::{
    api::networking::v1::{
        IPBlock, Ingress, IngressBackend, IngressClass, NetworkPolicy, NetworkPolicyPeer,
        NetworkPolicyPort,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{label_selector, port_name, port_number};
use crate::{
    model::{
        cidr::Cidr,
        validation::{self, ErrorList, FieldError},
    },
    resources::strategy::Kind,
};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// One port of a policy rule: protocol, number or name, and an optional range end.
fn policy_port(port: &NetworkPolicyPort, field: &str, errors: &mut ErrorList) {
    if let Some(protocol) = &port.protocol
        && !PROTOCOLS.contains(&protocol.as_str())
    {
        errors.push(FieldError::not_supported(
            format!("{field}.protocol"),
            protocol,
            PROTOCOLS,
        ));
    }
    match &port.port {
        Some(IntOrString::Int(number)) => {
            port_number(*number, &format!("{field}.port"), errors);
            if let Some(end) = port.end_port {
                if end < *number {
                    errors.push(FieldError::invalid(
                        format!("{field}.endPort"),
                        end,
                        "must be greater than or equal to `port`",
                    ));
                }
                port_number(end, &format!("{field}.endPort"), errors);
            }
        }
        Some(IntOrString::String(name)) => {
            port_name(name, &format!("{field}.port"), errors);
            if port.end_port.is_some() {
                errors.push(FieldError::invalid(
                    format!("{field}.endPort"),
                    port.end_port.unwrap_or_default(),
                    "may not be specified when `port` is non-numeric",
                ));
            }
        }
        None => {
            if port.end_port.is_some() {
                errors.push(FieldError::invalid(
                    format!("{field}.endPort"),
                    port.end_port.unwrap_or_default(),
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

/// An ipBlock: a CIDR and exceptions strictly inside it.
fn ip_block(block: &IPBlock, field: &str, errors: &mut ErrorList) {
    if block.cidr.is_empty() {
        return errors.push(FieldError::required(format!("{field}.cidr"), ""));
    }
    let cidr = match block.cidr.parse::<Cidr>() {
        Ok(cidr) => cidr,
        Err(e) => {
            return errors.push(FieldError::invalid(
                format!("{field}.cidr"),
                &block.cidr,
                e.to_string(),
            ));
        }
    };
    for (i, except) in block.except.iter().flatten().enumerate() {
        let at = format!("{field}.except[{i}]");
        match except.parse::<Cidr>() {
            Err(e) => errors.push(FieldError::invalid(at, except, e.to_string())),
            Ok(inner) if !cidr.covers(&inner) || inner.prefix() == cidr.prefix() => errors.push(
                FieldError::invalid(at, except, "must be a strict subset of `cidr`"),
            ),
            Ok(_) => {}
        }
    }
}

/// A peer: selectors, or an ipBlock alone.
fn peer(peer: &NetworkPolicyPeer, field: &str, errors: &mut ErrorList) {
    let selectors =
        usize::from(peer.pod_selector.is_some()) + usize::from(peer.namespace_selector.is_some());
    match (&peer.ip_block, selectors) {
        (None, 0) => errors.push(FieldError::required(field, "must specify a peer")),
        (Some(_), n) if n > 0 => errors.push(FieldError::forbidden(
            field,
            "may not specify both ipBlock and another peer",
        )),
        (Some(block), _) => ip_block(block, &format!("{field}.ipBlock"), errors),
        (None, _) => {
            if let Some(selector) = &peer.pod_selector {
                label_selector(selector, &format!("{field}.podSelector"), errors);
            }
            if let Some(selector) = &peer.namespace_selector {
                label_selector(selector, &format!("{field}.namespaceSelector"), errors);
            }
        }
    }
}

/// The ports and peers of one rule.
fn rule(
    ports: Option<&Vec<NetworkPolicyPort>>,
    peers: Option<&Vec<NetworkPolicyPeer>>,
    field: &str,
    peers_name: &str,
    errors: &mut ErrorList,
) {
    for (i, port) in ports.into_iter().flatten().enumerate() {
        policy_port(port, &format!("{field}.ports[{i}]"), errors);
    }
    for (i, p) in peers.into_iter().flatten().enumerate() {
        peer(p, &format!("{field}.{peers_name}[{i}]"), errors);
    }
}

impl Kind for NetworkPolicy {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.pod_selector.get_or_insert_with(LabelSelector::default);
        let ports = spec
            .ingress
            .iter_mut()
            .flatten()
            .flat_map(|r| r.ports.iter_mut().flatten())
            .chain(
                spec.egress
                    .iter_mut()
                    .flatten()
                    .flat_map(|r| r.ports.iter_mut().flatten()),
            );
        for port in ports {
            port.protocol.get_or_insert_with(|| "TCP".to_owned());
        }
        if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
            let mut types = vec!["Ingress".to_owned()];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                types.push("Egress".to_owned());
            }
            spec.policy_types = Some(types);
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        if let Some(selector) = &spec.pod_selector {
            label_selector(selector, "spec.podSelector", errors);
        }
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            let field = format!("spec.ingress[{i}]");
            rule(r.ports.as_ref(), r.from.as_ref(), &field, "from", errors);
        }
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            let field = format!("spec.egress[{i}]");
            rule(r.ports.as_ref(), r.to.as_ref(), &field, "to", errors);
        }
        let types = spec.policy_types.as_deref().unwrap_or_default();
        for (i, t) in types.iter().enumerate() {
            if !["Ingress", "Egress"].contains(&t.as_str()) {
                errors.push(FieldError::not_supported(
                    format!("spec.policyTypes[{i}]"),
                    t,
                    &["Egress", "Ingress"],
                ));
            }
        }
        if types.len() > 2 {
            errors.push(FieldError::invalid(
                "spec.policyTypes",
                format!("{types:?}"),
                "may not have more than 2 entries",
            ));
        }
    }
}

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

/// A backend: a Service (with a port by name or number) or a resource, not both.
fn backend(backend: &IngressBackend, field: &str, errors: &mut ErrorList) {
    match (&backend.service, &backend.resource) {
        (Some(_), Some(_)) => errors.push(FieldError::invalid(
            field,
            "",
            "cannot set both resource and service backends",
        )),
        (None, None) => errors.push(FieldError::invalid(
            field,
            "",
            "resource or service backend is required",
        )),
        (Some(service), None) => {
            if let Some(why) = validation::dns1123_label(&service.name) {
                errors.push(FieldError::invalid(
                    format!("{field}.service.name"),
                    &service.name,
                    why,
                ));
            }
            match service.port.as_ref().map(|p| (&p.name, p.number)) {
                None | Some((None, None)) => errors.push(FieldError::required(
                    format!("{field}.service.port"),
                    "port name or number is required",
                )),
                Some((Some(_), Some(_))) => errors.push(FieldError::invalid(
                    format!("{field}.service.port"),
                    "",
                    "cannot set both port name & port number",
                )),
                Some((Some(name), None)) => {
                    port_name(name, &format!("{field}.service.port.name"), errors);
                }
                Some((None, Some(number))) => {
                    port_number(number, &format!("{field}.service.port.number"), errors);
                }
            }
        }
        (None, Some(resource)) => {
            if resource.kind.is_empty() || resource.name.is_empty() {
                errors.push(FieldError::required(
                    format!("{field}.resource"),
                    "kind and name are required",
                ));
            }
        }
    }
}

impl Kind for Ingress {
    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        if spec.rules.as_ref().is_none_or(Vec::is_empty) && spec.default_backend.is_none() {
            errors.push(FieldError::invalid(
                "spec.rules",
                "[]",
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if let Some(default) = &spec.default_backend {
            backend(default, "spec.defaultBackend", errors);
        }
        for (i, r) in spec.rules.iter().flatten().enumerate() {
            let field = format!("spec.rules[{i}]");
            if let Some(host) = &r.host {
                let bare = host.strip_prefix("*.").unwrap_or(host);
                if let Some(why) = validation::dns1123_subdomain(bare) {
                    errors.push(FieldError::invalid(format!("{field}.host"), host, why));
                }
            }
            for (j, path) in r.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                let at = format!("{field}.http.paths[{j}]");
                if !PATH_TYPES.contains(&path.path_type.as_str()) {
                    errors.push(FieldError::not_supported(
                        format!("{at}.pathType"),
                        &path.path_type,
                        PATH_TYPES,
                    ));
                }
                if let Some(p) = &path.path
                    && path.path_type != "ImplementationSpecific"
                    && !p.starts_with('/')
                {
                    errors.push(FieldError::invalid(
                        format!("{at}.path"),
                        p,
                        "must be an absolute path",
                    ));
                }
                backend(&path.backend, &format!("{at}.backend"), errors);
            }
        }
    }
}

impl Kind for IngressClass {
    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let controller = self.spec.as_ref().and_then(|s| s.controller.as_deref());
        match controller {
            None | Some("") => errors.push(FieldError::required("spec.controller", "")),
            Some(c) if c.len() > 250 => errors.push(FieldError::too_long("spec.controller", 250)),
            Some(_) => {}
        }
        if let Some(old) = old {
            let before = old.spec.as_ref().and_then(|s| s.controller.as_deref());
            super::immutable(&controller, &before, "spec.controller", errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prepared(policy: serde_json::Value) -> (NetworkPolicy, ErrorList) {
        let mut policy: NetworkPolicy = serde_json::from_value(policy).expect("a NetworkPolicy");
        policy.default_fields();
        let mut errors = ErrorList::new();
        policy.validate(None, &mut errors);
        (policy, errors)
    }

    #[test]
    fn defaults_protocols_and_policy_types() {
        let (policy, errors) = prepared(json!({"metadata": {"name": "p"}, "spec": {
            "podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}}));
        assert!(errors.is_empty(), "{errors:?}");
        let spec = policy.spec.expect("spec");
        assert_eq!(
            spec.policy_types,
            Some(vec!["Ingress".into(), "Egress".into()])
        );
        let egress = spec.egress.expect("egress");
        let ports = egress[0].ports.as_ref().expect("ports");
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn refuses_what_kube_refuses_with_the_field() {
        let (_, errors) = prepared(json!({"metadata": {"name": "p"}, "spec": {
            "podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "ingress": [{
                "from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16", "10.0.0.0/8"]},
                              "podSelector": {}},
                         {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}],
                "ports": [{"protocol": "ICMP", "port": 80, "endPort": 79},
                          {"port": "http", "endPort": 90}]}],
            "policyTypes": ["Sideways"]}}));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.podSelector.matchExpressions[0].values",
                "spec.ingress[0].ports[0].protocol",
                "spec.ingress[0].ports[0].endPort",
                "spec.ingress[0].ports[1].endPort",
                "spec.ingress[0].from[0]",
                "spec.ingress[0].from[1]",
                "spec.ingress[0].from[2].ipBlock.except[0]",
                "spec.policyTypes[0]",
            ]
        );
    }

    #[test]
    fn ingress_backends_and_paths() {
        let mut errors = ErrorList::new();
        let ingress: Ingress = serde_json::from_value(json!({"metadata": {"name": "i"}, "spec": {
            "rules": [{"host": "*.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                {"path": "api", "pathType": "Fuzzy",
                 "backend": {"service": {"name": "web", "port": {}}}}]}}]}}))
        .expect("an Ingress");
        ingress.validate(None, &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.rules[0].http.paths[1].pathType",
                "spec.rules[0].http.paths[1].path",
                "spec.rules[0].http.paths[1].backend.service.port",
            ]
        );
    }
}
