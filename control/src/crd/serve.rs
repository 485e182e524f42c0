//! From definitions to served resources: every established CRD's served versions become
//! [`CustomResource`]s in the catalog, kept current by a task that follows the CRDs'
//! watch cache on every replica (each one serves the API).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use tracing::{debug, warn};

use super::{conversion::Conversion, schema::Schema, strategy::CustomStrategy, versions};
use crate::{
    resources::{
        self, CustomResource, PrinterColumn, ScalePaths, Subresource, apiextensions, custom,
    },
    store::{Store, WatchCache},
};

/// How often the task looks for changes when no event wakes it.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// How long a request for an unknown resource waits for the CRD cache.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(2);

/// Whether the definition's `Established` condition is true.
pub fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| apiextensions::condition(s, "Established"))
        .is_some_and(|c| c.status == "True")
}

/// The served versions of an established definition, under its accepted names, in kube's
/// version priority order (discovery lists them so and prefers the first).
pub fn resources_of(crd: &CustomResourceDefinition) -> Vec<CustomResource> {
    if !established(crd) {
        return Vec::new();
    }
    let names = crd
        .status
        .as_ref()
        .and_then(|s| s.accepted_names.clone())
        .unwrap_or_else(|| crd.spec.names.clone());
    let conversion = Conversion::of(crd, &names.kind).map(Arc::new);
    let mut served: Vec<&CustomResourceDefinitionVersion> =
        crd.spec.versions.iter().filter(|v| v.served).collect();
    versions::sort(&mut served, |v| v.name.as_str());
    served
        .into_iter()
        .filter_map(|v| {
            let strategy = match strategy(crd, v, &names.kind, conversion.clone()) {
                Ok(strategy) => strategy,
                Err(why) => {
                    warn!(crd = crd.metadata.name.as_deref().unwrap_or_default(), version = %v.name, %why,
                          "not serving a version whose schema does not compile");
                    return None;
                }
            };
            let mut subresources = Vec::new();
            if let Some(sub) = &v.subresources {
                if sub.status.is_some() {
                    subresources.push(Subresource::Status);
                }
                if sub.scale.is_some() {
                    subresources.push(Subresource::Scale);
                }
            }
            Some(CustomResource {
                group: crd.spec.group.clone(),
                version: v.name.clone(),
                kind: names.kind.clone(),
                plural: names.plural.clone(),
                singular: names
                    .singular
                    .clone()
                    .unwrap_or_else(|| names.kind.to_lowercase()),
                namespaced: crd.spec.scope == "Namespaced",
                short_names: names.short_names.clone().unwrap_or_default(),
                categories: names.categories.clone().unwrap_or_default(),
                subresources,
                strategy: Arc::new(strategy),
            })
        })
        .collect()
}

/// The warning kube gives requests to a deprecated version: its deprecationWarning, or
/// `<group>/<version> <Kind> is deprecated; use <group>/<best> <Kind>` naming the
/// highest-priority served, non-deprecated version above it.
pub fn deprecation_warning(
    crd: &CustomResourceDefinition,
    version: &CustomResourceDefinitionVersion,
    kind: &str,
) -> Option<String> {
    if version.deprecated != Some(true) {
        return None;
    }
    if let Some(warning) = &version.deprecation_warning {
        return Some(warning.clone());
    }
    let group = &crd.spec.group;
    let mut message = format!("{group}/{} {kind} is deprecated", version.name);
    let better = crd
        .spec
        .versions
        .iter()
        .filter(|v| v.served && v.deprecated != Some(true))
        .filter(|v| versions::priority(&version.name, &v.name) == std::cmp::Ordering::Less)
        .map(|v| v.name.as_str())
        .max_by(|a, b| versions::priority(a, b));
    if let Some(better) = better {
        message.push_str(&format!("; use {group}/{better} {kind}"));
    }
    Some(message)
}

fn strategy(
    crd: &CustomResourceDefinition,
    version: &CustomResourceDefinitionVersion,
    kind: &str,
    conversion: Option<Arc<Conversion>>,
) -> Result<CustomStrategy, String> {
    let props = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.clone())
        .unwrap_or_default();
    let schema = Schema::compile(&props, "schema").map_err(|errors| {
        errors
            .iter()
            .map(|e| e.cause_message())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let columns = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: c.name.clone(),
            type_: c.type_.clone(),
            format: c.format.clone().unwrap_or_default(),
            description: c.description.clone().unwrap_or_default(),
            priority: c.priority.unwrap_or(0),
            json_path: c.json_path.clone(),
        })
        .collect();
    let scale = version
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .map(|s| ScalePaths {
            spec_replicas: s.spec_replicas_path.clone(),
            status_replicas: s.status_replicas_path.clone(),
            label_selector: s.label_selector_path.clone(),
        });
    Ok(CustomStrategy {
        group: crd.spec.group.clone(),
        version: version.name.clone(),
        kind: kind.to_owned(),
        schema,
        openapi: serde_json::to_value(&props).unwrap_or_default(),
        columns,
        scale,
        conversion,
        deprecation_warning: deprecation_warning(crd, version, kind),
    })
}

/// Serve the established definitions in `cache` now.
pub fn sync(cache: &WatchCache) {
    let Ok(snapshot) = cache.snapshot("") else {
        return;
    };
    let custom: Vec<CustomResource> = snapshot
        .objects
        .iter()
        .filter_map(|o| serde_json::from_slice::<CustomResourceDefinition>(&o.raw).ok())
        .flat_map(|crd| resources_of(&crd))
        .collect();
    let generation = custom::set_custom(&custom);
    debug!(
        resources = custom.len(),
        generation, "custom resources served"
    );
}

/// The CRDs' watch cache.
pub fn definitions(store: &Arc<Store>) -> Arc<WatchCache> {
    resources::watch_cache(
        store,
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
    )
}

/// The cache generation last served.
static SERVED_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Serve the definitions again if they changed since last time.
fn sync_if_changed(cache: &WatchCache) {
    let generation = cache.generation();
    if cache.synced() && SERVED_GENERATION.swap(generation, Ordering::AcqRel) != generation {
        sync(cache);
    }
}

/// Keep the served custom resources equal to the established CRDs, until aborted.
pub async fn run(store: Arc<Store>) {
    let cache = definitions(&store);
    loop {
        let mut revisions = cache.revisions();
        sync_if_changed(&cache);
        let _ = tokio::time::timeout(IDLE_CHECK, revisions.changed()).await;
    }
}

/// Catch up with etcd now: a request for a resource not (yet) served waits until the
/// CRD cache reflects the current revision, so a client that saw its CRD established
/// is never answered 404 by a replica a few milliseconds behind. True if the served set now
/// reflects etcd's current revision.
pub async fn catch_up(store: &Arc<Store>) -> bool {
    let cache = definitions(store);
    let current = match store.current_revision().await {
        Ok(revision) => cache.wait_for(revision, CATCH_UP_LIMIT).await.is_ok(),
        Err(_) => false,
    };
    sync_if_changed(&cache);
    current
}
