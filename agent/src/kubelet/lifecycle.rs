//! Container lifecycle hooks: `preStop` runs before a container is sent SIGTERM (exec in
//! the container, an HTTP GET against the pod, or a plain sleep), within the pod's grace
//! period, as kubelet does. A failing hook is reported and termination goes on.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Container, LifecycleHandler},
    apimachinery::pkg::util::intstr::IntOrString,
};

use crate::runtime::{Runtime, exec::ExecIo};

/// The container's `preStop` handler, if any.
pub fn pre_stop(container: &Container) -> Option<&LifecycleHandler> {
    container.lifecycle.as_ref()?.pre_stop.as_ref()
}

fn port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
    }
}

/// Run `handler` for the container `id` of a pod at `pod_ip`, giving up after `limit`.
pub async fn run(
    runtime: &Runtime,
    container: &Container,
    id: &str,
    pod_ip: Option<Ipv4Addr>,
    handler: &LifecycleHandler,
    limit: Duration,
) -> Result<(), String> {
    let work = async {
        if let Some(sleep) = &handler.sleep {
            let seconds = u64::try_from(sleep.seconds).map_err(|_| "negative sleep".to_owned())?;
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            Ok(())
        } else if let Some(exec) = &handler.exec {
            let command = exec.command.clone().unwrap_or_default();
            let exec_id = format!(
                "prestop-{}",
                jiff::Timestamp::now().as_nanosecond().unsigned_abs()
            );
            runtime
                .exec_start(id, &exec_id, &command, &ExecIo::default())
                .await
                .map_err(|e| e.to_string())?;
            match runtime.exec_wait(id, &exec_id).await {
                Ok(0) => Ok(()),
                Ok(code) => Err(format!("command {command:?} exited with {code}")),
                Err(e) => Err(e.to_string()),
            }
        } else if let Some(http) = &handler.http_get {
            let port = port(container, &http.port)?;
            let host = http
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .or(pod_ip)
                .ok_or_else(|| "the pod has no IP".to_owned())?;
            let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
            let headers: String = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| format!("{}: {}\r\n", h.name, h.value))
                .collect();
            let https = http.scheme.as_deref() == Some("HTTPS");
            super::probe::http_get(SocketAddr::from((host, port)), https, &path, &headers).await
        } else if let Some(tcp) = &handler.tcp_socket {
            // Deprecated and never run by kubelet; accepted and ignored the same way.
            let _ = tcp;
            Ok(())
        } else {
            Err("the preStop hook has no action".to_owned())
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the preStop hook did not finish within {} s",
            limit.as_secs()
        )),
    }
}
