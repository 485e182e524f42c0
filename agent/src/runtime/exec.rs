//! Processes run inside a running container (exec probes, `kubectl exec`): the container's
//! own process settings (env, user, cwd) with other args, stdio through FIFOs or none.

use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest,
    ResizePtyRequest, StartRequest, WaitRequest, containers_client::ContainersClient,
    tasks_client::TasksClient,
};
use prost_types::Any;

use super::{Runtime, RuntimeError, call_error};

/// containerd's type URL for an OCI process spec in a protobuf `Any`.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// Where an exec'd process's stdio goes: FIFO paths, or empty for none.
#[derive(Debug, Clone, Default)]
pub struct ExecIo {
    /// stdin FIFO.
    pub stdin: String,
    /// stdout FIFO.
    pub stdout: String,
    /// stderr FIFO (empty with a terminal).
    pub stderr: String,
    /// Allocate a pseudo-terminal.
    pub terminal: bool,
}

impl Runtime {
    /// Start `args` in container `container` as process `exec_id`.
    pub async fn exec_start(
        &self,
        container: &str,
        exec_id: &str,
        args: &[String],
        io: &ExecIo,
    ) -> Result<(), RuntimeError> {
        let request = self.request(
            GetContainerRequest {
                id: container.to_owned(),
            },
            None,
        );
        let stored = ContainersClient::new(self.channel())
            .get(request)
            .await
            .map_err(call_error("container get"))?
            .into_inner()
            .container
            .and_then(|c| c.spec)
            .ok_or_else(|| RuntimeError::BadImage(format!("container {container} has no spec")))?;
        let spec: serde_json::Value = serde_json::from_slice(&stored.value)
            .map_err(|e| RuntimeError::BadImage(format!("spec of {container}: {e}")))?;
        let mut process = spec.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(args);
        process["terminal"] = serde_json::json!(io.terminal);
        let value = serde_json::to_vec(&process).unwrap_or_default();
        let mut tasks = TasksClient::new(self.channel());
        let exec = self.request(
            ExecProcessRequest {
                container_id: container.to_owned(),
                stdin: io.stdin.clone(),
                stdout: io.stdout.clone(),
                stderr: io.stderr.clone(),
                terminal: io.terminal,
                spec: Some(Any {
                    type_url: PROCESS_TYPE_URL.to_owned(),
                    value,
                }),
                exec_id: exec_id.to_owned(),
            },
            None,
        );
        tasks.exec(exec).await.map_err(call_error("exec"))?;
        let start = self.request(
            StartRequest {
                container_id: container.to_owned(),
                exec_id: exec_id.to_owned(),
            },
            None,
        );
        if let Err(status) = tasks.start(start).await {
            self.exec_delete(container, exec_id).await;
            return Err(call_error("exec start")(status));
        }
        Ok(())
    }

    /// Wait for an exec'd process; returns its exit status and removes it.
    pub async fn exec_wait(&self, container: &str, exec_id: &str) -> Result<u32, RuntimeError> {
        let request = self.request(
            WaitRequest {
                container_id: container.to_owned(),
                exec_id: exec_id.to_owned(),
            },
            None,
        );
        let status = TasksClient::new(self.channel())
            .wait(request)
            .await
            .map_err(call_error("exec wait"))?
            .into_inner()
            .exit_status;
        self.exec_delete(container, exec_id).await;
        Ok(status)
    }

    /// Kill an exec'd process (timeouts) and remove it.
    pub async fn exec_kill(&self, container: &str, exec_id: &str) {
        let request = self.request(
            KillRequest {
                container_id: container.to_owned(),
                exec_id: exec_id.to_owned(),
                signal: 9,
                all: false,
            },
            None,
        );
        let _ = TasksClient::new(self.channel()).kill(request).await;
    }

    async fn exec_delete(&self, container: &str, exec_id: &str) {
        let request = self.request(
            DeleteProcessRequest {
                container_id: container.to_owned(),
                exec_id: exec_id.to_owned(),
            },
            None,
        );
        let _ = TasksClient::new(self.channel())
            .delete_process(request)
            .await;
    }

    /// Resize an exec'd process's terminal.
    pub async fn exec_resize(&self, container: &str, exec_id: &str, width: u32, height: u32) {
        let request = self.request(
            ResizePtyRequest {
                container_id: container.to_owned(),
                exec_id: exec_id.to_owned(),
                width,
                height,
            },
            None,
        );
        let _ = TasksClient::new(self.channel()).resize_pty(request).await;
    }

    /// Close an exec'd process's stdin (EOF).
    pub async fn exec_close_stdin(&self, container: &str, exec_id: &str) {
        let request = self.request(
            CloseIoRequest {
                container_id: container.to_owned(),
                exec_id: exec_id.to_owned(),
                stdin: true,
            },
            None,
        );
        let _ = TasksClient::new(self.channel()).close_io(request).await;
    }
}
