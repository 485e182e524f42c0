//! Services and the objects that describe their endpoints.

use std::collections::BTreeSet;

use k8s_openapi::{
    api::{
        core::v1::{Endpoints, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{port_name, port_number, service_alloc};
use crate::{
    model::validation::{self, ErrorList, FieldError},
    resources::strategy::{Claim, Kind},
};

const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const AFFINITIES: &[&str] = &["None", "ClientIP"];
const POLICIES: &[&str] = &["Cluster", "Local"];

impl Kind for Service {
    const HOLDS_CLAIMS: bool = true;

    fn claims(&self) -> Vec<Claim> {
        service_alloc::claims(self)
    }

    fn allocate(&mut self, held: &dyn Fn(&str) -> bool, errors: &mut ErrorList) -> Vec<String> {
        service_alloc::allocate(self, held, errors)
    }

    fn carry_over(&mut self, old: &Self) {
        service_alloc::carry_over(self, old);
    }

    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        let kind = spec
            .type_
            .get_or_insert_with(|| "ClusterIP".to_owned())
            .clone();
        if kind == "ExternalName" {
            return;
        }
        let affinity = spec
            .session_affinity
            .get_or_insert_with(|| "None".to_owned())
            .clone();
        if affinity == "ClientIP" {
            // kube's default ClientIP affinity timeout: 3 hours.
            let config = spec
                .session_affinity_config
                .get_or_insert_with(Default::default);
            let client_ip = config.client_ip.get_or_insert_with(Default::default);
            client_ip.timeout_seconds.get_or_insert(10800);
        }
        spec.internal_traffic_policy
            .get_or_insert_with(|| "Cluster".to_owned());
        if kind == "NodePort" || kind == "LoadBalancer" {
            spec.external_traffic_policy
                .get_or_insert_with(|| "Cluster".to_owned());
        } else if spec.external_ips.as_ref().is_none_or(Vec::is_empty) {
            // Only externally reachable Services have an external traffic policy.
            spec.external_traffic_policy = None;
        }
        for port in spec.ports.iter_mut().flatten() {
            port.protocol.get_or_insert_with(|| "TCP".to_owned());
            // A zero or empty targetPort means "same as port", as in kube's defaulting.
            if matches!(&port.target_port, None | Some(IntOrString::Int(0)))
                || matches!(&port.target_port, Some(IntOrString::String(s)) if s.is_empty())
            {
                port.target_port = Some(IntOrString::Int(port.port));
            }
        }
        self.status
            .get_or_insert_with(Default::default)
            .load_balancer
            .get_or_insert_with(Default::default);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            errors.push(FieldError::required("spec", ""));
            return;
        };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if !TYPES.contains(&kind) {
            errors.push(FieldError::not_supported("spec.type", kind, TYPES));
        }
        if kind == "ExternalName" {
            match spec.external_name.as_deref() {
                None | Some("") => errors.push(FieldError::required("spec.externalName", "")),
                Some(name) => {
                    if let Some(why) = validation::dns1123_subdomain(name.trim_end_matches('.')) {
                        errors.push(FieldError::invalid("spec.externalName", name, why));
                    }
                }
            }
        }
        let ports = spec.ports.as_deref().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if ports.is_empty() && kind != "ExternalName" && !headless {
            errors.push(FieldError::required("spec.ports", ""));
        }
        let mut names = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        for (i, p) in ports.iter().enumerate() {
            let field = format!("spec.ports[{i}]");
            match p.name.as_deref() {
                Some(name) if !name.is_empty() => {
                    // Service port names are DNS labels (container port names are IANA names).
                    if let Some(why) = validation::dns1123_label(name) {
                        errors.push(FieldError::invalid(format!("{field}.name"), name, why));
                    }
                    if !names.insert(name.to_owned()) {
                        errors.push(FieldError::duplicate(format!("{field}.name"), name));
                    }
                }
                _ if ports.len() > 1 => {
                    errors.push(FieldError::required(format!("{field}.name"), ""))
                }
                _ => {}
            }
            port_number(p.port, &format!("{field}.port"), errors);
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            if !PROTOCOLS.contains(&protocol) {
                errors.push(FieldError::not_supported(
                    format!("{field}.protocol"),
                    protocol,
                    PROTOCOLS,
                ));
            }
            if !numbers.insert((p.port, protocol.to_owned())) {
                errors.push(FieldError::duplicate(
                    field.clone(),
                    format!("{}/{protocol}", p.port),
                ));
            }
            match &p.target_port {
                Some(IntOrString::Int(n)) => {
                    port_number(*n, &format!("{field}.targetPort"), errors)
                }
                Some(IntOrString::String(name)) => {
                    port_name(name, &format!("{field}.targetPort"), errors)
                }
                None => {}
            }
            if let Some(node_port) = p.node_port.filter(|n| *n != 0) {
                if kind == "ClusterIP" {
                    errors.push(FieldError::forbidden(
                        format!("{field}.nodePort"),
                        "may not be used when `type` is 'ClusterIP'",
                    ));
                }
                port_number(node_port, &format!("{field}.nodePort"), errors);
            }
        }
        if let Some(selector) = &spec.selector {
            validation::labels(selector, "spec.selector", errors);
        }
        if let Some(affinity) = &spec.session_affinity
            && !AFFINITIES.contains(&affinity.as_str())
        {
            errors.push(FieldError::not_supported(
                "spec.sessionAffinity",
                affinity,
                AFFINITIES,
            ));
        }
        if let Some(timeout) = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            && !(1..=86400).contains(&timeout)
        {
            errors.push(FieldError::invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                timeout,
                "must be greater than 0 and less than 86400",
            ));
        }
        for (field, value) in [
            ("spec.externalTrafficPolicy", &spec.external_traffic_policy),
            ("spec.internalTrafficPolicy", &spec.internal_traffic_policy),
        ] {
            if let Some(v) = value
                && !POLICIES.contains(&v.as_str())
            {
                errors.push(FieldError::not_supported(field, v, POLICIES));
            }
        }
        if let Some(old_ip) = old
            .and_then(|o| o.spec.as_ref())
            .and_then(|s| s.cluster_ip.as_deref())
            && !old_ip.is_empty()
            && spec.cluster_ip.as_deref().is_some_and(|ip| ip != old_ip)
        {
            errors.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                spec.cluster_ip.as_deref().unwrap_or_default(),
                "may not change once set",
            ));
        }
    }
}

impl Kind for Endpoints {}

impl Kind for EndpointSlice {
    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        const TYPES: &[&str] = &["IPv4", "IPv6", "FQDN"];
        if !TYPES.contains(&self.address_type.as_str()) {
            errors.push(FieldError::not_supported(
                "addressType",
                &self.address_type,
                TYPES,
            ));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if e.addresses.is_empty() {
                errors.push(FieldError::required(
                    format!("endpoints[{i}].addresses"),
                    "",
                ));
            }
        }
    }
}
