//! The ClusterRole aggregation controller, as kube-controller-manager's: a ClusterRole
//! with an `aggregationRule` gets the rules of every ClusterRole its selectors match
//! (admin ← edit ← view and whatever `rbac.authorization.k8s.io/aggregate-to-*` roles a
//! chart installs), whenever any ClusterRole changes. Only roles whose rules differ are
//! written.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use tracing::{info, warn};

use crate::authz::rbac::aggregation::aggregate_all;

/// How long changes are gathered before one aggregation pass (a chart applies many roles
/// at once).
const SETTLE: Duration = Duration::from_millis(200);

/// One pass: aggregate every ClusterRole and write the ones that changed.
async fn aggregate(roles: &Api<ClusterRole>) -> Result<(), kube::Error> {
    let mut all = roles.list(&ListParams::default()).await?.items;
    let changed = match aggregate_all(&mut all) {
        Ok(changed) => changed,
        Err(e) => {
            warn!(error = %e, "ClusterRole aggregation refused a selector");
            return Ok(());
        }
    };
    for name in changed {
        let Some(role) = all
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(&name))
        else {
            continue;
        };
        match roles.replace(&name, &PostParams::default(), role).await {
            Ok(_) => info!(clusterrole = %name, "aggregated rules written"),
            // Someone else changed it meanwhile: the next event brings another pass.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Run until aborted.
pub async fn run(client: Client) {
    let roles: Api<ClusterRole> = Api::all(client);
    let mut events = watcher::watcher(roles.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        if let Err(e) = event {
            warn!(error = %e, "watching ClusterRoles failed");
            continue;
        }
        // Gather what arrives while settling, then aggregate once.
        let deadline = tokio::time::sleep(SETTLE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                next = events.next() => if next.is_none() { return },
            }
        }
        let pass = super::metrics::instrumented("clusterrole-aggregation", aggregate(&roles));
        if let Err(e) = pass.await {
            warn!(error = %e, "ClusterRole aggregation failed; retrying at the next change");
        }
    }
}
