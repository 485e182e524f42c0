use serde_json::json;

use super::*;

fn node() -> NodeView {
    NodeView {
        name: "n1".to_owned(),
        addresses: vec![Ipv4Addr::new(172, 30, 0, 11)],
        reserved: vec![Ipv4Addr::new(10, 96, 0, 10)],
    }
}

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": spec,
    }))
    .expect("service")
}

/// A slice with port `http`/8080 and endpoints (ip, node, ready, serving, terminating).
fn slice(endpoints: &[(&str, &str, bool, bool, bool)]) -> EndpointSlice {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(ip, node, ready, serving, terminating)| {
            json!({
                "addresses": [ip],
                "nodeName": node,
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "web-abc", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("ip")
}

fn backend(text: &str) -> Address {
    Address {
        ip: ip(text),
        port: 8080,
        protocol: Protocol::Tcp,
    }
}

#[test]
fn a_cluster_ip_service_has_one_frontend_with_its_ready_endpoints() {
    let svc = service(json!({
        "type": "ClusterIP", "clusterIP": "10.96.1.1",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
    }));
    let slices = slice(&[
        ("10.244.1.5", "n1", true, true, false),
        ("10.244.2.5", "n2", true, true, false),
        ("10.244.2.6", "n2", false, false, false),
    ]);
    let desired = super::service(&svc, &[&slices], &node());
    assert_eq!(desired.frontends.len(), 1);
    let frontend = &desired.frontends[0];
    assert_eq!(frontend.key.address.ip, ip("10.96.1.1"));
    assert_eq!(frontend.key.address.port, 80);
    assert_eq!(frontend.key.scope, Scope::Internal);
    assert_eq!(frontend.flags, SVC_CLUSTER_IP);
    assert_eq!(
        frontend.slots,
        vec![backend("10.244.1.5"), backend("10.244.2.5")]
    );
    // The not-ready pod is known (flows already on it finish) but never chosen.
    assert_eq!(
        desired.backends[&backend("10.244.2.6")].state,
        BACKEND_TERMINATING
    );
    assert!(desired.backends[&backend("10.244.1.5")].local);
    assert!(!desired.backends[&backend("10.244.2.5")].local);
}

#[test]
fn terminating_endpoints_serve_only_when_nothing_is_ready() {
    let svc = service(json!({
        "clusterIP": "10.96.1.1", "ports": [{"name": "http", "port": 80}],
    }));
    let mixed = slice(&[
        ("10.244.1.5", "n1", true, true, false),
        ("10.244.1.6", "n1", false, true, true),
    ]);
    let desired = super::service(&svc, &[&mixed], &node());
    assert_eq!(desired.frontends[0].slots, vec![backend("10.244.1.5")]);
    assert_eq!(
        desired.backends[&backend("10.244.1.6")].state,
        BACKEND_TERMINATING
    );
    let draining = slice(&[
        ("10.244.1.6", "n1", false, true, true),
        ("10.244.1.7", "n1", false, false, true),
    ]);
    let desired = super::service(&svc, &[&draining], &node());
    assert_eq!(desired.frontends[0].slots, vec![backend("10.244.1.6")]);
    assert_eq!(
        desired.backends[&backend("10.244.1.6")].state,
        BACKEND_ACTIVE
    );
}

#[test]
fn node_ports_load_balancers_and_external_ips_get_both_scopes() {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "LoadBalancer", "clusterIP": "10.96.1.1",
            "externalIPs": ["192.0.2.7"],
            "externalTrafficPolicy": "Local", "healthCheckNodePort": 31999,
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "172.30.0.200"}]}},
    }))
    .expect("service");
    let slices = slice(&[
        ("10.244.1.5", "n1", true, true, false),
        ("10.244.2.5", "n2", true, true, false),
    ]);
    let desired = super::service(&svc, &[&slices], &node());
    let find = |address: &str, port: u16, scope: Scope| {
        desired
            .frontends
            .iter()
            .find(|f| {
                f.key.address.ip == ip(address)
                    && f.key.address.port == port
                    && f.key.scope == scope
            })
            .unwrap_or_else(|| panic!("no frontend {address}:{port} {scope:?}: {desired:#?}"))
    };
    assert_eq!(desired.frontends.len(), 7);
    for (address, port, kind) in [
        ("172.30.0.11", 30080, SVC_NODE_PORT),
        ("172.30.0.200", 80, SVC_LOAD_BALANCER),
        ("192.0.2.7", 80, SVC_EXTERNAL_IP),
    ] {
        let external = find(address, port, Scope::External);
        // externalTrafficPolicy: Local — this node's endpoint only, client IP kept.
        assert_eq!(external.slots, vec![backend("10.244.1.5")]);
        assert_eq!(
            external.flags,
            kind | SVC_EXTERNAL | SVC_MAGLEV | SVC_LOCAL_ONLY | SVC_AFFINITY
        );
        let internal = find(address, port, Scope::Internal);
        assert_eq!(internal.slots.len(), 2);
        assert_eq!(internal.flags & SVC_LOCAL_ONLY, 0);
    }
    let cluster = find("10.96.1.1", 80, Scope::Internal);
    assert_eq!(cluster.affinity_timeout, 60);
    assert_eq!(
        desired.health,
        Some(HealthCheck {
            port: 31999,
            local_endpoints: 1
        })
    );
}

#[test]
fn internal_traffic_policy_local_keeps_cluster_ip_traffic_on_the_node() {
    let svc = service(json!({
        "clusterIP": "10.96.1.1", "internalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80}],
    }));
    let slices = slice(&[
        ("10.244.1.5", "n1", true, true, false),
        ("10.244.2.5", "n2", true, true, false),
    ]);
    let desired = super::service(&svc, &[&slices], &node());
    assert_eq!(desired.frontends[0].slots, vec![backend("10.244.1.5")]);
}

#[test]
fn headless_external_name_reserved_and_mismatched_ports_program_nothing() {
    let headless = service(json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}));
    let slices = slice(&[("10.244.1.5", "n1", true, true, false)]);
    assert!(
        super::service(&headless, &[&slices], &node())
            .frontends
            .is_empty()
    );
    let external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
    assert_eq!(
        super::service(&external, &[], &node()),
        DesiredService::default()
    );
    let dns = service(json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 53}]}));
    assert!(
        super::service(&dns, &[&slices], &node())
            .frontends
            .is_empty()
    );
    // A port the slices do not carry: the frontend exists with no backend (connections are
    // refused rather than sent anywhere).
    let other = service(json!({"clusterIP": "10.96.1.1", "ports": [{"name": "grpc", "port": 90}]}));
    let desired = super::service(&other, &[&slices], &node());
    assert_eq!(desired.frontends.len(), 1);
    assert!(desired.frontends[0].slots.is_empty());
}
