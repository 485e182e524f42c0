//! The leader's APIService controller: kube-apiserver's autoregistration (a local
//! APIService for every group-version served here — built-in ones labelled
//! `kube-aggregator.kubernetes.io/automanaged: onstart`, CRD ones `true` and removed with
//! their last served version) and kube-aggregator's availability controller (the
//! `Available` condition: local ones always; remote ones when their Service exists, has a
//! ready endpoint and answers discovery). A pass runs on every APIService change and every
//! [`RECHECK`]; status is written only when the condition would change.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    kube_aggregator::pkg::apis::apiregistration::v1::{
        APIService, APIServiceCondition, APIServiceSpec, APIServiceStatus,
    },
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use tracing::{info, warn};

use super::{Aggregator, ApiServiceView, BackendError};
use crate::service_endpoints::EndpointError;

/// Label kube's autoregistration marks local APIServices with.
pub const AUTOMANAGED_LABEL: &str = "kube-aggregator.kubernetes.io/automanaged";
/// How often every APIService is checked again without any change to it.
const RECHECK: Duration = Duration::from_secs(10);

/// kube-apiserver's priorities of the built-in group-versions (group, version priority).
fn builtin_priority(group: &str, version: &str) -> (i32, i32) {
    match (group, version) {
        ("", _) => (18000, 1),
        ("apps", _) => (17800, 15),
        ("events.k8s.io", _) => (17750, 15),
        ("authentication.k8s.io", _) => (17700, 15),
        ("authorization.k8s.io", _) => (17600, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("autoscaling", _) => (17500, 15),
        ("batch", _) => (17400, 15),
        ("certificates.k8s.io", _) => (17300, 15),
        ("networking.k8s.io", _) => (17200, 15),
        ("policy", _) => (17100, 15),
        ("rbac.authorization.k8s.io", _) => (17000, 15),
        ("storage.k8s.io", _) => (16800, 15),
        ("apiextensions.k8s.io" | "admissionregistration.k8s.io", _) => (16700, 15),
        ("scheduling.k8s.io", _) => (16600, 15),
        ("coordination.k8s.io", _) => (16500, 10),
        ("node.k8s.io", _) => (16300, 15),
        ("discovery.k8s.io", _) => (16200, 15),
        ("apiregistration.k8s.io", _) => (18000, 15),
        _ => (1000, 100),
    }
}

/// The local APIService of `group`/`version`.
fn local_apiservice(group: &str, version: &str, builtin: bool) -> APIService {
    let (group_priority, version_priority) = builtin_priority(group, version);
    APIService {
        metadata: ObjectMeta {
            name: Some(format!("{version}.{group}")),
            labels: Some(
                [(
                    AUTOMANAGED_LABEL.to_owned(),
                    if builtin { "onstart" } else { "true" }.to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(APIServiceSpec {
            group: Some(group.to_owned()),
            version: Some(version.to_owned()),
            group_priority_minimum: group_priority,
            version_priority,
            ..APIServiceSpec::default()
        }),
        status: None,
    }
}

/// The Available condition `view` should have: (status, reason, message).
pub async fn availability(
    aggregator: &Aggregator,
    view: &ApiServiceView,
) -> (bool, &'static str, String) {
    let Some(backend) = &view.backend else {
        return (
            true,
            "Local",
            "Local APIServices are always available".to_owned(),
        );
    };
    let service = format!("service/{} in \"{}\"", backend.name, backend.namespace);
    match aggregator.check(view).await {
        Ok(_) => (true, "Passed", "all checks passed".to_owned()),
        Err(BackendError::Endpoint(EndpointError::ServiceNotFound(_))) => (
            false,
            "ServiceNotFound",
            format!("{service} is not present"),
        ),
        Err(BackendError::Endpoint(EndpointError::NoSuchPort { port, .. })) => (
            false,
            "ServicePortError",
            format!("{service} is not listening on port {port}"),
        ),
        Err(BackendError::Endpoint(EndpointError::NoEndpoints(_))) => (
            false,
            "MissingEndpoints",
            format!(
                "endpoints for {service} have no addresses with port {}",
                backend.port
            ),
        ),
        Err(e) => (
            false,
            "FailedDiscoveryCheck",
            format!(
                "failing or missing response from https://{}/apis/{}/{}: {e}",
                backend.server_name(),
                view.group,
                view.version
            ),
        ),
    }
}

/// `status` with its Available condition set; None when nothing would change.
fn updated_status(
    status: Option<&APIServiceStatus>,
    (available, reason, message): (bool, &str, String),
) -> Option<APIServiceStatus> {
    let mut status = status.cloned().unwrap_or_default();
    let value = if available { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == "Available") {
        Some(c)
            if c.status == value
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message.as_str()) =>
        {
            return None;
        }
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(Time(jiff::Timestamp::now()));
            }
            c.status = value.to_owned();
            c.reason = Some(reason.to_owned());
            c.message = Some(message);
        }
        None => conditions.push(APIServiceCondition {
            type_: "Available".to_owned(),
            status: value.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
        }),
    }
    Some(status)
}

/// Register the missing local APIServices and drop CRD ones no longer served — only when
/// `current` (this replica's served kinds reflect etcd: a leader that just started must
/// not remove what its CRD cache has not loaded yet).
async fn register_local(
    api: &Api<APIService>,
    existing: &[APIService],
    current: bool,
) -> Result<(), kube::Error> {
    let served: BTreeSet<(String, String)> = crate::resources::group_versions()
        .into_iter()
        .map(|(g, v)| (g.to_owned(), v.to_owned()))
        .collect();
    let builtin: BTreeSet<(&str, &str)> = crate::resources::REGISTRY
        .iter()
        .map(|r| (r.group, r.version))
        .collect();
    let names: BTreeSet<&str> = existing
        .iter()
        .filter_map(|a| a.metadata.name.as_deref())
        .collect();
    for (group, version) in &served {
        if names.contains(format!("{version}.{group}").as_str()) {
            continue;
        }
        let local = local_apiservice(
            group,
            version,
            builtin.contains(&(group.as_str(), version.as_str())),
        );
        match api.create(&PostParams::default(), &local).await {
            Ok(_) => info!(group, version, "registered a local APIService"),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    for apiservice in existing {
        let automanaged = apiservice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(AUTOMANAGED_LABEL))
            .map(String::as_str);
        let spec = apiservice.spec.as_ref();
        let key = (
            spec.and_then(|s| s.group.clone()).unwrap_or_default(),
            spec.and_then(|s| s.version.clone()).unwrap_or_default(),
        );
        let local = spec.is_some_and(|s| s.service.is_none());
        if current && automanaged == Some("true") && local && !served.contains(&key) {
            let name = apiservice.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => info!(apiservice = %name, "removed a local APIService no longer served"),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// One pass: registration, then every APIService's condition.
async fn reconcile(client: &Client, aggregator: &Aggregator) -> Result<(), kube::Error> {
    let api: Api<APIService> = Api::all(client.clone());
    let existing = api.list(&ListParams::default()).await?.items;
    let current = aggregator.served_kinds_current().await;
    register_local(&api, &existing, current).await?;
    for apiservice in existing {
        let Ok(object) = serde_json::to_value(&apiservice) else {
            continue;
        };
        let Some(view) = ApiServiceView::from_object(&object) else {
            continue;
        };
        let desired = availability(aggregator, &view).await;
        let Some(status) = updated_status(apiservice.status.as_ref(), desired) else {
            continue;
        };
        let mut updated = apiservice;
        let available = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Available" && c.status == "True");
        updated.status = Some(status);
        match api
            .replace_status(&view.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => info!(apiservice = %view.name, available, "availability written"),
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Run until aborted.
pub async fn run(client: Client, aggregator: Arc<Aggregator>) {
    let api: Api<APIService> = Api::all(client.clone());
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let pass = crate::controllers::metrics::instrumented(
            "apiservice",
            reconcile(&client, &aggregator),
        );
        if let Err(e) = pass.await {
            warn!(error = %e, "APIService pass failed; retrying");
        }
        tokio::select! {
            event = events.next() => match event {
                None => return,
                Some(Err(e)) => warn!(error = %e, "watching APIServices failed"),
                Some(Ok(_)) => {}
            },
            () = tokio::time::sleep(RECHECK) => {}
        }
        // Let a burst of changes (and our own status writes) settle into one pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_rewritten_only_when_the_condition_changes() {
        let first = updated_status(None, (false, "MissingEndpoints", "none".to_owned()))
            .expect("a first condition");
        assert!(
            updated_status(Some(&first), (false, "MissingEndpoints", "none".to_owned())).is_none()
        );
        let passed = updated_status(
            Some(&first),
            (true, "Passed", "all checks passed".to_owned()),
        )
        .expect("changed");
        let condition = &passed.conditions.expect("conditions")[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_deref()),
            ("True", Some("Passed"))
        );
        let local = local_apiservice("apps", "v1", true);
        assert_eq!(local.metadata.name.as_deref(), Some("v1.apps"));
        assert_eq!(local.spec.map(|s| s.group_priority_minimum), Some(17800));
    }
}
