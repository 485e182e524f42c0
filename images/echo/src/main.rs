//! skiff-echo: the workload of Skiff's service tests and benchmarks (image `skiff/echo`).
//!
//! - HTTP on :8080 — `GET /` answers the pod's hostname and a newline (any other path: 404);
//!   keep-alive is honoured so request/response benchmarks can reuse a connection.
//! - TCP on :9000 — echoes every byte back.
//! - UDP on :9001 — answers each datagram with the hostname.
//!
//! - HTTPS on :8443, only with `ADMISSION_TLS_DIR` set — admission webhooks for the tests
//!   (see [`admission`]) and an extension API server behind an APIService (see
//!   [`aggregated`]).
//!
//! `std`, libc for the SIGTERM handler, and rustls (ring) with serde_json for the opt-in
//! admission mode; one thread per connection: small enough to build statically and ship
//! alone in an image. Ports can be moved with `HTTP_PORT`, `TCP_PORT`, `UDP_PORT`,
//! `ADMISSION_PORT`.

mod admission;
mod aggregated;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Arc,
    thread,
};

/// SIGTERM ends the server at once (as PID 1 in a container, an unhandled SIGTERM would be
/// ignored and every pod deletion would wait out its grace period).
extern "C" fn on_sigterm(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

fn main() {
    // SAFETY: installing a handler that only calls an async-signal-safe function.
    unsafe {
        libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t);
    }
    let hostname: Arc<str> = hostname().into();
    let http = port("HTTP_PORT", 8080);
    let tcp = port("TCP_PORT", 9000);
    let udp = port("UDP_PORT", 9001);
    let mut threads = Vec::new();
    {
        let hostname = hostname.clone();
        threads.push(thread::spawn(move || {
            serve_tcp(http, move |s| serve_http(s, &hostname));
        }));
    }
    threads.push(thread::spawn(move || serve_tcp(tcp, serve_echo)));
    threads.push(thread::spawn(move || serve_udp(udp, &hostname)));
    if let Ok(dir) = std::env::var("ADMISSION_TLS_DIR") {
        let admission = port("ADMISSION_PORT", 8443);
        threads.push(thread::spawn(move || {
            if let Err(e) = admission::serve(&dir, admission) {
                eprintln!("skiff-echo: admission webhooks: {e}");
                std::process::exit(1);
            }
        }));
    }
    eprintln!("skiff-echo: http :{http}, tcp echo :{tcp}, udp :{udp}");
    for t in threads {
        let _ = t.join();
    }
}

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn serve_tcp(port: u16, handler: impl Fn(TcpStream) + Send + Sync + Clone + 'static) {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("skiff-echo: cannot listen on tcp :{port}: {e}");
            std::process::exit(1);
        }
    };
    for stream in listener.incoming().flatten() {
        let handler = handler.clone();
        thread::spawn(move || handler(stream));
    }
}

fn serve_echo(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Minimal HTTP/1.1: reads request heads (bodies are not expected), answers each.
fn serve_http(stream: TcpStream, hostname: &str) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut close = request_line.ends_with("HTTP/1.0\r\n");
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                close = lower.contains("close");
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, body) = if method == "GET" && (path == "/" || path.starts_with("/?")) {
            ("200 OK", format!("{hostname}\n"))
        } else {
            ("404 Not Found", "not found\n".to_owned())
        };
        let connection = if close { "close" } else { "keep-alive" };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn serve_udp(port: u16, hostname: &str) {
    let socket = match UdpSocket::bind(("0.0.0.0", port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skiff-echo: cannot listen on udp :{port}: {e}");
            std::process::exit(1);
        }
    };
    let mut buf = [0u8; 2048];
    let answer = format!("{hostname}\n");
    while let Ok((_, peer)) = socket.recv_from(&mut buf) {
        let _ = socket.send_to(answer.as_bytes(), peer);
    }
}
