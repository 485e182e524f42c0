//! Node lifecycle from the agents: every lab node registers a Ready Node with its address,
//! pod CIDR, capacity and runtime, renews its Lease every 10 s, and re-registers the same
//! Node after a crash.

use std::time::Duration;

use k8s_openapi::api::{coordination::v1::Lease, core::v1::Node};
use kube::Api;
use skiff_tests::Lab;

async fn wait_for_nodes(nodes: &Api<Node>, count: usize) -> Vec<Node> {
    for _ in 0..100 {
        if let Ok(list) = nodes.list(&Default::default()).await
            && list.items.len() >= count
        {
            return list.items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} nodes registered within 10 s");
}

#[tokio::test]
async fn agents_register_ready_nodes_and_renew_their_leases() {
    let Some(lab) = Lab::from_env() else { return };
    let client = lab.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let registered = wait_for_nodes(&nodes, lab.nodes.len()).await;
    for expected in &lab.nodes {
        let node = registered
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(expected.name.as_str()))
            .expect("registered");
        let status = node.status.as_ref().expect("status");
        let ready = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .expect("Ready condition");
        assert_eq!(ready.status, "True");
        let address = status
            .addresses
            .iter()
            .flatten()
            .find(|a| a.type_ == "InternalIP")
            .expect("InternalIP");
        assert_eq!(address.address, expected.address.to_string());
        let index = expected.name.rsplit('-').next().expect("index");
        assert_eq!(
            node.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
            Some(format!("10.244.{index}.0/24"))
        );
        let info = status.node_info.as_ref().expect("nodeInfo");
        assert!(
            info.container_runtime_version
                .starts_with("containerd://1."),
            "{info:?}"
        );
        assert_eq!(
            info.kernel_version,
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .expect("kernel")
                .trim()
        );
        let capacity = status.capacity.as_ref().expect("capacity");
        for resource in ["cpu", "memory", "pods"] {
            assert!(capacity.contains_key(resource), "{capacity:?}");
        }
    }

    let table = lab.kubectl_ok(&["get", "nodes"]);
    assert!(
        table.starts_with("NAME") && table.contains("STATUS") && table.contains("VERSION"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.contains(" Ready ")).count(),
        lab.nodes.len(),
        "{table}"
    );

    // The lease moves forward within one renewal period.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = &lab.nodes[0].name;
    let renew = |lease: Lease| lease.spec.and_then(|s| s.renew_time).map(|t| t.0);
    let before = renew(leases.get(first).await.expect("lease")).expect("renewTime");
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = renew(leases.get(first).await.expect("lease")).expect("renewTime");
    assert!(after > before, "lease not renewed: {before:?} → {after:?}");

    // A crashed agent comes back to the same Node object.
    let uid = nodes.get(first).await.expect("node").metadata.uid;
    lab.component("restart", &format!("agent/{first}"), true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = nodes.get(first).await.expect("node after restart");
    assert_eq!(
        again.metadata.uid, uid,
        "the node was recreated instead of re-registered"
    );
}
