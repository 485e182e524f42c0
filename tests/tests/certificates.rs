//! CertificateSigningRequests as a user and a kubelet use them: a request with a key made
//! here, approved with `kubectl certificate approve`, is signed by the cluster CA and the
//! certificate logs its holder in as the user it names; a denied one gets no certificate;
//! a request for `system:masters` through the client signer is refused; a request the
//! signer's rules forbid ends `Failed`.

use std::time::Duration;

use base64::Engine;
use serde_json::json;
use skiff_tests::Lab;

/// A key and a PEM request for `cn` in `organizations`.
fn request(cn: &str, organizations: &[&str]) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for o in organizations {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    let pem = params
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM");
    (key, pem)
}

fn csr(name: &str, pem: &str, signer: &str, usages: &[&str]) -> String {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
                 "signerName": signer, "usages": usages, "expirationSeconds": 3600}})
    .to_string()
}

#[test]
fn an_approved_request_becomes_a_working_client_certificate() {
    let Some(lab) = Lab::from_env() else { return };
    let run = std::process::id();
    let (approved, denied, failing) = (
        format!("csr-alice-{run}"),
        format!("csr-mallory-{run}"),
        format!("csr-server-{run}"),
    );
    let _cleanup = lab.delete_on_drop(&[("csr", &approved), ("csr", &denied), ("csr", &failing)]);
    let client = "kubernetes.io/kube-apiserver-client";
    let user = format!("alice-{run}");
    let (key, pem) = request(&user, &["csr-e2e"]);
    let out = lab.kubectl_stdin(
        &["create", "-f", "-"],
        &csr(
            &approved,
            &pem,
            client,
            &["client auth", "digital signature"],
        ),
    );
    assert_eq!(out.code, 0, "{out:?}");
    // The requestor is whoever created it, whatever the client wrote.
    let requestor = lab.kubectl_ok(&["get", "csr", &approved, "-o", "jsonpath={.spec.username}"]);
    assert_eq!(requestor, "kubernetes-admin");
    let pending = lab.kubectl_ok(&["get", "csr", &approved, "--no-headers"]);
    assert!(
        pending.contains("Pending") && pending.contains(client),
        "{pending}"
    );

    lab.kubectl_ok(&["certificate", "approve", &approved]);
    let issued = lab.eventually("the certificate", Duration::from_secs(30), || {
        let certificate = lab.kubectl_ok(&[
            "get",
            "csr",
            &approved,
            "-o",
            "jsonpath={.status.certificate}",
        ]);
        if certificate.is_empty() {
            Err("not issued yet".to_owned())
        } else {
            Ok(certificate)
        }
    });
    let row = lab.kubectl_ok(&["get", "csr", &approved, "--no-headers"]);
    assert!(row.contains("Approved,Issued"), "{row}");
    let cert = base64::engine::general_purpose::STANDARD
        .decode(issued.trim())
        .expect("base64 certificate");
    let cert = String::from_utf8(cert).expect("PEM");

    // The certificate logs in as the user it names.
    let dir = std::env::temp_dir().join(format!("skiff-csr-{run}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert_file, key_file) = (dir.join("alice.crt"), dir.join("alice.key"));
    std::fs::write(&cert_file, &cert).expect("cert file");
    std::fs::write(&key_file, key.serialize_pem()).expect("key file");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::copy(lab.kubeconfig(), &kubeconfig).expect("kubeconfig copy");
    let config = |args: &[&str]| {
        let mut full = vec!["--kubeconfig", kubeconfig.to_str().unwrap_or_default()];
        full.extend_from_slice(args);
        lab.kubectl(&full)
    };
    let set = config(&[
        "config",
        "set-credentials",
        "alice",
        &format!("--client-certificate={}", cert_file.display()),
        &format!("--client-key={}", key_file.display()),
    ]);
    assert_eq!(set.code, 0, "{set:?}");
    let whoami = config(&[
        "auth",
        "whoami",
        "--user=alice",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]);
    assert_eq!(whoami.code, 0, "{whoami:?}");
    assert!(
        whoami.stdout.starts_with(&user) && whoami.stdout.contains("csr-e2e"),
        "{whoami:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Denied: no certificate, ever.
    let (_, pem) = request(&format!("mallory-{run}"), &[]);
    let out = lab.kubectl_stdin(
        &["create", "-f", "-"],
        &csr(&denied, &pem, client, &["client auth"]),
    );
    assert_eq!(out.code, 0, "{out:?}");
    lab.kubectl_ok(&["certificate", "deny", &denied]);
    std::thread::sleep(Duration::from_secs(2));
    let row = lab.kubectl_ok(&["get", "csr", &denied, "--no-headers"]);
    assert!(row.contains("Denied") && !row.contains("Issued"), "{row}");
    // Approving a denied request is refused.
    let approve = lab.kubectl(&["certificate", "approve", &denied]);
    assert_ne!(approve.code, 0, "{approve:?}");

    // The client signer never issues system:masters.
    let (_, pem) = request("root", &["system:masters"]);
    let out = lab.kubectl_stdin(
        &["create", "-f", "-"],
        &csr(&format!("csr-root-{run}"), &pem, client, &["client auth"]),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("system:masters"), "{out:?}");

    // A request its signer's rules forbid (server auth from the client signer) fails.
    let (_, pem) = request(&format!("server-{run}"), &[]);
    let out = lab.kubectl_stdin(
        &["create", "-f", "-"],
        &csr(&failing, &pem, client, &["server auth"]),
    );
    assert_eq!(out.code, 0, "{out:?}");
    lab.kubectl_ok(&["certificate", "approve", &failing]);
    lab.eventually("the request failed", Duration::from_secs(30), || {
        let row = lab.kubectl_ok(&["get", "csr", &failing, "--no-headers"]);
        if row.contains("Failed") {
            Ok(())
        } else {
            Err(row)
        }
    });

    // Not a request at all: 422 naming the field.
    let out = lab.kubectl_stdin(
        &["create", "-f", "-"],
        &csr(
            &format!("csr-garbage-{run}"),
            "not a request",
            client,
            &["client auth"],
        ),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("spec.request"), "{out:?}");
}
