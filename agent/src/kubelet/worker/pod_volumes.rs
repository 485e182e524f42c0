//! A pod's volumes, set up once before its first container (a failure is reported as
//! kubelet reports it, FailedMount, and tried again in a while, reusing the tokens earlier
//! attempts were issued), and the tasks that keep its projected ServiceAccount tokens
//! fresh until its containers have stopped.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use tokio::time::Instant;

use super::{State, Step, Worker, volumes};
use volumes::token::{Clock, Events, KubeTokenSource, SystemClock, TokenFile, TokenSource};

impl Worker {
    /// Set up the pod's volumes if that is not done yet; false (reported) if they cannot
    /// be set up now.
    pub(super) async fn ensure_volumes(&mut self) -> bool {
        if self.volumes.is_some() {
            return true;
        }
        // Tokens issued by an attempt that failed later are reused by the next one.
        let tokens = self.token_cache.clone();
        let prepare = volumes::prepare(&self.kubelet.client, &*tokens, &self.pod, &self.pod_dir);
        let kubelet = self.kubelet.clone();
        match kubelet.timing.timed(Step::Volumes, prepare).await {
            Ok(mut prepared) => {
                tokens.clear();
                self.keep_tokens_fresh(std::mem::take(&mut prepared.tokens));
                self.volumes = Some(prepared);
                self.blocked = None;
                true
            }
            Err(e) => {
                let known = self
                    .blocked
                    .as_ref()
                    .is_some_and(|(r, m)| r == "FailedMount" && *m == e.0);
                if !known {
                    tracing::warn!(pod = %self.name, error = %e, "volume setup failed");
                    let pod_ref = skiff_events::reference("v1", "Pod", &self.pod.metadata);
                    self.kubelet
                        .recorder
                        .record(&pod_ref, "Warning", "FailedMount", &e.0)
                        .await;
                }
                self.blocked = Some(("FailedMount".into(), e.0.clone()));
                for slot in &mut self.slots {
                    if matches!(slot.record.state, State::Waiting { .. }) {
                        slot.record.state = State::Waiting {
                            reason: "ContainerCreating".into(),
                            message: Some(e.0.clone()),
                        };
                    }
                }
                self.wake = Some(Instant::now() + Duration::from_secs(5));
                false
            }
        }
    }

    /// Refresh each projected token before it expires (the tasks end with the worker).
    fn keep_tokens_fresh(&mut self, tokens: Vec<TokenFile>) {
        if tokens.is_empty() {
            return;
        }
        let source: Arc<dyn TokenSource> = Arc::new(KubeTokenSource(self.kubelet.client.clone()));
        let events: Arc<dyn Events> = Arc::new(PodEvents {
            recorder: self.kubelet.recorder.clone(),
            object: skiff_events::reference("v1", "Pod", &self.pod.metadata),
        });
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        self.token_refreshers = tokio::task::JoinSet::new();
        for token in tokens {
            self.token_refreshers.spawn(volumes::token::keep_fresh(
                token,
                source.clone(),
                events.clone(),
                clock.clone(),
            ));
        }
    }
}

/// Events about one pod, for the tasks that outlive a sync (token refreshers).
struct PodEvents {
    recorder: skiff_events::Recorder,
    object: ObjectReference,
}

impl Events for PodEvents {
    fn warning<'a>(&'a self, reason: &'a str, message: String) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.recorder
                .record(&self.object, "Warning", reason, &message)
                .await;
        })
    }
}
