//! Containers and their tasks: create from a prepared snapshot and a runtime spec, start,
//! wait, signal, remove; list what this node's namespace holds (for adoption after an agent
//! restart).

use std::collections::HashMap;

use containerd_client::{
    services::v1::{
        Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
        DeleteTaskRequest, GetRequest, KillRequest, ListContainersRequest, StartRequest,
        WaitRequest,
        container::Runtime as ContainerRuntime,
        containers_client::ContainersClient,
        snapshots::{
            MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
            snapshots_client::SnapshotsClient,
        },
        tasks_client::TasksClient,
    },
    types::v1::Status as ProcessStatus,
};
use prost_types::Any;

use super::{Runtime, RuntimeError, SNAPSHOTTER, call_error, spec::SPEC_TYPE_URL};

/// What to create.
#[derive(Debug, Clone)]
pub struct NewContainer {
    /// containerd ID.
    pub id: String,
    /// Image name.
    pub image: String,
    /// Snapshot parent (the image's top chain ID).
    pub chain_id: String,
    /// Runtime spec JSON.
    pub spec: serde_json::Value,
    /// Labels (pod UID, container name, restart count…).
    pub labels: HashMap<String, String>,
    /// stdout/stderr URI (`binary:///…` for the log shim).
    pub log_uri: String,
    /// The OCI runtime the shim runs instead of its default runc (a RuntimeClass handler).
    pub runtime_binary: Option<std::path::PathBuf>,
}

/// The runc shim's options (containerd's `containerd.runc.v1.Options`), the one field
/// Skiff sets: which runc-compatible binary the shim runs.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    /// `binary_name`: the runtime binary.
    #[prost(string, tag = "6")]
    binary_name: String,
}

/// The protobuf type of [`RuncOptions`] as containerd's type registry names it.
const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// The shim options that make it run `binary`, if one is given.
fn runtime_options(binary: Option<&std::path::Path>) -> Option<Any> {
    let binary = binary?;
    Some(Any {
        type_url: RUNC_OPTIONS_TYPE_URL.to_owned(),
        value: prost::Message::encode_to_vec(&RuncOptions {
            binary_name: binary.to_string_lossy().into_owned(),
        }),
    })
}

/// A container whose task runs.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// The task's pid.
    pub pid: u32,
    /// How long each containerd call took.
    pub took: StartTimings,
}

/// The containerd calls of [`Runtime::run_container`], timed.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartTimings {
    /// The container record.
    pub container_create: std::time::Duration,
    /// The rootfs snapshot.
    pub snapshot_prepare: std::time::Duration,
    /// The task: shim and `runc create`.
    pub task_create: std::time::Duration,
    /// `runc start`.
    pub task_start: std::time::Duration,
}

/// A task's state as containerd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// No task (created but never started, or already deleted).
    Missing,
    /// Running with this pid.
    Running(u32),
    /// Exited with this status at this time (RFC 3339).
    Exited(u32, Option<String>),
    /// Created, paused or unknown.
    Other,
}

/// One container of this namespace.
#[derive(Debug, Clone)]
pub struct ExistingContainer {
    /// containerd ID.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Creation time (RFC 3339).
    pub created_at: Option<String>,
}

fn rfc3339(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    let t = jiff::Timestamp::new(ts.seconds, ts.nanos).ok()?;
    Some(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

impl Runtime {
    /// Create the container (snapshot + container record) and its task, then start it.
    /// Returns its pid and how long each containerd call took.
    pub async fn run_container(&self, new: &NewContainer) -> Result<Started, RuntimeError> {
        let mut took = StartTimings::default();
        let mut clock = std::time::Instant::now();
        let mut lap = || {
            let now = std::time::Instant::now();
            let lap = now - clock;
            clock = now;
            lap
        };
        // The container record comes first: it references the snapshot key, so the snapshot
        // is never an unreferenced object the garbage collector may take between Prepare and
        // Create (a lease deletion elsewhere can start a collection at any moment).
        let spec = serde_json::to_vec(&new.spec).map_err(|e| {
            RuntimeError::BadImage(format!(
                "runtime spec of {} does not serialise: {e}",
                new.id
            ))
        })?;
        let options = runtime_options(new.runtime_binary.as_deref());
        let container = Container {
            id: new.id.clone(),
            labels: new.labels.clone(),
            image: new.image.clone(),
            runtime: Some(ContainerRuntime {
                name: "io.containerd.runc.v2".to_owned(),
                options: options.clone(),
            }),
            spec: Some(Any {
                type_url: SPEC_TYPE_URL.to_owned(),
                value: spec,
            }),
            snapshotter: SNAPSHOTTER.to_owned(),
            snapshot_key: new.id.clone(),
            ..Container::default()
        };
        let create = self.request(
            CreateContainerRequest {
                container: Some(container),
            },
            None,
        );
        match ContainersClient::new(self.channel()).create(create).await {
            Ok(_) => {}
            Err(status) if status.code() == containerd_client::tonic::Code::AlreadyExists => {}
            Err(status) => return Err(call_error("container create")(status)),
        }
        took.container_create = lap();
        let mut snapshots = SnapshotsClient::new(self.channel());
        let prepare = self.request(
            PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: new.id.clone(),
                parent: new.chain_id.clone(),
                labels: HashMap::new(),
            },
            None,
        );
        let mounts = match snapshots.prepare(prepare).await {
            Ok(reply) => reply.into_inner().mounts,
            Err(status) if status.code() == containerd_client::tonic::Code::AlreadyExists => {
                let request = self.request(
                    MountsRequest {
                        snapshotter: SNAPSHOTTER.to_owned(),
                        key: new.id.clone(),
                    },
                    None,
                );
                snapshots
                    .mounts(request)
                    .await
                    .map_err(call_error("snapshot mounts"))?
                    .into_inner()
                    .mounts
            }
            Err(status) => return Err(call_error("snapshot prepare")(status)),
        };
        took.snapshot_prepare = lap();
        let mut tasks = TasksClient::new(self.channel());
        let task = self.request(
            CreateTaskRequest {
                container_id: new.id.clone(),
                rootfs: mounts,
                stdout: new.log_uri.clone(),
                stderr: new.log_uri.clone(),
                options,
                ..CreateTaskRequest::default()
            },
            None,
        );
        tasks
            .create(task)
            .await
            .map_err(call_error("task create"))?;
        took.task_create = lap();
        let start = self.request(
            StartRequest {
                container_id: new.id.clone(),
                exec_id: String::new(),
            },
            None,
        );
        let pid = tasks
            .start(start)
            .await
            .map_err(call_error("task start"))?
            .into_inner()
            .pid;
        took.task_start = lap();
        Ok(Started { pid, took })
    }

    /// The state of a container's task.
    pub async fn task_state(&self, id: &str) -> Result<TaskState, RuntimeError> {
        let request = self.request(
            GetRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            },
            None,
        );
        let process = match TasksClient::new(self.channel()).get(request).await {
            Ok(reply) => reply.into_inner().process,
            Err(status) if status.code() == containerd_client::tonic::Code::NotFound => {
                return Ok(TaskState::Missing);
            }
            Err(status) => return Err(call_error("task get")(status)),
        };
        let Some(process) = process else {
            return Ok(TaskState::Missing);
        };
        Ok(match ProcessStatus::try_from(process.status) {
            Ok(ProcessStatus::Running) => TaskState::Running(process.pid),
            Ok(ProcessStatus::Stopped) => {
                TaskState::Exited(process.exit_status, rfc3339(process.exited_at.as_ref()))
            }
            _ => TaskState::Other,
        })
    }

    /// Block until the task exits; returns its exit status and time.
    pub async fn wait(&self, id: &str) -> Result<(u32, Option<String>), RuntimeError> {
        let request = self.request(
            WaitRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            },
            None,
        );
        let reply = TasksClient::new(self.channel())
            .wait(request)
            .await
            .map_err(call_error("task wait"))?
            .into_inner();
        Ok((reply.exit_status, rfc3339(reply.exited_at.as_ref())))
    }

    /// Send a signal to the task's init process.
    pub async fn kill(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        let request = self.request(
            KillRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
                signal,
                all: false,
            },
            None,
        );
        match TasksClient::new(self.channel()).kill(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == containerd_client::tonic::Code::NotFound => Ok(()),
            Err(status) => Err(call_error("task kill")(status)),
        }
    }

    /// Delete the task, the container and its snapshot; each may already be gone.
    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let ignore_missing = |r: Result<(), RuntimeError>| match r {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        };
        let task = self.request(
            DeleteTaskRequest {
                container_id: id.to_owned(),
            },
            None,
        );
        ignore_missing(
            TasksClient::new(self.channel())
                .delete(task)
                .await
                .map(drop)
                .map_err(call_error("task delete")),
        )?;
        let container = self.request(DeleteContainerRequest { id: id.to_owned() }, None);
        ignore_missing(
            ContainersClient::new(self.channel())
                .delete(container)
                .await
                .map(drop)
                .map_err(call_error("container delete")),
        )?;
        let snapshot = self.request(
            RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: id.to_owned(),
            },
            None,
        );
        ignore_missing(
            SnapshotsClient::new(self.channel())
                .remove(snapshot)
                .await
                .map(drop)
                .map_err(call_error("snapshot remove")),
        )
    }

    /// Containers whose labels match `filter` (containerd filter syntax, e.g.
    /// `labels."skiff.io/pod-uid"==<uid>`), or all of them for an empty filter.
    pub async fn list_containers(
        &self,
        filter: &str,
    ) -> Result<Vec<ExistingContainer>, RuntimeError> {
        let filters = if filter.is_empty() {
            Vec::new()
        } else {
            vec![filter.to_owned()]
        };
        let request = self.request(ListContainersRequest { filters }, None);
        let containers = ContainersClient::new(self.channel())
            .list(request)
            .await
            .map_err(call_error("container list"))?
            .into_inner()
            .containers;
        Ok(containers
            .into_iter()
            .map(|c| ExistingContainer {
                created_at: rfc3339(c.created_at.as_ref()),
                id: c.id,
                labels: c.labels,
            })
            .collect())
    }
}
