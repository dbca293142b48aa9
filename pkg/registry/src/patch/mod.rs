//! PATCH: JSON patch (RFC 6902), merge patch (RFC 7386) and strategic merge patch, each
//! turning the current object into the one to write; the write itself is an update.

mod strategic;

use std::sync::Arc;

use serde_json::Value;

use crate::error::{ApiError, Result};

/// The kind of a PATCH body, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type of a Content-Type; 415 for anything else.
    pub fn from_content_type(ctype: &str) -> Result<PatchType> {
        match ctype.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            ))),
        }
    }
}

fn bad(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("error decoding {what}: {e}"))
}

/// Apply a JSON, merge or strategic patch to `current`, whose schema is `schema`.
pub fn apply(
    kind: PatchType,
    current: &Value,
    body: &[u8],
    schema: Option<&Value>,
) -> Result<Value> {
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| bad("JSON patch", e))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops.0).map_err(|e| unprocessable(e.to_string()))?;
            Ok(doc)
        }
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body).map_err(|e| bad("merge patch", e))?;
            if !p.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        PatchType::Strategic => {
            let p: Value =
                serde_json::from_slice(body).map_err(|e| bad("strategic merge patch", e))?;
            if !p.is_object() {
                return Err(ApiError::BadRequest(
                    "a strategic merge patch must be a JSON object".into(),
                ));
            }
            strategic::apply(current, &p, schema).map_err(unprocessable)
        }
        PatchType::Apply => Err(ApiError::Internal(
            "server-side apply is not a document patch".into(),
        )),
    }
}

/// A patch that cannot be applied: 422, as kube-apiserver answers a failed `test`.
fn unprocessable(message: String) -> ApiError {
    ApiError::Unprocessable(format!("the patch cannot be applied: {message}"))
}

/// The object (or subresource) a patch or apply is for.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub info: &'a minik_api::ResourceInfo,
    pub ns: Option<&'a str>,
    pub name: &'a str,
    /// `status`, `scale`, `ephemeralcontainers`, or None for the object itself.
    pub sub: Option<&'a str>,
}

/// Whether a patch sets metadata.resourceVersion itself (then a conflict is the client's,
/// not retried).
fn pins_version(kind: PatchType, body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    match kind {
        PatchType::Json => v.as_array().into_iter().flatten().any(|op| {
            op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
                && op.get("op").and_then(Value::as_str) != Some("test")
        }),
        _ => v.pointer("/metadata/resourceVersion").is_some(),
    }
}

/// Make the write conditional on the version `read` was at.
fn read_at(obj: &mut Value, read: &Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let rv = read.pointer("/metadata/resourceVersion").cloned();
        m.insert("resourceVersion".into(), rv.unwrap_or(Value::Null));
    }
}

/// How many times a patch is re-applied when the object changes under it.
const TRIES: usize = 5;

impl crate::Registry {
    /// PATCH an object or its `status`, `scale` or `ephemeralcontainers` subresource: read
    /// it, apply the patch, write it back as an update conditional on what was read;
    /// retried when the object changed meanwhile unless the patch named a resourceVersion.
    pub async fn patch(
        &self,
        target: &Target<'_>,
        kind: PatchType,
        body: &[u8],
        params: &crate::WriteParams,
    ) -> Result<crate::rest::Written> {
        let Target {
            info,
            ns,
            name,
            sub,
        } = *target;
        if kind == PatchType::Strategic && info.custom {
            return Err(ApiError::UnsupportedMediaType(
                "strategic merge patch is not supported for custom resources; use a merge patch or server-side apply".into(),
            ));
        }
        let pinned = pins_version(kind, body);
        let mut last = None;
        // One more try than TRIES: the first starts from the watch cache's copy, and if it
        // fails for any reason (a stale copy too), the next ones read the store.
        for attempt in 0..=TRIES {
            // The object itself or its status: read once, for the patch and the update.
            let mut stored = None;
            let mut from_cache = false;
            let (current, schema) = match sub {
                Some("scale") => (
                    Arc::new(self.get_scale(info, ns, name).await?),
                    minik_api::schema::DEFINITIONS.get("io.k8s.api.autoscaling.v1.Scale"),
                ),
                None | Some("status") => {
                    let cached = match attempt == 0 && !params.dry_run {
                        true => self.read_cached(info, ns, name).await?,
                        false => None,
                    };
                    from_cache = cached.is_some();
                    let (kv, obj) = match cached {
                        Some(read) => read,
                        None => self.read_current(info, ns, name).await?,
                    };
                    stored = Some(kv);
                    (obj, None)
                }
                _ => (Arc::new(self.get(info, ns, name).await?), None),
            };
            let own = self.schema_for(info);
            let schema = schema.or(own.as_deref());
            let mut patched = match apply(kind, &current, body, schema) {
                Err(_) if from_cache => continue,
                patched => patched?,
            };
            if !pinned {
                read_at(&mut patched, &current);
            }
            let read = stored.map(|kv| (kv, current));
            let written = match sub {
                None | Some("status") => {
                    let status = sub.is_some();
                    self.update_read((info, ns, name), patched, status, params, read)
                        .await
                }
                Some("scale") => self
                    .update_scale(info, ns, name, patched, params)
                    .await
                    .map(|s| (s, Vec::new())),
                Some("ephemeralcontainers") => self
                    .update_ephemeral_containers(ns.unwrap_or_default(), name, &patched, params)
                    .await
                    .map(|p| (p, Vec::new())),
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "the {other} subresource cannot be patched"
                    )));
                }
            };
            match written {
                Err(_) if from_cache => {}
                Err(e @ ApiError::Conflict { .. }) if !pinned => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| ApiError::conflict(info, name)))
    }
}

impl crate::Registry {
    /// Server-side apply (`application/apply-patch+yaml`) of an object or its status:
    /// creates the object when it does not exist. Returns what was written and whether it
    /// was created.
    pub async fn apply(
        &self,
        target: &Target<'_>,
        body: &[u8],
        force: bool,
        params: &crate::WriteParams,
    ) -> Result<(crate::rest::Written, bool)> {
        let Target {
            info,
            ns,
            name,
            sub,
        } = *target;
        let status = match sub {
            None => false,
            Some("status") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "server-side apply is not supported on the {other} subresource"
                )));
            }
        };
        let Some(manager) = params.field_manager.clone().filter(|m| !m.is_empty()) else {
            return Err(ApiError::BadRequest(
                "PATCH requests with apply must have a fieldManager".into(),
            ));
        };
        let config = apply_config(info, name, body)?;
        let pinned = config.pointer("/metadata/resourceVersion").is_some();
        let applied = crate::WriteParams {
            field_manager: None,
            applied: true,
            ..params.clone()
        };
        let schema = self.schema_for(info);
        let applying = crate::managed::Applying {
            info,
            schema: schema.as_deref(),
            status,
            config: &config,
            manager: &manager,
            force,
        };
        let mut last = None;
        for _ in 0..TRIES {
            let live = match self.get(info, ns, name).await {
                Ok(v) => Some(v),
                Err(ApiError::NotFound { .. }) if !status => None,
                Err(e) => return Err(e),
            };
            let mut new = crate::managed::apply(&applying, live.as_ref())?;
            let written = match &live {
                None => {
                    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                    match self.create(info, ns, new, &applied).await {
                        Err(e @ ApiError::AlreadyExists { .. }) => {
                            last = Some(e);
                            continue;
                        }
                        other => return other.map(|w| (w, true)),
                    }
                }
                Some(live) => {
                    if !pinned {
                        read_at(&mut new, live);
                    }
                    self.update(info, ns, name, new, status, &applied).await
                }
            };
            match written {
                Err(e @ ApiError::Conflict { .. }) if !pinned => last = Some(e),
                other => return other.map(|w| (w, false)),
            }
        }
        Err(last.unwrap_or_else(|| ApiError::conflict(info, name)))
    }
}

/// The applied configuration: YAML (or JSON) naming this resource's apiVersion and kind.
fn apply_config(info: &minik_api::ResourceInfo, name: &str, body: &[u8]) -> Result<Value> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the apply body is not UTF-8".into()))?;
    let config: Value =
        serde_saphyr::from_str(text).map_err(|e| bad("the applied configuration", e))?;
    if !config.is_object() {
        return Err(ApiError::BadRequest(
            "the applied configuration must be an object".into(),
        ));
    }
    let api_version = config.get("apiVersion").and_then(Value::as_str);
    let kind = config.get("kind").and_then(Value::as_str);
    if api_version != Some(info.api_version().as_str()) || kind != Some(info.kind) {
        return Err(ApiError::BadRequest(format!(
            "the applied configuration must have apiVersion {:?} and kind {:?} (got {:?} and {:?})",
            info.api_version(),
            info.kind,
            api_version.unwrap_or(""),
            kind.unwrap_or("")
        )));
    }
    match config.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n == name => Ok(config),
        _ => Err(ApiError::BadRequest(
            "the name of the applied configuration does not match the name on the URL".into(),
        )),
    }
}
