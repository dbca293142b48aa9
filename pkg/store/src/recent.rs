//! The newest value of recently written keys, kept by the writer so that a read at the
//! current revision of a key written a moment ago (an update reads what it changes first)
//! skips the database. The writer changes it and the current revision under one lock, so a
//! reader always gets a value and a revision that agree.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::types::{Event, EventKind, KeyValue};

/// How many keys are kept; the oldest written go first.
const KEYS: usize = 16_384;

#[derive(Default)]
struct Entries {
    values: HashMap<Arc<str>, KeyValue>,
    /// Keys in the order written, with the revision written (a key written again appears
    /// again; only the entry of its newest write evicts it).
    order: VecDeque<(Arc<str>, i64)>,
}

#[derive(Default)]
pub(crate) struct Recent {
    entries: std::sync::Mutex<Entries>,
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record committed `events` and then move `current` to `revision`, as one step for
    /// readers.
    pub fn commit(&self, events: &[Event], current: &AtomicI64, revision: i64) {
        let mut e = self.lock();
        for event in events {
            let key = event.kv.key.clone();
            match event.kind {
                EventKind::Put => {
                    e.order.push_back((key.clone(), event.kv.mod_revision));
                    e.values.insert(key, event.kv.clone());
                }
                // Not kept: a read finds the key gone in the database.
                EventKind::Delete => {
                    e.values.remove(&key);
                }
            }
        }
        while e.order.len() > KEYS {
            let Some((key, rev)) = e.order.pop_front() else {
                break;
            };
            if e.values.get(&key).is_some_and(|kv| kv.mod_revision == rev) {
                e.values.remove(&key);
            }
        }
        current.store(revision, Ordering::Release);
    }

    /// The newest value of `key` and the current revision, if the key was written lately.
    pub fn get(&self, key: &str, current: &AtomicI64) -> Option<(i64, KeyValue)> {
        let e = self.lock();
        let kv = e.values.get(key)?.clone();
        Some((current.load(Ordering::Acquire), kv))
    }

    /// Forget everything (after a commit that failed: what landed is unknown).
    pub fn clear(&self) {
        *self.lock() = Entries::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(key: &str, rev: i64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: Arc::from(key),
                value: Bytes::from(format!("{key}@{rev}")),
                create_revision: 1,
                mod_revision: rev,
            },
            prev: None,
        }
    }

    #[test]
    fn newest_value_with_the_revision_it_was_committed_at() {
        let (recent, current) = (Recent::default(), AtomicI64::new(0));
        recent.commit(&[put("/a", 1), put("/b", 2)], &current, 2);
        recent.commit(&[put("/a", 3)], &current, 3);
        let (rev, kv) = recent.get("/a", &current).unwrap();
        assert_eq!((rev, kv.mod_revision, &kv.value[..]), (3, 3, &b"/a@3"[..]));
        assert_eq!(recent.get("/b", &current).unwrap().1.mod_revision, 2);
        assert!(recent.get("/c", &current).is_none());
    }

    #[test]
    fn deletes_and_clear_forget_keys() {
        let (recent, current) = (Recent::default(), AtomicI64::new(0));
        recent.commit(&[put("/a", 1)], &current, 1);
        let mut del = put("/a", 2);
        del.kind = EventKind::Delete;
        recent.commit(&[del], &current, 2);
        assert!(recent.get("/a", &current).is_none());
        recent.commit(&[put("/b", 3)], &current, 3);
        recent.clear();
        assert!(recent.get("/b", &current).is_none());
    }

    #[test]
    fn the_oldest_written_keys_go_first_and_rewrites_stay() {
        let (recent, current) = (Recent::default(), AtomicI64::new(0));
        recent.commit(&[put("/keep", 1)], &current, 1);
        let mut rev = 1;
        for i in 0..KEYS + 10 {
            rev += 1;
            recent.commit(&[put(&format!("/k{i}"), rev)], &current, rev);
            if i == KEYS {
                // Written again: evicting its first write must not drop it.
                rev += 1;
                recent.commit(&[put("/keep", rev)], &current, rev);
            }
        }
        assert!(recent.get("/k0", &current).is_none());
        assert!(recent.get(&format!("/k{}", KEYS + 9), &current).is_some());
        assert!(recent.get("/keep", &current).is_some());
        assert!(recent.lock().values.len() <= KEYS);
    }
}
