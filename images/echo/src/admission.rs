//! Opt-in admission webhook mode (`ADMISSION_TLS_DIR` set): HTTPS on `ADMISSION_PORT`
//! (8443) with `tls.crt` and `tls.key` from that directory (a mounted kubernetes.io/tls
//! Secret). It answers AdmissionReviews for the end-to-end tests:
//!
//! - `POST /validate`: refuses objects labelled `deny=true` (403, with a message), allows
//!   the rest with a warning;
//! - `POST /mutate`: allows, with a JSON patch adding the label `mutated=yes`;
//! - `POST /convert`: a CRD conversion webhook answering ConversionReviews: an object
//!   converted to a `…/v1` version has its `spec.size` renamed `spec.sizeInches`, to any
//!   other version the reverse (and a `converted-by=skiff-echo` label either way).
//! - `GET /apis/echo.skiff.dev/…`: a tiny aggregated API (see [`crate::aggregated`]).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::Arc,
    thread,
};

use base64::Engine;
use rustls::{
    ServerConfig, ServerConnection, StreamOwned,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use serde_json::{Value, json};

/// The largest request body read.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Serve admission reviews on `port` with the certificate in `dir`; returns only on a
/// setup error.
pub fn serve(dir: &str, port: u16) -> Result<(), String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/tls.crt"))
            .map_err(|e| format!("{dir}/tls.crt: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{dir}/tls.crt: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/tls.key"))
        .map_err(|e| format!("{dir}/tls.key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    let config = Arc::new(config);
    let listener =
        TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("listen on :{port}: {e}"))?;
    eprintln!("skiff-echo: admission webhooks on https :{port}");
    for stream in listener.incoming().flatten() {
        let config = Arc::clone(&config);
        thread::spawn(move || {
            match connection(config, stream) {
                // Clients often close without TLS close_notify.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => eprintln!("skiff-echo: admission connection: {e}"),
                Ok(()) => {}
            }
        });
    }
    Ok(())
}

fn connection(config: Arc<ServerConfig>, tcp: TcpStream) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let tls = ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut reader = BufReader::new(StreamOwned::new(tls, tcp));
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                length = value
                    .parse()
                    .map_err(|_| std::io::Error::other("bad content-length"))?;
            }
            headers.push((name, value));
        }
        if length > MAX_BODY {
            return Err(std::io::Error::other(format!("body of {length} bytes")));
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let method = request_line.split_whitespace().next().unwrap_or("");
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        let aggregated = (method == "GET")
            .then(|| crate::aggregated::answer(path, &headers))
            .flatten();
        let (status, answer) = match serde_json::from_slice::<Value>(&body) {
            _ if aggregated.is_some() => aggregated.unwrap_or_else(|| ("404 Not Found", json!({}))),
            Ok(review) => match path {
                "/validate" => ("200 OK", validate(&review)),
                "/mutate" => ("200 OK", mutate(&review)),
                "/convert" => ("200 OK", convert(&review)),
                _ => ("404 Not Found", json!({"message": "not found"})),
            },
            Err(e) => ("400 Bad Request", json!({"message": e.to_string()})),
        };
        let body = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let stream = reader.get_mut();
        stream.write_all(response.as_bytes())?;
        stream.flush()?;
    }
}

/// The AdmissionReview answering `review` with `response` (uid filled in).
fn reply(review: &Value, mut response: Value) -> Value {
    response["uid"] = review["request"]["uid"].clone();
    json!({
        "apiVersion": review.get("apiVersion").cloned().unwrap_or(json!("admission.k8s.io/v1")),
        "kind": "AdmissionReview",
        "response": response,
    })
}

fn validate(review: &Value) -> Value {
    let denied = review
        .pointer("/request/object/metadata/labels/deny")
        .and_then(Value::as_str)
        == Some("true");
    if denied {
        reply(
            review,
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden",
                   "message": "objects labelled deny=true are refused by skiff-echo"}}),
        )
    } else {
        reply(
            review,
            json!({"allowed": true, "warnings": ["checked by skiff-echo"]}),
        )
    }
}

fn mutate(review: &Value) -> Value {
    let has_labels = review
        .pointer("/request/object/metadata/labels")
        .is_some_and(Value::is_object);
    let patch = if has_labels {
        json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
    };
    let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    reply(
        review,
        json!({"allowed": true, "patchType": "JSONPatch", "patch": patch}),
    )
}

/// The ConversionReview answering `review`: every object in `desiredAPIVersion`, with
/// `spec.size` (other versions) and `spec.sizeInches` (`…/v1`) renamed into each other.
fn convert(review: &Value) -> Value {
    let desired = review
        .pointer("/request/desiredAPIVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (from, to) = if desired.ends_with("/v1") {
        ("size", "sizeInches")
    } else {
        ("sizeInches", "size")
    };
    let converted: Vec<Value> = review
        .pointer("/request/objects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|object| {
            let mut object = object.clone();
            object["apiVersion"] = json!(desired);
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
                && let Some(value) = spec.remove(from)
            {
                spec.insert(to.to_owned(), value);
            }
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = metadata.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("converted-by".to_owned(), json!("skiff-echo"));
                }
            }
            object
        })
        .collect();
    json!({
        "apiVersion": review.get("apiVersion").cloned().unwrap_or(json!("apiextensions.k8s.io/v1")),
        "kind": "ConversionReview",
        "response": {"uid": review.pointer("/request/uid").cloned().unwrap_or_default(),
                     "result": {"status": "Success"},
                     "convertedObjects": converted},
    })
}
