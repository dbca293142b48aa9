//! One generic REST storage for every resource: objects are JSON in the store under
//! `/registry/<group>/<plural>/[<namespace>/]<name>`, with `resourceVersion` taken from the
//! store's mod revision on every read. Per-resource behaviour comes from `minik_api`'s table
//! and the strategy hooks in `strategy.rs`.

pub mod admission;
mod approval;
mod cache;
mod catalog;
pub mod client;
mod components;
mod convert;
mod crd;
mod delete;
pub mod encryption;
mod error;
mod eviction;
mod expire;
mod ipalloc;
pub mod kubeclient;
mod list;
pub mod managed;
mod meta;
pub mod patch;
pub mod protection;
mod rest;
mod selector;
mod strategy;
mod subresources;
mod watch;

pub use admission::UserInfo;
pub use components::Components;
pub use crd::cel::program as cel_program;
pub use delete::{DeleteParams, Propagation};
pub use error::{ApiError, Cause, Result};
pub use ipalloc::ServiceCidr;
pub use list::{ListParams, ObjectList, ResourceVersionMatch};
pub use meta::now_rfc3339;
pub use rest::{Registry, WriteParams};
pub use selector::Selector;
pub use watch::{Lean, WatchEvent, WatchParams, WatchStream};

use minik_api::ResourceInfo;

/// The store key of one object.
pub fn object_key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("{}{ns}/{name}", resource_prefix(info)),
        None => format!("{}{name}", resource_prefix(info)),
    }
}

/// The prefix of every object of a resource (events.k8s.io events share core events').
pub fn resource_prefix(info: &ResourceInfo) -> String {
    let info = convert::storage_info(info);
    let group = if info.group.is_empty() {
        "core"
    } else {
        info.group
    };
    format!("/registry/{group}/{}/", info.plural)
}

/// The prefix of a resource's objects in one namespace (all namespaces when `None`).
pub fn list_prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("{}{ns}/", resource_prefix(info)),
        None => resource_prefix(info),
    }
}
