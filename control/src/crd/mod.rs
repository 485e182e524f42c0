//! CustomResourceDefinitions: how a definition becomes served resources
//! ([`serve`]), the rules custom objects are written under ([`strategy`]), and the
//! structural schema engine those rules use ([`schema`]); how objects convert between a
//! definition's versions ([`conversion`]) and the order versions are listed in
//! ([`versions`]).

pub mod conversion;
pub mod jsonpath;
pub mod schema;
pub mod serve;
pub mod strategy;
pub mod versions;
