//! The control plane across restarts: a kube-runtime watcher sees every change, survives a
//! restart of skiff-control and relists after a 410; nothing is lost when etcd and
//! skiff-control restart; etcd outages answer 503 and heal; two replicas share one etcd.
//! These tests stop lab components, so they take turns.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use skiff_tests::{Lab, control_replica::Replica};
use tokio::sync::mpsc;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, PartialEq)]
enum Seen {
    Init,
    InitDone,
    Apply(String, Option<String>),
    Delete(String),
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("pod")
}

async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    want: impl Fn(&Seen) -> bool,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(seen)) if want(&seen) => return,
            Ok(Some(_)) => continue,
            _ => panic!("the watcher never reported {what}"),
        }
    }
}

/// Bump etcd's revision with a key no resource watches.
async fn bump_revision() {
    let lab = Lab::from_env().expect("lab");
    let mut etcd = lab.etcd().await;
    etcd.put("/skiff-e2e/bump", "x", None).await.expect("put");
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_runtime_watcher_sees_every_change_and_survives_a_restart() {
    let _turn = TURN.lock().await;
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("watcher");
    let client = lab.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = watcher(pods.clone(), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let seen = match event {
                Ok(watcher::Event::Init) => Seen::Init,
                Ok(watcher::Event::InitDone) => Seen::InitDone,
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    let label = p
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("step").cloned());
                    Seen::Apply(p.metadata.name.unwrap_or_default(), label)
                }
                Ok(watcher::Event::Delete(p)) => Seen::Delete(p.metadata.name.unwrap_or_default()),
                Err(_) => continue,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    next_matching(&mut rx, |s| *s == Seen::InitDone, "the initial list").await;

    pods.create(&PostParams::default(), &pod("one"))
        .await
        .expect("create");
    next_matching(
        &mut rx,
        |s| *s == Seen::Apply("one".into(), None),
        "the create",
    )
    .await;
    let patch = json!({"metadata": {"labels": {"step": "updated"}}});
    pods.patch("one", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    next_matching(
        &mut rx,
        |s| *s == Seen::Apply("one".into(), Some("updated".into())),
        "the update",
    )
    .await;
    pods.delete("one", &DeleteParams::default())
        .await
        .expect("delete");
    next_matching(&mut rx, |s| *s == Seen::Delete("one".into()), "the delete").await;

    // Restart skiff-control while etcd moves on: the watcher's resourceVersion is then older
    // than the new server's watch cache, it gets 410 Expired, and relists.
    lab.component("stop", "skiff-control", false);
    bump_revision().await;
    lab.component("start", "skiff-control", false);
    next_matching(&mut rx, |s| *s == Seen::Init, "a relist after 410").await;
    next_matching(&mut rx, |s| *s == Seen::InitDone, "the end of the relist").await;

    pods.create(&PostParams::default(), &pod("two"))
        .await
        .expect("create after restart");
    next_matching(
        &mut rx,
        |s| *s == Seen::Apply("two".into(), None),
        "a create after the restart",
    )
    .await;
    task.abort();
}

/// The controllers' leader Lease and who holds it.
async fn lease_holder(client: kube::Client) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client, "kube-system");
    leases
        .get_opt("skiff-controller-manager")
        .await
        .ok()
        .flatten()
        .and_then(|lease| lease.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_hands_the_leader_lease_to_its_successor_at_once() {
    let _turn = TURN.lock().await;
    let Some(lab) = Lab::from_env() else { return };
    let client = lab.client().await;
    let mut before = None;
    for _ in 0..100 {
        before = lease_holder(client.clone()).await.filter(|h| !h.is_empty());
        if before.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = before.expect("the controllers hold their leader lease");
    // SIGTERM: the stopping server releases the lease, so the restarted one takes it on its
    // first try. A lease left to expire would keep it waiting 10–15 s.
    lab.component("restart", "skiff-control", false);
    let restarted = std::time::Instant::now();
    let client = lab.client().await;
    let mut after = None;
    while restarted.elapsed() < Duration::from_secs(5) {
        after = lease_holder(client.clone())
            .await
            .filter(|h| !h.is_empty() && *h != before);
        if after.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after.is_some(),
        "the restarted server did not lead within 5 s (lease still held by {before})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_resource_version_is_an_in_stream_410() {
    let _turn = TURN.lock().await;
    let Some(lab) = Lab::from_env() else { return };
    // A fresh server's cache starts at the current revision: revision 1 is long gone.
    lab.component("restart", "skiff-control", false);
    bump_revision().await;
    let client = lab.client().await;
    let request = http::Request::get(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&timeoutSeconds=2",
    )
    .body(Vec::new())
    .expect("request");
    let text = client
        .request_text(request)
        .await
        .expect("a 200 response with an ERROR event");
    let event: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one event")).expect("json");
    assert_eq!(event["type"], "ERROR", "{event}");
    assert_eq!(event["object"]["code"], 410, "{event}");
    assert_eq!(event["object"]["reason"], "Expired", "{event}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_across_etcd_and_control_restarts_and_outages_answer_503() {
    let _turn = TURN.lock().await;
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("durable");
    let client = lab.client().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "keep"}, "data": {"answer": "42"}}))
            .expect("cm");
    let created = maps
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");

    lab.component("stop", "etcd", true);
    let impatient: Api<ConfigMap> = Api::namespaced(lab.client_without_retries().await, &ns);
    match impatient.get("keep").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (503, "ServiceUnavailable"),
                "{status:?}"
            )
        }
        other => panic!("expected 503 while etcd is down, got {other:?}"),
    }
    lab.component("start", "etcd", false);
    lab.component("restart", "skiff-control", true);

    let fresh = lab.client().await;
    let maps: Api<ConfigMap> = Api::namespaced(fresh, &ns);
    let mut got = None;
    for _ in 0..100 {
        if let Ok(found) = maps.get("keep").await {
            got = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = got.expect("the configmap is readable again after the restarts");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(
        got.data.and_then(|d| d.get("answer").cloned()).as_deref(),
        Some("42")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_etcd_see_each_others_writes() {
    let _turn = TURN.lock().await;
    let Some(lab) = Lab::from_env() else { return };
    let replica = Replica::start(&lab, "control-replica-2", 16443, &[]).await;
    let second = replica.client.clone();
    let ns = lab.namespace("replicas");
    let maps_two: Api<ConfigMap> = Api::namespaced(second, &ns);

    let stream = watcher(maps_two.clone(), watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let maps_one: Api<ConfigMap> = Api::namespaced(lab.client().await, &ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "via-one"}})).expect("cm");
    let wait = async {
        let mut created = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) if !created => {
                    maps_one
                        .create(&PostParams::default(), &cm)
                        .await
                        .expect("create through replica one");
                    created = true;
                }
                Ok(watcher::Event::Apply(c)) if c.metadata.name.as_deref() == Some("via-one") => {
                    return true;
                }
                _ => {}
            }
        }
        false
    };
    let seen = tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or(false);
    drop(replica);
    assert!(
        seen,
        "a write through replica one never reached a watch on replica two"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_replica_leads_the_controllers_and_another_takes_over_when_it_dies() {
    use k8s_openapi::api::{apps::v1::Deployment, coordination::v1::Lease};

    let _turn = TURN.lock().await;
    let Some(lab) = Lab::from_env() else { return };
    // A Lease left by a replica that is gone (an earlier test restarts the lab's API
    // server) would expire mid-test: start only once its holder is seen renewing it, which
    // only a live leader does (every 5 s). A pid check is not enough: pids are reused.
    let lab_leases: Api<Lease> = Api::namespaced(lab.client().await, "kube-system");
    let lease_state = || async {
        lab_leases
            .get("skiff-controller-manager")
            .await
            .ok()
            .and_then(|l| l.spec)
            .map(|spec| (spec.holder_identity, spec.renew_time.map(|t| t.0)))
    };
    let mut baseline = lease_state().await;
    let mut renewing = false;
    for _ in 0..160 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = lease_state().await;
        match (&baseline, &now) {
            (Some((held, renewed)), Some((holder, renew)))
                if held == holder && holder.is_some() =>
            {
                if renewed != renew {
                    renewing = true;
                    break;
                }
            }
            _ => baseline = now,
        }
    }
    assert!(
        renewing,
        "no skiff-control is renewing the controller Lease"
    );
    // Longer than this test's outage of the first replica: the nodes' agents only talk to
    // the first one, so their Leases pause meanwhile.
    let replica = Replica::start(
        &lab,
        "control-replica-leader",
        16444,
        &["--node-monitor-grace-period", "90"],
    )
    .await;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let second_identity = format!("{}_{}", hostname.trim(), replica.pid());
    let second = replica.client.clone();
    let leases: Api<Lease> = Api::namespaced(second.clone(), "kube-system");
    let holder = || async {
        leases
            .get("skiff-controller-manager")
            .await
            .ok()
            .and_then(|l| l.spec?.holder_identity)
    };
    let mut first = None;
    for _ in 0..100 {
        first = holder().await;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = first.expect("the second replica serves the leader Lease");
    // Two replicas, one leader: the second waits.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        holder().await.as_deref(),
        Some(first.as_str()),
        "the leader changed with both alive"
    );
    assert_ne!(first, second_identity);
    let ns = lab.namespace("leader");
    // The leader dies: the second takes the Lease over and runs the controllers.
    lab.component("stop", "skiff-control", true);
    let started = std::time::Instant::now();
    let mut took_over = false;
    while started.elapsed() < Duration::from_secs(40) {
        if holder().await.as_deref() == Some(second_identity.as_str()) {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let takeover = started.elapsed();
    let outcome = async {
        if !took_over {
            return Err("the second replica never took the Lease over".to_owned());
        }
        eprintln!(
            "the second replica took over after {:.1} s",
            takeover.as_secs_f64()
        );
        let deployments: Api<Deployment> = Api::namespaced(second.clone(), &ns);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "led"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "led"}},
                     "template": {"metadata": {"labels": {"app": "led"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .map_err(|e| e.to_string())?;
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .map_err(|e| e.to_string())?;
        // The ReplicaSet controller creates the pods and the scheduler binds them — both
        // running in the second replica now.
        let pods: Api<Pod> = Api::namespaced(second.clone(), &ns);
        for _ in 0..120 {
            let list = pods
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let bound = list
                .items
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                .count();
            if bound == 2 {
                // Written while the nodes' API server is down: their watches must catch up
                // through the re-list when it is back.
                let services: Api<Service> = Api::namespaced(second.clone(), &ns);
                let service: Service = serde_json::from_value(json!({
                    "metadata": {"name": "led"},
                    "spec": {"selector": {"app": "led"}, "ports": [{"port": 80}]}
                }))
                .map_err(|e| e.to_string())?;
                let created = services
                    .create(&PostParams::default(), &service)
                    .await
                    .map_err(|e| e.to_string())?;
                return created
                    .spec
                    .and_then(|s| s.cluster_ip)
                    .ok_or_else(|| "the Service got no cluster IP".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err("the second replica's controllers did not create and bind the pods".to_owned())
    }
    .await;
    lab.component("start", "skiff-control", false);
    drop(replica);
    let vip = outcome.expect("failover");
    for node in &lab.nodes {
        let mut programmed = false;
        for _ in 0..120 {
            if lab
                .bpf(&node.name, &["lb", "list"])
                .contains(&format!("{vip}:80/TCP"))
            {
                programmed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            programmed,
            "{}: the Service created during the outage ({vip}) never reached the datapath",
            node.name
        );
    }
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
