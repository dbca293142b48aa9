//! CustomResourceDefinitions: what each one serves (per version: the schema, subresources,
//! printer columns, selectable fields), the controller that accepts their names and
//! establishes them, and the removal of their objects when one is deleted.

pub(crate) mod cel;
mod controller;
mod convert;
pub(crate) use controller::CLEANUP;
pub(crate) mod schema;
pub(crate) mod validate;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use minik_api::ResourceInfo;
use minik_api::custom::{CustomResource, resource_info};
use serde_json::Value;

/// One served version of a CRD.
#[derive(Debug)]
pub(crate) struct Version {
    pub info: &'static ResourceInfo,
    pub schema: Arc<Value>,
    /// `subresources.scale` (specReplicasPath, statusReplicasPath, labelSelectorPath).
    pub scale: Option<Value>,
    pub printer_columns: Vec<Value>,
    /// JSON paths of `selectableFields` (`.spec.color`).
    pub selectable_fields: Vec<String>,
}

/// An established CRD.
#[derive(Debug)]
pub(crate) struct Definition {
    /// The CRD's spec it was made from.
    pub spec: Value,
    pub versions: Vec<Version>,
    /// `spec.conversion.webhook.clientConfig` when the strategy is Webhook.
    pub webhook: Option<Value>,
}

#[derive(Default)]
struct State {
    by_name: HashMap<String, Arc<Definition>>,
    /// Bumped on every change of what is served (discovery and OpenAPI caches key on it).
    generation: u64,
}

/// The CRDs this server serves.
#[derive(Clone, Default)]
pub struct Crds {
    state: Arc<RwLock<State>>,
}

impl Crds {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every custom resource version served.
    pub fn served(&self) -> Vec<&'static ResourceInfo> {
        let s = self.read();
        let mut out: Vec<&'static ResourceInfo> = s
            .by_name
            .values()
            .flat_map(|d| d.versions.iter().map(|v| v.info))
            .collect();
        out.sort_by_key(|i| (i.group, i.plural, validate::priority(i.version)));
        out
    }

    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// The definition and version serving `info`.
    pub(crate) fn version(&self, info: &ResourceInfo) -> Option<(Arc<Definition>, usize)> {
        let s = self.read();
        s.by_name.values().find_map(|d| {
            d.versions
                .iter()
                .position(|v| std::ptr::eq(v.info, info))
                .map(|i| (d.clone(), i))
        })
    }

    /// Serve (or stop serving) a CRD; a definition that did not change changes nothing.
    fn set(&self, name: &str, def: Option<Definition>) {
        let mut s = self.write();
        let same = match (&def, s.by_name.get(name)) {
            (Some(new), Some(old)) => new.spec == old.spec,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        match def {
            Some(d) => s.by_name.insert(name.to_string(), Arc::new(d)),
            None => s.by_name.remove(name),
        };
        s.generation += 1;
    }

    /// Whether another served CRD already uses this group and plural or kind.
    fn conflict(&self, name: &str, group: &str, plural: &str, kind: &str) -> Option<String> {
        let s = self.read();
        for (other, d) in &s.by_name {
            if other == name {
                continue;
            }
            for v in &d.versions {
                if v.info.group == group && v.info.plural == plural {
                    return Some(format!("\"{plural}\" is already in use"));
                }
                if v.info.group == group && v.info.kind == kind {
                    return Some(format!("\"{kind}\" is already in use"));
                }
            }
        }
        None
    }
}

/// The definition a CRD object describes (its served versions).
fn definition(crd: &Value) -> Option<Definition> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |v: &Value, k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let kind = text(names, "kind");
    let storage = spec
        .get("versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("storage") == Some(&Value::Bool(true)))
        .map(|v| text(v, "name"))?;
    let mut versions = Vec::new();
    for v in spec.get("versions")?.as_array()? {
        if v.get("served") != Some(&Value::Bool(true)) {
            continue;
        }
        let mut subresources = Vec::new();
        if v.pointer("/subresources/scale").is_some() {
            subresources.push("scale".to_string());
        }
        if v.pointer("/subresources/status").is_some() {
            subresources.push("status".to_string());
        }
        let custom = CustomResource {
            group: text(spec, "group"),
            version: text(v, "name"),
            kind: kind.clone(),
            list_kind: Some(text(names, "listKind"))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| format!("{kind}List")),
            plural: text(names, "plural"),
            singular: Some(text(names, "singular"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| kind.to_ascii_lowercase()),
            namespaced: text(spec, "scope") != "Cluster",
            short_names: list(names, "shortNames"),
            categories: list(names, "categories"),
            subresources,
            storage_version: storage.clone(),
        };
        versions.push(Version {
            info: resource_info(&custom),
            schema: Arc::new(
                v.pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .unwrap_or_else(|| {
                        serde_json::json!({"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true})
                    }),
            ),
            scale: v.pointer("/subresources/scale").cloned(),
            printer_columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            selectable_fields: v
                .get("selectableFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| {
                    f.get("jsonPath")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect(),
        });
    }
    let webhook = (spec.pointer("/conversion/strategy").and_then(Value::as_str) == Some("Webhook"))
        .then(|| spec.pointer("/conversion/webhook/clientConfig").cloned())
        .flatten();
    Some(Definition {
        spec: spec.clone(),
        versions,
        webhook,
    })
}

impl crate::Registry {
    /// A field selector on a custom resource may use metadata.name, metadata.namespace and
    /// the CRD's selectableFields, as kube-apiserver allows.
    pub(crate) fn check_field_selector(
        &self,
        info: &ResourceInfo,
        selector: &crate::Selector,
    ) -> crate::Result<()> {
        if !info.custom {
            return Ok(());
        }
        let allowed: Vec<String> = self
            .crds
            .version(info)
            .map(|(d, i)| {
                d.versions[i]
                    .selectable_fields
                    .iter()
                    .map(|f| f.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        for key in selector.keys() {
            if !matches!(key, "metadata.name" | "metadata.namespace")
                && !allowed.iter().any(|a| a == key)
            {
                return Err(crate::ApiError::BadRequest(format!(
                    "field label not supported: {key}"
                )));
            }
        }
        Ok(())
    }

    /// A custom resource as its CRD version admits it: pruned, defaulted, validated (schema
    /// and CEL rules, with `old` for transition rules).
    pub(crate) fn custom_view(
        &self,
        info: &ResourceInfo,
        obj: &Value,
        old: Option<&Value>,
    ) -> crate::Result<Value> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((def, i)) = self.crds.version(info) else {
            return Err(crate::ApiError::not_found(info, name));
        };
        let version = &def.versions[i];
        let mut out = obj.clone();
        let mut causes = schema::admit(&version.schema, &mut out);
        cel::validate(&out, old, &version.schema, "", &mut causes);
        if causes.is_empty() {
            Ok(out)
        } else {
            Err(crate::ApiError::invalid(info, name, causes))
        }
    }
}
