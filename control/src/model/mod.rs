//! Types and rules without I/O: API errors, field validation, selectors, object metadata
//! helpers. Everything here is plain data in, plain data out, so it is unit-tested directly.

pub mod cidr;
pub mod disruption;
pub mod error;
pub mod meta;
pub mod quota;
pub mod selector;
pub mod storage;
pub mod user;
pub mod validation;

pub use error::ApiError;
