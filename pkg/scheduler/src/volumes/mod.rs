//! VolumeBinding, as kube-scheduler's plugin. PreFilter: every claim the pod names must
//! exist and not be going, and claims of Immediate classes must be bound already. Filter:
//! a node must satisfy the node affinity of the pod's bound volumes, and for each claim of
//! a WaitForFirstConsumer class have a matching volume or be one the class's provisioner
//! can make volumes on. PreBind, once a node is chosen: matching volumes are bound to their
//! claims, the others get `volume.kubernetes.io/selected-node`, and the pod is bound only
//! when every claim is fully bound (or fails and is retried when that times out).

mod bind;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use minik_controllers::volume::{
    BIND_COMPLETED, NO_PROVISIONER, SELECTED_NODE, delays_binding, has, matching,
};
use minik_controllers::{Informer, util};
use tokio_util::sync::CancellationToken;

use crate::filters::Reason;

/// How long PreBind waits for claims to be bound (kube-scheduler's bindTimeoutSeconds).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);
const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// A claim of delayed binding, as PreFilter found it.
#[derive(Clone)]
struct Delayed {
    claim: Arc<PersistentVolumeClaim>,
    selected: Option<String>,
    /// Volumes of its class (one this scheduler promised it shows as pre-bound).
    candidates: Vec<Arc<PersistentVolume>>,
    class: Option<Arc<StorageClass>>,
}

/// The pod's claims: the volumes of the bound ones (None: missing), the delayed ones.
#[derive(Clone, Default)]
pub struct PodVolumes {
    bound: Vec<Option<Arc<PersistentVolume>>>,
    delayed: Vec<Delayed>,
}

/// What PreBind does on the chosen node.
#[derive(Default)]
pub struct Plan {
    node: Option<Arc<Node>>,
    statics: Vec<(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>)>,
    provisions: Vec<Arc<PersistentVolumeClaim>>,
}

/// Promised by this scheduler, not yet seen in the caches.
#[derive(Default)]
struct Assumed {
    /// volume -> claim key.
    volumes: HashMap<String, String>,
    /// claim key -> node.
    claims: HashMap<String, String>,
}

pub struct Volumes {
    claims: Arc<Informer<PersistentVolumeClaim>>,
    pvs: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    assumed: Mutex<Assumed>,
}

/// The FailedScheduling message when PreFilter fails (every node fails the same way).
pub fn prefilter_message(total: usize, why: &str) -> String {
    format!(
        "0/{total} nodes are available: {why}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    )
}

fn fully_bound(c: &PersistentVolumeClaim) -> bool {
    !volume_name(c).is_empty() && has(c, BIND_COMPLETED)
}

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn claim_ref(c: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: c.namespace(),
        name: c.metadata.name.clone(),
        uid: c.uid(),
        resource_version: c.resource_version(),
        ..Default::default()
    }
}

/// Whether the class can make a volume for the claim on the node.
fn provisionable(class: Option<&StorageClass>, node: &Node) -> bool {
    let Some(class) = class else { return false };
    if class.provisioner.is_empty() || class.provisioner == NO_PROVISIONER {
        return false;
    }
    let labels = node.labels();
    class.allowed_topologies.as_ref().is_none_or(|terms| {
        terms.is_empty()
            || terms.iter().any(|t| {
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
            })
    })
}

/// Which volumes serve the pod's delayed claims on `node`, or why none can.
fn find(v: &PodVolumes, node: &Node) -> Result<Plan, &'static str> {
    for pv in &v.bound {
        match pv {
            None => return Err(PV_NOT_EXIST),
            Some(pv) if !matching::node_affinity_ok(pv, node) => return Err(NODE_CONFLICT),
            Some(_) => {}
        }
    }
    let mut plan = Plan::default();
    let name = node.name_any();
    for d in &v.delayed {
        if let Some(selected) = &d.selected {
            if *selected != name {
                return Err(BIND_CONFLICT);
            }
            plan.provisions.push(d.claim.clone());
            continue;
        }
        let taken = |pv: &PersistentVolume| {
            plan.statics
                .iter()
                .any(|(p, _)| p.metadata.name == pv.metadata.name)
        };
        match matching::find_best(&d.claim, &d.candidates, Some(node), true, &taken) {
            Some(pv) => plan.statics.push((pv, d.claim.clone())),
            None if provisionable(d.class.as_deref(), node) => {
                plan.provisions.push(d.claim.clone())
            }
            None => return Err(BIND_CONFLICT),
        }
    }
    Ok(plan)
}

/// The Filter: whether the node can serve the pod's claims.
pub fn filter(v: &PodVolumes, node: &Node) -> Result<(), Reason> {
    find(v, node)
        .map(|_| ())
        .map_err(|why| Reason::Volume(why.into()))
}

impl Volumes {
    pub fn new(client: &kube::Client) -> Arc<Self> {
        Arc::new(Volumes {
            claims: Informer::new(Api::all(client.clone())),
            pvs: Informer::new(Api::all(client.clone())),
            classes: Informer::new(Api::all(client.clone())),
            assumed: Mutex::default(),
        })
    }

    fn assumed(&self) -> std::sync::MutexGuard<'_, Assumed> {
        self.assumed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watch claims, volumes and classes until `stop`, calling `changed` on every change
    /// (pods waiting for them may fit now); returns once the caches are filled.
    pub async fn run(
        &self,
        stop: &CancellationToken,
        changed: impl Fn() + Clone + Send + Sync + 'static,
    ) {
        let c = changed.clone();
        self.claims.on(move |_, _| c());
        let c = changed.clone();
        self.pvs.on(move |_, _| c());
        self.classes.on(move |_, _| changed());
        tokio::spawn(self.claims.clone().run(stop.clone()));
        tokio::spawn(self.pvs.clone().run(stop.clone()));
        tokio::spawn(self.classes.clone().run(stop.clone()));
        self.claims.synced().await;
        self.pvs.synced().await;
        self.classes.synced().await;
    }

    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.store().get(&ObjectRef::new(name).within(ns))
    }

    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.store().get(&ObjectRef::new(name))
    }

    /// The PreFilter: the pod's claims sorted out, or why the pod fits nowhere.
    pub fn prefilter(&self, pod: &Pod) -> Result<PodVolumes, String> {
        let ns = pod.namespace().unwrap_or_default();
        let mut out = PodVolumes::default();
        let mut immediate = false;
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        for vol in volumes.into_iter().flatten() {
            let (name, ephemeral) = match (&vol.persistent_volume_claim, &vol.ephemeral) {
                (Some(c), _) => (c.claim_name.clone(), false),
                (None, Some(_)) => (format!("{}-{}", pod.name_any(), vol.name), true),
                _ => continue,
            };
            let Some(claim) = self.claim(&ns, &name) else {
                return Err(if ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                    )
                } else {
                    format!("persistentvolumeclaim {name:?} not found")
                });
            };
            if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
                return Err(format!(
                    "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {:?}",
                    volume_name(&claim)
                ));
            }
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
            }
            if fully_bound(&claim) {
                out.bound.push(self.pv(volume_name(&claim)));
                continue;
            }
            let class_name = matching::claim_class(&claim);
            let class = (!class_name.is_empty())
                .then(|| self.classes.store().get(&ObjectRef::new(class_name)))
                .flatten();
            if !delays_binding(class.as_deref()) || !volume_name(&claim).is_empty() {
                immediate = true;
                continue;
            }
            out.delayed.push(self.delayed(claim, class));
        }
        if immediate {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        Ok(out)
    }

    fn delayed(
        &self,
        claim: Arc<PersistentVolumeClaim>,
        class: Option<Arc<StorageClass>>,
    ) -> Delayed {
        let key = util::key(claim.as_ref());
        let assumed = self.assumed();
        let selected = claim
            .annotations()
            .get(SELECTED_NODE)
            .or_else(|| assumed.claims.get(&key))
            .cloned();
        let class_name = matching::claim_class(&claim);
        let candidates = self
            .pvs
            .store()
            .state()
            .into_iter()
            .filter(|v| matching::volume_class(v) == class_name)
            .filter_map(|v| match assumed.volumes.get(&v.name_any()) {
                None => Some(v),
                Some(other) if *other != key => None,
                Some(_) => {
                    let mut promised = (*v).clone();
                    promised.spec.get_or_insert_default().claim_ref = Some(claim_ref(&claim));
                    Some(Arc::new(promised))
                }
            })
            .collect();
        Delayed {
            claim,
            selected,
            candidates,
            class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name}}}))
        .unwrap()
    }

    fn pv_on(name: &str, host: &str) -> Arc<PersistentVolume> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local", "hostPath": {"path": "/tmp/x"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions":
                    [{"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}},
            "status": {"phase": "Available"}}))
            .unwrap(),
        )
    }

    fn delayed(
        class: Option<serde_json::Value>,
        candidates: Vec<Arc<PersistentVolume>>,
    ) -> Delayed {
        Delayed {
            claim: Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "ns"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                    "resources": {"requests": {"storage": "1Gi"}}}}))
                .unwrap(),
            ),
            selected: None,
            candidates,
            class: class.map(|c| Arc::new(serde_json::from_value(c).unwrap())),
        }
    }

    #[test]
    fn bound_volumes_pin_the_pod_to_their_nodes() {
        let v = PodVolumes {
            bound: vec![Some(pv_on("a", "sim-1"))],
            delayed: vec![],
        };
        assert!(filter(&v, &node("sim-1")).is_ok());
        assert_eq!(
            filter(&v, &node("sim-0")),
            Err(Reason::Volume(NODE_CONFLICT.into()))
        );
        let missing = PodVolumes {
            bound: vec![None],
            delayed: vec![],
        };
        assert_eq!(
            filter(&missing, &node("sim-0")),
            Err(Reason::Volume(PV_NOT_EXIST.into()))
        );
    }

    #[test]
    fn delayed_claims_need_a_volume_or_a_provisioner() {
        let static_only = PodVolumes {
            bound: vec![],
            delayed: vec![delayed(None, vec![pv_on("a", "sim-1")])],
        };
        let plan = find(&static_only, &node("sim-1")).ok().unwrap();
        assert_eq!(plan.statics.len(), 1);
        assert_eq!(
            filter(&static_only, &node("sim-0")),
            Err(Reason::Volume(BIND_CONFLICT.into()))
        );
        let class = json!({"metadata": {"name": "local"}, "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"});
        let dynamic = PodVolumes {
            bound: vec![],
            delayed: vec![delayed(Some(class), vec![])],
        };
        let plan = find(&dynamic, &node("sim-0")).ok().unwrap();
        assert_eq!((plan.statics.len(), plan.provisions.len()), (0, 1));
        let mut chosen = dynamic.clone();
        chosen.delayed[0].selected = Some("sim-1".into());
        assert!(filter(&chosen, &node("sim-0")).is_err());
        assert!(filter(&chosen, &node("sim-1")).is_ok());
    }

    #[test]
    fn prefilter_failures_read_like_kube_schedulers() {
        assert_eq!(
            prefilter_message(2, "persistentvolumeclaim \"x\" not found"),
            "0/2 nodes are available: persistentvolumeclaim \"x\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }
}
