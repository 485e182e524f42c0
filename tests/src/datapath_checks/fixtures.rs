//! What the datapath checks build on: the echo workload and client pods, waiting until the
//! API and every node's datapath agree on a Service, and reading skiff-load reports and
//! datapath counters.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde_json::Value;

use crate::Lab;

const MINUTE: Duration = Duration::from_secs(60);

/// An echo Deployment (`app=<name>`) with `replicas` pods, a preStop pause so terminating
/// pods keep serving while the datapath drains them, and the given extra pod spec lines.
pub fn echo_deployment(name: &str, replicas: usize) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: echo
        image: skiff/echo
        ports:
        - {{name: http, containerPort: 8080}}
        - {{name: udp, containerPort: 9001, protocol: UDP}}
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
        lifecycle:
          preStop:
            sleep: {{seconds: 3}}
"#
    )
}

/// A busybox pod that sleeps, pinned to `node`.
pub fn client_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
"#
    )
}

/// Wait until `service`'s slices list `count` ready endpoints, and then until every node's
/// datapath balances each of the Service's frontends over `count` active backends: a
/// probe sent as soon as the API shows the endpoints can reach a node that has not
/// programmed them yet (a NodePort refused there once, in CI). For Services whose every
/// port has the endpoints and whose internal traffic policy is Cluster (a frontend with
/// fewer would never match and the wait would fail after a minute).
pub fn wait_ready_endpoints(lab: &Lab, ns: &str, service: &str, count: usize) {
    lab.eventually(
        &format!("{count} ready endpoints of {service}"),
        2 * MINUTE,
        || {
            let ready = lab.jsonpath(
                ns,
                &format!("endpointslices -l kubernetes.io/service-name={service}"),
                "{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{\"\\n\"}{end}",
            );
            let found = ready.lines().filter(|l| !l.is_empty()).count();
            if found == count {
                Ok(())
            } else {
                Err(format!("{found} ready: {ready}"))
            }
        },
    );
    let vip = lab.jsonpath(ns, &format!("service/{service}"), "{.spec.clusterIP}");
    if vip.is_empty() || vip == "None" {
        return;
    }
    for node in &lab.nodes {
        lab.eventually(
            &format!("{} balancing {service} over {count} backends", node.name),
            MINUTE,
            || {
                let frontends = lab.frontends(&node.name);
                let balanced = active_backends(&frontends, &vip);
                if !balanced.is_empty() && balanced.iter().all(|(_, n)| *n == count) {
                    Ok(())
                } else {
                    Err(format!("active backends per frontend: {balanced:?}"))
                }
            },
        );
    }
}

/// The in-cluster frontends (`scope: internal`) of the Service whose cluster IP is `vip`
/// in an `lb list -o json` listing, each with its number of active backends.
fn active_backends(frontends: &Value, vip: &str) -> Vec<(String, usize)> {
    let internal = || {
        frontends
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["scope"] == "internal")
    };
    let prefix = format!("{vip}:");
    let ids: BTreeSet<u64> = internal()
        .filter(|f| {
            f["frontend"]
                .as_str()
                .is_some_and(|a| a.starts_with(&prefix))
        })
        .filter_map(|f| f["service_id"].as_u64())
        .collect();
    internal()
        .filter(|f| f["service_id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .map(|f| {
            let active = f["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["state"] == "active")
                .count();
            (f["frontend"].as_str().unwrap_or("?").to_owned(), active)
        })
        .collect()
}

/// Names of the pods of `app`, with their nodes.
pub fn pods_of(lab: &Lab, ns: &str, app: &str) -> Vec<(String, String)> {
    lab.jsonpath(
        ns,
        &format!("pods -l app={app}"),
        "{range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(p, n)| (p.to_owned(), n.to_owned()))
    .collect()
}

/// A decision counter of `node`'s datapath (`skiff-agent bpf counters`).
pub fn decisions(lab: &Lab, node: &str, hook: &str, reason: &str) -> u64 {
    let name = format!("skiff_datapath_decisions_total{{hook=\"{hook}\",reason=\"{reason}\"}}");
    counters(&lab.bpf(node, &["counters"]))
        .get(&name)
        .copied()
        .unwrap_or(0)
}

/// `skiff-agent bpf counters` output (Prometheus text) as `name{labels}` → value.
fn counters(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The counters of `skiff-agent bpf counters` that moved from `before` to `after`, one
/// `name{labels} +delta` per line: what a node's datapath decided meanwhile.
pub fn counters_moved(before: &str, after: &str) -> String {
    let before = counters(before);
    counters(after)
        .into_iter()
        .filter_map(|(name, value)| {
            let delta = value.saturating_sub(before.get(&name).copied().unwrap_or(0));
            (delta > 0).then(|| format!("{name} +{delta}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A number from a skiff-load report (0 if absent).
pub fn count(report: &Value, field: &str) -> u64 {
    report[field].as_u64().unwrap_or(0)
}

pub fn backends(report: &Value) -> BTreeSet<String> {
    report["backends"]
        .as_object()
        .map(|b| b.keys().cloned().collect())
        .unwrap_or_default()
}

/// One client pod per node, running.
pub fn clients(lab: &Lab, ns: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, node) in lab.nodes.iter().enumerate() {
        let name = format!("client-{}", i + 1);
        lab.apply(ns, &client_pod(&name, &node.name));
        names.push(name);
    }
    for name in &names {
        lab.wait_running(ns, name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_backends_cover_every_internal_frontend_of_the_service() {
        let listing = serde_json::json!([
            {"frontend": "10.96.0.1:443/TCP", "scope": "internal", "service_id": 1,
             "backends": [{"id": 1, "state": "active"}]},
            {"frontend": "10.105.0.80:80/TCP", "scope": "internal", "service_id": 2,
             "backends": [{"id": 2, "state": "active"}, {"id": 3, "state": "terminating"}]},
            {"frontend": "172.30.0.11:30720/TCP", "scope": "internal", "service_id": 2,
             "backends": []},
            {"frontend": "172.30.0.11:30720/TCP", "scope": "external", "service_id": 2,
             "backends": [{"id": 2, "state": "active"}]},
        ]);
        assert_eq!(
            active_backends(&listing, "10.105.0.80"),
            vec![
                ("10.105.0.80:80/TCP".to_owned(), 1),
                ("172.30.0.11:30720/TCP".to_owned(), 0)
            ]
        );
        assert!(active_backends(&listing, "10.105.0.8").is_empty());
    }

    #[test]
    fn counters_moved_lists_only_what_grew() {
        let before = "# HELP x\nd{hook=\"xdp\",reason=\"translated\"} 5\nd{hook=\"tc\",reason=\"passed\"} 7\n";
        let after = "# HELP x\nd{hook=\"xdp\",reason=\"translated\"} 9\nd{hook=\"tc\",reason=\"passed\"} 7\nd{hook=\"tc\",reason=\"no_backend\"} 2\n";
        assert_eq!(
            counters_moved(before, after),
            "d{hook=\"tc\",reason=\"no_backend\"} +2\nd{hook=\"xdp\",reason=\"translated\"} +4"
        );
    }
}
