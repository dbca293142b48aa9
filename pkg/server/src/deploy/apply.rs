//! Applying and deleting manifest objects: discovery maps apiVersion/kind to a resource,
//! server-side apply (field manager "minik-deploy", forced) writes it.

use std::collections::HashMap;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use serde_json::Value;

use super::objects::ObjRef;

/// The field manager of everything the deployer applies.
pub const MANAGER: &str = "minik-deploy";

/// Why an object could not be applied or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The server does not serve this kind (yet: a CRD may be on its way).
    #[error("{api_version} {kind} is not served: {reason}")]
    UnknownKind {
        api_version: String,
        kind: String,
        reason: String,
    },
    #[error("{object}: {source}")]
    Api {
        object: String,
        #[source]
        source: kube::Error,
    },
}

impl ApplyError {
    /// Whether trying again soon may help (a kind or namespace still being made).
    pub fn may_pass_soon(&self) -> bool {
        match self {
            ApplyError::UnknownKind { .. } => true,
            ApplyError::Api { source, .. } => {
                matches!(source, kube::Error::Api(s) if s.code == 404)
            }
        }
    }
}

/// Applies objects, remembering what discovery told.
pub struct Applier {
    client: kube::Client,
    /// (apiVersion, kind) -> (resource, namespaced).
    resources: HashMap<(String, String), (ApiResource, bool)>,
}

impl Applier {
    pub fn new(client: kube::Client) -> Self {
        Applier {
            client,
            resources: HashMap::new(),
        }
    }

    /// The resource serving `api_version`/`kind`, and whether it is namespaced.
    async fn resource(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), ApplyError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.resources.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let unknown = |reason: String| ApplyError::UnknownKind {
            api_version: api_version.into(),
            kind: kind.into(),
            reason,
        };
        let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| unknown(e.to_string()))?;
        let found = (resource, caps.scope == Scope::Namespaced);
        self.resources.insert(key, found.clone());
        Ok(found)
    }

    /// The API of `r` and the namespace `given` resolves to (namespaced objects without one
    /// go to `default`; cluster-scoped ones have none).
    async fn api(
        &mut self,
        api_version: &str,
        kind: &str,
        given: Option<&str>,
    ) -> Result<(Api<DynamicObject>, Option<String>), ApplyError> {
        let (resource, namespaced) = self.resource(api_version, kind).await?;
        if !namespaced {
            return Ok((Api::all_with(self.client.clone(), &resource), None));
        }
        let ns = given.filter(|n| !n.is_empty()).unwrap_or("default");
        let api = Api::namespaced_with(self.client.clone(), ns, &resource);
        Ok((api, Some(ns.to_string())))
    }

    /// Server-side apply `obj` (with apiVersion, kind and metadata.name); the object applied.
    pub async fn apply(&mut self, obj: &Value) -> Result<ObjRef, ApplyError> {
        let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind, name) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"));
        let given = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let (api, namespace) = self.api(api_version, kind, given).await?;
        let applied = ObjRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.clone(),
            name: name.into(),
        };
        let mut body = obj.clone();
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            match &namespace {
                Some(ns) => meta.insert("namespace".into(), Value::String(ns.clone())),
                None => meta.remove("namespace"),
            };
        }
        let params = PatchParams::apply(MANAGER).force();
        match api.patch(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => Ok(applied),
            Err(source) => {
                // The kind may have gone (a deleted CRD): ask discovery again next time.
                self.forget(api_version, kind);
                Err(ApplyError::Api {
                    object: applied.to_string(),
                    source,
                })
            }
        }
    }

    /// Delete the object `r` names (in the background; one already gone is fine).
    pub async fn delete(&mut self, r: &ObjRef) -> Result<(), ApplyError> {
        let (api, _) = match self
            .api(&r.api_version, &r.kind, r.namespace.as_deref())
            .await
        {
            Ok(found) => found,
            // Its kind is gone, and so is the object.
            Err(ApplyError::UnknownKind { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        match api.delete(&r.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => {
                self.forget(&r.api_version, &r.kind);
                Err(ApplyError::Api {
                    object: r.to_string(),
                    source,
                })
            }
        }
    }

    fn forget(&mut self, api_version: &str, kind: &str) {
        self.resources
            .remove(&(api_version.to_string(), kind.to_string()));
    }
}
