//! ControllerRevision history of DaemonSets and StatefulSets, as kube's controllers keep it:
//! one revision per distinct pod template, named `<owner>-<hash>`, labelled with the hash,
//! owned (controller=true) by the set, its `data` the strategic merge patch that puts the
//! template back (`{"spec":{"template":{…,"$patch":"replace"}}}`, what `kubectl rollout
//! undo` sends); the update revision always carries the highest number (re-applying an old
//! template re-numbers its revision); revisions beyond `revisionHistoryLimit` are deleted,
//! oldest first, unless a live pod or the set's status still refers to them.
//!
//! [`plan`] and [`prune`] decide without I/O; [`sync`] lists, creates, re-numbers and
//! deletes, and writes only when something would change.

use std::collections::BTreeSet;

use k8s_openapi::{
    api::{apps::v1::ControllerRevision, core::v1::PodTemplateSpec},
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        runtime::RawExtension,
    },
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use super::{
    deployment::{template_hash, without_defaults},
    workload::owned,
};

/// The pod label naming the revision a pod was made from (both kinds).
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";
/// The hash label of a StatefulSet's revisions (kube's `ControllerRevisionHashLabel`).
pub const STATEFULSET_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// How many names [`sync`] tries before giving up for this sync (each taken name bumps the
/// collision count, as kube does).
const MAX_COLLISIONS: i32 = 5;

/// How a kind labels its revisions and refers to them from pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// DaemonSet: revisions labelled `controller-revision-hash: <hash>`; pods carry the hash.
    DaemonSet,
    /// StatefulSet: revisions labelled `controller.kubernetes.io/hash: <hash>`; pods carry
    /// the revision's name.
    StatefulSet,
}

impl Style {
    fn hash_label(self) -> &'static str {
        match self {
            Self::DaemonSet => POD_REVISION_LABEL,
            Self::StatefulSet => STATEFULSET_HASH_LABEL,
        }
    }

    /// The value of a pod's `controller-revision-hash` label for pods of `revision`.
    pub fn pod_label(self, revision: &ControllerRevision) -> String {
        match self {
            Self::DaemonSet => revision
                .labels()
                .get(self.hash_label())
                .cloned()
                .unwrap_or_default(),
            Self::StatefulSet => revision.name_any(),
        }
    }
}

/// The set whose history is kept.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    /// The set's metadata (name, namespace, annotations).
    pub meta: &'a ObjectMeta,
    /// The controller reference its revisions carry.
    pub reference: OwnerReference,
    /// The set's selector (revisions are listed by it, as kubectl does).
    pub selector: &'a LabelSelector,
    /// The current pod template.
    pub template: &'a PodTemplateSpec,
    /// `spec.revisionHistoryLimit` (kube's default 10 when absent).
    pub history_limit: i32,
    /// `status.collisionCount`.
    pub collision_count: i32,
    /// The kind's conventions.
    pub style: Style,
}

/// The revision `data` for a template: kube's `getPatch`.
pub fn data_of(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".to_owned(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// A template in comparable form (zero values dropped, directives removed).
fn comparable(template: &Value) -> Value {
    let mut template = without_defaults(template);
    if let Some(map) = template.as_object_mut() {
        map.remove("$patch");
    }
    template
}

/// Whether `revision` snapshots `template`.
pub fn matches(revision: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    let Some(stored) = revision
        .data
        .as_ref()
        .and_then(|d| d.0.pointer("/spec/template"))
    else {
        return false;
    };
    comparable(stored) == comparable(&serde_json::to_value(template).unwrap_or_default())
}

/// The hash of a template with `collisions` folded in (kube's `ComputeHash`).
pub fn hash(template: &PodTemplateSpec, collisions: i32) -> String {
    template_hash(
        &without_defaults(&serde_json::to_value(template).unwrap_or_default()),
        collisions,
    )
}

/// The name of the revision of `owner` with `hash` (the owner's name cut to leave room, as
/// kube's `ControllerRevisionName`).
pub fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// What makes the update revision exist with the highest number.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The newest revision already matches the template.
    Keep(ControllerRevision),
    /// An older revision matches: give it number `to`.
    Renumber {
        /// The matching revision.
        revision: ControllerRevision,
        /// Its new number.
        to: i64,
    },
    /// No revision matches: create one with this name and number, with `collisions` the
    /// collision count its hash was computed with.
    Create {
        /// The new revision's name.
        name: String,
        /// Its hash label.
        hash: String,
        /// Its number.
        number: i64,
        /// The collision count the hash used.
        collisions: i32,
    },
}

/// Decide how the update revision comes about from the owner's `revisions`.
pub fn plan(
    revisions: &[ControllerRevision],
    owner_name: &str,
    template: &PodTemplateSpec,
    collision_count: i32,
) -> Step {
    let newest_match = revisions
        .iter()
        .filter(|r| matches(r, template))
        .max_by_key(|r| r.revision);
    let highest_other = revisions
        .iter()
        .filter(|r| !matches(r, template))
        .map(|r| r.revision)
        .max()
        .unwrap_or(0);
    if let Some(found) = newest_match {
        return if found.revision > highest_other {
            Step::Keep(found.clone())
        } else {
            Step::Renumber {
                revision: found.clone(),
                to: highest_other + 1,
            }
        };
    }
    // A name already taken by a different template is a collision: bump and rehash.
    let mut collisions = collision_count;
    loop {
        let hash = hash(template, collisions);
        let name = revision_name(owner_name, &hash);
        if !revisions
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(&name))
        {
            return Step::Create {
                name,
                hash,
                number: highest_other + 1,
                collisions,
            };
        }
        collisions = collisions.saturating_add(1);
    }
}

/// The names of revisions to delete: those not `kept` (the update and current revisions)
/// and not referred to by a live pod's `controller-revision-hash` (`live`), beyond the
/// newest `limit` of them.
pub fn prune(
    revisions: &[ControllerRevision],
    style: Style,
    kept: &BTreeSet<String>,
    live: &BTreeSet<String>,
    limit: i32,
) -> Vec<String> {
    let mut history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !kept.contains(&r.name_any()) && !live.contains(&style.pod_label(r)))
        .collect();
    history.sort_by_key(|r| r.revision);
    let surplus = history
        .len()
        .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    history
        .into_iter()
        .take(surplus)
        .map(ResourceExt::name_any)
        .collect()
}

/// The revision [`sync`] creates for `step`.
fn new_revision(owner: &Owner<'_>, name: &str, hash: &str, number: i64) -> ControllerRevision {
    let mut labels = owner
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(owner.style.hash_label().to_owned(), hash.to_owned());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: owner.meta.namespace.clone(),
            labels: Some(labels),
            annotations: owner.meta.annotations.clone(),
            owner_references: Some(vec![owner.reference.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data_of(owner.template))),
        revision: number,
    }
}

/// The history after a [`sync`].
#[derive(Debug, Clone)]
pub struct Synced {
    /// The revision of the current template (highest number).
    pub update: ControllerRevision,
    /// Every revision of the owner after the sync, oldest first.
    pub revisions: Vec<ControllerRevision>,
    /// The collision count to record in the owner's status.
    pub collision_count: i32,
}

/// Bring the history of `owner` up to date: the update revision exists with the highest
/// number, revisions past the limit are deleted (never one in `kept` or named by `live`
/// pods). `live` holds pods' `controller-revision-hash` values; `kept` revision names.
pub async fn sync(
    client: &Client,
    owner: &Owner<'_>,
    kept: &BTreeSet<String>,
    live: &BTreeSet<String>,
) -> Result<Synced, kube::Error> {
    let namespace = owner.meta.namespace.clone().unwrap_or_default();
    let owner_name = owner.meta.name.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let mut revisions = owned(&api, owner.selector, &owner.reference, true).await?;
    let mut collision_count = owner.collision_count;
    let update = loop {
        match plan(&revisions, &owner_name, owner.template, collision_count) {
            Step::Keep(revision) => break revision,
            Step::Renumber { revision, to } => {
                let renumbered = api
                    .patch(
                        &revision.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"revision": to})),
                    )
                    .await?;
                revisions.retain(|r| r.metadata.uid != renumbered.metadata.uid);
                revisions.push(renumbered.clone());
                break renumbered;
            }
            Step::Create {
                name,
                hash,
                number,
                collisions,
            } => {
                collision_count = collisions;
                let revision = new_revision(owner, &name, &hash, number);
                match api.create(&PostParams::default(), &revision).await {
                    Ok(created) => {
                        revisions.push(created.clone());
                        break created;
                    }
                    // Taken by an object we do not own (or one not yet listed): kube
                    // counts a collision and hashes again.
                    Err(kube::Error::Api(status))
                        if status.code == 409
                            && collision_count - owner.collision_count < MAX_COLLISIONS =>
                    {
                        match api.get_opt(&name).await? {
                            Some(existing)
                                if matches(&existing, owner.template)
                                    && super::workload::controller_uid(&existing.metadata)
                                        == Some(owner.reference.uid.as_str()) =>
                            {
                                revisions.push(existing.clone());
                                break existing;
                            }
                            _ => collision_count = collision_count.saturating_add(1),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    let mut kept = kept.clone();
    kept.insert(update.name_any());
    for name in prune(&revisions, owner.style, &kept, live, owner.history_limit) {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e),
        }
        revisions.retain(|r| r.metadata.name.as_deref() != Some(&name));
    }
    revisions.sort_by_key(|r| r.revision);
    Ok(Synced {
        update,
        revisions,
        collision_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .expect("template")
    }

    fn revision(owner: &str, image: &str, number: i64) -> ControllerRevision {
        let t = template(image);
        let hash = hash(&t, 0);
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(revision_name(owner, &hash)),
                labels: Some([(POD_REVISION_LABEL.to_owned(), hash)].into()),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(data_of(&t))),
            revision: number,
        }
    }

    #[test]
    fn data_is_a_template_replacing_patch_and_matches_its_template() {
        let t = template("nginx:1");
        let data = data_of(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            data["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        let r = revision("ds", "nginx:1", 1);
        assert!(matches(&r, &t));
        assert!(!matches(&r, &template("nginx:2")));
        // An explicit zero value is the same template.
        let mut defaulted = t.clone();
        if let Some(spec) = defaulted.spec.as_mut() {
            spec.host_network = Some(false);
        }
        assert!(matches(&r, &defaulted));
    }

    #[test]
    fn hashes_differ_by_template_and_collision_count() {
        let t = template("nginx:1");
        assert_eq!(hash(&t, 0), hash(&t, 0));
        assert_ne!(hash(&t, 0), hash(&template("nginx:2"), 0));
        assert_ne!(hash(&t, 0), hash(&t, 1));
        assert!(revision_name(&"x".repeat(300), "h").len() <= 225);
    }

    #[test]
    fn a_new_template_gets_the_next_number_and_a_matching_newest_is_kept() {
        let revisions = [revision("ds", "a", 1), revision("ds", "b", 2)];
        match plan(&revisions, "ds", &template("c"), 0) {
            Step::Create {
                name,
                number,
                collisions,
                ..
            } => {
                assert_eq!(number, 3);
                assert_eq!(collisions, 0);
                assert_eq!(name, revision_name("ds", &hash(&template("c"), 0)));
            }
            other => panic!("expected a create: {other:?}"),
        }
        assert!(matches!(
            plan(&revisions, "ds", &template("b"), 0),
            Step::Keep(r) if r.revision == 2
        ));
    }

    #[test]
    fn re_applying_an_old_template_renumbers_its_revision() {
        let revisions = [
            revision("ds", "a", 1),
            revision("ds", "b", 2),
            revision("ds", "c", 3),
        ];
        match plan(&revisions, "ds", &template("a"), 0) {
            Step::Renumber { revision, to } => {
                assert_eq!(revision.revision, 1);
                assert_eq!(to, 4);
            }
            other => panic!("expected a renumber: {other:?}"),
        }
    }

    #[test]
    fn a_name_taken_by_another_template_is_a_collision() {
        let mut other = revision("ds", "b", 1);
        other.metadata.name = Some(revision_name("ds", &hash(&template("a"), 0)));
        match plan(&[other], "ds", &template("a"), 0) {
            Step::Create {
                collisions, name, ..
            } => {
                assert_eq!(collisions, 1);
                assert_eq!(name, revision_name("ds", &hash(&template("a"), 1)));
            }
            step => panic!("expected a create: {step:?}"),
        }
    }

    #[test]
    fn pruning_keeps_the_limit_the_update_and_live_revisions() {
        let revisions: Vec<ControllerRevision> = (1..=6)
            .map(|n| revision("ds", &format!("img{n}"), n))
            .collect();
        let names: Vec<String> = revisions.iter().map(ResourceExt::name_any).collect();
        let kept: BTreeSet<String> = [names[5].clone()].into();
        // Revision 1 still runs somewhere.
        let live: BTreeSet<String> = [Style::DaemonSet.pod_label(&revisions[0])].into();
        let deleted = prune(&revisions, Style::DaemonSet, &kept, &live, 2);
        assert_eq!(deleted, [names[1].clone(), names[2].clone()]);
        assert!(prune(&revisions, Style::DaemonSet, &kept, &live, 10).is_empty());
        // StatefulSet pods name the revision itself.
        let live: BTreeSet<String> = [names[1].clone()].into();
        let deleted = prune(&revisions, Style::StatefulSet, &kept, &live, 0);
        assert_eq!(
            deleted,
            [
                names[0].clone(),
                names[2].clone(),
                names[3].clone(),
                names[4].clone()
            ]
        );
    }
}
