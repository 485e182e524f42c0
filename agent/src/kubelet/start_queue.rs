//! Pod starts take turns. Starting a container is mostly CPU (the shim, runc, namespaces,
//! cgroups): 30 pods started side by side all finish at the end of the burst, while the
//! same work done a few at a time, first come first served, has half of them running
//! after half the time, and no single pod waits longer than it would have. Only the start
//! itself queues: a pod pulling an image gives its turn up while it pulls.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The queue of pod starts: at most `parallel` at once, in arrival order.
#[derive(Clone, Debug)]
pub struct StartQueue {
    turns: Option<Arc<Semaphore>>,
}

/// A pod's turn to start; the next pod's begins when this is dropped.
pub type Turn = Option<OwnedSemaphorePermit>;

impl StartQueue {
    /// A queue letting `parallel` starts run at once (0: no queue, all at once).
    pub fn new(parallel: usize) -> Self {
        Self {
            turns: (parallel > 0).then(|| Arc::new(Semaphore::new(parallel))),
        }
    }

    /// Wait for a turn (tokio's semaphore is fair: first come, first served).
    pub async fn turn(&self) -> Turn {
        match &self.turns {
            Some(turns) => turns.clone().acquire_owned().await.ok(),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn turns_are_limited_and_given_in_arrival_order() {
        let queue = StartQueue::new(1);
        let first = queue.turn().await;
        assert!(first.is_some());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let queue = queue.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _turn = queue.turn().await;
                let _ = tx.send(i);
            });
            // Each waiter is queued before the next arrives.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            rx.try_recv().is_err(),
            "a second start ran alongside the first"
        );
        drop(first);
        let order: Vec<i32> = [rx.recv().await, rx.recv().await, rx.recv().await]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(order, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn zero_means_no_queue() {
        let queue = StartQueue::new(0);
        assert!(queue.turn().await.is_none());
        assert!(queue.turn().await.is_none());
    }
}
