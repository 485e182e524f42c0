//! Services end to end: EndpointSlices that follow ready pods through scaling, failing
//! readiness and termination; the environment variables and DNS names pods find Services
//! by; no duplicate cluster IP or node port with two API servers racing; LoadBalancer
//! addresses from the pool; and the 422s bad Services get.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use skiff_tests::{Lab, control_replica::Replica};

const MINUTE: Duration = Duration::from_secs(60);

/// `address ready serving terminating` of every endpoint of the Service's slices.
fn slice_endpoints(lab: &Lab, ns: &str, service: &str) -> BTreeMap<String, String> {
    let out = lab.jsonpath(
        ns,
        &format!("endpointslices -l kubernetes.io/service-name={service}"),
        "{range .items[*].endpoints[*]}{.addresses[0]} {.conditions.ready}/{.conditions.serving}/{.conditions.terminating}{\"\\n\"}{end}",
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, c)| (a.to_owned(), c.to_owned()))
        .collect()
}

/// IPs of the ready pods selected by `selector`.
fn ready_pod_ips(lab: &Lab, ns: &str, selector: &str) -> BTreeSet<String> {
    let out = lab.jsonpath(
        ns,
        &format!("pods -l {selector}"),
        "{range .items[*]}{.status.podIP} {.status.conditions[?(@.type==\"Ready\")].status} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    );
    out.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip = words.next()?;
            let ready = words.next()? == "True";
            let deleting = words.next().is_some();
            (ready && !deleting).then(|| ip.to_owned())
        })
        .collect()
}

/// Wait until the slices list exactly the ready pods of `selector`, all ready.
fn wait_slices_match_ready_pods(lab: &Lab, ns: &str, expected: usize) {
    lab.eventually(
        &format!("EndpointSlices list exactly the {expected} ready pods"),
        2 * MINUTE,
        || {
            let pods = ready_pod_ips(lab, ns, "tier=web,app=echo");
            let slices = slice_endpoints(lab, ns, "echo");
            let listed: BTreeSet<String> = slices
                .iter()
                .filter(|(_, c)| c.as_str() == "true/true/false")
                .map(|(a, _)| a.clone())
                .collect();
            if pods.len() == expected && listed == pods && slices.len() == expected {
                Ok(())
            } else {
                Err(format!("ready pods {pods:?}, slices {slices:?}"))
            }
        },
    );
}

/// The Service of the endpoints test: every `tier: web` pod.
const ECHO_SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {tier: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

#[test]
fn endpoint_slices_follow_ready_pods_through_scaling_readiness_and_termination() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("eps");
    lab.apply(
        &ns,
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo, tier: web}}
    spec:
      containers:
      - name: echo
        image: skiff/echo
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
"#,
    );
    lab.apply(&ns, ECHO_SERVICE);
    wait_slices_match_ready_pods(&lab, &ns, 3);
    // Named targetPort resolved from the pods' container port.
    let ports = lab.jsonpath(
        &ns,
        "endpointslices -l kubernetes.io/service-name=echo",
        "{.items[*].ports[*].port}",
    );
    assert!(ports.split_whitespace().all(|p| p == "8080"), "{ports}");
    lab.kubectl_ok(&["scale", "deployment/echo", "-n", &ns, "--replicas=10"]);
    wait_slices_match_ready_pods(&lab, &ns, 10);
    lab.kubectl_ok(&["scale", "deployment/echo", "-n", &ns, "--replicas=2"]);
    wait_slices_match_ready_pods(&lab, &ns, 2);
    let legacy = lab.jsonpath(&ns, "endpoints echo", "{.subsets[*].addresses[*].ip}");
    assert_eq!(
        legacy.split_whitespace().collect::<BTreeSet<_>>(),
        ready_pod_ips(&lab, &ns, "tier=web,app=echo")
            .iter()
            .map(String::as_str)
            .collect(),
        "legacy Endpoints"
    );

    // Deleted and made again at once (before the garbage collector took the old slices):
    // the new Service gets slices of its own, and keeps them once the old ones are gone.
    lab.kubectl_ok(&["delete", "service", "echo", "-n", &ns, "--wait=false"]);
    lab.apply(&ns, ECHO_SERVICE);
    let uid = lab.jsonpath(&ns, "service/echo", "{.metadata.uid}");
    let owners = || {
        lab.jsonpath(
            &ns,
            "endpointslices -l kubernetes.io/service-name=echo",
            "{.items[*].metadata.ownerReferences[0].uid}",
        )
    };
    lab.eventually("only the new Service's slices are left", MINUTE, || {
        let owners = owners();
        if !owners.is_empty() && owners.split_whitespace().all(|o| o == uid) {
            Ok(())
        } else {
            Err(format!("slice owners {owners:?}, Service {uid}"))
        }
    });
    wait_slices_match_ready_pods(&lab, &ns, 2);
    std::thread::sleep(Duration::from_secs(3));
    wait_slices_match_ready_pods(&lab, &ns, 2);
    assert!(
        owners().split_whitespace().all(|o| o == uid),
        "{}",
        owners()
    );

    // A pod that never passes readiness is listed, not ready.
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Pod
metadata: {name: unready, labels: {tier: web}}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
    readinessProbe: {exec: {command: ["cat", "/tmp/ready"]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: slow-stop, labels: {tier: web}}
spec:
  terminationGracePeriodSeconds: 8
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"#,
    );
    lab.wait_running(&ns, "slow-stop");
    let unready_ip = lab.eventually("the unready pod has an IP", MINUTE, || {
        let ip = lab.jsonpath(&ns, "pod/unready", "{.status.podIP}");
        if ip.is_empty() {
            Err("no IP yet".to_owned())
        } else {
            Ok(ip)
        }
    });
    let slow_ip = lab.jsonpath(&ns, "pod/slow-stop", "{.status.podIP}");
    lab.eventually("the unready pod is listed with ready=false", MINUTE, || {
        let slices = slice_endpoints(&lab, &ns, "echo");
        match (slices.get(&unready_ip), slices.get(&slow_ip)) {
            (Some(u), Some(s)) if u == "false/false/false" && s == "true/true/false" => Ok(()),
            _ => Err(format!("{slices:?}")),
        }
    });
    // A deleting pod stays listed as terminating until it is gone.
    lab.kubectl_ok(&["delete", "pod", "slow-stop", "-n", &ns, "--wait=false"]);
    lab.eventually("the deleting pod shows terminating=true", MINUTE, || {
        let slices = slice_endpoints(&lab, &ns, "echo");
        match slices.get(&slow_ip) {
            Some(c) if c.starts_with("false/") && c.ends_with("/true") => Ok(()),
            _ => Err(format!("{slices:?}")),
        }
    });
    lab.eventually("the terminated pod leaves the slices", MINUTE, || {
        let slices = slice_endpoints(&lab, &ns, "echo");
        if slices.contains_key(&slow_ip) {
            Err(format!("{slices:?}"))
        } else {
            Ok(())
        }
    });
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `kubectl exec <pod> -- <command…>` stdout, or Err(stderr+stdout).
fn exec(lab: &Lab, ns: &str, pod: &str, command: &[&str]) -> Result<String, String> {
    let mut args = vec!["exec", pod, "-n", ns, "--"];
    args.extend(command);
    let out = lab.kubectl(&args);
    if out.code == 0 {
        Ok(out.stdout)
    } else {
        Err(format!("{}{}", out.stderr, out.stdout))
    }
}

#[test]
fn pods_find_services_by_environment_variables_and_dns() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("disc");
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: echo-svc}
spec:
  selector: {app: nothing}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns-udp, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox
        command: ["httpd", "-f", "-p", "80"]
"#,
    );
    let ip = lab.jsonpath(&ns, "service/echo-svc", "{.spec.clusterIP}");
    assert!(ip.starts_with("10."), "cluster IP {ip:?}");
    // Started after the Services: it gets their variables.
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "env; sleep 3600"]
"#,
    );
    lab.wait_running(&ns, "client");
    let env = lab.eventually("the client printed its environment", MINUTE, || {
        let logs = lab.kubectl(&["logs", "client", "-n", &ns]).stdout;
        if logs.contains("HOSTNAME") {
            Ok(logs)
        } else {
            Err(logs)
        }
    });
    let vars: BTreeMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
    for (name, value) in [
        ("ECHO_SVC_SERVICE_HOST", ip.clone()),
        ("ECHO_SVC_SERVICE_PORT", "80".to_owned()),
        ("ECHO_SVC_SERVICE_PORT_HTTP", "80".to_owned()),
        ("ECHO_SVC_SERVICE_PORT_DNS_UDP", "53".to_owned()),
        ("ECHO_SVC_PORT", format!("tcp://{ip}:80")),
        ("ECHO_SVC_PORT_80_TCP", format!("tcp://{ip}:80")),
        ("ECHO_SVC_PORT_80_TCP_PROTO", "tcp".to_owned()),
        ("ECHO_SVC_PORT_80_TCP_PORT", "80".to_owned()),
        ("ECHO_SVC_PORT_80_TCP_ADDR", ip.clone()),
        ("ECHO_SVC_PORT_53_UDP", format!("udp://{ip}:53")),
        ("ECHO_SVC_PORT_53_UDP_PROTO", "udp".to_owned()),
        ("ECHO_SVC_PORT_53_UDP_PORT", "53".to_owned()),
        ("ECHO_SVC_PORT_53_UDP_ADDR", ip.clone()),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1".to_owned()),
        ("KUBERNETES_SERVICE_PORT", "443".to_owned()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".to_owned()),
        ("KUBERNETES_PORT", "tcp://10.96.0.1:443".to_owned()),
        ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1".to_owned()),
    ] {
        assert_eq!(
            vars.get(name).copied(),
            Some(value.as_str()),
            "{name} in\n{env}"
        );
    }
    // Headless Services have no variables.
    assert!(!vars.keys().any(|k| k.starts_with("WEB_")), "{env}");

    let resolv = exec(&lab, &ns, "client", &["cat", "/etc/resolv.conf"]).expect("resolv.conf");
    assert!(
        resolv.contains(&format!(
            "search {ns}.svc.cluster.local svc.cluster.local cluster.local"
        )) && resolv.contains("nameserver 10.96.0.10")
            && resolv.contains("ndots:5"),
        "{resolv}"
    );
    let fqdn = format!("echo-svc.{ns}.svc.cluster.local");
    lab.eventually(&format!("{fqdn} resolves to {ip}"), MINUTE, || {
        let out = exec(&lab, &ns, "client", &["nslookup", &fqdn])?;
        if out.contains(&ip) { Ok(()) } else { Err(out) }
    });
    // Short names through the search path (ping resolves with the pod's resolv.conf; the
    // cluster IP carries no traffic without the datapath, only the resolution is checked).
    for name in [format!("echo-svc.{ns}"), "echo-svc".to_owned()] {
        lab.eventually(
            &format!("{name} resolves to {ip} through the search path"),
            MINUTE,
            || {
                let out = lab.kubectl(&[
                    "exec", "client", "-n", &ns, "--", "ping", "-c1", "-W1", &name,
                ]);
                let text = format!("{}{}", out.stdout, out.stderr);
                if text.contains(&format!("({ip})")) {
                    Ok(())
                } else {
                    Err(text)
                }
            },
        );
    }
    // SRV of a named port.
    let srv = format!("_http._tcp.{fqdn}");
    lab.eventually("SRV of the http port", MINUTE, || {
        let out = exec(&lab, &ns, "client", &["nslookup", "-type=srv", &srv])?;
        if out.contains(&format!("0 100 80 {fqdn}")) {
            Ok(())
        } else {
            Err(out)
        }
    });
    // Per-pod names of the headless Service: the StatefulSet's stable hostnames.
    lab.wait_running(&ns, "web-1");
    for pod in ["web-0", "web-1"] {
        let pod_ip = lab.jsonpath(&ns, &format!("pod/{pod}"), "{.status.podIP}");
        let name = format!("{pod}.web.{ns}.svc.cluster.local");
        lab.eventually(&format!("{name} resolves to {pod_ip}"), MINUTE, || {
            let out = exec(&lab, &ns, "client", &["nslookup", &name])?;
            if out.contains(&pod_ip) {
                Ok(())
            } else {
                Err(out)
            }
        });
    }
    lab.eventually("the headless name lists both pods", MINUTE, || {
        let out = exec(
            &lab,
            &ns,
            "client",
            &["nslookup", &format!("web.{ns}.svc.cluster.local")],
        )?;
        let count = out.matches("Address: 10.244.").count();
        if count == 2 { Ok(()) } else { Err(out) }
    });
    // Unknown names in the cluster domain do not exist.
    let missing = exec(
        &lab,
        &ns,
        "client",
        &["nslookup", &format!("nothing.{ns}.svc.cluster.local")],
    );
    let text = match missing {
        Ok(out) | Err(out) => out,
    };
    assert!(
        text.contains("NXDOMAIN") || text.contains("can't find"),
        "{text}"
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_servers_racing_never_share_a_cluster_ip_or_node_port() {
    let Some(lab) = Lab::from_env() else { return };
    let replica = Replica::start(&lab, "control-replica-race", 6444, &[]).await;
    let first = lab.client().await;
    let second = replica.client.clone();
    let ns = format!("race-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(first.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let creates = (0..200).map(|i| {
        let client = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let ns = ns.clone();
        async move {
            let api: Api<Service> = Api::namespaced(client, &ns);
            let kind = if i % 3 == 0 { "ClusterIP" } else { "NodePort" };
            let service: Service = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("s{i}")},
                "spec": {"type": kind, "selector": {"app": "none"}, "ports": [{"port": 80}]},
            }))
            .expect("service");
            api.create(&PostParams::default(), &service).await
        }
    });
    let results: Vec<_> = futures::stream::iter(creates)
        .buffer_unordered(32)
        .collect()
        .await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(ToString::to_string)
        .collect();
    assert!(
        failures.is_empty(),
        "{} creates failed: {failures:?}",
        failures.len()
    );
    let list = Api::<Service>::namespaced(first.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("list");
    assert_eq!(list.items.len(), 200);
    let mut ips = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    let mut node_port_count = 0;
    for service in &list.items {
        let spec = service.spec.as_ref().expect("spec");
        let ip = spec.cluster_ip.clone().expect("cluster IP");
        assert!(ips.insert(ip.clone()), "cluster IP {ip} handed out twice");
        for port in spec.ports.iter().flatten() {
            if let Some(n) = port.node_port {
                node_port_count += 1;
                assert!(node_ports.insert(n), "node port {n} handed out twice");
                assert!((30000..=32767).contains(&n), "node port {n} out of range");
            }
        }
    }
    assert_eq!(node_port_count, 133);
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

#[test]
fn load_balancer_services_get_an_address_from_the_pool() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("lb");
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  type: LoadBalancer
  selector: {app: front}
  ports: [{port: 80, targetPort: 8080}]
"#,
    );
    let ip = lab.eventually("the LoadBalancer gets an address", MINUTE, || {
        let ip = lab.jsonpath(&ns, "service/front", "{.status.loadBalancer.ingress[0].ip}");
        if ip.is_empty() {
            Err("pending".to_owned())
        } else {
            Ok(ip)
        }
    });
    let last: u8 = ip
        .rsplit('.')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    assert!(
        ip.starts_with("172.30.0.") && (200..=250).contains(&last),
        "{ip}"
    );
    let table = lab.kubectl_ok(&["get", "service", "front", "-n", &ns]);
    assert!(table.contains(&ip), "{table}");
    // One node answers for the address on the underlay (ARP): it is reachable from the
    // root namespace.
    lab.eventually(
        &format!("{ip} answers from the root namespace"),
        MINUTE,
        || skiff_tests::process::run("ping", &["-c1", "-W1", &ip]).map(drop),
    );
    let node_port = lab.jsonpath(&ns, "service/front", "{.spec.ports[0].nodePort}");
    assert!(table.contains(&format!("80:{node_port}/TCP")), "{table}");
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn bad_services_are_refused_with_the_field_at_fault() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("badsvc");
    lab.apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: holder}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 31999}]\n",
    );
    for (manifest, field) in [
        (
            "spec:\n  ports: [{name: a, port: 80}, {name: a, port: 81}]",
            "spec.ports[1].name: Duplicate value",
        ),
        (
            "spec:\n  ports: [{port: 70000}]",
            "spec.ports[0].port: Invalid value",
        ),
        (
            "spec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 31999}]",
            "spec.ports[0].nodePort: Invalid value: 31999: provided port is already allocated",
        ),
        (
            "spec:\n  selector: {\"bad key!\": x}\n  ports: [{port: 80}]",
            "spec.selector",
        ),
        (
            "spec:\n  type: ExternalName\n  externalName: \"not a name\"",
            "spec.externalName: Invalid value",
        ),
        (
            "spec:\n  clusterIP: 10.200.0.1\n  ports: [{port: 80}]",
            "the provided IP (10.200.0.1) is not in the valid range",
        ),
    ] {
        let full = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: bad}}\n{manifest}\n");
        let out = lab.kubectl_stdin(&["create", "-n", &ns, "-f", "-"], &full);
        assert_ne!(out.code, 0, "accepted:\n{full}");
        assert!(
            out.stderr.contains("is invalid") && out.stderr.contains(field),
            "expected {field:?} for\n{full}\ngot: {}",
            out.stderr
        );
    }
    // Nothing was stored, and the taken node port is still the holder's.
    assert!(lab.kubectl(&["get", "service", "bad", "-n", &ns]).code != 0);
    assert_eq!(
        lab.jsonpath(&ns, "service/holder", "{.spec.ports[0].nodePort}"),
        "31999"
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn cluster_info_names_the_api_server_and_the_dns_service() {
    let Some(lab) = Lab::from_env() else { return };
    let info = lab.kubectl_ok(&["cluster-info"]);
    assert!(
        info.contains("Kubernetes control plane is running at https://"),
        "{info}"
    );
    assert!(
        info.contains("is running at https://")
            && info.contains("/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy"),
        "{info}"
    );
    let dns = lab.jsonpath("kube-system", "service/kube-dns", "{.spec.clusterIP}");
    assert_eq!(dns, "10.96.0.10");
    let api = lab.jsonpath("default", "service/kubernetes", "{.spec.clusterIP}");
    assert_eq!(api, "10.96.0.1");
    let endpoints = lab.jsonpath(
        "default",
        "endpoints/kubernetes",
        "{.subsets[0].addresses[0].ip}",
    );
    assert_eq!(endpoints, "172.30.0.1");
}
