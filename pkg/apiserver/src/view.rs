//! How a response presents objects, from the Accept header: the objects themselves, a
//! Table (`as=Table`), or metadata only (`as=PartialObjectMetadata[List]`).

use std::borrow::Cow;

use minik_api::ResourceInfo;
use minik_registry::ObjectList;
use serde_json::{Value, json};

use crate::table;

/// A list response: the objects as they are, or another view of them.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum ListBody {
    Objects(ObjectList),
    Other(Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Object,
    /// With `includeObject` (None, Metadata or Object), and a CRD's printer columns.
    Table(String, Vec<Value>),
    Metadata,
}

fn rv_of(v: &Value) -> &str {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(crate) fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

impl View {
    /// This view, with a CRD's printer columns for Tables.
    pub fn with_printer(self, printer: &[Value]) -> View {
        match self {
            View::Table(include, _) => View::Table(include, printer.to_vec()),
            other => other,
        }
    }

    /// The first media type in `accept` that names a view this server has.
    pub fn from_accept(accept: Option<&str>, include_object: Option<&str>) -> View {
        for media in accept.unwrap_or("").split(',') {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            match params.iter().find_map(|p| p.strip_prefix("as=")) {
                Some("Table") => {
                    let include = include_object.unwrap_or("Metadata").to_string();
                    return View::Table(include, Vec::new());
                }
                Some("PartialObjectMetadata" | "PartialObjectMetadataList") => {
                    return View::Metadata;
                }
                Some(_) => continue,
                None => return View::Object,
            }
        }
        View::Object
    }

    /// One object as this view shows it.
    pub fn object<'a>(&self, info: &ResourceInfo, obj: &'a Value) -> Cow<'a, Value> {
        match self {
            View::Object => Cow::Borrowed(obj),
            View::Table(include, printer) => Cow::Owned(table::table(
                info,
                printer,
                std::slice::from_ref(obj),
                rv_of(obj),
                include,
            )),
            View::Metadata => Cow::Owned(partial(obj)),
        }
    }

    /// A list as this view shows it.
    pub fn list(&self, info: &ResourceInfo, list: ObjectList) -> ListBody {
        let rv = list.resource_version().to_string();
        let items = || list.items.iter().map(|o| (**o).clone()).collect::<Vec<_>>();
        let mut out = match self {
            View::Object => return ListBody::Objects(list),
            View::Table(include, printer) => table::table(info, printer, &items(), &rv, include),
            View::Metadata => json!({
                "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": rv},
                "items": list.items.iter().map(|o| partial(o)).collect::<Vec<_>>(),
            }),
        };
        if let Some(c) = list.metadata.get("continue") {
            out["metadata"]["continue"] = c.clone();
        }
        ListBody::Other(out)
    }

    /// The object of a watch event (bookmarks and errors pass through).
    pub fn event<'a>(&self, info: &ResourceInfo, kind: &str, obj: &'a Value) -> Cow<'a, Value> {
        match kind {
            "ERROR" | "BOOKMARK" => Cow::Borrowed(obj),
            _ => self.object(info, obj),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            View::from_accept(Some(kubectl), None),
            View::Table("Metadata".into(), Vec::new())
        );
        let meta =
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(View::from_accept(Some(meta), None), View::Metadata);
        assert_eq!(
            View::from_accept(Some("application/json"), None),
            View::Object
        );
        assert_eq!(View::from_accept(None, None), View::Object);
        assert_eq!(
            View::from_accept(Some("application/json;as=Other,application/json"), None),
            View::Object
        );
    }
}
