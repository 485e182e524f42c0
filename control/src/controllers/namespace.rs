//! The namespace controller: empties a terminating namespace — every namespaced resource
//! Skiff serves — then removes the `kubernetes` finalizer so the API server deletes it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams},
};
use tracing::{info, warn};

/// How often terminating namespaces are looked at again (pods may take a grace period).
const RESYNC: Duration = Duration::from_secs(2);

fn api_resource(r: &crate::resources::ResourceInfo) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(r.group, r.version, r.kind), r.plural)
}

/// Delete what is left in `namespace`; true once nothing is.
async fn empty(client: &Client, namespace: &str) -> Result<bool, kube::Error> {
    let mut remaining = 0;
    for r in crate::resources::served()
        .iter()
        .filter(|r| r.namespaced && r.stored())
    {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource(r));
        let left = api.list(&ListParams::default().limit(1)).await?;
        if left.items.is_empty() {
            continue;
        }
        remaining += 1;
        api.delete_collection(&DeleteParams::background(), &ListParams::default())
            .await?;
    }
    Ok(remaining == 0)
}

/// Remove the `kubernetes` finalizer through the finalize subresource.
async fn finalize(
    namespaces: &Api<Namespace>,
    mut namespace: Namespace,
) -> Result<(), kube::Error> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    if let Some(spec) = namespace.spec.as_mut() {
        spec.finalizers = Some(
            spec.finalizers
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != "kubernetes")
                .collect(),
        );
    }
    namespaces
        .replace_subresource("finalize", &name, &PostParams::default(), &namespace)
        .await
        .map(drop)
}

/// Run forever.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    loop {
        match namespaces.list(&ListParams::default()).await {
            Ok(list) => {
                for namespace in list
                    .items
                    .into_iter()
                    .filter(|n| n.metadata.deletion_timestamp.is_some())
                {
                    let name = namespace.metadata.name.clone().unwrap_or_default();
                    match empty(&client, &name).await {
                        Ok(true) => match finalize(&namespaces, namespace).await {
                            Ok(()) => info!(namespace = %name, "namespace emptied and finalized"),
                            Err(e) => warn!(namespace = %name, error = %e, "finalizing failed"),
                        },
                        Ok(false) => {}
                        Err(e) => warn!(namespace = %name, error = %e, "emptying failed"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "listing namespaces failed"),
        }
        tokio::time::sleep(RESYNC).await;
    }
}
