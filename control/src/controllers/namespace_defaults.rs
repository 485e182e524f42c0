//! What every namespace holds from the start, kept there by two controllers as
//! kube-controller-manager's: the ServiceAccount controller's `default` ServiceAccount and
//! the root-CA publisher's `kube-root-ca.crt` ConfigMap (the CA bundle in-cluster clients
//! verify the API server with). Either is re-created when deleted and the ConfigMap is
//! corrected when its data drifts; nothing is written when both are as they should be.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};

use super::drive::{Error, drive};

/// Name of every namespace's default ServiceAccount.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Name of the ConfigMap with the cluster's CA bundle.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The annotation kube puts on the CA ConfigMap.
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using \
     internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed \
     across distributions of Kubernetes clusters.";

/// How long a failed sync waits before it is retried.
const RETRY: Duration = Duration::from_secs(2);

fn namespace_of<K: kube::Resource<DynamicType = ()>>(object: K) -> Option<ObjectRef<Namespace>> {
    object
        .meta()
        .namespace
        .as_deref()
        .map(ObjectRef::<Namespace>::new)
}

fn active(namespace: &Namespace) -> Option<String> {
    if namespace.metadata.deletion_timestamp.is_some() {
        return None;
    }
    namespace.metadata.name.clone()
}

/// Create `object` unless it exists (a racing creator or the watch's lag are no error).
async fn create_missing<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        // The namespace went away (or is going) meanwhile.
        Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The ServiceAccount controller: `default` in every namespace.
pub async fn run_service_accounts(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let controller = Controller::new(namespaces, watcher::Config::default()).watches(
        accounts,
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}")),
        namespace_of,
    );
    let ctx = Arc::new(client);
    drive(
        controller,
        "serviceaccount",
        RETRY,
        |namespace: Arc<Namespace>, client: Arc<Client>| async move {
            let Some(name) = active(&namespace) else {
                return Ok(Action::await_change());
            };
            let api: Api<ServiceAccount> = Api::namespaced((*client).clone(), &name);
            if api.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_none() {
                let account = ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(DEFAULT_SERVICE_ACCOUNT.to_owned()),
                        namespace: Some(name),
                        ..ObjectMeta::default()
                    },
                    ..ServiceAccount::default()
                };
                create_missing(&api, &account).await?;
            }
            Ok::<_, Error>(Action::await_change())
        },
        ctx,
    )
    .await;
}

/// The root-CA publisher: `kube-root-ca.crt` with `ca_pem` in every namespace.
pub async fn run_root_ca_publisher(client: Client, ca_pem: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let controller = Controller::new(namespaces, watcher::Config::default()).watches(
        config_maps,
        watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIG_MAP}")),
        namespace_of,
    );
    let ctx = Arc::new((client, ca_pem));
    drive(
        controller,
        "root-ca-cert-publisher",
        RETRY,
        |namespace: Arc<Namespace>, ctx: Arc<(Client, String)>| async move {
            let Some(name) = active(&namespace) else {
                return Ok(Action::await_change());
            };
            let (client, ca_pem) = &*ctx;
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
            let data = BTreeMap::from([("ca.crt".to_owned(), ca_pem.clone())]);
            let annotations = BTreeMap::from([(
                "kubernetes.io/description".to_owned(),
                ROOT_CA_DESCRIPTION.to_owned(),
            )]);
            match api.get_opt(ROOT_CA_CONFIG_MAP).await? {
                None => {
                    let config_map = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(ROOT_CA_CONFIG_MAP.to_owned()),
                            namespace: Some(name),
                            annotations: Some(annotations),
                            ..ObjectMeta::default()
                        },
                        data: Some(data),
                        ..ConfigMap::default()
                    };
                    create_missing(&api, &config_map).await?;
                }
                Some(mut existing) if existing.data.as_ref() != Some(&data) => {
                    existing.data = Some(data);
                    existing
                        .metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .extend(annotations);
                    api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &existing)
                        .await?;
                }
                Some(_) => {}
            }
            Ok::<_, Error>(Action::await_change())
        },
        ctx,
    )
    .await;
}
