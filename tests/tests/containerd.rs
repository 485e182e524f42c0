//! The lab's containerd answers through containerd-client, with a namespace per node.

use containerd_client::services::v1::{
    ListNamespacesRequest, namespaces_client::NamespacesClient, version_client::VersionClient,
};
use skiff_tests::Lab;

#[tokio::test]
async fn containerd_answers_with_a_namespace_per_node() {
    let Some(lab) = Lab::from_env() else { return };
    let channel = containerd_client::connect(lab.containerd_socket())
        .await
        .expect("connecting to the lab containerd");
    let version = VersionClient::new(channel.clone())
        .version(())
        .await
        .expect("Version")
        .into_inner();
    assert!(
        version.version.starts_with("1.") || version.version.starts_with("2."),
        "{version:?}"
    );

    let namespaces = NamespacesClient::new(channel)
        .list(ListNamespacesRequest {
            filter: String::new(),
        })
        .await
        .expect("Namespaces.List")
        .into_inner()
        .namespaces;
    for node in &lab.nodes {
        let ns = namespaces.iter().find(|n| n.name == node.name);
        let ns =
            ns.unwrap_or_else(|| panic!("no containerd namespace {}: {namespaces:?}", node.name));
        assert_eq!(
            ns.labels.get("skiff.io/lab").map(String::as_str),
            Some("true")
        );
    }
}
