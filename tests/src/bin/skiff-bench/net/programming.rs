//! Programming cost with N Services present: Skiff's map writes for one Service or one
//! endpoint (on a scratch datapath loaded in this process, holding N Services of 10
//! backends), kube-proxy's full and partial syncs (`iptables-restore` in its iptables mode,
//! `nft -f` in its nftables mode), and the end-to-end latency
//! from an API write to every node's datapath answering for the new Service.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams},
};
use serde_json::{Value, json};
use skiff_agent::datapath::{
    Datapath, DatapathError, MapSizes,
    desired::{DesiredBackend, DesiredFrontend},
    maglev::DEFAULT_SEED,
    model::{Address, FrontendKey, Protocol, Scope},
    table::{MaglevSettings, Table},
};
use skiff_ebpf_common::lb::{BACKEND_ACTIVE, SVC_CLUSTER_IP};
use skiff_tests::{
    Lab,
    bare_node::BareNode,
    kube_proxy::{
        ServicePort,
        iptables::{self, Position},
        nftables,
    },
};

use super::{
    Plan, etcd_disk,
    workload::{NAMESPACE, kube_proxy_settings},
};

fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[index]
}

fn summary(name: &str, mut samples: Vec<f64>) -> Value {
    json!({
        "operation": name,
        "samples": samples.len(),
        "p50_us": percentile(&mut samples, 0.5),
        "p99_us": percentile(&mut samples, 0.99),
        "max_us": samples.iter().copied().fold(0.0, f64::max),
    })
}

/// [`summary`] with every sample, in the order measured (so a slow one can be placed).
fn summary_with_samples(name: &str, samples: Vec<f64>) -> Value {
    let mut row = summary(name, samples.clone());
    row["samples_us"] = json!(samples);
    row
}

fn frontend(i: usize) -> FrontendKey {
    let n = i as u32;
    FrontendKey {
        address: Address {
            ip: Ipv4Addr::new(10, 120 + ((n >> 16) & 7) as u8, (n >> 8) as u8, n as u8),
            port: 80,
            protocol: Protocol::Tcp,
        },
        scope: Scope::Internal,
    }
}

fn backend(i: usize, j: usize) -> Address {
    let n = (i * 10 + j) as u32;
    Address {
        ip: Ipv4Addr::new(10, 232 + ((n >> 16) & 7) as u8, (n >> 8) as u8, n as u8),
        port: 8080,
        protocol: Protocol::Tcp,
    }
}

const ACTIVE: DesiredBackend = DesiredBackend {
    state: BACKEND_ACTIVE,
    local: false,
};

/// Program Service `i` with backends `backends` into `table`.
fn program(table: &mut Table, i: usize, backends: &[Address]) -> Result<(), DatapathError> {
    let mut ids = Vec::with_capacity(backends.len());
    for b in backends {
        ids.push(table.set_backend(*b, ACTIVE)?);
    }
    let desired = DesiredFrontend {
        key: frontend(i),
        flags: SVC_CLUSTER_IP,
        affinity_timeout: 0,
        slots: backends.to_vec(),
    };
    table.set_frontend(&desired, &ids)?;
    Ok(())
}

/// Skiff's map writes: add one Service (10 backends), change one endpoint, remove one
/// Service, with `n` Services programmed; microseconds per operation.
fn skiff_map_updates(n: usize, repetitions: usize) -> Result<Value> {
    let (_datapath, maps) =
        Datapath::load(None, &MapSizes::default()).context("loading a scratch datapath")?;
    let mut table = Table::load(
        maps.lb,
        MaglevSettings {
            table_size: skiff_ebpf_common::maglev::MAGLEV_DEFAULT_TABLE_SIZE,
            seed: DEFAULT_SEED,
        },
    )?;
    let fill = Instant::now();
    for i in 0..n {
        let backends: Vec<Address> = (0..10).map(|j| backend(i, j)).collect();
        program(&mut table, i, &backends)?;
    }
    let fill = fill.elapsed();
    let (mut add, mut change, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..repetitions {
        let i = n + r;
        let backends: Vec<Address> = (0..10).map(|j| backend(i, j)).collect();
        let t = Instant::now();
        program(&mut table, i, &backends)?;
        add.push(t.elapsed().as_secs_f64() * 1e6);
        let mut moved = backends.clone();
        moved[0] = backend(i, 10);
        let t = Instant::now();
        program(&mut table, i, &moved)?;
        table.remove_backend(&backends[0])?;
        change.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        table.remove_frontend(&frontend(i))?;
        for b in &moved {
            table.remove_backend(b)?;
        }
        remove.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(json!({
        "present": n,
        "fill_seconds": fill.as_secs_f64(),
        "operations": [
            summary("add a Service (10 endpoints)", add),
            summary("change one endpoint", change),
            summary("remove a Service", remove),
        ],
    }))
}

/// A timed load's microseconds, or what went wrong.
fn micros(took: Result<std::time::Duration, String>) -> Result<f64> {
    took.map(|d| d.as_secs_f64() * 1e6)
        .map_err(anyhow::Error::msg)
}

/// kube-proxy's iptables restores with the current Services: a full sync and a partial
/// one (one Service changed), each timed in the bare node on top of the rules a first
/// restore loaded (so every sync replaces what kube-proxy's would).
fn iptables_restores(
    bare: &BareNode,
    services: &(Vec<ServicePort>, usize),
    repetitions: usize,
) -> Result<Value> {
    let (ports, measured) = services;
    let settings = kube_proxy_settings();
    let first = iptables::first_restore(ports, *measured, Position::Last, &settings);
    let full = iptables::full_restore(ports, *measured, Position::Last, &settings);
    let partial = iptables::partial_restore(ports, *measured, *measured, Position::Last, &settings);
    bare.flush();
    bare.restore(&first, true).map_err(anyhow::Error::msg)?;
    let (mut full_times, mut partial_times) = (Vec::new(), Vec::new());
    for _ in 0..repetitions.min(5) {
        full_times.push(micros(bare.restore(&full, true))?);
        partial_times.push(micros(bare.restore(&partial, true))?);
    }
    bare.flush();
    Ok(json!({
        "rules": full.lines().count(),
        "operations": [
            summary("iptables-restore, full sync", full_times),
            summary("iptables-restore, partial sync (one Service)", partial_times),
        ],
    }))
}

/// kube-proxy's nftables syncs with the current Services: the full sync is the one the
/// paths' measurement loaded (`nft -f` of the whole table into a namespace without it,
/// timed once: with 10,000 Services the kernel takes minutes to commit it), the partial
/// one (one Service's chains and map elements rewritten) is timed on that loaded table,
/// which is then removed.
fn nftables_syncs(
    bare: &BareNode,
    services: &(Vec<ServicePort>, usize),
    repetitions: usize,
    full_load: &Value,
) -> Result<Value> {
    let outcome = nftables_partial_syncs(bare, services, repetitions, full_load);
    bare.flush();
    outcome
}

/// [`nftables_syncs`] on the loaded table, before it is removed.
fn nftables_partial_syncs(
    bare: &BareNode,
    services: &(Vec<ServicePort>, usize),
    repetitions: usize,
    full_load: &Value,
) -> Result<Value> {
    if let Some(error) = full_load["error"].as_str() {
        bail!("the full sync did not load: {error}");
    }
    let full_seconds = full_load["seconds"]
        .as_f64()
        .context("the paths' measurement reported no full sync")?;
    anyhow::ensure!(
        bare.has_nft_table(),
        "kube-proxy's nftables table is not loaded"
    );
    let (ports, measured) = services;
    let partial = nftables::partial_sync(ports, *measured, &kube_proxy_settings());
    let mut partial_times = Vec::new();
    for _ in 0..repetitions.min(5) {
        partial_times.push(micros(bare.nft_load(&partial))?);
    }
    Ok(json!({
        "lines": full_load["lines"],
        "operations": [
            summary("nft -f, full sync", vec![full_seconds * 1e6]),
            summary("nft -f, partial sync (one Service)", partial_times),
        ],
    }))
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// When (µs since the epoch) an EndpointSlice with endpoints first reaches a watcher of
/// `selector` from `version` on: where the control plane's part of the end-to-end time
/// ends and the nodes' begins (the agents watch the same API server).
async fn slice_arrival(
    slices: Api<EndpointSlice>,
    selector: String,
    version: String,
) -> Result<u64> {
    let params = WatchParams::default().labels(&selector).timeout(30);
    let mut events = slices.watch(&params, &version).await?.boxed();
    while let Some(event) = events.try_next().await? {
        match event {
            WatchEvent::Added(slice) | WatchEvent::Modified(slice)
                if !slice.endpoints.is_empty() =>
            {
                return Ok(now_us());
            }
            WatchEvent::Error(status) => bail!("watching EndpointSlices: {}", status.message),
            _ => {}
        }
    }
    bail!("no EndpointSlice with endpoints for {selector} within 30 s")
}

/// API write → every node's datapath answers: a new Service with a known cluster IP and
/// the benchmark's pods; a waiter in each node (socket LB) records when it first answers,
/// and a watch of the Service's EndpointSlices splits the time into the control plane's
/// part and the nodes'.
async fn api_to_datapath(
    lab: &Lab,
    client: &Client,
    present: usize,
    repetitions: usize,
) -> Result<(Value, Value)> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let addresses = free_cluster_ips(client, repetitions).await?;
    let (mut latencies, mut to_slice, mut from_slice) = (Vec::new(), Vec::new(), Vec::new());
    let etcd_before = tokio::task::spawn_blocking(etcd_disk::snapshot).await?;
    for (r, ip) in addresses.into_iter().enumerate() {
        let target = format!("{ip}:80");
        let waiters: Vec<_> = lab
            .nodes
            .iter()
            .map(|node| {
                lab.spawn_load_in_node(
                    &node.name,
                    &["wait", "--target", &target, "--duration", "30"],
                )
            })
            .collect();
        // A name of its own per scale point: this measures new Services, not Services made
        // again under the name of one just deleted.
        let name = format!("bench-programming-{present}-{r}");
        let selector = format!("kubernetes.io/service-name={name}");
        let version = slices
            .list_metadata(&ListParams::default().labels(&selector))
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        let arrival = tokio::spawn(slice_arrival(slices.clone(), selector, version));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"clusterIP": ip.to_string(), "selector": {"app": "bench-echo"},
                     "ports": [{"port": 80, "targetPort": "http"}]},
        }))?;
        let written = now_us();
        services.create(&PostParams::default(), &service).await?;
        let slice_at = arrival.await??;
        to_slice.push(slice_at.saturating_sub(written) as f64);
        for waiter in waiters {
            let report = tokio::task::spawn_blocking(move || waiter.finish()).await?;
            let Some(at) = report["succeeded_at_unix_us"].as_u64() else {
                bail!("a node never answered for {target}: {report}");
            };
            latencies.push(at.saturating_sub(written) as f64);
            // Signed: a node may answer before the bench's own watch hears of the slice.
            from_slice.push(at as f64 - slice_at as f64);
        }
        services.delete(&name, &DeleteParams::default()).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut end_to_end =
        summary_with_samples("API write → datapath answers (every node)", latencies);
    let etcd_after = tokio::task::spawn_blocking(etcd_disk::snapshot).await?;
    if let (Some(before), Some(after)) = (etcd_before, etcd_after) {
        end_to_end["etcd_disk"] = etcd_disk::between(&before, &after);
    }
    Ok((
        end_to_end,
        json!([
            summary_with_samples("API write → EndpointSlice at a watcher", to_slice),
            summary_with_samples("EndpointSlice at a watcher → datapath answers", from_slice),
        ]),
    ))
}

/// `count` cluster IPs (from 10.111.250.0/24 on, the top of the lab's Service range) that
/// no Service holds: the waiters must know the address before the Service exists, and with
/// 10,000 filler Services present any fixed address may already be taken.
async fn free_cluster_ips(client: &Client, count: usize) -> Result<Vec<Ipv4Addr>> {
    let all: Api<Service> = Api::all(client.clone());
    let taken: std::collections::BTreeSet<Ipv4Addr> = all
        .list(&ListParams::default())
        .await
        .context("listing Services for free cluster IPs")?
        .items
        .iter()
        .filter_map(|s| s.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok())
        .collect();
    let base = u32::from(Ipv4Addr::new(10, 111, 250, 1));
    let last = u32::from(Ipv4Addr::new(10, 111, 255, 254));
    let free: Vec<Ipv4Addr> = (base..=last)
        .map(Ipv4Addr::from)
        .filter(|ip| !taken.contains(ip))
        .take(count)
        .collect();
    if free.len() < count {
        bail!(
            "only {} of {count} cluster IPs in 10.111.250.1-10.111.255.254 are free",
            free.len()
        );
    }
    Ok(free)
}

/// Every programming measurement with `present` Services. `nftables_load` is the paths'
/// load of kube-proxy's nftables full sync (still loaded on the bare node, or an error).
pub async fn measure(
    lab: &Lab,
    client: &Client,
    bare: &BareNode,
    services: &(Vec<ServicePort>, usize),
    nftables_load: &Value,
    present: usize,
    plan: Plan,
) -> Result<Value> {
    let repetitions = plan.repetitions;
    let skiff =
        tokio::task::spawn_blocking(move || skiff_map_updates(present, repetitions)).await??;
    // First, on the nftables table the paths' measurement left; without its figures the
    // rest still makes a report.
    let nftables =
        nftables_syncs(bare, services, plan.repetitions, nftables_load).unwrap_or_else(|e| {
            eprintln!("skiff-bench net: no nftables programming figures: {e:#}");
            json!({"error": format!("{e:#}")})
        });
    let iptables = iptables_restores(bare, services, plan.repetitions)?;
    let (end_to_end, parts) = api_to_datapath(lab, client, present, plan.repetitions).await?;
    Ok(json!({
        "skiff_maps": skiff,
        "iptables": iptables,
        "nftables": nftables,
        "end_to_end": end_to_end,
        "end_to_end_parts": parts,
    }))
}
