//! attemptToDelete: look at an object's owners and delete it once none of them exists, or
//! finish an owner's foreground deletion once its blocking dependents are gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};

use super::Collector;
use super::discovery::{Resource, parse_group_version};
use super::graph::{self, Node};
use crate::Result;

/// When to look again at an object whose owner's kind is not served (yet).
const UNKNOWN_KIND_RETRY: Duration = Duration::from_secs(30);

/// What an ownerReference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Exists and is not being deleted in the foreground.
    Solid,
    /// Gone, or replaced by another object of the same name.
    Dangling,
    /// Being deleted in the foreground: its dependents go first.
    Waiting,
}

/// Why an owner cannot be looked up.
enum Unresolved {
    /// Its kind is not served (a custom resource not yet defined, say): look later.
    UnknownKind,
    /// A cluster-scoped object naming a namespaced owner: never resolvable.
    Invalid,
}

/// What to do with an object given what its owners are.
#[derive(Debug, PartialEq)]
enum Verdict {
    Keep,
    /// Remove these (dangling or waiting) owners from its references.
    Release(HashSet<String>),
    /// Delete it with this propagation.
    Delete(PropagationPolicy),
}

impl Collector {
    pub(super) async fn attempt_to_delete(&self, uid: &str) -> Result<Option<Duration>> {
        let Some(node) = self.graph().get(uid).cloned() else {
            return Ok(None);
        };
        if node.deleting {
            if node.deleting_dependents() {
                self.finish_foreground(uid).await?;
            }
            return Ok(None);
        }
        let ns = node.namespace.as_deref();
        let Some(live) = self.live(&node.kind, ns, &node.name, uid).await? else {
            return Ok(None);
        };
        let refs = live.metadata.owner_references.clone().unwrap_or_default();
        if refs.is_empty() || live.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let mut owners = Vec::with_capacity(refs.len());
        for r in &refs {
            match self.classify(r, &node).await? {
                Ok(o) => owners.push((r.uid.clone(), o)),
                Err(Unresolved::UnknownKind) => return Ok(Some(UNKNOWN_KIND_RETRY)),
                Err(Unresolved::Invalid) => {
                    tracing::debug!(
                        uid,
                        owner = r.name,
                        "cluster-scoped object with a namespaced owner"
                    );
                    return Ok(None);
                }
            }
        }
        let has_dependents = !self.graph().dependents(uid).is_empty();
        let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
        match verdict(&owners, has_dependents, &finalizers) {
            Verdict::Keep => Ok(None),
            Verdict::Release(uids) => self.remove_owners(uid, &uids).await.map(|()| None),
            Verdict::Delete(policy) => {
                if policy == PropagationPolicy::Foreground && self.in_foreground_cycle(uid) {
                    // Its dependent waits for it while it waits for its owner: unblock.
                    self.unblock(uid).await?;
                }
                let rv = live.metadata.resource_version.clone();
                self.delete(&node, uid, rv, &refs, policy)
                    .await
                    .map(|()| None)
            }
        }
    }

    /// An owner being deleted in the foreground: its dependents go, then its finalizer.
    async fn finish_foreground(&self, uid: &str) -> Result<()> {
        let blocking: Vec<(String, bool)> = self
            .graph()
            .blocking(uid)
            .into_iter()
            .map(|(d, n)| (d, n.deleting_dependents()))
            .collect();
        if blocking.is_empty() {
            return self.remove_finalizer(uid, graph::FOREGROUND).await;
        }
        let tasks = blocking
            .into_iter()
            .filter(|(_, waiting)| !waiting)
            .map(|(d, _)| graph::Task::Delete(d))
            .collect();
        self.enqueue(tasks);
        Ok(())
    }

    /// Whether one of `uid`'s dependents is itself being deleted in the foreground.
    fn in_foreground_cycle(&self, uid: &str) -> bool {
        self.graph()
            .dependents(uid)
            .iter()
            .any(|(_, n)| n.deleting_dependents())
    }

    async fn unblock(&self, uid: &str) -> Result<()> {
        let Some(node) = self.graph().get(uid).cloned() else {
            return Ok(());
        };
        self.patch_meta(
            &node.kind,
            node.namespace.as_deref(),
            &node.name,
            uid,
            |m| {
                let mut refs = m.owner_references.clone().unwrap_or_default();
                let blocking = refs.iter().any(|r| r.block_owner_deletion == Some(true));
                refs.iter_mut()
                    .for_each(|r| r.block_owner_deletion = Some(false));
                blocking.then(|| serde_json::json!({ "ownerReferences": refs }))
            },
        )
        .await
    }

    /// Delete the object if it is unchanged; if only other fields changed, delete it anyway.
    async fn delete(
        &self,
        node: &Node,
        uid: &str,
        rv: Option<String>,
        refs: &[OwnerReference],
        policy: PropagationPolicy,
    ) -> Result<()> {
        let api = self.api(&node.kind, node.namespace.as_deref());
        let params = |rv: Option<String>| DeleteParams {
            propagation_policy: Some(policy.clone()),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: rv,
            }),
            ..Default::default()
        };
        let outcome = match api.delete(&node.name, &params(rv)).await {
            Err(e) if crate::util::code(&e) == Some(409) => {
                let Some(now) = self
                    .live(&node.kind, node.namespace.as_deref(), &node.name, uid)
                    .await?
                else {
                    return Ok(());
                };
                if now.metadata.owner_references.as_deref().unwrap_or_default() != refs {
                    // Its owners changed: look again.
                    self.queue.add(format!("delete/{uid}"));
                    return Ok(());
                }
                api.delete(&node.name, &params(None)).await.map(|_| ())
            }
            other => other.map(|_| ()),
        };
        match outcome {
            Ok(()) => {
                tracing::debug!(uid, name = node.name, ?policy, "garbage collector deleted");
                Ok(())
            }
            Err(e) if crate::util::code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Is the owner there (by the graph, else by asking the API server)?
    async fn classify(
        &self,
        r: &OwnerReference,
        dependent: &Node,
    ) -> Result<Result<Owner, Unresolved>> {
        if let Some(owner) = self.graph().get(&r.uid) {
            return Ok(Ok(if owner.deleting_dependents() {
                Owner::Waiting
            } else {
                Owner::Solid
            }));
        }
        if self
            .absent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&r.uid)
        {
            return Ok(Ok(Owner::Dangling));
        }
        let Some(kind) = self.resolve(r) else {
            return Ok(Err(Unresolved::UnknownKind));
        };
        if kind.namespaced && dependent.namespace.is_none() {
            return Ok(Err(Unresolved::Invalid));
        }
        let ns = dependent.namespace.as_deref();
        let found = self.api(&kind, ns).get_metadata_opt(&r.name).await?;
        match found.filter(|o| o.metadata.uid.as_deref() == Some(r.uid.as_str())) {
            Some(o) => {
                let fg = o
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == graph::FOREGROUND);
                let waiting = o.metadata.deletion_timestamp.is_some() && fg;
                Ok(Ok(if waiting {
                    Owner::Waiting
                } else {
                    Owner::Solid
                }))
            }
            None => {
                let mut absent = self.absent.lock().unwrap_or_else(|p| p.into_inner());
                if absent.len() > 10_000 {
                    absent.clear();
                }
                absent.insert(r.uid.clone());
                Ok(Ok(Owner::Dangling))
            }
        }
    }

    fn resolve(&self, r: &OwnerReference) -> Option<Arc<Resource>> {
        let (group, _) = parse_group_version(&r.api_version).ok()?;
        let kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        kinds.get(&(group.to_string(), r.kind.clone())).cloned()
    }
}

/// kube-controller-manager's decision in attemptToDeleteItem.
fn verdict(owners: &[(String, Owner)], has_dependents: bool, finalizers: &[String]) -> Verdict {
    let of = |kind: Owner| {
        owners
            .iter()
            .filter(move |(_, o)| *o == kind)
            .map(|(u, _)| u.clone())
    };
    if owners.iter().any(|(_, o)| *o == Owner::Solid) {
        let release: HashSet<String> = of(Owner::Dangling).chain(of(Owner::Waiting)).collect();
        return if release.is_empty() {
            Verdict::Keep
        } else {
            Verdict::Release(release)
        };
    }
    if of(Owner::Waiting).next().is_some() && has_dependents {
        return Verdict::Delete(PropagationPolicy::Foreground);
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    Verdict::Delete(if has(graph::ORPHAN) {
        PropagationPolicy::Orphan
    } else if has(graph::FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(list: &[(&str, Owner)]) -> Vec<(String, Owner)> {
        list.iter().map(|(u, o)| (u.to_string(), *o)).collect()
    }

    #[test]
    fn a_solid_owner_keeps_the_object_and_the_others_are_released() {
        assert_eq!(
            verdict(&owners(&[("a", Owner::Solid)]), false, &[]),
            Verdict::Keep
        );
        let v = verdict(
            &owners(&[
                ("a", Owner::Solid),
                ("b", Owner::Dangling),
                ("c", Owner::Waiting),
            ]),
            true,
            &[],
        );
        assert_eq!(
            v,
            Verdict::Release(["b".to_string(), "c".to_string()].into())
        );
    }

    #[test]
    fn without_solid_owners_the_object_is_deleted() {
        let bg = verdict(&owners(&[("a", Owner::Dangling)]), true, &[]);
        assert_eq!(bg, Verdict::Delete(PropagationPolicy::Background));
        // An owner waiting for its dependents: ones with dependents of their own go in the
        // foreground, others in the background.
        let fg = verdict(&owners(&[("a", Owner::Waiting)]), true, &[]);
        assert_eq!(fg, Verdict::Delete(PropagationPolicy::Foreground));
        let leaf = verdict(&owners(&[("a", Owner::Waiting)]), false, &[]);
        assert_eq!(leaf, Verdict::Delete(PropagationPolicy::Background));
        // Its own finalizers say how.
        let orphan = verdict(&owners(&[("a", Owner::Dangling)]), true, &["orphan".into()]);
        assert_eq!(orphan, Verdict::Delete(PropagationPolicy::Orphan));
    }
}
