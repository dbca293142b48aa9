//! The CRD controller, inside the API server as in kube-apiserver's apiextensions: accepts
//! a CRD's names unless another CRD has them (NamesAccepted), serves it (Established), and
//! when one is deleted removes its objects, then its cleanup finalizer.

use std::time::Duration;

use serde_json::{Value, json};

use super::definition;
use crate::Registry;
use crate::meta::now_rfc3339;
use crate::rest::{WriteParams, decode};

/// The finalizer a CRD keeps until its objects are gone.
pub(crate) const CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

fn crd_info() -> &'static minik_api::ResourceInfo {
    minik_api::builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions")
}

impl Registry {
    /// Serve the CRDs stored now (once, before the controller runs).
    pub async fn sync_crds(&self) {
        let prefix = crate::resource_prefix(crd_info());
        if let Ok(list) = self.store.list(&prefix, Default::default()).await {
            for kv in &list.kvs {
                if let Ok(crd) = decode(kv) {
                    self.reconcile_crd(&crd).await;
                }
            }
        }
    }

    /// Follow CRDs until the store closes, and resync them every two seconds.
    pub async fn run_crd_controller(&self) {
        let info = crd_info();
        let prefix = crate::resource_prefix(info);
        loop {
            let Ok(list) = self.store.list(&prefix, Default::default()).await else {
                return;
            };
            for kv in &list.kvs {
                if let Ok(crd) = decode(kv) {
                    self.reconcile_crd(&crd).await;
                }
            }
            let Ok(mut watch) = self.store.watch(&prefix, list.revision + 1).await else {
                return;
            };
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    event = watch.recv() => match event {
                        Some(Ok(e)) => match e.kind {
                            minik_store::EventKind::Put => {
                                if let Ok(crd) = decode(&e.kv) {
                                    self.reconcile_crd(&crd).await;
                                }
                            }
                            minik_store::EventKind::Delete => {
                                let name = e.kv.key.rsplit('/').next().unwrap_or_default();
                                self.crds.set(name, None);
                            }
                        },
                        Some(Err(_)) => break,
                        None => return,
                    },
                    _ = tick.tick() => self.resync().await,
                }
            }
        }
    }

    /// Reconcile every CRD again: a status write that failed, or objects that are not gone
    /// yet, are retried here.
    async fn resync(&self) {
        self.sync_crds().await;
    }

    async fn reconcile_crd(&self, crd: &Value) {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        tracing::debug!(crd = %name, rv = ?crd.pointer("/metadata/resourceVersion"), "reconciling CRD");
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            self.crds.set(&name, None);
            self.clean_up_crd(crd).await;
            return;
        }
        let Some(def) = definition(crd) else {
            return;
        };
        let first = def.versions.first().map(|v| v.info);
        let conflict = first.and_then(|i| {
            builtin_conflict(i.group, i.plural, i.kind)
                .or_else(|| self.crds.conflict(&name, i.group, i.plural, i.kind))
        });
        match &conflict {
            None => self.crds.set(&name, Some(def)),
            Some(_) => self.crds.set(&name, None),
        }
        let mut updated = crd.clone();
        updated["status"] = crd_status(crd, conflict.as_deref());
        // Compared as stored (typed), so an unchanged status is not written again.
        let typed = crd_info().typed;
        if typed(&updated).ok() != typed(crd).ok() {
            let params = WriteParams::default();
            if let Err(e) = self
                .update(crd_info(), None, &name, updated, true, &params)
                .await
            {
                tracing::debug!(crd = %name, error = %e, "CRD status not written yet; retried");
            }
        }
    }

    /// Delete every object of a CRD being deleted, then let the CRD go.
    async fn clean_up_crd(&self, crd: &Value) {
        let (Some(group), Some(plural)) = (
            crd.pointer("/spec/group").and_then(Value::as_str),
            crd.pointer("/spec/names/plural").and_then(Value::as_str),
        ) else {
            return;
        };
        let prefix = format!("/registry/{group}/{plural}/");
        let Ok(list) = self.store.list(&prefix, Default::default()).await else {
            return;
        };
        for kv in &list.kvs {
            let _ = self.store.delete(&kv.key, None).await;
        }
        let has_finalizer = crd
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == CLEANUP));
        if !has_finalizer {
            return;
        }
        let mut updated = crd.clone();
        if let Some(Value::Array(f)) = updated.pointer_mut("/metadata/finalizers") {
            f.retain(|x| x != CLEANUP);
        }
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let params = WriteParams::default();
        if let Err(e) = self
            .update(crd_info(), None, name, updated, false, &params)
            .await
        {
            tracing::debug!(crd = %name, error = %e, "CRD finalizer not removed yet");
        }
    }
}

/// A built-in resource with this group and plural or kind.
fn builtin_conflict(group: &str, plural: &str, kind: &str) -> Option<String> {
    minik_api::all().iter().find_map(|r| {
        (r.group == group && (r.plural == plural || r.kind == kind))
            .then(|| format!("\"{plural}\" is already served by the built-in API"))
    })
}

/// The status a CRD should have: accepted names and the two conditions, keeping the
/// transition times of conditions that did not change.
fn crd_status(crd: &Value, conflict: Option<&str>) -> Value {
    let old = crd.get("status").cloned().unwrap_or_else(|| json!({}));
    let condition = |kind: &str, ok: bool, reason: &str, message: &str| {
        let status = if ok { "True" } else { "False" };
        let since = old
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now_rfc3339()));
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since})
    };
    let names = match conflict {
        None => crd
            .pointer("/spec/names")
            .cloned()
            .unwrap_or_else(|| json!({})),
        Some(_) => old
            .get("acceptedNames")
            .cloned()
            .unwrap_or_else(|| json!({"plural": "", "kind": ""})),
    };
    let mut stored: Vec<Value> = old
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("storage") == Some(&json!(true)))
        .and_then(|v| v.get("name").cloned());
    if let Some(s) = storage
        && !stored.contains(&s)
    {
        stored.push(s);
    }
    let conditions = match conflict {
        None => vec![
            condition("NamesAccepted", true, "NoConflicts", "no conflicts found"),
            condition(
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
        ],
        Some(why) => vec![
            condition("NamesAccepted", false, "NameConflict", why),
            condition(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
            ),
        ],
    };
    json!({"acceptedNames": names, "conditions": conditions, "storedVersions": stored})
}
