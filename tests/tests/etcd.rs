//! The lab's etcd answers through etcd-client (the client the control plane uses).

use etcd_client::Client;
use skiff_tests::{ETCD_URL, Lab};

#[tokio::test]
async fn etcd_put_get_delete() {
    let Some(lab) = Lab::from_env() else { return };
    let mut client = lab.etcd().await;
    let key = format!("/skiff-e2e/etcd-{}", std::process::id());
    client.put(key.as_str(), "hello", None).await.expect("put");
    let got = client.get(key.as_str(), None).await.expect("get");
    let values: Vec<&[u8]> = got.kvs().iter().map(|kv| kv.value()).collect();
    assert_eq!(values, vec![b"hello".as_slice()]);
    let deleted = client.delete(key.as_str(), None).await.expect("delete");
    assert_eq!(deleted.deleted(), 1);
    assert!(
        client
            .get(key.as_str(), None)
            .await
            .expect("get")
            .kvs()
            .is_empty()
    );
}

#[tokio::test]
async fn etcd_refuses_clients_without_a_certificate() {
    let Some(lab) = Lab::from_env() else { return };
    // TLS with etcd's CA but no client certificate: the handshake or the first call fails.
    let ca = std::fs::read_to_string(lab.etcd_pki().join("ca.crt")).expect("ca");
    let options = etcd_client::ConnectOptions::new()
        .with_timeout(std::time::Duration::from_secs(3))
        .with_tls(
            etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca)),
        );
    let refused = match Client::connect([ETCD_URL], Some(options)).await {
        Err(_) => true,
        Ok(mut client) => client.get("/registry/", None).await.is_err(),
    };
    assert!(refused, "etcd answered a client without a certificate");
    // Plain HTTP on the client port: refused too.
    let plain = skiff_tests::process::run(
        "curl",
        &["-s", "--max-time", "3", "http://127.0.0.1:2379/version"],
    );
    assert!(
        plain
            .as_deref()
            .map_or(true, |body| !body.contains("etcdserver")),
        "{plain:?}"
    );
}
