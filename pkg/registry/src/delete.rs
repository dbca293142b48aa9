//! DELETE: preconditions, graceful deletion and finalizers, the garbage collector's
//! finalizers for propagationPolicy, and namespace termination (the namespace controller
//! empties a Terminating namespace, then drops its `kubernetes` finalizer).

use minik_api::ResourceInfo;
use serde_json::{Value, json};

use crate::error::{ApiError, Result};
use crate::meta::{meta_mut, meta_str};
use crate::object_key;
use crate::rest::{Registry, decode, finalizers_empty};
use crate::strategy;

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
    /// Who asks; the delete goes through admission when set.
    pub user: Option<crate::UserInfo>,
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

impl Registry {
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
            if let Some(user) = &params.user {
                let attrs = crate::admission::Attributes {
                    operation: crate::admission::Operation::Delete,
                    info,
                    subresource: None,
                    namespace: namespace.filter(|_| info.namespaced),
                    name,
                    user,
                    dry_run: params.dry_run,
                    old: Some(&obj),
                };
                self.admit(Some(&attrs), &obj, &mut Vec::new()).await?;
            }
            if params.dry_run {
                return Ok((obj, true));
            }
            let grace = strategy::grace_period(info, &obj, params.grace_period_seconds);
            let changed = gc_finalizers(&mut obj, params.propagation)?;
            let namespace_held =
                strategy::is_namespace(info) && !strategy::namespace_finalized(&obj);
            if !finalizers_empty(&obj) || grace > 0 || namespace_held {
                // Graceful: mark it; the kubelet (or whoever removes the finalizers) ends it.
                if strategy::is_namespace(info) {
                    obj["status"]["phase"] = json!("Terminating");
                }
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
                    let (stored, hinted) = self.to_put(info, &key, &obj).await?;
                    match self.store.update(&key, stored, current.mod_revision).await {
                        Ok(kv) => {
                            hinted.keep();
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
