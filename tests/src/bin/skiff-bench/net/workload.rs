//! The benchmark's Services: the measured one with its echo pods and client, the filler
//! Services of the scale axis, and the same objects as kube-proxy would read them.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;
use skiff_tests::{
    Lab, Node, bare_node,
    kube_proxy::{ServicePort, Settings},
};

use crate::ensure_namespace;

/// Namespace of the measured Service, its pods and its client.
pub const NAMESPACE: &str = "bench-net";
/// The Skiff client pod (on the first node).
pub const CLIENT_POD: &str = "bench-client";
/// Namespace of the filler Services.
const FILLERS: &str = "bench-fill";
/// Echo pods behind the measured Service.
const BACKENDS: usize = 10;

/// What the paths are measured against.
pub struct Workload {
    /// The measured Service's cluster IP.
    pub vip: Ipv4Addr,
    /// One backend pod's IP (the direct path).
    pub backend: Ipv4Addr,
    /// Every backend pod's IP, `backend` first (the direct path spread like the Service).
    pub backends: Vec<Ipv4Addr>,
    /// Node port of the `externalTrafficPolicy: Cluster` Service.
    pub node_port: u16,
    /// Node port of the `externalTrafficPolicy: Local` Service.
    pub local_port: u16,
    /// The first node (the Skiff client's; no backend there).
    pub client_node: Node,
    /// A node with local backends.
    pub backend_node: Node,
    /// The client pod's network namespace and cgroup (looked up once: every run starts in
    /// them without asking the API server).
    pub client_sandbox: (std::path::PathBuf, std::path::PathBuf),
}

fn manifest(lab: &Lab) -> String {
    let client_node = &lab.nodes[0].name;
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: bench-echo}}
spec:
  replicas: {BACKENDS}
  selector: {{matchLabels: {{app: bench-echo}}}}
  template:
    metadata: {{labels: {{app: bench-echo}}}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{{key: kubernetes.io/hostname, operator: NotIn, values: [{client_node}]}}]
      containers:
      - name: echo
        image: skiff/echo
        ports:
        - {{name: http, containerPort: 8080}}
        - {{name: echo, containerPort: 9000}}
        - {{name: udp, containerPort: 9001, protocol: UDP}}
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: bench}}
spec:
  selector: {{app: bench-echo}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
  - {{name: echo, port: 9000, targetPort: echo}}
  - {{name: udp, port: 53, targetPort: udp, protocol: UDP}}
---
apiVersion: v1
kind: Service
metadata: {{name: bench-np}}
spec:
  type: NodePort
  selector: {{app: bench-echo}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: bench-local}}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {{app: bench-echo}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: bench-client}}
spec:
  nodeName: {client_node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: busybox
    command: ["sleep", "86400"]
"#
    )
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{what}: unexpected {text:?}"))
}

/// Create the measured Service, its backends and client; wait until all are ready.
pub async fn set_up(lab: &Lab, client: &Client) -> Result<Workload> {
    ensure_namespace(client, NAMESPACE).await?;
    ensure_namespace(client, FILLERS).await?;
    lab.apply(NAMESPACE, &manifest(lab));
    lab.wait_running(NAMESPACE, CLIENT_POD);
    let started = Instant::now();
    loop {
        let ready = lab.jsonpath(
            NAMESPACE,
            "endpointslices -l kubernetes.io/service-name=bench",
            "{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{\"\\n\"}{end}",
        );
        if ready.lines().filter(|l| !l.is_empty()).count() == BACKENDS {
            break;
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("the {BACKENDS} echo pods did not become ready: {ready}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pods = lab.jsonpath(
        NAMESPACE,
        "pods -l app=bench-echo",
        "{range .items[*]}{.status.podIP} {.spec.nodeName}{\"\\n\"}{end}",
    );
    let (backend, backend_node) = pods
        .lines()
        .find_map(|l| l.split_once(' '))
        .context("no echo pod")?;
    let backends = pods
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(ip, _)| parse(ip, "pod IP"))
        .collect::<Result<Vec<Ipv4Addr>>>()?;
    let backend_node = lab
        .nodes
        .iter()
        .find(|n| n.name == backend_node)
        .cloned()
        .context("an echo pod on an unknown node")?;
    Ok(Workload {
        vip: parse(
            &lab.jsonpath(NAMESPACE, "service/bench", "{.spec.clusterIP}"),
            "cluster IP",
        )?,
        backend: parse(backend, "pod IP")?,
        backends,
        node_port: parse(
            &lab.jsonpath(NAMESPACE, "service/bench-np", "{.spec.ports[0].nodePort}"),
            "node port",
        )?,
        local_port: parse(
            &lab.jsonpath(
                NAMESPACE,
                "service/bench-local",
                "{.spec.ports[0].nodePort}",
            ),
            "node port",
        )?,
        client_node: lab.nodes[0].clone(),
        backend_node,
        client_sandbox: {
            let (_, netns, cgroup) = lab.pod_sandbox(NAMESPACE, CLIENT_POD);
            (netns, cgroup)
        },
    })
}

/// The address of filler endpoint `n` (10.248.0.0/14: outside every lab range, never sent to).
fn filler_address(n: usize) -> Ipv4Addr {
    let n = n as u32;
    Ipv4Addr::new(10, 248 + ((n >> 16) & 3) as u8, (n >> 8) as u8, n as u8)
}

/// Make fillers `from..to` exist (Service `filler-<i>` with one EndpointSlice of 10
/// endpoints), 32 requests in flight.
pub async fn fillers(client: &Client, from: usize, to: usize) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    let services: Api<Service> = Api::namespaced(client.clone(), FILLERS);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), FILLERS);
    let failures: Vec<String> = stream::iter(from..to)
        .map(|i| {
            let services = services.clone();
            let slices = slices.clone();
            async move {
                let name = format!("filler-{i:05}");
                let service: Service = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
                }))
                .map_err(|e| e.to_string())?;
                let endpoints: Vec<_> = (0..10)
                    .map(|j| json!({"addresses": [filler_address(i * 10 + j).to_string()]}))
                    .collect();
                let slice: EndpointSlice = serde_json::from_value(json!({
                    "metadata": {"name": format!("{name}-1"), "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "skiff-bench"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
                    "endpoints": endpoints,
                }))
                .map_err(|e| e.to_string())?;
                for attempt in 0..5 {
                    match services.create(&PostParams::default(), &service).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 409 => break,
                        Err(e) if attempt == 4 => return Err(format!("{name}: {e}")),
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                match slices.create(&PostParams::default(), &slice).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                    Err(e) => Err(format!("{name} slice: {e}")),
                }
            }
        })
        .buffer_unordered(32)
        .filter_map(|r: Result<(), String>| async move { r.err() })
        .collect()
        .await;
    if !failures.is_empty() {
        bail!("{} fillers failed, e.g. {}", failures.len(), failures[0]);
    }
    Ok(())
}

/// The `skiff_datapath_services` gauge of a node.
fn programmed(node: &Node) -> u64 {
    let url = format!(
        "http://{}:{}/metrics",
        node.address,
        skiff_tests::AGENT_HEALTH_PORT
    );
    skiff_tests::process::run("curl", &["-s", "-m", "5", &url])
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("skiff_datapath_services ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Wait until every node's datapath holds at least `size` Services besides the three
/// benchmark Services and `kubernetes`.
pub fn wait_programmed(lab: &Lab, size: usize) -> Result<()> {
    let want = size as u64 + 3;
    let started = Instant::now();
    for node in &lab.nodes {
        loop {
            let have = programmed(node);
            if have >= want {
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("{} programmed {have} of {want} Services", node.name);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

/// kube-proxy's settings on the bare node (the lab's cluster and Service CIDRs).
pub fn kube_proxy_settings() -> Settings {
    Settings {
        cluster_cidr: "10.244.0.0/16".to_owned(),
        service_cidr: "10.96.0.0/12".to_owned(),
        node_ip: bare_node::ADDRESS,
    }
}

/// Every TCP and UDP Service port with a cluster IP and ready endpoints, as kube-proxy reads them,
/// and the index of the measured one (`bench-net/bench:http`).
pub async fn kube_proxy_services(client: &Client) -> Result<(Vec<ServicePort>, usize)> {
    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let services = services.list(&ListParams::default()).await?.items;
    let slices = slices.list(&ListParams::default()).await?.items;
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in &slices {
        let Some(owner) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        by_service
            .entry((ns, owner.clone()))
            .or_default()
            .push(slice);
    }
    let mut ports = Vec::new();
    for service in &services {
        let ns = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()) else {
            continue;
        };
        for port in spec.ports.iter().flatten() {
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => "tcp",
                "UDP" => "udp",
                _ => continue,
            };
            let port_name = port.name.clone().unwrap_or_default();
            let mut endpoints = Vec::new();
            for slice in by_service
                .get(&(ns.clone(), name.clone()))
                .into_iter()
                .flatten()
            {
                let Some(target) = slice
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| {
                        p.name.clone().unwrap_or_default() == port_name
                            && p.protocol
                                .as_deref()
                                .unwrap_or("TCP")
                                .eq_ignore_ascii_case(protocol)
                    })
                    .and_then(|p| p.port)
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                for endpoint in &slice.endpoints {
                    let ready = endpoint
                        .conditions
                        .as_ref()
                        .and_then(|c| c.ready)
                        .unwrap_or(true);
                    if let (true, Some(address)) = (
                        ready,
                        endpoint.addresses.first().and_then(|a| a.parse().ok()),
                    ) {
                        endpoints.push((address, target));
                    }
                }
            }
            if endpoints.is_empty() {
                continue;
            }
            ports.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name,
                protocol: protocol.to_owned(),
                cluster_ip: ip,
                port: u16::try_from(port.port).unwrap_or(0),
                node_port: port.node_port.and_then(|p| u16::try_from(p).ok()),
                endpoints,
            });
        }
    }
    let measured = ports
        .iter()
        .position(|p| p.namespace == NAMESPACE && p.name == "bench" && p.port_name == "http")
        .context("the measured Service has no endpoints")?;
    Ok((ports, measured))
}

/// Remove the benchmark's namespaces.
pub async fn tear_down(client: &Client) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for ns in [NAMESPACE, FILLERS] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
}
