//! The Deployment controller: one ReplicaSet per pod template (named by the template's
//! hash), rolled over by the strategy (RollingUpdate with maxSurge/maxUnavailable, or
//! Recreate), with revisions for `kubectl rollout history|undo`, pause and resume, old
//! ReplicaSets pruned past revisionHistoryLimit, and the status `kubectl rollout status`
//! reads.

mod rollout;
mod status;

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::events::{Kind, Recorder};
use crate::util::{self, controller_of, controller_ref};
use crate::{Ctx, Queue, Reconcile, Result};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH: &str = "pod-template-hash";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

pub struct Controller {
    ctx: Ctx,
    recorder: Recorder,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("deployment", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers
        .deployments
        .on(move |d, _| q.add(util::key(d)));
    let q = queue.clone();
    ctx.informers.replicasets.on(move |rs, _| {
        if let Some(o) = controller_of(rs).filter(|o| o.kind == "Deployment") {
            q.add(format!("{}/{}", rs.namespace().unwrap_or_default(), o.name));
        }
    });
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "deployment-controller"),
    });
    ctx.spawn_workers("deployment", &queue, workers, this);
    queue
}

/// The template's hash, as the `pod-template-hash` label (and the ReplicaSet's suffix).
pub fn template_hash(template: &PodTemplateSpec, collisions: i32) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut h = Fnv32a::default();
    h.write(text.as_bytes());
    if collisions > 0 {
        h.write(&collisions.to_be_bytes());
    }
    let digits = (h.finish() as u32).to_string();
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    digits
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// FNV-1a, 32 bits.
struct Fnv32a(u32);

impl Default for Fnv32a {
    fn default() -> Self {
        Fnv32a(0x811c_9dc5)
    }
}

impl Hasher for Fnv32a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
    fn finish(&self) -> u64 {
        u64::from(self.0)
    }
}

/// Whether a ReplicaSet's template is the Deployment's, ignoring the hash label.
fn same_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let Some(mut t) = rs.spec.template.clone() else {
        return false;
    };
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH);
    }
    let mut want = template.clone();
    if let Some(labels) = want.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH);
    }
    let norm = |t: &PodTemplateSpec| serde_json::to_value(t).ok().map(without_zeros);
    norm(&t) == norm(&want)
}

/// A value with its nulls, falses, zeros and empty strings, lists and maps left out, so
/// that templates compare as Kubernetes compares them (unset equals its zero value).
fn without_zeros(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, without_zeros(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_zeros).collect()),
        other => other,
    }
}

fn is_zero(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

/// A Deployment's ReplicaSets split into the one of its current template and the others
/// (oldest first).
pub struct Sets {
    pub new: Option<Arc<ReplicaSet>>,
    pub old: Vec<Arc<ReplicaSet>>,
}

impl Sets {
    pub fn all(&self) -> impl Iterator<Item = &Arc<ReplicaSet>> {
        self.new.iter().chain(&self.old)
    }
}

impl Controller {
    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// The ReplicaSets this Deployment controls (adopting matching orphans).
    async fn sets(&self, d: &Deployment, ns: &str) -> Result<Sets> {
        let spec = d.spec.clone();
        let candidates = self.ctx.informers.replicasets.store().state();
        let mut mine =
            util::claim(&self.rs_api(ns), d, &spec.selector, |_| true, candidates).await?;
        mine.sort_by_key(|rs| {
            (
                rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                rs.name_any(),
            )
        });
        let new_index = mine.iter().position(|rs| same_template(rs, &spec.template));
        let new = new_index.map(|i| mine.remove(i));
        Ok(Sets { new, old: mine })
    }

    /// Make (or bring to the latest revision) the ReplicaSet of the current template.
    async fn ensure_new(
        &self,
        d: &Deployment,
        ns: &str,
        sets: &mut Sets,
        replicas: i32,
    ) -> Result<Arc<ReplicaSet>> {
        let max_old = sets.old.iter().map(|r| revision(r)).max().unwrap_or(0);
        let spec = d.spec.clone();
        let want_replicas = spec.replicas.unwrap_or(1);
        let surge = rollout::max_surge(d);
        if let Some(rs) = &sets.new {
            let rev = revision(rs);
            let mut annotations = BTreeMap::new();
            if rev <= max_old {
                annotations.insert(REVISION.to_string(), (max_old + 1).to_string());
            }
            let cause = d.annotations().get(CHANGE_CAUSE);
            if cause.is_some() && rs.annotations().get(CHANGE_CAUSE) != cause {
                annotations.insert(CHANGE_CAUSE.to_string(), cause.cloned().unwrap_or_default());
            }
            if annotations.is_empty()
                && rs.annotations().get(DESIRED) == Some(&want_replicas.to_string())
            {
                return Ok(rs.clone());
            }
            annotations.insert(DESIRED.to_string(), want_replicas.to_string());
            annotations.insert(
                MAX_REPLICAS.to_string(),
                (want_replicas + surge).to_string(),
            );
            let patch = json!({"metadata": {"annotations": annotations}});
            let updated = self
                .rs_api(ns)
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            let updated = Arc::new(updated);
            sets.new = Some(updated.clone());
            return Ok(updated);
        }
        let collisions = d
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let hash = template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH.into(), hash.clone());
        let mut annotations: BTreeMap<String, String> = d
            .annotations()
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("deployment.kubernetes.io/")
                    && *k != "kubectl.kubernetes.io/last-applied-configuration"
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert(REVISION.into(), (max_old + 1).to_string());
        annotations.insert(DESIRED.into(), want_replicas.to_string());
        annotations.insert(MAX_REPLICAS.into(), (want_replicas + surge).to_string());
        let name = format!("{}-{hash}", d.name_any());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.into()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref(d)]),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            },
            status: None,
        };
        match self.rs_api(ns).create(&PostParams::default(), &rs).await {
            Ok(made) => {
                self.recorder.event(
                    d,
                    Kind::Normal,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {name} from 0 to {replicas}"),
                );
                let made = Arc::new(made);
                sets.new = Some(made.clone());
                Ok(made)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Someone else's ReplicaSet has our name: try the next hash.
                let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), ns);
                let patch = json!({"status": {"collisionCount": collisions + 1}});
                api.patch_status(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Err(crate::Error::Other(format!(
                    "replica set {name} already exists"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Set a ReplicaSet's replicas; whether it changed.
    async fn scale(&self, d: &Deployment, rs: &ReplicaSet, to: i32) -> Result<bool> {
        let from = replicas(rs);
        if from == to {
            return Ok(false);
        }
        let ns = rs.namespace().unwrap_or_default();
        let want = d.spec.replicas.unwrap_or(1);
        let patch = json!({
            "metadata": {"annotations": {DESIRED: want.to_string(),
                MAX_REPLICAS: (want + rollout::max_surge(d)).to_string()}},
            "spec": {"replicas": to},
        });
        self.rs_api(&ns)
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        let verb = if to > from { "up" } else { "down" };
        self.recorder.event(
            d,
            Kind::Normal,
            "ScalingReplicaSet",
            &format!(
                "Scaled {verb} replica set {} from {from} to {to}",
                rs.name_any()
            ),
        );
        Ok(true)
    }

    /// The Deployment carries its current revision (`kubectl rollout undo` patches it).
    async fn record_revision(&self, d: &Deployment, ns: &str, sets: &Sets) -> Result<()> {
        let Some(new) = &sets.new else {
            return Ok(());
        };
        let rev = revision(new).to_string();
        if d.annotations().get(REVISION) == Some(&rev) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), ns);
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        api.patch(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }

    /// Delete old, empty ReplicaSets past revisionHistoryLimit (oldest first).
    async fn prune(&self, d: &Deployment, ns: &str, sets: &Sets) -> Result<()> {
        let limit = d.spec.revision_history_limit.unwrap_or(10).max(0);
        let empty: Vec<&Arc<ReplicaSet>> = sets
            .old
            .iter()
            .filter(|rs| {
                replicas(rs) == 0
                    && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        let extra = empty
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        let mut by_revision = empty;
        by_revision.sort_by_key(|rs| revision(rs));
        for rs in by_revision.into_iter().take(extra) {
            match self
                .rs_api(ns)
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if crate::util::code(&e) == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, d)) = self.ctx.informers.deployments.namespaced(&key) else {
            return Ok(None);
        };
        let mut sets = self.sets(&d, ns).await?;
        let spec = d.spec.clone();
        if d.metadata.deletion_timestamp.is_some() {
            return self.update_status(&d, ns, &sets, false).await;
        }
        if spec.paused == Some(true) {
            if let Some(new) = sets.new.clone() {
                self.scale_when_paused(&d, &sets, &new).await?;
            }
            return self.update_status(&d, ns, &sets, false).await;
        }
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let created = sets.new.is_none();
        let changed = if recreate {
            self.recreate(&d, ns, &mut sets).await?
        } else {
            self.rolling(&d, ns, &mut sets).await?
        };
        self.record_revision(&d, ns, &sets).await?;
        if created && sets.new.is_some() {
            return self.update_status(&d, ns, &sets, true).await;
        }
        if !changed && status::complete(&d) {
            self.prune(&d, ns, &sets).await?;
        }
        self.update_status(&d, ns, &sets, false).await
    }
}
