//! The RBAC authorizer's memory: the rules that apply to a user (name and groups) in a
//! namespace, resolved once and reused until a Role, ClusterRole, RoleBinding or
//! ClusterRoleBinding changes, so that a decision is a hash lookup plus matching the rules.
//!
//! The whole cache belongs to one version: the revisions of the newest change the watch
//! caches of the four RBAC resources have applied. When any of them moves, every entry is
//! dropped. Rules are resolved from the same watch caches after the version was read, so an
//! entry is never older than the version it is kept under.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use minik_registry::Registry;
use serde_json::Value;

use super::Attributes;
use super::rbac::{self, rbac};
use crate::authn::UserInfo;

/// Entries kept at most; the cache starts over when it is full.
const MAX_ENTRIES: usize = 10_000;

/// The resources whose changes invalidate the cache.
const RESOURCES: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// The last change of each of `RESOURCES`.
type Version = [i64; 4];

/// The rules of one user in one namespace.
struct Entry {
    name: String,
    groups: Vec<String>,
    namespace: String,
    rules: Arc<Vec<Value>>,
}

impl Entry {
    fn is(&self, user: &UserInfo, namespace: &str) -> bool {
        self.name == user.name && self.groups == user.groups && self.namespace == namespace
    }
}

#[derive(Default)]
struct State {
    version: Option<Version>,
    /// Entries by the hash of (user name, groups, namespace).
    entries: HashMap<u64, Vec<Entry>>,
    len: usize,
}

/// Resolved RBAC rules per (user name, groups, namespace), shared by every request of a
/// server.
#[derive(Default)]
pub struct RbacCache {
    hasher: RandomState,
    state: Mutex<State>,
}

/// The version the watch caches are at now (None: one of them cannot be read).
async fn version(registry: &Registry) -> Option<Version> {
    let mut v = Version::default();
    for (slot, plural) in v.iter_mut().zip(RESOURCES) {
        *slot = registry.last_change(rbac(plural)).await.ok()?;
    }
    Some(v)
}

impl RbacCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, user: &UserInfo, namespace: &str) -> u64 {
        self.hasher
            .hash_one((user.name.as_str(), user.groups.as_slice(), namespace))
    }

    /// The cached rules, after moving the cache to `v` if that is newer.
    fn lookup(&self, v: Version, key: u64, user: &UserInfo, ns: &str) -> Option<Arc<Vec<Value>>> {
        let mut s = self.lock();
        if s.version != Some(v) {
            // A version read before the cache moved on is older: no entry is for it.
            let newer = s
                .version
                .is_none_or(|have| v.iter().zip(have).all(|(new, old)| *new >= old));
            if !newer {
                return None;
            }
            *s = State {
                version: Some(v),
                ..State::default()
            };
        }
        s.entries
            .get(&key)?
            .iter()
            .find(|e| e.is(user, ns))
            .map(|e| e.rules.clone())
    }

    /// Keep rules resolved at `v` (unless the cache has moved on meanwhile).
    fn insert(&self, v: Version, key: u64, user: &UserInfo, ns: &str, rules: &Arc<Vec<Value>>) {
        let mut s = self.lock();
        if s.version != Some(v) {
            return;
        }
        if s.len >= MAX_ENTRIES {
            s.entries.clear();
            s.len = 0;
        }
        let bucket = s.entries.entry(key).or_default();
        if bucket.iter().any(|e| e.is(user, ns)) {
            return;
        }
        bucket.push(Entry {
            name: user.name.clone(),
            groups: user.groups.clone(),
            namespace: ns.to_string(),
            rules: rules.clone(),
        });
        s.len += 1;
    }

    /// Every rule that applies to `user`: cluster-wide ones, and those of `ns` (if any).
    pub async fn rules(&self, registry: &Registry, user: &UserInfo, ns: &str) -> Arc<Vec<Value>> {
        let Some(v) = version(registry).await else {
            return Arc::new(rbac::rules_for(registry, user, ns).await);
        };
        let key = self.key(user, ns);
        if let Some(rules) = self.lookup(v, key, user, ns) {
            return rules;
        }
        let rules = Arc::new(rbac::rules_for(registry, user, ns).await);
        self.insert(v, key, user, ns, &rules);
        rules
    }

    /// Whether RBAC allows `user` what `a` describes.
    pub async fn allows(&self, registry: &Registry, user: &UserInfo, a: &Attributes) -> bool {
        self.rules(registry, user, &a.namespace)
            .await
            .iter()
            .any(|r| rbac::rule_allows(r, a))
    }

    /// How many (user, namespace) entries are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len
    }
}
