//! Container probes with kubelet's timing (initialDelaySeconds, periodSeconds,
//! timeoutSeconds, successThreshold, failureThreshold): httpGet and tcpSocket from the node
//! to the pod's IP, exec inside the container. Readiness drives the pod's Ready condition;
//! liveness and startup failures restart the container. Results go to the pod worker.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
    task::JoinSet,
};

use super::Message;
use crate::runtime::{Runtime, exec::ExecIo};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// startupProbe: gates the others; failing it restarts the container.
    Startup,
    /// livenessProbe: failing it restarts the container.
    Liveness,
    /// readinessProbe: decides Ready.
    Readiness,
}

impl ProbeKind {
    /// The word kubelet uses in events.
    pub fn name(self) -> &'static str {
        match self {
            Self::Startup => "Startup",
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
        }
    }
}

/// Start the probers of one running container; dropping the set stops them.
pub(crate) fn start(
    runtime: &Runtime,
    tx: &mpsc::UnboundedSender<Message>,
    container_id: &str,
    container: &Container,
    pod_ip: Ipv4Addr,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let started = Arc::new(AtomicBool::new(container.startup_probe.is_none()));
    for (kind, probe) in [
        (ProbeKind::Startup, &container.startup_probe),
        (ProbeKind::Liveness, &container.liveness_probe),
        (ProbeKind::Readiness, &container.readiness_probe),
    ] {
        let Some(probe) = probe.clone() else { continue };
        let prober = Prober {
            kind,
            probe,
            runtime: runtime.clone(),
            tx: tx.clone(),
            container_id: container_id.to_owned(),
            container: container.clone(),
            pod_ip,
            started: started.clone(),
        };
        set.spawn(prober.run());
    }
    set
}

struct Prober {
    kind: ProbeKind,
    probe: Probe,
    runtime: Runtime,
    tx: mpsc::UnboundedSender<Message>,
    container_id: String,
    container: Container,
    pod_ip: Ipv4Addr,
    started: Arc<AtomicBool>,
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

impl Prober {
    async fn run(self) {
        let period = seconds(self.probe.period_seconds, 10).max(Duration::from_secs(1));
        let timeout = seconds(self.probe.timeout_seconds, 1).max(Duration::from_secs(1));
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1);
        tokio::time::sleep(seconds(self.probe.initial_delay_seconds, 0)).await;
        let (mut successes, mut failures) = (0, 0);
        let mut reported: Option<bool> = None;
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            if self.kind != ProbeKind::Startup && !self.started.load(Ordering::Relaxed) {
                continue;
            }
            let outcome = self.once(timeout).await;
            match &outcome {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                }
                Err(_) => {
                    failures += 1;
                    successes = 0;
                }
            }
            let verdict = if successes >= success_threshold {
                Some(true)
            } else if failures >= failure_threshold {
                Some(false)
            } else {
                None
            };
            let Some(ok) = verdict else { continue };
            if reported == Some(ok) {
                continue;
            }
            reported = Some(ok);
            let message = outcome.err().unwrap_or_default();
            if self.kind == ProbeKind::Startup && ok {
                self.started.store(true, Ordering::Relaxed);
            }
            let _ = self.tx.send(Message::Probe {
                id: self.container_id.clone(),
                kind: self.kind,
                ok,
                message,
            });
            // A failed liveness/startup probe ends this run of the container.
            if !ok && self.kind != ProbeKind::Readiness {
                return;
            }
            if ok && self.kind == ProbeKind::Startup {
                return;
            }
        }
    }

    /// One probe; Err carries kubelet's failure message.
    async fn once(&self, timeout: Duration) -> Result<(), String> {
        let work = async {
            if let Some(http) = &self.probe.http_get {
                let port = self.port(&http.port)?;
                if http.scheme.as_deref() == Some("HTTPS") {
                    return Err("HTTPS probes are not supported by skiff-agent".to_owned());
                }
                let host = http
                    .host
                    .as_deref()
                    .and_then(|h| h.parse().ok())
                    .unwrap_or(self.pod_ip);
                let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
                let headers: String = http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| format!("{}: {}\r\n", h.name, h.value))
                    .collect();
                http_get(SocketAddr::from((host, port)), &path, &headers).await
            } else if let Some(tcp) = &self.probe.tcp_socket {
                let port = self.port(&tcp.port)?;
                let host = tcp
                    .host
                    .as_deref()
                    .and_then(|h| h.parse().ok())
                    .unwrap_or(self.pod_ip);
                tokio::net::TcpStream::connect((host, port))
                    .await
                    .map(drop)
                    .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
            } else if let Some(exec) = &self.probe.exec {
                let command = exec.command.clone().unwrap_or_default();
                let exec_id = format!(
                    "probe-{}",
                    jiff::Timestamp::now().as_nanosecond().unsigned_abs()
                );
                self.runtime
                    .exec_start(&self.container_id, &exec_id, &command, &ExecIo::default())
                    .await
                    .map_err(|e| e.to_string())?;
                match tokio::time::timeout(
                    timeout,
                    self.runtime.exec_wait(&self.container_id, &exec_id),
                )
                .await
                {
                    Ok(Ok(0)) => Ok(()),
                    Ok(Ok(code)) => Err(format!("command {command:?} exited with {code}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => {
                        self.runtime.exec_kill(&self.container_id, &exec_id).await;
                        Err(format!("command {command:?} timed out"))
                    }
                }
            } else if self.probe.grpc.is_some() {
                Err("gRPC probes are not supported by skiff-agent yet".to_owned())
            } else {
                Err("the probe has no action".to_owned())
            }
        };
        match tokio::time::timeout(timeout + Duration::from_millis(100), work).await {
            Ok(result) => result,
            Err(_) => Err(format!("probe timed out after {}s", timeout.as_secs())),
        }
    }

    /// A port number, or a named container port.
    fn port(&self, port: &IntOrString) -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
            IntOrString::String(name) => self
                .container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("no container port named {name:?}")),
        }
    }
}

/// A minimal HTTP/1.1 GET; success is a status in 200..400, as kubelet's.
async fn http_get(addr: SocketAddr, path: &str, headers: &str) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n{headers}Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 1024];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("Get \"http://{addr}{path}\": malformed response"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}
