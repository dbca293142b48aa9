//! LimitRanger: a namespace's LimitRanges give containers default requests and limits
//! (noted in the `kubernetes.io/limit-ranger` annotation) and refuse containers, pods and
//! claims outside their min and max.

use minik_registry::admission::{Attributes, Verdict};
use minik_registry::{ApiError, Registry, Result};
use serde_json::{Value, json};

use crate::Plugin;
use crate::quantity;

pub struct LimitRanger;

/// The limit items of the namespace's LimitRanges of `kind` (Container, Pod,
/// PersistentVolumeClaim).
async fn items(reg: &Registry, ns: &str, kind: &str) -> Result<Vec<Value>> {
    let ranges = crate::cached(reg, "", "v1", "limitranges", Some(ns)).await?;
    Ok(ranges
        .iter()
        .filter_map(|r| r["spec"]["limits"].as_array())
        .flatten()
        .filter(|l| l["type"] == kind)
        .cloned()
        .collect())
}

/// Fill `kind` (requests/limits) of a container from `defaults`; the names it set.
fn fill(c: &mut Value, kind: &str, defaults: &Value) -> Vec<String> {
    let mut set = Vec::new();
    for (res, v) in defaults.as_object().into_iter().flatten() {
        if c["resources"][kind][res].is_null() {
            if !c["resources"].is_object() {
                c["resources"] = json!({});
            }
            if !c["resources"][kind].is_object() {
                c["resources"][kind] = json!({});
            }
            c["resources"][kind][res] = v.clone();
            set.push(res.clone());
        }
    }
    set
}

/// `value` against an item's min and max: the message of the first bound it breaks.
fn bounds(
    item: &Value,
    what: &str,
    res: &str,
    value: Option<i128>,
    kind: &str,
    scope: &str,
) -> Option<String> {
    let cpu = res == "cpu";
    let v = value?;
    if let Some(max) = item["max"][res].as_str().and_then(quantity::parse)
        && v > max
    {
        return Some(format!(
            "maximum {res} usage per {scope} is {}, but {what} is {}",
            quantity::format(max, cpu),
            quantity::format(v, cpu)
        ));
    }
    if let Some(min) = item["min"][res].as_str().and_then(quantity::parse)
        && v < min
        && kind == "requests"
    {
        return Some(format!(
            "minimum {res} usage per {scope} is {}, but {what} is {}",
            quantity::format(min, cpu),
            quantity::format(v, cpu)
        ));
    }
    None
}

#[async_trait::async_trait]
impl Plugin for LimitRanger {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        let (true, Some(ns)) = (crate::creates(attrs, "pods"), attrs.namespace) else {
            return Ok(Vec::new());
        };
        let items = items(reg, ns, "Container").await?;
        let mut notes = Vec::new();
        for item in &items {
            for list in ["initContainers", "containers"] {
                for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
                    let name = c["name"].as_str().unwrap_or("").to_string();
                    let limits = fill(c, "limits", &item["default"]);
                    let requests = fill(c, "requests", &item["defaultRequest"]);
                    if !requests.is_empty() {
                        notes.push(format!(
                            "{} request for {list_kind} {name}",
                            requests.join(", "),
                            list_kind = kind_word(list)
                        ));
                    }
                    if !limits.is_empty() {
                        notes.push(format!(
                            "{} limit for {list_kind} {name}",
                            limits.join(", "),
                            list_kind = kind_word(list)
                        ));
                    }
                }
            }
        }
        if !notes.is_empty() {
            if !pod["metadata"]["annotations"].is_object() {
                pod["metadata"]["annotations"] = json!({});
            }
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] =
                json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
        }
        Ok(Vec::new())
    }

    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict> {
        let Some(ns) = attrs.namespace else {
            return Ok(Verdict::default());
        };
        let mut broken = Vec::new();
        if crate::creates(attrs, "pods") {
            for item in items(reg, ns, "Container").await? {
                for c in ["initContainers", "containers"]
                    .iter()
                    .filter_map(|l| obj["spec"][*l].as_array())
                    .flatten()
                {
                    for (kind, what) in [("requests", "request"), ("limits", "limit")] {
                        for res in ["cpu", "memory", "ephemeral-storage"] {
                            let v = c["resources"][kind][res].as_str().and_then(quantity::parse);
                            broken.extend(bounds(&item, what, res, v, kind, "Container"));
                        }
                    }
                }
            }
        }
        if crate::creates(attrs, "persistentvolumeclaims") {
            for item in items(reg, ns, "PersistentVolumeClaim").await? {
                let v = obj["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .and_then(quantity::parse);
                broken.extend(bounds(
                    &item,
                    "request",
                    "storage",
                    v,
                    "requests",
                    "PersistentVolumeClaim",
                ));
            }
        }
        if broken.is_empty() {
            return Ok(Verdict::default());
        }
        Err(ApiError::forbidden(
            attrs.info,
            attrs.name,
            broken.join(", "),
        ))
    }
}

fn kind_word(list: &str) -> &'static str {
    if list == "initContainers" {
        "init container"
    } else {
        "container"
    }
}
