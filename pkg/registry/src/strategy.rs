//! Per-resource behaviour on top of the generic storage (kube-apiserver's Strategy hooks).

use serde_json::{Value, json};

use minik_api::ResourceInfo;

/// Whether `info` has a status subresource: main-resource writes keep the stored status and
/// status writes keep everything else.
pub fn has_status(info: &ResourceInfo) -> bool {
    info.subresources.contains(&"status")
}

/// Defaults set on create that the typed view does not give (PrepareForCreate).
pub fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    if info.group.is_empty() && info.plural == "namespaces" {
        obj["status"] = json!({"phase": "Active"});
    }
}

/// On a main-resource update, keep the stored status (PrepareForUpdate).
pub fn prepare_for_update(info: &ResourceInfo, old: &Value, new: &mut Value) {
    if has_status(info) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
}

/// On a status update, keep everything but status and the metadata a controller may set.
pub fn prepare_for_status_update(old: &Value, new: &mut Value) {
    let status = new.get("status").cloned();
    let mut merged = old.clone();
    match status {
        Some(s) => merged["status"] = s,
        None => {
            if let Some(m) = merged.as_object_mut() {
                m.remove("status");
            }
        }
    }
    *new = merged;
}
