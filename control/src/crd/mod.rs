//! CustomResourceDefinitions (apiextensions.k8s.io/v1).
//!
//! - `schema`: the structural schema engine custom resources are defaulted, pruned and
//!   validated with (pure, no I/O).

pub mod schema;
