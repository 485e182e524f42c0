//! The lab's etcd answers through etcd-client (the client the control plane uses).

use etcd_client::Client;
use skiff_tests::{ETCD_URL, Lab};

#[tokio::test]
async fn etcd_put_get_delete() {
    if Lab::from_env().is_none() {
        return;
    }
    let mut client = Client::connect([ETCD_URL], None)
        .await
        .expect("connecting to the lab etcd");
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
