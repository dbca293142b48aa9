//! Resources served in two API groups from one storage, as kube-apiserver does: events are
//! stored as core/v1 Events and served as events.k8s.io/v1 too, with the field renames
//! between the two versions.

use minik_api::ResourceInfo;
use serde_json::{Value, json};

/// (events.k8s.io/v1 field, core/v1 field)
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `info` is served from another resource's storage.
pub(crate) fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.kind == "Event"
}

/// The resource whose storage `info` uses.
pub(crate) fn storage_info(info: &ResourceInfo) -> &ResourceInfo {
    if is_events_v1(info) {
        return minik_api::find("", "v1", "events").expect("core events are served");
    }
    info
}

fn rename(mut obj: Value, api_version: &str, to_core: bool) -> Value {
    if let Some(m) = obj.as_object_mut() {
        for (new, old) in EVENT_FIELDS {
            let (from, to) = if to_core { (new, old) } else { (old, new) };
            if let Some(v) = m.remove(*from) {
                m.insert((*to).to_string(), v);
            }
        }
        m.insert("apiVersion".into(), json!(api_version));
    }
    obj
}

/// A stored object as `info` shows it.
pub(crate) fn from_storage(info: &ResourceInfo, obj: Value) -> Value {
    if is_events_v1(info) {
        return rename(obj, "events.k8s.io/v1", false);
    }
    obj
}

/// An object of `info` as it is stored.
pub(crate) fn to_storage(info: &ResourceInfo, obj: &Value) -> Value {
    if is_events_v1(info) {
        return rename(obj.clone(), "v1", true);
    }
    obj.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let info = minik_api::find("events.k8s.io", "v1", "events").unwrap();
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reason": "R",
            "deprecatedCount": 2, "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = to_storage(info, &v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["count"], 2);
        assert!(core.get("note").is_none());
        assert_eq!(from_storage(info, core), v1);
    }
}
