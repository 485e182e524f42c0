//! `kubectl exec` on the node: the node API's `/exec/{namespace}/{pod}/{container}` takes a
//! WebSocket in the Kubernetes channel protocol (`v5.channel.k8s.io`, or v4): every binary
//! message starts with a stream byte — 0 stdin, 1 stdout, 2 stderr, 3 the final status, 4
//! terminal resize; v5 adds 255 to close a stream (stdin EOF). The process runs in the
//! container through containerd with FIFOs for its stdio.

use std::path::PathBuf;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures::{SinkExt, StreamExt};
use nix::{sys::stat::Mode, unistd::mkfifo};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
    sync::mpsc,
};

use crate::runtime::{Runtime, exec::ExecIo};

/// How long a finished session waits for the client's side of the close handshake.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the caller asked for (query of the exec request).
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// argv.
    pub command: Vec<String>,
    /// Attach stdin.
    pub stdin: bool,
    /// Attach stdout.
    pub stdout: bool,
    /// Attach stderr.
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

impl ExecRequest {
    /// Parse `command=a&command=b&stdin=true&stdout=1&tty=true`.
    pub fn parse(query: &str) -> Self {
        let mut request = Self::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            let flag = value == "true" || value == "1";
            match key {
                "command" => request.command.push(value),
                "stdin" | "input" => request.stdin = flag,
                "stdout" | "output" => request.stdout = flag,
                "stderr" | "error" => request.stderr = flag,
                "tty" => request.tty = flag,
                _ => {}
            }
        }
        request
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The final status message (channel 3) for an exit code, as kubelet sends it.
pub fn exit_status(code: u32) -> serde_json::Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [...], exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    }
}

fn failure(message: &str) -> serde_json::Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"})
}

fn frame(stream: u8, data: &[u8]) -> WsMessage {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(stream);
    bytes.extend_from_slice(data);
    WsMessage::Binary(bytes.into())
}

/// Run one exec session over an upgraded WebSocket.
pub async fn session(
    socket: WebSocket,
    runtime: Runtime,
    container_id: String,
    request: ExecRequest,
    scratch: PathBuf,
) {
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<WsMessage>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        // A normal closure (1000): clients read the status stream until a clean EOF.
        let close = axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = sink.send(WsMessage::Close(Some(close))).await;
        let _ = sink.close().await;
    });
    let exec_id = format!(
        "exec-{}",
        jiff::Timestamp::now().as_nanosecond().unsigned_abs()
    );
    let dir = scratch.join(&exec_id);
    let result = run(
        &runtime,
        &container_id,
        &exec_id,
        &request,
        &dir,
        &out_tx,
        &mut incoming,
    )
    .await;
    let status = match result {
        Ok(code) => exit_status(code),
        Err(message) => failure(&message),
    };
    let _ = out_tx.send(frame(3, status.to_string().as_bytes())).await;
    drop(out_tx);
    // Close as the protocol asks: the writer sends the status and our Close while we read
    // what the client still sends (late stdin, its own Close) until it closes. A socket
    // closed with unread data in it answers with a reset, and a reset makes the other
    // end's kernel drop what it had not read yet: the API server would lose the status
    // frame and the client would see an abnormal closure instead of the exit code.
    let drain = async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async { tokio::join!(writer, drain) }).await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn run(
    runtime: &Runtime,
    container_id: &str,
    exec_id: &str,
    request: &ExecRequest,
    dir: &std::path::Path,
    out: &mpsc::Sender<WsMessage>,
    incoming: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<u32, String> {
    if request.command.is_empty() {
        return Err("you must specify at least one command for the container".to_owned());
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let fifo = |name: &str| -> Result<String, String> {
        let path = dir.join(name);
        mkfifo(&path, Mode::from_bits_truncate(0o600)).map_err(|e| format!("mkfifo: {e}"))?;
        Ok(path.to_string_lossy().into_owned())
    };
    let mut io = ExecIo {
        terminal: request.tty,
        ..ExecIo::default()
    };
    // Our ends open read-write so neither side blocks on open; the process's exit ends it.
    let mut stdin_pipe = None;
    if request.stdin {
        io.stdin = fifo("stdin")?;
        stdin_pipe = Some(
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&io.stdin)
                .map_err(|e| e.to_string())?,
        );
    }
    let mut readers = Vec::new();
    if request.stdout || request.tty {
        io.stdout = fifo("stdout")?;
        readers.push((
            1u8,
            pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(&io.stdout)
                .map_err(|e| e.to_string())?,
        ));
    }
    if request.stderr && !request.tty {
        io.stderr = fifo("stderr")?;
        readers.push((
            2u8,
            pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(&io.stderr)
                .map_err(|e| e.to_string())?,
        ));
    }
    runtime
        .exec_start(container_id, exec_id, &request.command, &io)
        .await
        .map_err(|e| e.to_string())?;
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut pumps = Vec::new();
    for (stream, mut reader) in readers {
        let out = out.clone();
        let mut done = done_rx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                // After exit, keep draining until the pipe stays quiet briefly.
                let read = if *done.borrow() {
                    match tokio::time::timeout(
                        std::time::Duration::from_millis(100),
                        reader.read(&mut buf),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                } else {
                    tokio::select! {
                        r = reader.read(&mut buf) => r,
                        _ = done.changed() => continue,
                    }
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if out.send(frame(stream, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    let wait = runtime.exec_wait(container_id, exec_id);
    tokio::pin!(wait);
    // Until the client goes away; then the process is killed once and only its exit is
    // waited for.
    let mut client_open = true;
    let code = loop {
        tokio::select! {
            code = &mut wait => break code.map_err(|e| e.to_string())?,
            message = incoming.next(), if client_open => match message {
                Some(Ok(WsMessage::Binary(data))) if !data.is_empty() => match data[0] {
                    0 => {
                        if let Some(pipe) = stdin_pipe.as_mut() {
                            let _ = pipe.write_all(&data[1..]).await;
                        }
                    }
                    4 => {
                        if let Ok(size) = serde_json::from_slice::<serde_json::Value>(&data[1..]) {
                            let width = size["Width"].as_u64().unwrap_or(80) as u32;
                            let height = size["Height"].as_u64().unwrap_or(24) as u32;
                            runtime.exec_resize(container_id, exec_id, width, height).await;
                        }
                    }
                    255 if data.get(1) == Some(&0) => {
                        stdin_pipe = None;
                        runtime.exec_close_stdin(container_id, exec_id).await;
                    }
                    _ => {}
                },
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                    client_open = false;
                    runtime.exec_kill(container_id, exec_id).await;
                }
                Some(Ok(_)) => {}
            },
        }
    };
    let _ = done_tx.send(true);
    for pump in pumps {
        let _ = pump.await;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_exec_queries() {
        let r = ExecRequest::parse(
            "command=sh&command=-c&command=echo%20hi%3B+exit+3&stdin=true&stdout=true&stderr=true&tty=false",
        );
        assert_eq!(r.command, ["sh", "-c", "echo hi; exit 3"]);
        assert!(r.stdin && r.stdout && r.stderr && !r.tty);
        assert_eq!(exit_status(0)["status"], "Success");
        assert_eq!(exit_status(3)["details"]["causes"][0]["message"], "3");
    }
}
