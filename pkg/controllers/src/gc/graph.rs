//! The garbage collector's dependency graph (kube-controller-manager's GraphBuilder): every
//! object the monitors see, by uid, with its owners, and for each owner uid the objects that
//! name it. Each change says which objects to look at again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::discovery::Resource;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// One object as the graph knows it.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Arc<Resource>,
    pub namespace: Option<String>,
    pub name: String,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Node {
    pub fn from_meta(kind: Arc<Resource>, meta: &ObjectMeta) -> Option<(String, Node)> {
        let uid = meta.uid.clone()?;
        let node = Node {
            kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            owners: meta.owner_references.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        };
        Some((uid, node))
    }

    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: it waits for its blocking dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has(FOREGROUND)
    }

    /// Being deleted with its dependents orphaned.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has(ORPHAN)
    }
}

/// What to do about an object (by uid).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Task {
    /// Delete it if its owners are gone; finish its foreground deletion.
    Delete(String),
    /// Take its uid out of its dependents' ownerReferences, then its `orphan` finalizer.
    Orphan(String),
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid -> uids of the objects naming it as an owner.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The known objects naming `owner` as an owner.
    pub fn dependents(&self, owner: &str) -> Vec<(String, &Node)> {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n)))
            .collect()
    }

    /// The dependents that block `owner`'s foreground deletion.
    pub fn blocking(&self, owner: &str) -> Vec<(String, &Node)> {
        let mut deps = self.dependents(owner);
        deps.retain(|(_, n)| {
            n.owners
                .iter()
                .any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
        });
        deps
    }

    /// Uids of the objects of `kind`.
    pub fn uids_of(&self, kind: &Resource) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.kind.ar.group == kind.ar.group && n.kind.ar.plural == kind.ar.plural)
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// An object was added or changed.
    pub fn upsert(&mut self, uid: String, node: Node) -> Vec<Task> {
        let mut tasks = Vec::new();
        let old = self.nodes.get(&uid).cloned();
        let old_owners = old.as_ref().map(|o| o.owners.clone()).unwrap_or_default();
        for r in &old_owners {
            if !node.owners.iter().any(|n| n.uid == r.uid) {
                self.unlink(&r.uid, &uid);
            }
            // An owner waiting for this dependent may go on if it no longer blocks it.
            let still_blocks = node
                .owners
                .iter()
                .any(|n| n.uid == r.uid && n.block_owner_deletion == Some(true));
            if !still_blocks && self.waiting(&r.uid) {
                tasks.push(Task::Delete(r.uid.clone()));
            }
        }
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        if !node.owners.is_empty() && old_owners != node.owners {
            tasks.push(Task::Delete(uid.clone()));
        }
        if node.orphaning() {
            tasks.push(Task::Orphan(uid.clone()));
        }
        if node.deleting_dependents() {
            tasks.push(Task::Delete(uid.clone()));
            if !old.as_ref().is_some_and(Node::deleting_dependents) {
                let deps = self
                    .dependents(&uid)
                    .into_iter()
                    .map(|(d, _)| Task::Delete(d));
                tasks.extend(deps);
            }
        }
        self.nodes.insert(uid, node);
        tasks
    }

    /// An object is gone: its dependents may be orphans now, and owners waiting for it may
    /// go on.
    pub fn remove(&mut self, uid: &str) -> Vec<Task> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut tasks: Vec<Task> = self
            .dependents(uid)
            .into_iter()
            .map(|(d, _)| Task::Delete(d))
            .collect();
        for r in &node.owners {
            self.unlink(&r.uid, uid);
            if self.waiting(&r.uid) {
                tasks.push(Task::Delete(r.uid.clone()));
            }
        }
        tasks
    }

    fn waiting(&self, owner: &str) -> bool {
        self.nodes.get(owner).is_some_and(Node::deleting_dependents)
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::discovery::ApiResource;

    fn kind() -> Arc<Resource> {
        Arc::new(Resource {
            ar: ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            namespaced: true,
            verbs: vec![],
        })
    }

    fn node(owners: &[(&str, bool)], finalizers: &[&str], deleting: bool) -> Node {
        Node {
            kind: kind(),
            namespace: Some("default".into()),
            name: "x".into(),
            owners: owners
                .iter()
                .map(|(uid, block)| OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: format!("owner-{uid}"),
                    uid: uid.to_string(),
                    block_owner_deletion: Some(*block),
                    controller: None,
                })
                .collect(),
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            deleting,
        }
    }

    fn delete(uid: &str) -> Task {
        Task::Delete(uid.into())
    }

    #[test]
    fn a_new_dependent_is_checked_and_an_owner_going_checks_its_dependents() {
        let mut g = Graph::default();
        assert_eq!(g.upsert("o".into(), node(&[], &[], false)), vec![]);
        assert_eq!(
            g.upsert("d".into(), node(&[("o", false)], &[], false)),
            vec![delete("d")]
        );
        // An unrelated change (same owners) asks for nothing.
        assert_eq!(
            g.upsert("d".into(), node(&[("o", false)], &[], false)),
            vec![]
        );
        assert_eq!(g.remove("o"), vec![delete("d")]);
        assert_eq!(g.dependents("o").len(), 1, "it still names the owner");
        assert_eq!(g.remove("d"), vec![]);
        assert!(g.dependents("o").is_empty());
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents() {
        let mut g = Graph::default();
        g.upsert("o".into(), node(&[], &[], false));
        g.upsert("a".into(), node(&[("o", true)], &[], false));
        g.upsert("b".into(), node(&[("o", false)], &[], false));
        let tasks = g.upsert("o".into(), node(&[], &[FOREGROUND], true));
        assert_eq!(tasks[0], delete("o"));
        let mut deps: Vec<Task> = tasks[1..].to_vec();
        deps.sort_by_key(|t| format!("{t:?}"));
        assert_eq!(deps, vec![delete("a"), delete("b")]);
        let blocking: Vec<String> = g.blocking("o").into_iter().map(|(u, _)| u).collect();
        assert_eq!(blocking, vec!["a".to_string()]);
        // The blocking dependent going lets the owner go on.
        assert!(g.remove("a").contains(&delete("o")));
        assert!(g.blocking("o").is_empty());
    }

    #[test]
    fn an_orphaning_owner_is_queued_for_orphaning() {
        let mut g = Graph::default();
        g.upsert("o".into(), node(&[], &[], false));
        let tasks = g.upsert("o".into(), node(&[], &[ORPHAN], true));
        assert_eq!(tasks, vec![Task::Orphan("o".into())]);
        // Not yet deleted: the finalizer alone does nothing.
        assert_eq!(g.upsert("p".into(), node(&[], &[ORPHAN], false)), vec![]);
    }

    #[test]
    fn dropping_a_blocking_reference_releases_a_waiting_owner() {
        let mut g = Graph::default();
        g.upsert("o".into(), node(&[], &[FOREGROUND], true));
        g.upsert("a".into(), node(&[("o", true)], &[], false));
        let tasks = g.upsert("a".into(), node(&[], &[], false));
        assert_eq!(tasks, vec![delete("o")]);
        assert!(g.dependents("o").is_empty());
    }
}
