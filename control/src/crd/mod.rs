//! CustomResourceDefinitions: how a definition becomes served resources
//! ([`serve`]), the rules custom objects are written under ([`strategy`]), and the
//! structural schema engine those rules use ([`schema`]).

pub mod jsonpath;
pub mod schema;
pub mod serve;
pub mod strategy;
