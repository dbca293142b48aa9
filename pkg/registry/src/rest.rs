//! Create, get, update and delete over the store, the same code for every resource.

use std::sync::Arc;

use minik_api::ResourceInfo;
use minik_store::{Backend, KeyValue};
use serde_json::{Value, json};

use crate::admission::{Admission, Attributes, Operation, UserInfo};
use crate::error::{ApiError, Result};
use crate::meta::{self, meta_mut, meta_str};
use crate::object_key;
use crate::strategy;

/// How a write treats unknown fields and whether it is a dry run.
#[derive(Debug, Clone, Default)]
pub struct WriteParams {
    /// `Strict` (unknown fields are an error), `Warn` (a warning) or `Ignore`.
    pub field_validation: Option<String>,
    pub dry_run: bool,
    /// Who writes (recorded in managedFields as an Update); None records nothing.
    pub field_manager: Option<String>,
    /// The object's managedFields were computed by server-side apply: keep them.
    pub applied: bool,
    /// Who asks; the write goes through admission when set.
    pub user: Option<UserInfo>,
}

impl WriteParams {
    /// The write as admission sees it (None: not admitted).
    fn admission<'a>(
        &'a self,
        operation: Operation,
        info: &'a ResourceInfo,
        status: bool,
        namespace: Option<&'a str>,
        name: &'a str,
        old: Option<&'a Value>,
    ) -> Option<Attributes<'a>> {
        Some(Attributes {
            operation,
            info,
            subresource: status.then_some("status"),
            namespace: namespace.filter(|_| info.namespaced),
            name,
            user: self.user.as_ref()?,
            dry_run: self.dry_run,
            old,
        })
    }

    /// Record the write in managedFields, or keep what apply computed.
    fn manage(
        &self,
        info: &ResourceInfo,
        schema: Option<&Value>,
        status: bool,
        old: &Value,
        new: &mut Value,
        requested: Option<&Value>,
    ) -> Result<()> {
        if self.applied {
            if let (Some(mf), Ok(m)) = (requested, meta_mut(new)) {
                m.insert("managedFields".into(), mf.clone());
            }
            return Ok(());
        }
        match &self.field_manager {
            Some(manager) => {
                let sub = if status { "status" } else { "" };
                crate::managed::record_update(info, schema, sub, old, new, requested, manager)
            }
            None => Ok(()),
        }
    }
}

/// The managedFields a request body carries.
fn requested_managed(obj: &Value) -> Option<Value> {
    obj.pointer("/metadata/managedFields").cloned()
}

/// What a write returns: the object and the warnings to send back.
pub type Written = (Value, Vec<String>);

/// The generic storage.
#[derive(Clone)]
pub struct Registry {
    pub(crate) store: Arc<dyn Backend>,
    pub(crate) components: crate::Components,
    pub(crate) caches: crate::cache::Caches,
    pub(crate) service_cidr: crate::ServiceCidr,
    pub(crate) crds: crate::crd::Crds,
    pub(crate) admission: Option<Arc<dyn Admission>>,
    pub(crate) encryption: Arc<std::sync::RwLock<Option<crate::encryption::Encryption>>>,
}

/// Decode a stored value and stamp its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value> {
    let plain = crate::encryption::open(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {}: {e}", kv.key)))?;
    let mut obj: Value = serde_json::from_slice(&plain)
        .map_err(|e| ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    meta_mut(&mut obj)?.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(obj)
}

fn encode(obj: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(obj).map_err(|e| ApiError::Internal(e.to_string()))
}

impl Registry {
    pub fn new(store: Arc<dyn Backend>) -> Self {
        Registry {
            store,
            components: crate::Components::default(),
            caches: crate::cache::Caches::default(),
            service_cidr: crate::ServiceCidr::default(),
            crds: crate::crd::Crds::default(),
            admission: None,
            encryption: Default::default(),
        }
    }

    /// Allocate ClusterIPs from `cidr` (default 10.43.0.0/16).
    pub fn with_service_cidr(mut self, cidr: crate::ServiceCidr) -> Self {
        self.service_cidr = cidr;
        self
    }

    /// An object of `info` as its store value: JSON, sealed when encryption at rest covers
    /// the resource.
    pub(crate) fn encode(&self, info: &ResourceInfo, obj: &Value) -> Result<Vec<u8>> {
        let plain = encode(obj)?;
        let guard = self.encryption.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref().filter(|e| e.covers(info)) {
            Some(e) => e.seal(plain),
            None => Ok(plain),
        }
    }

    /// `obj` as the store keeps it (in its storage version, encoded, sealed), and the hint
    /// that hands the object to the resource's cache: keep it once the write is done.
    pub(crate) async fn to_put(
        &self,
        info: &ResourceInfo,
        key: &str,
        obj: &Value,
    ) -> Result<(Vec<u8>, crate::cache::Hinted)> {
        let stored = self.stored(info, obj).await?;
        let bytes = self.encode(info, &stored)?;
        let hinted = self.caches.hint(info, key, &bytes, stored);
        Ok((bytes, hinted))
    }

    /// Whether `stored` is sealed as a write of `info` would seal it now (with the same key,
    /// or plain): if not, writing the object back unchanged still changes what is stored.
    fn sealed_as_now(&self, info: &ResourceInfo, stored: &[u8]) -> bool {
        let guard = self.encryption.read().unwrap_or_else(|e| e.into_inner());
        let now = guard
            .as_ref()
            .filter(|e| e.covers(info))
            .and_then(|e| e.write_key());
        crate::encryption::sealed_with(stored) == now
    }

    /// Seal the resources `encryption` names from now on (None: write plain values).
    pub fn set_encryption(&self, encryption: Option<crate::encryption::Encryption>) {
        *self.encryption.write().unwrap_or_else(|e| e.into_inner()) = encryption;
    }

    /// The encryption at rest in force.
    pub fn encryption(&self) -> Option<crate::encryption::Encryption> {
        self.encryption
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where in-process components report their health (ComponentStatus).
    pub fn components(&self) -> &crate::Components {
        &self.components
    }

    pub fn store(&self) -> &Arc<dyn Backend> {
        &self.store
    }

    /// The typed view of `obj` with unknown fields handled per `fieldValidation`; for a
    /// custom resource, pruned, defaulted and validated against its CRD (`old` for
    /// transition rules).
    fn typed_view(
        &self,
        info: &ResourceInfo,
        obj: &Value,
        params: &WriteParams,
        old: Option<&Value>,
    ) -> Result<(Value, Vec<String>)> {
        let cannot = |e: String| {
            ApiError::BadRequest(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
                kind = info.kind,
                version = info.version
            ))
        };
        let typed = if info.custom {
            self.custom_view(info, obj, old)?
        } else {
            (info.typed)(obj).map_err(cannot)?
        };
        let mut unknown = Vec::new();
        meta::unknown_fields(obj, &typed, "", &mut unknown);
        let mut warnings = Vec::new();
        if !unknown.is_empty() {
            let msgs: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            match params.field_validation.as_deref() {
                Some("Strict") => {
                    return Err(cannot(format!(
                        "strict decoding error: {}",
                        msgs.join(", ")
                    )));
                }
                Some("Ignore") => {}
                _ => warnings = msgs,
            }
        }
        Ok((typed, warnings))
    }

    /// NamespaceLifecycle: nothing new in a missing namespace or one being terminated.
    async fn check_namespace(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<()> {
        let Some(ns) = namespace.filter(|_| info.namespaced) else {
            return Ok(());
        };
        let ns_info = minik_api::builtin("", "v1", "namespaces");
        let key = object_key(ns_info, None, ns);
        let terminating = |obj: &Value| obj.pointer("/metadata/deletionTimestamp").is_some();
        // As kube-apiserver's NamespaceLifecycle reads its informer: a live namespace in the
        // watch cache is enough. One missing or terminating there is checked in the store
        // (it may be newer than the cache).
        let cached = self.caches.get(&self.store, ns_info).await?.object(&key);
        if cached.is_some_and(|obj| !terminating(&obj)) {
            return Ok(());
        }
        let (_, kv) = self.store.get(&key, None).await?;
        let Some(kv) = kv else {
            return Err(ApiError::not_found(ns_info, ns));
        };
        let obj = decode(&kv)?;
        if terminating(&obj) {
            return Err(ApiError::forbidden(
                info,
                name,
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    /// POST: create an object.
    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        mut obj: Value,
        params: &WriteParams,
    ) -> Result<Written> {
        meta::check_type_and_namespace(info, &mut obj, namespace)?;
        let name = meta::prepare_create(info, &mut obj)?;
        let requested = requested_managed(&obj);
        let (mut typed, mut warnings) = self.typed_view(info, &obj, params, None)?;
        strategy::prepare_for_create(info, &mut typed);
        let admitted = params.admission(Operation::Create, info, false, namespace, &name, None);
        if let Some(a) = &admitted {
            warnings.extend(self.admit_mutate(a, &mut typed).await?);
            // What admission added is defaulted as a decoded object would be.
            strategy::default(info, &mut typed);
        }
        let schema = self.schema_for(info);
        params.manage(
            info,
            schema.as_deref(),
            false,
            &json!({}),
            &mut typed,
            requested.as_ref(),
        )?;
        let causes = strategy::validate(info, None, &typed);
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, &name, causes));
        }
        self.check_namespace(info, namespace, &name).await?;
        let _hold = self.admit(admitted.as_ref(), &typed, &mut warnings).await?;
        let key = object_key(info, namespace, &name);
        let service = info.group.is_empty() && info.kind == "Service";
        if service && !params.dry_run {
            // An existing service is AlreadyExists, not a clash over its ClusterIP.
            if self.store.get(&key, None).await?.1.is_some() {
                return Err(already_exists(info, &name));
            }
            self.allocate_service(namespace.unwrap_or("default"), &mut typed)
                .await?;
        }
        if params.dry_run {
            return match self.store.get(&key, None).await?.1 {
                Some(_) => Err(already_exists(info, &name)),
                None => Ok((typed, warnings)),
            };
        }
        let (stored, hinted) = self.to_put(info, &key, &typed).await?;
        match self.store.create(&key, stored).await {
            Ok(kv) => {
                hinted.keep();
                meta_mut(&mut typed)?
                    .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                Ok((typed, warnings))
            }
            Err(e) => {
                if service {
                    self.release_service(&typed).await;
                }
                match e {
                    minik_store::Error::KeyExists { .. } => Err(already_exists(info, &name)),
                    e => Err(e.into()),
                }
            }
        }
    }

    /// GET one object.
    pub async fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        if is_component_status(info) {
            return self.component_get(info, name).await;
        }
        let (_, kv) = self
            .store
            .get(&object_key(info, namespace, name), None)
            .await?;
        let kv = kv.ok_or_else(|| ApiError::not_found(info, name))?;
        self.shown(info, decode(&kv)?).await
    }

    /// PUT: replace an object (or its status when `status` is set).
    pub async fn update(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
        status: bool,
        params: &WriteParams,
    ) -> Result<Written> {
        let target = (info, namespace, name);
        self.update_read(target, obj, status, params, None).await
    }

    /// The stored object and how it is shown: what an update starts from.
    pub(crate) async fn read_current(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(KeyValue, Arc<Value>)> {
        let key = object_key(info, namespace, name);
        let (_, current) = self.store.get(&key, None).await?;
        let current = current.ok_or_else(|| ApiError::not_found(info, name))?;
        let old = self.shown(info, decode(&current)?).await?;
        Ok((current, Arc::new(old)))
    }

    /// Where an update may start without reading the store: the object as the watch cache
    /// has it, with a [`KeyValue`] of its revision and no stored bytes (see
    /// [`read_from_cache`]). The update's compare-and-swap fails if the copy is stale.
    pub(crate) async fn read_cached(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<(KeyValue, Arc<Value>)>> {
        let key = object_key(info, namespace, name);
        let Some((revision, obj)) = self.caches.cached(info, &key) else {
            return Ok(None);
        };
        let kv = KeyValue {
            key: key.into(),
            value: Default::default(),
            create_revision: 0,
            mod_revision: revision,
        };
        // Built-ins stored as they are shown are shared, not copied.
        if info.custom || crate::convert::converts(info) {
            let shown = self.shown(info, Arc::unwrap_or_clone(obj)).await?;
            return Ok(Some((kv, Arc::new(shown))));
        }
        Ok(Some((kv, obj)))
    }

    /// An update from `read` (what [`Self::read_current`] gave the caller), else from what
    /// is stored now.
    pub(crate) async fn update_read(
        &self,
        (info, namespace, name): (&ResourceInfo, Option<&str>, &str),
        mut obj: Value,
        status: bool,
        params: &WriteParams,
        read: Option<(KeyValue, Arc<Value>)>,
    ) -> Result<Written> {
        meta::check_type_and_namespace(info, &mut obj, namespace)?;
        match meta_str(&obj, "name") {
            Some(n) if n == name => {}
            _ => {
                return Err(ApiError::BadRequest(
                    "the name of the object does not match the name on the URL".into(),
                ));
            }
        }
        let requested = requested_managed(&obj);
        let key = object_key(info, namespace, name);
        let (current, old) = match read {
            Some(read) => read,
            None => self.read_current(info, namespace, name).await?,
        };
        if let Some(rv) = meta_str(&obj, "resourceVersion").filter(|rv| !rv.is_empty())
            && rv != current.mod_revision.to_string()
        {
            return Err(ApiError::conflict(info, name));
        }
        // Custom resources allow no unconditional update (kube-apiserver's CRD strategy).
        if info.custom && meta_str(&obj, "resourceVersion").is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                info,
                name,
                vec![crate::Cause {
                    field: "metadata.resourceVersion".into(),
                    message: "Invalid value: 0x0: must be specified for an update".into(),
                    reason: "FieldValueInvalid".into(),
                }],
            ));
        }
        if status {
            strategy::prepare_for_status_update(&old, &mut obj);
        } else {
            strategy::prepare_for_update(info, &old, &mut obj);
        }
        let (mut typed, mut warnings) = self.typed_view(info, &obj, params, Some(&old))?;
        if !status {
            strategy::default(info, &mut typed);
        }
        meta::prepare_update(&old, &mut typed)?;
        let admitted =
            params.admission(Operation::Update, info, status, namespace, name, Some(&old));
        if let Some(a) = &admitted {
            warnings.extend(self.admit_mutate(a, &mut typed).await?);
            // What admission added is defaulted as a decoded object would be.
            strategy::default(info, &mut typed);
        }
        let schema = self.schema_for(info);
        params.manage(
            info,
            schema.as_deref(),
            status,
            &old,
            &mut typed,
            requested.as_ref(),
        )?;
        let causes = strategy::validate(info, Some(&old), &typed);
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, name, causes));
        }
        let _hold = self.admit(admitted.as_ref(), &typed, &mut warnings).await?;
        // The last finalizer went from an object being deleted, and no grace period is
        // still running (a pod's ends when its kubelet deletes it).
        let gone = typed.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers_empty(&typed)
            && (!strategy::is_namespace(info) || strategy::namespace_finalized(&typed))
            && typed
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|g| g == 0);
        let noop = !gone && meta::unchanged(&old, &typed);
        if noop && read_from_cache(&current) {
            // Nothing to write is only known against the stored object: no swap checks it.
            return Err(ApiError::conflict(info, name));
        }
        let noop = noop && self.sealed_as_now(info, &current.value);
        if params.dry_run || noop {
            // A dry run, or nothing to write: the object as it is, at its revision.
            if noop {
                meta_mut(&mut typed)?.insert(
                    "resourceVersion".into(),
                    json!(current.mod_revision.to_string()),
                );
            }
            return Ok((typed, warnings));
        }
        if gone {
            // The last finalizer went away from an object being deleted: it goes now.
            let deleted = self.store.delete(&key, Some(current.mod_revision)).await;
            return match deleted {
                Ok(d) => {
                    meta_mut(&mut typed)?
                        .insert("resourceVersion".into(), json!(d.revision.to_string()));
                    Ok((typed, warnings))
                }
                Err(minik_store::Error::Conflict { .. }) => Err(ApiError::conflict(info, name)),
                Err(e) => Err(e.into()),
            };
        }
        let service = info.group.is_empty() && info.kind == "Service" && !status;
        let taken = match service {
            true => {
                self.update_node_ports(namespace.unwrap_or("default"), &old, &mut typed)
                    .await?
            }
            false => Vec::new(),
        };
        let (stored, hinted) = self.to_put(info, &key, &typed).await?;
        match self.store.update(&key, stored, current.mod_revision).await {
            Ok(kv) => {
                hinted.keep();
                if service {
                    // Node ports the service no longer has go back to the pool.
                    let now = crate::ipalloc::node_ports(&typed);
                    let stale: Vec<i64> = crate::ipalloc::node_ports(&old)
                        .into_iter()
                        .filter(|p| !now.contains(p))
                        .collect();
                    self.release_node_ports(&stale).await;
                }
                meta_mut(&mut typed)?
                    .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                Ok((typed, warnings))
            }
            Err(e) => {
                self.release_node_ports(&taken).await;
                Err(match e {
                    minik_store::Error::Conflict { .. } => ApiError::conflict(info, name),
                    minik_store::Error::NotFound { .. } => ApiError::not_found(info, name),
                    e => e.into(),
                })
            }
        }
    }
}

/// Whether `read` came from the watch cache ([`Registry::read_cached`]): it has no stored
/// bytes (a stored object has at least `{}`).
fn read_from_cache(read: &KeyValue) -> bool {
    read.value.is_empty()
}

/// ComponentStatus is computed, not stored.
pub(crate) fn is_component_status(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "ComponentStatus"
}

pub(crate) fn finalizers_empty(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
}

fn already_exists(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::AlreadyExists {
        group: info.group.into(),
        resource: info.plural.into(),
        name: name.into(),
    }
}
