//! Create, get, update and delete over the store, the same code for every resource.

use std::sync::Arc;

use minik_api::ResourceInfo;
use minik_store::{Backend, KeyValue};
use serde_json::{Value, json};

use crate::error::{ApiError, Result};
use crate::meta::{self, meta_mut, meta_str};
use crate::strategy;
use crate::{list_prefix, object_key};

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
}

impl WriteParams {
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

/// Preconditions of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteParams {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// Seconds the object gets to finish (pods); None: its own default.
    pub grace_period_seconds: Option<i64>,
    /// What happens to the object's dependents; None: Background.
    pub propagation: Option<Propagation>,
}

/// `DeleteOptions.propagationPolicy`: the garbage collector acts on the finalizer each one
/// leaves (`orphan`, `foregroundDeletion`); Background leaves none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

/// Set the garbage collector's finalizers for `policy`; whether they changed.
fn gc_finalizers(obj: &mut Value, policy: Option<Propagation>) -> Result<bool> {
    let Some(policy) = policy else {
        return Ok(false);
    };
    let m = meta_mut(obj)?;
    let mut list: Vec<String> = m
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let before = list.clone();
    list.retain(|f| f != ORPHAN && f != FOREGROUND);
    match policy {
        Propagation::Orphan => list.push(ORPHAN.into()),
        Propagation::Foreground => list.push(FOREGROUND.into()),
        Propagation::Background => {}
    }
    if list == before {
        return Ok(false);
    }
    if list.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(list));
    }
    Ok(true)
}

/// A resource's schema, built in or from a CRD.
pub(crate) enum SchemaRef {
    Builtin(&'static Value),
    Custom(Arc<Value>),
}

impl std::ops::Deref for SchemaRef {
    type Target = Value;
    fn deref(&self) -> &Value {
        match self {
            SchemaRef::Builtin(v) => v,
            SchemaRef::Custom(v) => v,
        }
    }
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
}

/// Decode a stored value and stamp its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
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
        }
    }

    /// Every resource served: the built-in ones and those of established CRDs.
    pub fn resources(&self) -> Vec<&'static ResourceInfo> {
        let mut all: Vec<&'static ResourceInfo> = minik_api::all().iter().collect();
        all.extend(self.crds.served());
        all
    }

    /// The served resource with this group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
        minik_api::find(group, version, plural).or_else(|| {
            self.crds
                .served()
                .into_iter()
                .find(|r| r.group == group && r.version == version && r.plural == plural)
        })
    }

    /// Changes whenever the set of served resources does (for caches of discovery and
    /// OpenAPI).
    pub fn api_generation(&self) -> u64 {
        self.crds.generation()
    }

    /// An object as it is stored, unconverted (for built-in kinds that never are).
    pub(crate) async fn get_stored(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        let (_, kv) = self
            .store
            .get(&object_key(info, namespace, name), None)
            .await?;
        decode(&kv.ok_or_else(|| ApiError::not_found(info, name))?)
    }

    /// A stored object as `info` shows it (converted from its storage version).
    pub(crate) async fn shown(&self, info: &ResourceInfo, obj: Value) -> Result<Value> {
        match self.conversion_webhook(info) {
            Some(_) => self.custom_shown(info, obj).await,
            None => Ok(crate::convert::from_storage(info, obj)),
        }
    }

    /// An object of `info` as it is stored.
    pub(crate) async fn stored(&self, info: &ResourceInfo, obj: &Value) -> Result<Value> {
        match self.conversion_webhook(info) {
            Some(_) => self.custom_stored(info, obj).await,
            None => Ok(crate::convert::to_storage(info, obj)),
        }
    }

    /// A custom resource's additionalPrinterColumns (empty for built-ins).
    pub fn printer_columns(&self, info: &ResourceInfo) -> Vec<Value> {
        if !info.custom {
            return Vec::new();
        }
        self.crds
            .version(info)
            .map(|(def, i)| def.versions[i].printer_columns.clone())
            .unwrap_or_default()
    }

    /// The schema a CRD gives a custom resource's version.
    pub fn custom_schema(&self, info: &ResourceInfo) -> Option<Value> {
        let (def, i) = self.crds.version(info)?;
        Some((*def.versions[i].schema).clone())
    }

    /// The schema of a resource: the built-in type's, or its CRD version's.
    pub(crate) fn schema_for(&self, info: &ResourceInfo) -> Option<SchemaRef> {
        if info.custom {
            let (def, i) = self.crds.version(info)?;
            return Some(SchemaRef::Custom(def.versions[i].schema.clone()));
        }
        minik_api::schema::of(info).map(SchemaRef::Builtin)
    }

    /// Allocate ClusterIPs from `cidr` (default 10.43.0.0/16).
    pub fn with_service_cidr(mut self, cidr: crate::ServiceCidr) -> Self {
        self.service_cidr = cidr;
        self
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

    async fn check_namespace(&self, info: &ResourceInfo, namespace: Option<&str>) -> Result<()> {
        let Some(ns) = namespace.filter(|_| info.namespaced) else {
            return Ok(());
        };
        let ns_info = minik_api::find("", "v1", "namespaces").expect("namespaces are served");
        let (_, kv) = self.store.get(&object_key(ns_info, None, ns), None).await?;
        let Some(kv) = kv else {
            return Err(ApiError::not_found(ns_info, ns));
        };
        let obj = decode(&kv)?;
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::Conflict {
                group: String::new(),
                resource: "namespaces".into(),
                name: ns.into(),
                message: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            });
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
        let (mut typed, warnings) = self.typed_view(info, &obj, params, None)?;
        strategy::prepare_for_create(info, &mut typed);
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
        self.check_namespace(info, namespace).await?;
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
        let stored = self.stored(info, &typed).await?;
        match self.store.create(&key, encode(&stored)?).await {
            Ok(kv) => {
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
        mut obj: Value,
        status: bool,
        params: &WriteParams,
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
        let (_, current) = self.store.get(&key, None).await?;
        let current = current.ok_or_else(|| ApiError::not_found(info, name))?;
        let old = self.shown(info, decode(&current)?).await?;
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
        let (mut typed, warnings) = self.typed_view(info, &obj, params, Some(&old))?;
        if !status {
            strategy::default(info, &mut typed);
        }
        meta::prepare_update(&old, &mut typed)?;
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
        // The last finalizer went from an object being deleted, and no grace period is
        // still running (a pod's ends when its kubelet deletes it).
        let gone = typed.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers_empty(&typed)
            && typed
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|g| g == 0);
        if params.dry_run {
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
        let stored = encode(&self.stored(info, &typed).await?)?;
        match self.store.update(&key, stored, current.mod_revision).await {
            Ok(kv) => {
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

    /// DELETE one object. Objects with finalizers get a deletionTimestamp and stay until
    /// their finalizers are gone. Returns the object as it was (or is, while finalizing)
    /// and whether it is gone.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(Value, bool)> {
        let key = object_key(info, namespace, name);
        loop {
            let (_, current) = self.store.get(&key, None).await?;
            let current = current.ok_or_else(|| ApiError::not_found(info, name))?;
            let mut obj = self.shown(info, decode(&current)?).await?;
            if let Some(uid) = &params.uid
                && meta_str(&obj, "uid") != Some(uid.as_str())
            {
                return Err(precondition(info, name, "UID", uid, meta_str(&obj, "uid")));
            }
            if let Some(rv) = &params.resource_version
                && *rv != current.mod_revision.to_string()
            {
                return Err(precondition(
                    info,
                    name,
                    "ResourceVersion",
                    rv,
                    Some(&current.mod_revision.to_string()),
                ));
            }
            if params.dry_run {
                return Ok((obj, true));
            }
            let grace = strategy::grace_period(info, &obj, params.grace_period_seconds);
            let changed = gc_finalizers(&mut obj, params.propagation)?;
            if !finalizers_empty(&obj) || grace > 0 {
                // Graceful: mark it; the kubelet (or whoever removes the finalizers) ends it.
                let m = meta_mut(&mut obj)?;
                let deadline = chrono::Utc::now() + chrono::Duration::seconds(grace);
                let shorter = m
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .is_none_or(|g| grace < g);
                let first = m.get("deletionTimestamp").is_none();
                if first || shorter || changed {
                    if first || shorter {
                        m.insert(
                            "deletionTimestamp".into(),
                            json!(deadline.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                        );
                        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    }
                    m.remove("resourceVersion");
                    match self
                        .store
                        .update(
                            &key,
                            encode(&self.stored(info, &obj).await?)?,
                            current.mod_revision,
                        )
                        .await
                    {
                        Ok(kv) => {
                            meta_mut(&mut obj)?.insert(
                                "resourceVersion".into(),
                                json!(kv.mod_revision.to_string()),
                            );
                        }
                        Err(minik_store::Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                return Ok((obj, false));
            }
            if info.group.is_empty() && info.plural == "namespaces" {
                self.delete_namespace_contents(name).await?;
            }
            match self.store.delete(&key, Some(current.mod_revision)).await {
                Ok(_) => {
                    if info.group.is_empty() && info.kind == "Service" {
                        self.release_service(&obj).await;
                    }
                    return Ok((obj, true));
                }
                // Changed between the read and the delete: look again.
                Err(minik_store::Error::Conflict { .. }) => continue,
                Err(minik_store::Error::NotFound { .. }) => {
                    return Err(ApiError::not_found(info, name));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Delete every object in a namespace (what the namespace controller does before the
    /// namespace itself goes).
    async fn delete_namespace_contents(&self, namespace: &str) -> Result<()> {
        for info in minik_api::all().iter().filter(|r| r.namespaced) {
            let prefix = list_prefix(info, Some(namespace));
            let list = self.store.list(&prefix, Default::default()).await?;
            for kv in list.kvs {
                match self.store.delete(&kv.key, None).await {
                    Ok(d) if info.kind == "Service" => {
                        if let Ok(svc) = decode(&d.prev) {
                            self.release_service(&svc).await;
                        }
                    }
                    Ok(_) | Err(minik_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

/// ComponentStatus is computed, not stored.
pub(crate) fn is_component_status(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "ComponentStatus"
}

fn finalizers_empty(obj: &Value) -> bool {
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

fn precondition(
    info: &ResourceInfo,
    name: &str,
    what: &str,
    want: &str,
    have: Option<&str>,
) -> ApiError {
    ApiError::Conflict {
        group: info.group.into(),
        resource: info.plural.into(),
        name: name.into(),
        message: format!(
            "Precondition failed: {what} in precondition: {want}, {what} in object meta: {}",
            have.unwrap_or("")
        ),
    }
}
