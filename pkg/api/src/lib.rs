//! The resource table: every built-in resource minik serves, with what discovery reports of
//! it (group, version, kind, plural, singular, scope, verbs, short names, categories,
//! subresources) and a typed decoder from k8s-openapi for checking bodies.

pub mod custom;
mod names;
pub mod pod_log;
pub mod quantity;
pub mod quota;
pub mod schema;
pub mod selector;
mod table;
pub mod usage;

pub use names::{is_dns1123_label, is_dns1123_subdomain, validate_name};
pub use table::{ResourceInfo, all, builtin, find, find_kind};

/// The group name core ("legacy") resources have in discovery and in storage keys.
pub const CORE_GROUP: &str = "";
pub mod proto;
