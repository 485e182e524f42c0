//! How long each step of starting a container takes, as kubelet's
//! `kubelet_runtime_operations_duration_seconds` shows it: one histogram per step on
//! /metrics (`skiff_kubelet_step_seconds{step=…}`), and the whole start from the worker
//! seeing the pod to its last container running (`skiff_kubelet_pod_start_seconds`).
//! Where a slow pod start goes is then a query, not a guess.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use crate::metrics::Histogram;

/// One step of a pod start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Address, network namespace, veth, routes, the pod's files.
    Sandbox,
    /// Volumes prepared (configMaps, secrets, projections written).
    Volumes,
    /// The image resolved (present, or pulled and unpacked).
    Image,
    /// The container's runtime config (environment, mounts, cgroup).
    Config,
    /// containerd: the container record.
    ContainerCreate,
    /// containerd: the rootfs snapshot.
    SnapshotPrepare,
    /// containerd: the task (shim started, runc create).
    TaskCreate,
    /// containerd: the task started (runc start).
    TaskStart,
}

impl Step {
    const ALL: [Step; 8] = [
        Step::Sandbox,
        Step::Volumes,
        Step::Image,
        Step::Config,
        Step::ContainerCreate,
        Step::SnapshotPrepare,
        Step::TaskCreate,
        Step::TaskStart,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Sandbox => "sandbox",
            Step::Volumes => "volumes",
            Step::Image => "image",
            Step::Config => "config",
            Step::ContainerCreate => "container_create",
            Step::SnapshotPrepare => "snapshot_prepare",
            Step::TaskCreate => "task_create",
            Step::TaskStart => "task_start",
        }
    }
}

/// The pod start histograms.
#[derive(Debug, Default)]
pub struct PodStartMetrics {
    steps: [Histogram; Step::ALL.len()],
    pod_start: Histogram,
}

impl PodStartMetrics {
    /// Record one run of `step`.
    pub fn step(&self, step: Step, took: Duration) {
        // `ALL` lists the steps in declaration order, so a step's discriminant is its index.
        if let Some(histogram) = self.steps.get(step as usize) {
            histogram.observe(took);
        }
    }

    /// Run `work`, recording how long it took as one run of `step`.
    pub async fn timed<T>(&self, step: Step, work: impl Future<Output = T>) -> T {
        let began = Instant::now();
        let out = work.await;
        self.step(step, began.elapsed());
        out
    }

    /// Record a pod whose containers all run, `took` after its worker first saw it.
    pub fn pod_started(&self, took: Duration) {
        self.pod_start.observe(took);
    }

    /// Append both metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let name = "skiff_kubelet_step_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time of each step of starting a container, by step."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (step, histogram) in Step::ALL.iter().zip(&self.steps) {
            histogram.render_series(out, name, &format!("step=\"{}\"", step.name()));
        }
        self.pod_start.render(
            out,
            "skiff_kubelet_pod_start_seconds",
            "From the pod worker's start to every app container running (image present or pulled).",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_at_its_own_index() {
        for (index, step) in Step::ALL.iter().enumerate() {
            assert_eq!(*step as usize, index, "{}", step.name());
        }
    }

    #[test]
    fn renders_one_series_per_step_under_one_family() {
        let metrics = PodStartMetrics::default();
        metrics.step(Step::TaskCreate, Duration::from_millis(40));
        metrics.pod_started(Duration::from_millis(120));
        let mut out = String::new();
        metrics.render(&mut out);
        assert_eq!(out.matches("# TYPE skiff_kubelet_step_seconds").count(), 1);
        assert!(out.contains("skiff_kubelet_step_seconds_count{step=\"task_create\"} 1\n"));
        assert!(out.contains("skiff_kubelet_step_seconds_count{step=\"sandbox\"} 0\n"));
        assert!(
            out.contains("skiff_kubelet_step_seconds_bucket{step=\"task_create\",le=\"0.05\"} 1\n")
        );
        assert!(out.contains("skiff_kubelet_pod_start_seconds_count 1\n"));
    }
}
