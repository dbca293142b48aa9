//! Storage object in-use protection, the controller half (kube-controller-manager's
//! pvc-protection and pv-protection): a claim being deleted keeps its
//! `kubernetes.io/pvc-protection` finalizer while a running pod uses it, and a volume its
//! `kubernetes.io/pv-protection` while it is bound; then the finalizer goes and so does the
//! object. The StorageObjectInUseProtection admission plugin adds the finalizers.

use std::time::Duration;

use serde_json::Value;

use crate::Registry;
use crate::rest::{WriteParams, decode};

pub const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
pub const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

fn core(plural: &str) -> &'static minik_api::ResourceInfo {
    minik_api::builtin("", "v1", plural)
}

fn terminating_with(obj: &Value, finalizer: &str) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

impl Registry {
    async fn objects(&self, plural: &str, ns: Option<&str>) -> Vec<Value> {
        let prefix = crate::list_prefix(core(plural), ns);
        match self.store.list(&prefix, Default::default()).await {
            Ok(l) => l.kvs.iter().filter_map(|kv| decode(kv).ok()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Take `finalizer` off `obj` (which may then go).
    async fn release(&self, plural: &str, mut obj: Value, finalizer: &str) {
        if let Some(f) = obj["metadata"]["finalizers"].as_array_mut() {
            f.retain(|x| x != finalizer);
        }
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let done = self
            .update(
                core(plural),
                ns.as_deref(),
                &name,
                obj,
                false,
                &WriteParams::default(),
            )
            .await;
        if let Err(e) = done {
            tracing::debug!(%name, error = %e, "protection finalizer not removed yet");
        }
    }

    /// One pass over terminating claims and volumes. Pods are read only when a claim waits
    /// for its finalizer: the pass runs on every pod event, and decoding every pod each time
    /// made a burst of pod writes cost O(pods²).
    async fn protect(&self) {
        let claims = self.objects("persistentvolumeclaims", None).await;
        let waiting: Vec<&Value> = claims
            .iter()
            .filter(|c| terminating_with(c, PVC_FINALIZER))
            .collect();
        if !waiting.is_empty() {
            let pods = self.objects("pods", None).await;
            let used = |ns: &str, claim: &str| {
                pods.iter().any(|p| {
                    p["metadata"]["namespace"] == ns
                        && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                        && p["spec"]["volumes"].as_array().is_some_and(|v| {
                            v.iter()
                                .any(|v| v["persistentVolumeClaim"]["claimName"] == claim)
                        })
                })
            };
            for pvc in waiting {
                let ns = pvc["metadata"]["namespace"].as_str().unwrap_or("");
                let name = pvc["metadata"]["name"].as_str().unwrap_or("");
                if !used(ns, name) {
                    self.release("persistentvolumeclaims", pvc.clone(), PVC_FINALIZER)
                        .await;
                }
            }
        }
        for pv in self.objects("persistentvolumes", None).await {
            if terminating_with(&pv, PV_FINALIZER) && pv["status"]["phase"] != "Bound" {
                self.release("persistentvolumes", pv, PV_FINALIZER).await;
            }
        }
    }

    /// Follow pods, claims and volumes until the store closes, with a resync every 5 s.
    pub async fn run_protection_controller(&self) {
        let prefixes = ["pods", "persistentvolumeclaims", "persistentvolumes"]
            .map(|p| crate::resource_prefix(core(p)));
        let Ok(rev) = self.store.current_revision().await else {
            return;
        };
        let mut watches = Vec::new();
        for p in &prefixes {
            match self.store.watch(p, rev + 1).await {
                Ok(w) => watches.push(w),
                Err(_) => return,
            }
        }
        let [mut pods, mut claims, mut volumes]: [_; 3] = match watches.try_into() {
            Ok(w) => w,
            Err(_) => return,
        };
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                e = pods.recv() => if e.is_none() { return },
                e = claims.recv() => if e.is_none() { return },
                e = volumes.recv() => if e.is_none() { return },
                _ = tick.tick() => {}
            }
            // One pass covers every event already queued (a burst of pod writes).
            for w in [&mut pods, &mut claims, &mut volumes] {
                if !drain(w).await {
                    return;
                }
            }
            self.protect().await;
        }
    }
}

/// Take the events `watch` has ready without waiting; false once the store is closed.
async fn drain(watch: &mut minik_store::WatchStream) -> bool {
    loop {
        tokio::select! {
            biased;
            e = watch.recv() => if e.is_none() { return false },
            () = std::future::ready(()) => return true,
        }
    }
}
