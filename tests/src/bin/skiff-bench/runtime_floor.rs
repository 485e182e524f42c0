//! The floor under pod start: containerd + runc alone, with nothing of Skiff's kubelet around
//! them.
//!
//! The same four containerd calls the agent makes for a container (the container record,
//! the rootfs snapshot, the task — shim and `runc create` — and its start), driven straight
//! from this process, for containers of the same image with a runtime spec of the same shape
//! (own pid, ipc, uts, mount and network namespaces, a cgroup under the lab's root). Left
//! out: the API server and its watch, the pod sandbox (veth, address, routes), volumes, the
//! log shim, status. What a Skiff pod start takes beyond this floor is Skiff's.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use skiff_agent::runtime::{
    Runtime,
    containers::{NewContainer, StartTimings},
    images::ReadyImage,
    registry::normalize,
    spec::{self, ContainerConfig, DEFAULT_CAPABILITIES},
};
use skiff_tests::bench::Latency;

/// The containerd namespace of the floor's containers: no agent watches it (`cargo xtask
/// down` removes the OCI runtime state of every `skiff-*` namespace).
const NAMESPACE: &str = "skiff-bench-floor";
/// The cgroup parent of the floor's containers (inside the lab's cgroup root, which `down`
/// removes).
const CGROUP_PARENT: &str = "/skiff/bench-floor";
/// SIGKILL.
const KILL: u32 = 9;

/// containerd + runc, ready to start containers of one image.
pub struct RuntimeFloor {
    runtime: Runtime,
    image: ReadyImage,
    /// The OCI runtime the shim runs (`None`: its default runc).
    oci_runtime: Option<PathBuf>,
}

impl RuntimeFloor {
    /// Connect to containerd at `socket`, import `archive` (an OCI archive holding `image`)
    /// into the floor's namespace and unpack it, so no start pulls.
    pub async fn prepare(socket: &Path, archive: &Path, image: &str) -> Result<Self> {
        let runtime = Runtime::connect(socket, NAMESPACE)
            .await
            .with_context(|| format!("connecting to containerd at {}", socket.display()))?;
        runtime
            .import_archive(archive)
            .await
            .with_context(|| format!("importing {}", archive.display()))?;
        let name = normalize(image)?;
        let image = runtime
            .local_image(&name)
            .await?
            .with_context(|| format!("{} holds no image {name}", archive.display()))?;
        Ok(Self {
            runtime,
            image,
            oci_runtime: None,
        })
    }

    /// The same floor with the shim running `binary` instead of runc.
    pub fn with_oci_runtime(&self, binary: &Path) -> Self {
        Self {
            runtime: self.runtime.clone(),
            image: self.image.clone(),
            oci_runtime: Some(binary.to_path_buf()),
        }
    }

    /// Start a container per name, all at once; each one's latency runs from its first
    /// containerd call to its task's start. Each call's time goes to `steps`.
    pub async fn start_batch(&self, names: &[String], steps: &mut StepLatencies) -> Latency {
        let starts = futures::future::join_all(names.iter().map(|name| async move {
            let started = Instant::now();
            let result = self.runtime.run_container(&self.container(name)).await;
            (name, result.map(|s| (started.elapsed(), s.took)))
        }))
        .await;
        let mut latency = Latency::new();
        let mut failed = Vec::new();
        for (name, result) in starts {
            match result {
                Ok((took, calls)) => {
                    latency.record(took);
                    steps.record(&calls);
                }
                Err(e) => {
                    latency.error();
                    failed.push(format!("{name}: {e}"));
                }
            }
        }
        if let Some(first) = failed.first() {
            eprintln!(
                "skiff-bench pods: {} of {} floor containers did not start; the first: {first}",
                failed.len(),
                names.len()
            );
        }
        latency
    }

    /// Kill and remove the named containers (each may be missing).
    pub async fn remove(&self, names: &[String]) -> Result<()> {
        let removals = futures::future::join_all(names.iter().map(|name| async move {
            self.runtime.kill(name, KILL).await?;
            // Wait for the exit (bounded), so the task can be deleted.
            let _ = tokio::time::timeout(Duration::from_secs(10), self.runtime.wait(name)).await;
            self.runtime.remove_container(name).await
        }))
        .await;
        for (name, removal) in names.iter().zip(removals) {
            removal.with_context(|| format!("removing floor container {name}"))?;
        }
        Ok(())
    }

    /// The container `name`: the image's own command, in a cgroup of its own.
    fn container(&self, name: &str) -> NewContainer {
        let run = &self.image.config;
        let args = run
            .entrypoint
            .iter()
            .flatten()
            .chain(run.cmd.iter().flatten())
            .cloned()
            .collect();
        let config = ContainerConfig {
            args,
            env: run.env.clone().unwrap_or_default(),
            cwd: run.working_dir.clone().unwrap_or_else(|| "/".to_owned()),
            hostname: name.to_owned(),
            // No path: runc makes the container a network namespace of its own.
            netns: Default::default(),
            cgroups_path: format!("{CGROUP_PARENT}/{name}"),
            capabilities: DEFAULT_CAPABILITIES
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            ..ContainerConfig::default()
        };
        NewContainer {
            id: name.to_owned(),
            image: self.image.name.clone(),
            chain_id: self.image.chain_id.clone(),
            spec: spec::build(&config),
            labels: HashMap::new(),
            // No stdio: the floor has no log shim.
            log_uri: String::new(),
            runtime_binary: self.oci_runtime.clone(),
        }
    }
}

/// The latency of each containerd call of a container start, over many starts.
#[derive(Default)]
pub struct StepLatencies {
    container_create: Latency,
    snapshot_prepare: Latency,
    task_create: Latency,
    task_start: Latency,
}

impl StepLatencies {
    /// Add one start's calls.
    pub fn record(&mut self, took: &StartTimings) {
        self.container_create.record(took.container_create);
        self.snapshot_prepare.record(took.snapshot_prepare);
        self.task_create.record(took.task_create);
        self.task_start.record(took.task_start);
    }

    /// `[{"step", "p50_ms", "p99_ms"}, …]` in call order.
    pub fn to_json(&self) -> Value {
        let steps = [
            ("container create (the record)", &self.container_create),
            ("snapshot prepare (the rootfs)", &self.snapshot_prepare),
            (
                "task create (shim and the runtime's create)",
                &self.task_create,
            ),
            ("task start (the runtime's start)", &self.task_start),
        ];
        Value::Array(
            steps
                .iter()
                .map(|(step, latency)| {
                    let row = latency.row(step, Duration::ZERO);
                    json!({"step": step, "p50_ms": row.p50_ms, "p99_ms": row.p99_ms})
                })
                .collect(),
        )
    }
}
