//! The scheduler's view of the cluster: per node its allocatable resources, what its pods
//! request, the host ports they hold and the pods themselves (for affinity and spread).
//! Pods the scheduler has placed but whose binding is not yet seen are "assumed".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use crate::resources::{self, Res};

/// A pod as the scheduler accounts it on a node.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub requests: Res,
    pub nonzero: (i64, i64),
    pub ports: Vec<(String, i32, String)>,
    pub priority: i32,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        PodInfo {
            requests: resources::pod_requests(&pod),
            nonzero: resources::nonzero_requests(&pod),
            ports: resources::host_ports(&pod),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            pod,
        }
    }

    pub fn uid(&self) -> String {
        self.pod.uid().unwrap_or_default()
    }
}

/// One node and what is on it.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub node: Arc<Node>,
    pub allocatable: Res,
    pub requested: Res,
    pub nonzero: (i64, i64),
    pub pods: HashMap<String, PodInfo>,
}

impl NodeState {
    fn new(node: Arc<Node>) -> Self {
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Res::from_map)
            .unwrap_or_default();
        NodeState {
            node,
            allocatable,
            requested: Res::default(),
            nonzero: (0, 0),
            pods: HashMap::new(),
        }
    }

    pub fn name(&self) -> String {
        self.node.name_any()
    }

    pub fn add(&mut self, info: PodInfo) {
        self.requested.add(&info.requests);
        self.nonzero.0 += info.nonzero.0;
        self.nonzero.1 += info.nonzero.1;
        self.pods.insert(info.uid(), info);
    }

    pub fn remove(&mut self, uid: &str) -> Option<PodInfo> {
        let info = self.pods.remove(uid)?;
        self.requested.sub(&info.requests);
        self.nonzero.0 -= info.nonzero.0;
        self.nonzero.1 -= info.nonzero.1;
        Some(info)
    }

    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        self.node.labels()
    }
}

#[derive(Default)]
pub struct Cache {
    pub nodes: HashMap<String, NodeState>,
    /// Node names in a stable order, for the rotating search.
    pub order: Vec<String>,
    /// uid -> the node it is on.
    placed: HashMap<String, String>,
    /// Placed by us, binding not yet seen.
    pub assumed: HashSet<String>,
    /// Pods with required anti-affinity: uid -> node (few; every placement checks them).
    pub with_anti: HashMap<String, String>,
    /// Pods on nodes we have not seen yet: node -> pods.
    waiting: HashMap<String, Vec<PodInfo>>,
}

impl Cache {
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.name_any();
        match self.nodes.get_mut(&name) {
            Some(state) => {
                let fresh = NodeState::new(node);
                state.node = fresh.node;
                state.allocatable = fresh.allocatable;
            }
            None => {
                let mut state = NodeState::new(node);
                for info in self.waiting.remove(&name).unwrap_or_default() {
                    state.add(info);
                }
                self.nodes.insert(name.clone(), state);
                self.order.push(name);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(state) = self.nodes.remove(name) {
            for uid in state.pods.keys() {
                self.placed.remove(uid);
            }
        }
        self.order.retain(|n| n != name);
    }

    /// Account a pod on `node` (again: its old accounting goes first).
    pub fn add_pod(&mut self, pod: Arc<Pod>, node: &str) {
        let info = PodInfo::new(pod);
        let uid = info.uid();
        self.remove_pod(&uid);
        let anti = info
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        if anti {
            self.with_anti.insert(uid.clone(), node.to_string());
        }
        self.placed.insert(uid, node.to_string());
        match self.nodes.get_mut(node) {
            Some(state) => state.add(info),
            None => self.waiting.entry(node.to_string()).or_default().push(info),
        }
    }

    pub fn remove_pod(&mut self, uid: &str) {
        self.assumed.remove(uid);
        self.with_anti.remove(uid);
        let Some(node) = self.placed.remove(uid) else {
            return;
        };
        match self.nodes.get_mut(&node) {
            Some(state) => {
                state.remove(uid);
            }
            None => {
                if let Some(w) = self.waiting.get_mut(&node) {
                    w.retain(|p| p.uid() != uid);
                }
            }
        }
    }

    pub fn assume(&mut self, pod: Arc<Pod>, node: &str) {
        let uid = pod.uid().unwrap_or_default();
        self.add_pod(pod, node);
        self.assumed.insert(uid);
    }

    /// Where a pod is accounted, if anywhere.
    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.placed.get(uid).map(String::as_str)
    }
}
