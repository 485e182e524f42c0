//! Supervision of the leader's long-running tasks (every controller and the scheduler).
//! Each task is meant to run for the whole leader term; one that ends — it returned, or it
//! panicked — is started again after a back-off, so a task is never left dead while the
//! replica keeps renewing the leader Lease and nobody else may take over.
//!
//! The choice, and why: a failing task is restarted with capped exponential back-off
//! (1 s, doubling, at most 60 s; back to 1 s once a run lasted 2 minutes, like kubelet's
//! CrashLoopBackOff), and the replica keeps the Lease. Handing the Lease over instead would
//! not help the failures that matter: a task that fails on what clients wrote (a pod, a
//! spec) fails the same way on every replica, so leadership would only move the crash loop
//! around while interrupting every healthy controller at each move. The other tasks keep
//! running throughout. The Lease is still given up whenever it cannot be renewed
//! ([`super::LeaderElection::hold`]), as before.

use std::{any::Any, collections::HashMap, future::Future, pin::Pin, time::Duration};

use tokio::{task::JoinSet, time::Instant};

/// One run of a task, boxed.
type BoxedRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One supervised task: a name for the logs and a way to start it afresh.
pub struct Task {
    name: &'static str,
    start: Box<dyn Fn() -> BoxedRun + Send + Sync>,
}

impl Task {
    /// A task named `name` whose runs are made by `start`.
    pub fn new<F, Fut>(name: &'static str, start: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name,
            start: Box::new(move || Box::pin(start())),
        }
    }
}

/// How long to wait before restarting a task that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay (the doubling stops here).
    pub max: Duration,
    /// A run at least this long counts as healthy: the next failure starts again from
    /// `initial`.
    pub healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (0: the first one).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.checked_pow(failures).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// What `panic!` was given, as text.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic".to_owned()
    }
}

struct Slot {
    task: Task,
    /// Consecutive failures without a healthy run in between.
    failures: u32,
    /// When the current run started (after its back-off).
    started: Instant,
}

/// Runs tasks and restarts each one that ends. Dropping the supervisor (or the future of
/// [`Supervisor::run`]) aborts every task.
pub struct Supervisor {
    slots: Vec<Slot>,
    running: JoinSet<()>,
    by_id: HashMap<tokio::task::Id, usize>,
    backoff: Backoff,
}

impl Supervisor {
    /// A supervisor of `tasks` (not started yet).
    pub fn new(tasks: Vec<Task>, backoff: Backoff) -> Self {
        let now = Instant::now();
        Self {
            slots: tasks
                .into_iter()
                .map(|task| Slot {
                    task,
                    failures: 0,
                    started: now,
                })
                .collect(),
            running: JoinSet::new(),
            by_id: HashMap::new(),
            backoff,
        }
    }

    fn start(&mut self, index: usize, delay: Duration) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let run = (slot.task.start)();
        slot.started = Instant::now() + delay;
        let handle = self.running.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            run.await;
        });
        self.by_id.insert(handle.id(), index);
    }

    /// Start every task and keep them running; never returns.
    pub async fn run(mut self) {
        for index in 0..self.slots.len() {
            self.start(index, Duration::ZERO);
        }
        loop {
            let Some(ended) = self.running.join_next_with_id().await else {
                // Nothing to supervise.
                return std::future::pending().await;
            };
            let (id, why) = match ended {
                Ok((id, ())) => (id, "returned".to_owned()),
                Err(e) if e.is_panic() => {
                    let id = e.id();
                    let why = format!("panicked: {}", panic_message(e.into_panic().as_ref()));
                    (id, why)
                }
                Err(e) => (e.id(), "was cancelled".to_owned()),
            };
            let Some(index) = self.by_id.remove(&id) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(index) else {
                continue;
            };
            if slot.started.elapsed() >= self.backoff.healthy_after {
                slot.failures = 0;
            }
            let delay = self.backoff.delay(slot.failures);
            slot.failures = slot.failures.saturating_add(1);
            tracing::error!(
                task = slot.task.name,
                failures = slot.failures,
                restart_in = ?delay,
                "a supervised task {why}; restarting it"
            );
            self.start(index, delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    /// A task counting its starts; each run does `behave(run number)`.
    fn counted<F, Fut>(name: &'static str, behave: F) -> (Task, Arc<AtomicU32>)
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let starts = Arc::new(AtomicU32::new(0));
        let counter = starts.clone();
        let behave = Arc::new(behave);
        let task = Task::new(name, move || {
            let (counter, behave) = (counter.clone(), behave.clone());
            // Counted when the run begins (after its back-off), not when it is made.
            async move {
                let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
                behave(run).await;
            }
        });
        (task, starts)
    }

    async fn at(seconds: f64, origin: Instant) {
        tokio::time::sleep_until(origin + Duration::from_secs_f64(seconds)).await;
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|f| backoff.delay(f).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff.delay(u32::MAX), backoff.max);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_and_the_others_keep_running() {
        let origin = Instant::now();
        let (flaky, flaky_starts) = counted("scheduler", |run| async move {
            if run <= 2 {
                panic!("attempt to add with overflow");
            }
            std::future::pending::<()>().await;
        });
        let (steady, steady_starts) = counted("replicaset", |_| std::future::pending::<()>());
        let supervisor =
            tokio::spawn(Supervisor::new(vec![flaky, steady], Backoff::default()).run());
        at(0.5, origin).await;
        assert_eq!(flaky_starts.load(Ordering::SeqCst), 1);
        // First panic at 0 s → restarted at 1 s; second panic → restarted 2 s later.
        at(1.5, origin).await;
        assert_eq!(flaky_starts.load(Ordering::SeqCst), 2);
        at(2.5, origin).await;
        assert_eq!(flaky_starts.load(Ordering::SeqCst), 2);
        at(3.5, origin).await;
        assert_eq!(flaky_starts.load(Ordering::SeqCst), 3);
        at(600.0, origin).await;
        assert_eq!(flaky_starts.load(Ordering::SeqCst), 3, "it runs now");
        assert_eq!(steady_starts.load(Ordering::SeqCst), 1, "never disturbed");
        supervisor.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_keeps_failing_is_retried_at_the_capped_rate() {
        let origin = Instant::now();
        let (broken, starts) = counted("gc", |_| async {});
        let supervisor = tokio::spawn(Supervisor::new(vec![broken], Backoff::default()).run());
        // Starts at 0, 1, 3, 7, 15, 31, 63, then every 60 s: 123, 183, …, 543, 603.
        at(600.0, origin).await;
        assert_eq!(starts.load(Ordering::SeqCst), 15);
        at(603.5, origin).await;
        assert_eq!(starts.load(Ordering::SeqCst), 16);
        supervisor.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_run_resets_the_back_off() {
        let origin = Instant::now();
        let (slow_crash, starts) = counted("job", |_| async {
            tokio::time::sleep(Duration::from_secs(300)).await;
            panic!("late failure");
        });
        let supervisor = tokio::spawn(Supervisor::new(vec![slow_crash], Backoff::default()).run());
        // Each run lasts 300 s (healthy), so each restart waits only the initial 1 s:
        // starts at 0, 301, 602.
        at(602.5, origin).await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        supervisor.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_supervisor_stops_its_tasks() {
        let (task, starts) = counted("endpoints", |_| std::future::pending::<()>());
        let alive = Arc::new(());
        let witness = alive.clone();
        let watched = Task::new("witness", move || {
            let witness = witness.clone();
            async move {
                let _held = witness;
                std::future::pending::<()>().await;
            }
        });
        let supervisor =
            tokio::spawn(Supervisor::new(vec![task, watched], Backoff::default()).run());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(
            Arc::strong_count(&alive),
            3,
            "the factory and the run hold it"
        );
        supervisor.abort();
        let _ = supervisor.await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "the run and the factory are gone"
        );
    }
}
