//! skiff-control: the control plane. `api` serves HTTP; `store` owns etcd.
#![forbid(unsafe_code)]

pub mod api;
pub mod store;
