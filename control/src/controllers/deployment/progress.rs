//! The Deployment's Progressing condition, decided as kube-controller-manager decides it
//! (checkPausedConditions, getNewReplicaSet, syncRolloutStatus): a pure function of the
//! stored condition and what this sync saw, so every rule is unit-tested.

use k8s_openapi::{api::apps::v1::DeploymentCondition, apimachinery::pkg::apis::meta::v1::Time};

// Reasons of the Progressing condition, as kube-controller-manager words them.
pub(super) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(super) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

/// What the Progressing condition is decided from (kube-controller-manager's
/// checkPausedConditions, getNewReplicaSet and syncRolloutStatus).
pub(super) struct Rollout<'a> {
    /// The Deployment's name (messages name it when there is no new set).
    pub(super) deployment: &'a str,
    /// The set of the current template, if there is one.
    pub(super) new_set: Option<&'a str>,
    /// This sync created the new set: a new rollout starts now.
    pub(super) created: bool,
    pub(super) paused: bool,
    /// Every replica updated and available, and the new set's status observed.
    pub(super) complete: bool,
    /// Every pod belongs to the new set (status.replicas == status.updatedReplicas).
    pub(super) all_updated: bool,
    /// The counts moved forward since the stored status ([`progressed`]).
    pub(super) progressed: bool,
    pub(super) deadline_seconds: i32,
    pub(super) now: jiff::Timestamp,
}

/// kube's DeploymentProgressing over (replicas, updated, ready, available): more updated,
/// ready or available pods, or fewer old ones, than the stored status says.
pub(super) fn progressed(old: (i32, i32, i32, i32), new: (i32, i32, i32, i32)) -> bool {
    let (old_total, old_updated, old_ready, old_available) = old;
    let (total, updated, ready, available) = new;
    updated > old_updated
        || total - updated < old_total - old_updated
        || ready > old_ready
        || available > old_available
}

/// The Progressing condition after this sync, from the stored one (None: there is none).
/// A new set restarts the clock with NewReplicaSetCreated, whatever the last rollout ended
/// in, so an old ProgressDeadlineExceeded does not fail the new rollout; the deadline
/// counts from the condition's lastUpdateTime, refreshed whenever progress is seen.
pub(super) fn progressing(
    before: Option<&DeploymentCondition>,
    rollout: &Rollout<'_>,
) -> Option<DeploymentCondition> {
    let subject = match rollout.new_set {
        Some(set) => format!("ReplicaSet \"{set}\""),
        None => format!("Deployment \"{}\"", rollout.deployment),
    };
    let fresh = |status: &str, reason: &str, message: String| DeploymentCondition {
        type_: "Progressing".to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(rollout.now)),
        last_transition_time: Some(Time(rollout.now)),
    };
    let reason_of = |c: &Option<DeploymentCondition>| {
        c.as_ref()
            .and_then(|c| c.reason.clone())
            .unwrap_or_default()
    };
    let mut current = before.cloned();
    if rollout.paused {
        // A reported lack of progress is not overwritten by the pause.
        if [TIMED_OUT, PAUSED].contains(&reason_of(&current).as_str()) {
            return current;
        }
        let paused = fresh("Unknown", PAUSED, "Deployment is paused".to_owned());
        return set_condition(current, paused);
    }
    if reason_of(&current) == PAUSED {
        let resumed = fresh("Unknown", RESUMED, "Deployment is resumed".to_owned());
        current = set_condition(current, resumed);
    }
    if rollout.created {
        let name = rollout.new_set.unwrap_or_default();
        let mut started = fresh(
            "True",
            NEW_RS_CREATED,
            format!("Created new replica set \"{name}\""),
        );
        if let Some(c) = current.as_ref().filter(|c| c.status == "True") {
            started.last_transition_time = c.last_transition_time.clone();
        }
        current = Some(started);
    } else if current.is_none()
        && let Some(name) = rollout.new_set
    {
        current = Some(fresh(
            "True",
            FOUND_NEW_RS,
            format!("Found new replica set \"{name}\""),
        ));
    }
    // A finished rollout is not estimated again (a scale or a lost pod is no new rollout).
    if reason_of(&current) == NEW_RS_AVAILABLE && rollout.all_updated {
        return current;
    }
    if rollout.complete {
        let done = fresh(
            "True",
            NEW_RS_AVAILABLE,
            format!("{subject} has successfully progressed."),
        );
        return set_condition(current, done);
    }
    if rollout.progressed {
        let mut moving = fresh("True", RS_UPDATED, format!("{subject} is progressing."));
        if let Some(c) = current.as_ref().filter(|c| c.status == "True") {
            moving.last_transition_time = c.last_transition_time.clone();
        }
        return Some(moving);
    }
    let deadline = jiff::SignedDuration::from_secs(i64::from(rollout.deadline_seconds));
    let timed_out = current.as_ref().is_some_and(|c| match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + deadline < rollout.now),
    });
    if timed_out {
        let stalled = fresh(
            "False",
            TIMED_OUT,
            format!("{subject} has timed out progressing."),
        );
        return set_condition(current, stalled);
    }
    current
}

/// kube's SetDeploymentCondition: the same status and reason leave the condition as it
/// is; the same status keeps its lastTransitionTime.
fn set_condition(
    before: Option<DeploymentCondition>,
    mut new: DeploymentCondition,
) -> Option<DeploymentCondition> {
    match before {
        Some(b) if b.status == new.status && b.reason == new.reason => Some(b),
        Some(b) if b.status == new.status => {
            new.last_transition_time = b.last_transition_time;
            Some(new)
        }
        _ => Some(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    fn condition(status: &str, reason: &str, since: jiff::Timestamp) -> DeploymentCondition {
        DeploymentCondition {
            type_: "Progressing".to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(String::new()),
            last_update_time: Some(Time(since)),
            last_transition_time: Some(Time(since)),
        }
    }

    fn rollout(now: jiff::Timestamp) -> Rollout<'static> {
        Rollout {
            deployment: "d",
            new_set: Some("d-new"),
            created: false,
            paused: false,
            complete: false,
            all_updated: false,
            progressed: false,
            deadline_seconds: 600,
            now,
        }
    }

    fn times(c: &DeploymentCondition) -> (Option<jiff::Timestamp>, Option<jiff::Timestamp>) {
        (
            c.last_update_time.as_ref().map(|t| t.0),
            c.last_transition_time.as_ref().map(|t| t.0),
        )
    }

    #[test]
    fn a_new_replica_set_restarts_an_exceeded_deadline() {
        let then = at("2026-01-01T00:00:00Z");
        let now = at("2026-01-01T01:00:00Z");
        let exceeded = condition("False", TIMED_OUT, then);
        let started = progressing(
            Some(&exceeded),
            &Rollout {
                created: true,
                ..rollout(now)
            },
        )
        .expect("condition");
        assert_eq!(started.status, "True");
        assert_eq!(started.reason.as_deref(), Some(NEW_RS_CREATED));
        assert_eq!(
            started.message.as_deref(),
            Some("Created new replica set \"d-new\"")
        );
        assert_eq!(times(&started), (Some(now), Some(now)));
        // Without a new set the verdict stays.
        let same = progressing(Some(&exceeded), &rollout(now)).expect("condition");
        assert_eq!(same, exceeded);
    }

    #[test]
    fn the_deadline_counts_from_the_last_progress() {
        let start = at("2026-01-01T00:00:00Z");
        let created = condition("True", NEW_RS_CREATED, start);
        let early = rollout(start + jiff::SignedDuration::from_secs(599));
        assert_eq!(progressing(Some(&created), &early), Some(created.clone()));
        let late = start + jiff::SignedDuration::from_secs(601);
        let stalled = progressing(Some(&created), &rollout(late)).expect("condition");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_deref()),
            ("False", Some(TIMED_OUT))
        );
        assert_eq!(times(&stalled), (Some(late), Some(late)));
        // Progress refreshes lastUpdateTime and keeps the transition time.
        let moving = progressing(
            Some(&created),
            &Rollout {
                progressed: true,
                ..rollout(late)
            },
        )
        .expect("condition");
        assert_eq!(moving.reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(times(&moving), (Some(late), Some(start)));
    }

    #[test]
    fn found_complete_and_paused_rollouts() {
        let now = at("2026-01-01T00:00:00Z");
        let found = progressing(None, &rollout(now)).expect("condition");
        assert_eq!(found.reason.as_deref(), Some(FOUND_NEW_RS));
        let done = progressing(
            Some(&found),
            &Rollout {
                complete: true,
                all_updated: true,
                ..rollout(now)
            },
        )
        .expect("condition");
        assert_eq!(
            (done.status.as_str(), done.reason.as_deref()),
            ("True", Some(NEW_RS_AVAILABLE))
        );
        // A finished rollout that loses a pod is not estimated again.
        let later = now + jiff::SignedDuration::from_secs(3600);
        let kept = progressing(
            Some(&done),
            &Rollout {
                all_updated: true,
                ..rollout(later)
            },
        );
        assert_eq!(kept, Some(done.clone()));
        let paused = progressing(
            Some(&done),
            &Rollout {
                paused: true,
                ..rollout(later)
            },
        )
        .expect("condition");
        assert_eq!(
            (paused.status.as_str(), paused.reason.as_deref()),
            ("Unknown", Some(PAUSED))
        );
        let resumed = progressing(Some(&paused), &rollout(later)).expect("condition");
        assert_eq!(resumed.reason.as_deref(), Some(RESUMED));
    }

    #[test]
    fn progress_is_movement_toward_the_new_set() {
        // A new, still empty set is no progress; a first updated pod is.
        assert!(!progressed((3, 3, 3, 3), (3, 0, 3, 3)));
        assert!(progressed((3, 0, 3, 3), (4, 1, 3, 3)));
        // Fewer old pods is progress too; losing a ready pod is not.
        assert!(progressed((4, 1, 3, 3), (3, 1, 3, 3)));
        assert!(!progressed((3, 3, 3, 3), (3, 3, 2, 2)));
    }
}
