//! What a controller is waiting to see in its cache after its own writes (client-go's
//! "expectations"): pods it created must appear and pods it deleted must disappear before it
//! counts again, or it would create or delete twice. Forgotten after a minute, in case an
//! event was missed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Pending {
    adds: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

/// Per controller key: uids of pods created and deleted but not yet seen so.
#[derive(Default)]
pub struct Expectations(Mutex<HashMap<String, Pending>>);

impl Expectations {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Pending>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn created(&self, key: &str, uid: String) {
        self.with(|m| {
            let p = m.entry(key.to_string()).or_default();
            p.since.get_or_insert_with(Instant::now);
            p.adds.insert(uid);
        });
    }

    pub fn deleted(&self, key: &str, uid: String) {
        self.with(|m| {
            let p = m.entry(key.to_string()).or_default();
            p.since.get_or_insert_with(Instant::now);
            p.deletes.insert(uid);
        });
    }

    /// Whether the cache shows everything written for `key`: `present(uid)` says whether a
    /// pod is in the cache and not being deleted.
    pub fn satisfied(&self, key: &str, present: impl Fn(&str) -> Option<bool>) -> bool {
        self.with(|m| {
            let Some(p) = m.get_mut(key) else {
                return true;
            };
            p.adds.retain(|uid| present(uid).is_none());
            p.deletes.retain(|uid| present(uid) == Some(true));
            let done = (p.adds.is_empty() && p.deletes.is_empty())
                || p.since.is_some_and(|s| s.elapsed() > TTL);
            if done {
                m.remove(key);
            }
            done
        })
    }

    pub fn forget(&self, key: &str) {
        self.with(|m| m.remove(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_creates_to_appear_and_deletes_to_go() {
        let e = Expectations::default();
        e.created("ns/rs", "a".into());
        e.deleted("ns/rs", "b".into());
        // Neither seen yet: "a" not in the cache, "b" still there.
        assert!(!e.satisfied("ns/rs", |u| (u == "b").then_some(true)));
        // "a" is seen; "b" still there, not yet being deleted.
        assert!(!e.satisfied("ns/rs", |u| (u == "a" || u == "b").then_some(true)));
        // "b" now has a deletionTimestamp.
        assert!(e.satisfied("ns/rs", |u| match u {
            "b" => Some(false),
            _ => None,
        }));
        assert!(e.satisfied("other", |_| None));
    }
}
