//! The CustomResourceDefinition controllers kube-apiserver runs (naming, establishing and
//! finalizing), as one: a definition whose names conflict with no other definition of its
//! group gets them accepted (`NamesAccepted`) and is then `Established` — from then on
//! its resources are served; a definition being deleted is `Terminating` while every one
//! of its objects is deleted, and then its cleanup finalizer is removed. Status is written
//! only when it would change.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::{
    apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinition, CustomResourceDefinitionCondition, CustomResourceDefinitionNames,
        CustomResourceDefinitionStatus,
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use tracing::{info, warn};

use crate::resources::apiextensions::{CLEANUP_FINALIZER, condition};

/// How long changes are gathered before a pass (a bundle applies many CRDs at once).
const SETTLE: Duration = Duration::from_millis(100);
/// How often a pass runs while a definition is terminating (its objects may take time).
const TERMINATING_RECHECK: Duration = Duration::from_secs(2);

/// Which name of `names` conflicts with `other`'s accepted names, as kube's naming
/// controller words it: (reason, message).
fn conflict(
    names: &CustomResourceDefinitionNames,
    other: &CustomResourceDefinitionNames,
) -> Option<(&'static str, String)> {
    let others_all: Vec<&str> = [Some(other.plural.as_str()), other.singular.as_deref()]
        .into_iter()
        .flatten()
        .chain(other.short_names.iter().flatten().map(String::as_str))
        .collect();
    if others_all.contains(&names.plural.as_str()) {
        return Some((
            "PluralConflict",
            format!("\"{}\" is already in use", names.plural),
        ));
    }
    if let Some(singular) = names.singular.as_deref()
        && others_all.contains(&singular)
    {
        return Some((
            "SingularConflict",
            format!("\"{singular}\" is already in use"),
        ));
    }
    for short in names.short_names.iter().flatten() {
        if others_all.contains(&short.as_str()) {
            return Some((
                "ShortNamesConflict",
                format!("\"{short}\" is already in use"),
            ));
        }
    }
    let other_kinds = [Some(other.kind.as_str()), other.list_kind.as_deref()];
    if other_kinds.contains(&Some(names.kind.as_str())) {
        return Some((
            "KindConflict",
            format!("\"{}\" is already in use", names.kind),
        ));
    }
    if let Some(list_kind) = names.list_kind.as_deref()
        && other_kinds.contains(&Some(list_kind))
    {
        return Some((
            "ListKindConflict",
            format!("\"{list_kind}\" is already in use"),
        ));
    }
    None
}

fn set_condition(
    status: &mut CustomResourceDefinitionStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let value = if value { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value && c.reason.as_deref() == Some(reason) => {
            c.message = Some(message.to_owned());
        }
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(Time(jiff::Timestamp::now()));
            }
            c.status = value.to_owned();
            c.reason = Some(reason.to_owned());
            c.message = Some(message.to_owned());
        }
        None => conditions.push(CustomResourceDefinitionCondition {
            type_: type_.to_owned(),
            status: value.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
        }),
    }
}

/// The status `crd` should have among `all` (every definition).
pub fn desired_status(
    crd: &CustomResourceDefinition,
    all: &[CustomResourceDefinition],
) -> CustomResourceDefinitionStatus {
    let mut status = crd.status.clone().unwrap_or_default();
    let others = all
        .iter()
        .filter(|o| o.metadata.name != crd.metadata.name && o.spec.group == crd.spec.group);
    let mut clash = None;
    for other in others {
        let accepted = other
            .status
            .as_ref()
            .and_then(|s| s.accepted_names.as_ref());
        if let Some(found) = accepted.and_then(|names| conflict(&crd.spec.names, names)) {
            clash = Some(found);
            break;
        }
    }
    match clash {
        None => {
            status.accepted_names = Some(crd.spec.names.clone());
            set_condition(
                &mut status,
                "NamesAccepted",
                true,
                "NoConflicts",
                "no conflicts found",
            );
        }
        Some((reason, message)) => {
            set_condition(&mut status, "NamesAccepted", false, reason, &message);
        }
    }
    let accepted = condition(&status, "NamesAccepted").is_some_and(|c| c.status == "True");
    let established = condition(&status, "Established").is_some_and(|c| c.status == "True");
    if accepted && !established {
        set_condition(
            &mut status,
            "Established",
            true,
            "InitialNamesAccepted",
            "the initial names have been accepted",
        );
    } else if !established {
        set_condition(
            &mut status,
            "Established",
            false,
            "NotAccepted",
            "not all names are accepted",
        );
    }
    if crd.metadata.deletion_timestamp.is_some() {
        set_condition(
            &mut status,
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
    }
    status
}

/// Conditions equal apart from their transition times.
fn same_status(a: &CustomResourceDefinitionStatus, b: &CustomResourceDefinitionStatus) -> bool {
    let strip = |s: &CustomResourceDefinitionStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

/// Delete every object of a terminating definition; true once none is left.
async fn delete_objects(
    client: &Client,
    crd: &CustomResourceDefinition,
) -> Result<bool, kube::Error> {
    let names = crd
        .status
        .as_ref()
        .and_then(|s| s.accepted_names.clone())
        .unwrap_or_else(|| crd.spec.names.clone());
    let Some(version) = crd.spec.versions.iter().find(|v| v.storage) else {
        return Ok(true);
    };
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&crd.spec.group, &version.name, &names.kind),
        &names.plural,
    );
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let objects = match all.list(&ListParams::default()).await {
        Ok(list) => list.items,
        // No longer served (never established): nothing can be left.
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(true),
        Err(e) => return Err(e),
    };
    let mut left = 0;
    for object in &objects {
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match &object.metadata.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        left += 1;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(either) => {
                if either.is_right() {
                    left -= 1;
                }
            }
            Err(kube::Error::Api(status)) if status.code == 404 => left -= 1,
            Err(e) => return Err(e),
        }
    }
    Ok(left == 0)
}

/// One pass over every definition; true if one is still terminating.
async fn reconcile(client: &Client) -> Result<bool, kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let all = api.list(&ListParams::default()).await?.items;
    let mut terminating = false;
    for crd in &all {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let desired = desired_status(crd, &all);
        let current = crd.status.clone().unwrap_or_default();
        if !same_status(&desired, &current) {
            let mut updated = crd.clone();
            updated.status = Some(desired);
            match api
                .replace_status(&name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => info!(crd = %name, "status written"),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        let finalizing = crd
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == CLEANUP_FINALIZER);
        if crd.metadata.deletion_timestamp.is_none() || !finalizing {
            continue;
        }
        terminating = true;
        if delete_objects(client, crd).await? {
            let mut released = api.get(&name).await?;
            if let Some(finalizers) = released.metadata.finalizers.as_mut() {
                finalizers.retain(|f| f != CLEANUP_FINALIZER);
            }
            match api.replace(&name, &PostParams::default(), &released).await {
                Ok(_) => info!(crd = %name, "objects deleted; cleanup finalizer removed"),
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(terminating)
}

/// Run until aborted.
pub async fn run(client: Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut recheck = false;
    loop {
        let wait = if recheck {
            TERMINATING_RECHECK
        } else {
            Duration::MAX
        };
        tokio::select! {
            event = events.next() => match event {
                None => return,
                Some(Err(e)) => {
                    warn!(error = %e, "watching CustomResourceDefinitions failed");
                    continue;
                }
                Some(Ok(_)) => {}
            },
            () = tokio::time::sleep(wait) => {}
        }
        let deadline = tokio::time::sleep(SETTLE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                next = events.next() => if next.is_none() { return },
            }
        }
        let pass = super::metrics::instrumented("customresourcedefinition", reconcile(&client));
        match pass.await {
            Ok(terminating) => recheck = terminating,
            Err(e) => {
                warn!(error = %e, "CustomResourceDefinition pass failed; retrying");
                recheck = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn crd(plural: &str, kind: &str, short: &[&str], accepted: bool) -> CustomResourceDefinition {
        let names = json!({"plural": plural, "singular": kind.to_lowercase(), "kind": kind,
                           "listKind": format!("{kind}List"), "shortNames": short});
        let mut value = json!({"metadata": {"name": format!("{plural}.example.com")},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": names, "versions": []}});
        if accepted {
            value["status"] = json!({"acceptedNames": names});
        }
        serde_json::from_value(value).expect("a CRD")
    }

    fn condition_of(status: &CustomResourceDefinitionStatus, type_: &str) -> (String, String) {
        let c = condition(status, type_).expect("condition");
        (c.status.clone(), c.reason.clone().unwrap_or_default())
    }

    #[test]
    fn names_are_accepted_and_the_definition_established() {
        let widgets = crd("widgets", "Widget", &["wd"], false);
        let status = desired_status(&widgets, std::slice::from_ref(&widgets));
        assert_eq!(
            condition_of(&status, "NamesAccepted"),
            ("True".into(), "NoConflicts".into())
        );
        assert_eq!(
            condition_of(&status, "Established"),
            ("True".into(), "InitialNamesAccepted".into())
        );
        assert_eq!(
            status.accepted_names.map(|n| n.plural),
            Some("widgets".to_owned())
        );
    }

    #[test]
    fn a_taken_name_is_not_accepted() {
        let first = crd("widgets", "Widget", &["wd"], true);
        let second = crd("gadgets", "Gadget", &["wd"], false);
        let all = [first, second.clone()];
        let status = desired_status(&second, &all);
        assert_eq!(
            condition_of(&status, "NamesAccepted"),
            ("False".into(), "ShortNamesConflict".into())
        );
        assert_eq!(condition_of(&status, "Established").0, "False");
        let unchanged = desired_status(&all[0], &all);
        assert!(same_status(&unchanged, &desired_status(&all[0], &all)));
    }
}
