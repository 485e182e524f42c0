//! skiff-control: the control plane.
//!
//! - `model`: API errors, validation, selectors — no I/O.
//! - `resources`: the registry of served resources and their per-kind rules.
//! - `store`: etcd and the per-resource watch caches.
//! - `api`: the HTTP surface (generic REST handler, discovery, watch, health).
//! - `scheduler`: places pods on nodes (filter, score, bind).
//! - `controllers`: namespace (and, growing, workload) controllers.
//! - `crd`: CustomResourceDefinitions: serving custom resources, the structural schema engine.
#![forbid(unsafe_code)]

pub mod admission;
pub mod aggregator;
pub mod api;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod controllers;
pub mod crd;
pub mod etcd_pki;
pub mod identities;
pub mod model;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod registry;
pub mod resources;
pub mod scheduler;
pub mod service_endpoints;
pub mod store;
