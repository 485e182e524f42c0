//! The loop every kube-runtime controller here runs in: each reconcile is counted and timed
//! on /metrics under the controller's name, a failed one is logged and retried after a
//! fixed delay, and the stream of outcomes is drained until the task is aborted.

use std::{fmt::Debug, future::Future, hash::Hash, sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Resource,
    runtime::{Controller, controller::Action},
};
use serde::de::DeserializeOwned;

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Run `controller` with `reconcile` until aborted: syncs recorded as `name`, failures
/// retried after `retry`.
pub async fn drive<K, C, Fut>(
    controller: Controller<K>,
    name: &'static str,
    retry: Duration,
    reconcile: impl FnMut(Arc<K>, Arc<C>) -> Fut,
    ctx: Arc<C>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug + Unpin,
    C: Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let mut reconcile = reconcile;
    controller
        .run(
            move |object, ctx| super::metrics::instrumented(name, reconcile(object, ctx)),
            move |_object, error: &Error, _ctx| {
                tracing::warn!(controller = name, %error, "sync failed; retrying");
                Action::requeue(retry)
            },
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(controller = name, error = %e, "reconcile failed");
            }
        })
        .await;
}
