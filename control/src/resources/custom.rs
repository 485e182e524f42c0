//! Resources defined at run time — the versions of CustomResourceDefinitions — served
//! beside the built-in catalog through the same [`ResourceInfo`] every handler, cache and
//! controller uses.
//!
//! A custom resource is described by a [`CustomResource`]; [`set_custom`] replaces the set
//! served. Descriptions are interned: each distinct description (and each name in it)
//! becomes one `&'static ResourceInfo` for the life of the process, so handlers keep the
//! cheap static references they use for built-ins, and memory is bounded by the number of
//! distinct descriptions ever served, not by how often CRDs change. A version's rules
//! (its schema, printer columns, scale paths) live in a [`Strategy`] behind a swappable
//! handle, so a schema update frees the old one.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, LazyLock, Mutex, RwLock},
};

use serde_json::Value;

use super::{
    Claim, Names, Prepared, REGISTRY, ResourceInfo, Strategy, Subresource, VERBS,
    strategy::PrinterColumn,
};
use crate::model::validation::ErrorList;

/// One served version of a custom resource.
#[derive(Clone)]
pub struct CustomResource {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories (`all`…).
    pub categories: Vec<String>,
    /// `status` and/or `scale`.
    pub subresources: Vec<Subresource>,
    /// Defaulting, pruning and validation of this version.
    pub strategy: Arc<dyn Strategy>,
}

/// Everything that identifies an interned description.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Descriptor {
    group: String,
    version: String,
    kind: String,
    plural: String,
    singular: String,
    namespaced: bool,
    short_names: Vec<String>,
    categories: Vec<String>,
    subresources: Vec<Subresource>,
}

#[derive(Default)]
struct Interner {
    strings: HashSet<&'static str>,
    lists: HashMap<Vec<String>, &'static [&'static str]>,
    subresources: HashMap<Vec<Subresource>, &'static [Subresource]>,
    strategies: HashMap<(String, String, String), &'static Swappable>,
    infos: HashMap<Descriptor, &'static ResourceInfo>,
}

impl Interner {
    fn string(&mut self, text: &str) -> &'static str {
        if let Some(interned) = self.strings.get(text) {
            return interned;
        }
        let interned: &'static str = Box::leak(text.to_owned().into_boxed_str());
        self.strings.insert(interned);
        interned
    }

    fn list(&mut self, items: &[String]) -> &'static [&'static str] {
        if let Some(interned) = self.lists.get(items) {
            return interned;
        }
        let strings: Vec<&'static str> = items.iter().map(|s| self.string(s)).collect();
        let interned: &'static [&'static str] = Box::leak(strings.into_boxed_slice());
        self.lists.insert(items.to_vec(), interned);
        interned
    }

    fn subresources(&mut self, items: &[Subresource]) -> &'static [Subresource] {
        self.subresources
            .entry(items.to_vec())
            .or_insert_with(|| Box::leak(items.to_vec().into_boxed_slice()))
    }

    /// The handle of `group`/`version`/`plural`'s rules, now pointing at `strategy`.
    fn strategy(&mut self, resource: &CustomResource) -> &'static Swappable {
        let key = (
            resource.group.clone(),
            resource.version.clone(),
            resource.plural.clone(),
        );
        let handle = *self.strategies.entry(key).or_insert_with(|| {
            Box::leak(Box::new(Swappable(RwLock::new(Arc::clone(
                &resource.strategy,
            )))))
        });
        handle.set(Arc::clone(&resource.strategy));
        handle
    }

    fn info(&mut self, resource: &CustomResource) -> &'static ResourceInfo {
        let strategy = self.strategy(resource);
        let descriptor = Descriptor {
            group: resource.group.clone(),
            version: resource.version.clone(),
            kind: resource.kind.clone(),
            plural: resource.plural.clone(),
            singular: resource.singular.clone(),
            namespaced: resource.namespaced,
            short_names: resource.short_names.clone(),
            categories: resource.categories.clone(),
            subresources: resource.subresources.clone(),
        };
        if let Some(info) = self.infos.get(&descriptor) {
            return info;
        }
        let info: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
            group: self.string(&resource.group),
            version: self.string(&resource.version),
            kind: self.string(&resource.kind),
            plural: self.string(&resource.plural),
            singular: self.string(&resource.singular),
            namespaced: resource.namespaced,
            verbs: VERBS,
            short_names: self.list(&resource.short_names),
            categories: self.list(&resource.categories),
            subresources: self.subresources(&resource.subresources),
            field_selectors: &[],
            names: Names::Subdomain,
            strategy,
        }));
        self.infos.insert(descriptor, info);
        info
    }
}

/// A strategy that can be replaced while handlers hold `&'static` references to it.
struct Swappable(RwLock<Arc<dyn Strategy>>);

impl Swappable {
    fn current(&self) -> Arc<dyn Strategy> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn set(&self, strategy: Arc<dyn Strategy>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = strategy;
    }
}

impl Strategy for Swappable {
    fn prepare(&self, object: &Value, old: Option<&Value>) -> Result<Prepared, String> {
        self.current().prepare(object, old)
    }

    fn hold_deletion(&self, object: &mut Value) -> bool {
        self.current().hold_deletion(object)
    }

    fn claims(&self, object: &Value) -> Vec<Claim> {
        self.current().claims(object)
    }

    fn allocate(
        &self,
        object: &mut Value,
        held: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, ErrorList> {
        self.current().allocate(object, held)
    }

    fn add_schema(&self, generator: &mut schemars::SchemaGenerator) -> String {
        self.current().add_schema(generator)
    }

    fn printer_columns(&self) -> Option<Vec<PrinterColumn>> {
        self.current().printer_columns()
    }

    fn scale_paths(&self) -> Option<super::strategy::ScalePaths> {
        self.current().scale_paths()
    }

    fn strategic_merge(&self) -> bool {
        self.current().strategic_merge()
    }

    fn conversion(&self) -> Option<Arc<crate::crd::conversion::Conversion>> {
        self.current().conversion()
    }

    fn deprecation_warning(&self) -> Option<String> {
        self.current().deprecation_warning()
    }
}

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(Mutex::default);

/// What is served: the built-ins, then the custom resources, and a generation that
/// changes whenever the set does.
struct Served {
    resources: Arc<[&'static ResourceInfo]>,
    generation: u64,
}

static SERVED: LazyLock<RwLock<Served>> = LazyLock::new(|| {
    RwLock::new(Served {
        resources: REGISTRY.iter().collect(),
        generation: 0,
    })
});

/// Serve exactly `custom` beside the built-ins (a custom resource may not shadow a
/// built-in one; such entries are skipped). Returns the new generation.
pub fn set_custom(custom: &[CustomResource]) -> u64 {
    let mut interner = INTERNER.lock().unwrap_or_else(|e| e.into_inner());
    let mut resources: Vec<&'static ResourceInfo> = REGISTRY.iter().collect();
    for resource in custom {
        let builtin = REGISTRY.iter().any(|r| {
            r.group == resource.group
                && r.version == resource.version
                && r.plural == resource.plural
        });
        if !builtin {
            resources.push(interner.info(resource));
        }
    }
    // Even an unchanged set may carry new rules (a schema, printer columns): documents
    // built from the served set are rebuilt.
    let mut served = SERVED.write().unwrap_or_else(|e| e.into_inner());
    served.resources = resources.into();
    served.generation += 1;
    served.generation
}

/// Every served resource, built-ins first.
pub fn served() -> Arc<[&'static ResourceInfo]> {
    Arc::clone(&SERVED.read().unwrap_or_else(|e| e.into_inner()).resources)
}

/// Changes whenever the served set does (discovery and OpenAPI caches key on it).
pub fn generation() -> u64 {
    SERVED.read().unwrap_or_else(|e| e.into_inner()).generation
}
