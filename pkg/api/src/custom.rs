//! Resources defined at run time (CustomResourceDefinitions). Their `ResourceInfo`s live
//! for the whole process, like the built-in ones: each distinct one is made once and kept
//! (a CRD that changes its names makes a new one; the old stays, unused).

use std::sync::{LazyLock, Mutex};

use crate::ResourceInfo;

/// What a custom resource is, in owned form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomResource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<String>,
    pub storage_version: String,
}

static STRINGS: LazyLock<Mutex<std::collections::HashSet<&'static str>>> =
    LazyLock::new(Default::default);
static INFOS: LazyLock<Mutex<Vec<(CustomResource, &'static ResourceInfo)>>> =
    LazyLock::new(Default::default);

fn intern(s: &str) -> &'static str {
    let mut set = STRINGS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

fn intern_list(items: &[String]) -> &'static [&'static str] {
    Box::leak(
        items
            .iter()
            .map(|s| intern(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// A custom resource's typed view is the object itself (its CRD's schema checks it).
fn untyped(v: &serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(v.clone())
}

fn any_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::Schema::from(true)
}

/// The process-wide `ResourceInfo` of a custom resource.
pub fn resource_info(c: &CustomResource) -> &'static ResourceInfo {
    let mut infos = INFOS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, info)) = infos.iter().find(|(k, _)| k == c) {
        return info;
    }
    let info: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
        group: intern(&c.group),
        version: intern(&c.version),
        kind: intern(&c.kind),
        list_kind: intern(&c.list_kind),
        plural: intern(&c.plural),
        singular: c.singular.clone(),
        namespaced: c.namespaced,
        verbs: crate::table::ALL_VERBS,
        short_names: intern_list(&c.short_names),
        categories: intern_list(&c.categories),
        subresources: intern_list(&c.subresources),
        typed: untyped,
        deprecated: None,
        schema: any_schema,
        custom: true,
        storage_version: intern(&c.storage_version),
    }));
    infos.push((c.clone(), info));
    info
}
