//! Container probes with kubelet's timing (initialDelaySeconds, periodSeconds,
//! timeoutSeconds, successThreshold, failureThreshold): httpGet, tcpSocket and gRPC health
//! checks from the node to the pod's IP, exec inside the container. Readiness drives the pod's Ready condition;
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
                let https = http.scheme.as_deref() == Some("HTTPS");
                http_get(SocketAddr::from((host, port)), https, &path, &headers).await
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
            } else if let Some(grpc) = &self.probe.grpc {
                let port =
                    u16::try_from(grpc.port).map_err(|_| format!("invalid port {}", grpc.port))?;
                grpc_health_check(
                    SocketAddr::from((self.pod_ip, port)),
                    grpc.service.as_deref().unwrap_or_default(),
                )
                .await
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

/// The gRPC health protocol (`grpc.health.v1.Health/Check` over HTTP/2 cleartext), with
/// the two messages encoded by hand: success is status SERVING.
async fn grpc_health_check(addr: SocketAddr, service: &str) -> Result<(), String> {
    use http_body_util::BodyExt as _;
    let failed = |e: String| format!("failed to connect service \"{addr}\" within 1s: {e}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    tokio::spawn(connection);
    // HealthCheckRequest { string service = 1; }, in a length-prefixed gRPC frame.
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        message.push(u8::try_from(service.len()).map_err(|_| "service name too long".to_owned())?);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = hyper::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let headers = response.headers().clone();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("2")
        .to_owned();
    if status != "0" {
        return Err(format!("rpc error: code = {status}"));
    }
    // HealthCheckResponse { ServingStatus status = 1; } — SERVING is 1.
    let data = collected.to_bytes();
    let serving = data.get(5..).is_some_and(|m| m == [0x08, 0x01]);
    if serving {
        Ok(())
    } else {
        Err("service unhealthy (responded with \"NOT_SERVING\")".to_owned())
    }
}

/// kubelet's HTTP(S) GET probe: any status in 200..400 succeeds. HTTPS does not verify the
/// server certificate, as kubelet's `InsecureSkipVerify`.
pub(crate) async fn http_get(
    addr: SocketAddr,
    https: bool,
    path: &str,
    headers: &str,
) -> Result<(), String> {
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{addr}{path}");
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n{headers}Connection: close\r\n\r\n"
    );
    let status = if https {
        static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
            std::sync::OnceLock::new();
        let config = CONFIG
            .get_or_init(|| skiff_tls::unverified_server_config(None).map_err(|e| e.to_string()))
            .clone()?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        exchange(tls, &request).await
    } else {
        exchange(tcp, &request).await
    }
    .map_err(|e| format!("Get \"{url}\": {e}"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

/// Send `request` and read the status code of the response.
async fn exchange<S>(mut stream: S, request: &str) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // Read until the status line is complete (TLS may deliver it in pieces).
    while !head.contains(&b'\n') && head.len() < 8192 {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "malformed HTTP response".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gRPC health server answering every Check with `status`.
    async fn health_server(status: u8) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(move |_request| async move {
                    let frames = vec![
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                            bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]),
                        )),
                        Ok(hyper::body::Frame::trailers({
                            let mut t = hyper::HeaderMap::new();
                            t.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
                            t
                        })),
                    ];
                    let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .expect("response"),
                    )
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    #[tokio::test]
    async fn grpc_health_checks_read_the_serving_status() {
        assert_eq!(grpc_health_check(health_server(1).await, "").await, Ok(()));
        assert!(
            grpc_health_check(health_server(2).await, "db")
                .await
                .is_err()
        );
    }

    /// An HTTPS server with a self-signed certificate answering every request with `status`.
    async fn https_server(status: u16) -> SocketAddr {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                    )
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn https_probes_skip_certificate_verification_and_read_the_status() {
        assert_eq!(
            http_get(https_server(200).await, true, "/healthz", "").await,
            Ok(())
        );
        let failed = http_get(https_server(503).await, true, "/healthz", "").await;
        assert_eq!(
            failed,
            Err("HTTP probe failed with statuscode: 503".to_owned())
        );
    }
}
