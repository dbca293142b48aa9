//! The watch cache: per resource, the current objects and a ring of recent changes in memory,
//! fed by one store watch. Watches (and lists at resourceVersion 0) are served from here, so
//! a thousand watchers cost one store watcher and one decode per change.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use minik_api::ResourceInfo;
use minik_store::{Backend, EventKind, ListOptions};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::resource_prefix;
use crate::rest::decode;

/// Changes kept per resource for watchers that start a little in the past.
const RING: usize = 10_000;
/// Changes broadcast to watchers before a slow one falls behind and catches up from the
/// ring (each slot is allocated up front, for every resource).
const WATCHER_BUFFER: usize = 512;

/// One change of one object, decoded once and shared by every watcher.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: i64,
    pub key: Arc<str>,
    pub deleted: bool,
    /// The object after the change (for a delete: as it was, with the delete's revision).
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    /// `{"type": ..., "object": ...}\n` for watchers that see this change as it is.
    pub line: OnceLock<Bytes>,
    /// The same without the object's managedFields, for the server's own components.
    pub lean_line: OnceLock<Bytes>,
}

impl Change {
    /// The event type a watcher without selectors sees.
    pub fn natural_kind(&self) -> &'static str {
        match (self.deleted, &self.prev) {
            (true, _) => "DELETED",
            (false, None) => "ADDED",
            (false, Some(_)) => "MODIFIED",
        }
    }

    /// Decode a store event and the object before it (for watches read from the store).
    pub fn from_store_with_prev(event: &minik_store::Event) -> Option<Change> {
        let prev = event
            .prev
            .as_ref()
            .and_then(|p| decode(p).ok())
            .map(Arc::new);
        Self::from_store(event, prev, None)
    }

    /// Decode a store event; `prev` is the object as the cache had it before (the store's
    /// copy of it is not decoded again), `written` the object put, already decoded (from a
    /// [`Hint`]). None: the event cannot be decoded.
    fn from_store(
        event: &minik_store::Event,
        prev: Option<Arc<Value>>,
        written: Option<Value>,
    ) -> Option<Change> {
        let rv = event.kv.mod_revision;
        let (deleted, object) = match (event.kind, written) {
            (EventKind::Delete, _) => {
                let mut obj = decode(event.prev.as_ref()?).ok()?;
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                (true, Arc::new(obj))
            }
            (EventKind::Put, Some(obj)) => (false, Arc::new(obj)),
            (EventKind::Put, None) => (false, Arc::new(decode(&event.kv).ok()?)),
        };
        Some(Change {
            rv,
            key: event.kv.key.clone(),
            deleted,
            object,
            prev: if deleted { None } else { prev },
            line: OnceLock::new(),
            lean_line: OnceLock::new(),
        })
    }
}

struct State {
    objects: BTreeMap<Arc<str>, Arc<Value>>,
    /// Newest revision applied.
    rv: i64,
    /// Revision of the newest change applied (at start: the revision listed).
    last_change: i64,
    /// Every change with a revision above this is in `ring`.
    floor: i64,
    ring: VecDeque<Arc<Change>>,
    tx: Option<broadcast::Sender<Arc<Change>>>,
}

/// The cache of one resource.
pub(crate) struct Cacher {
    state: Mutex<State>,
    /// The revision the cache is current to, for reads that must be consistent.
    current: tokio::sync::watch::Sender<i64>,
    /// Objects being written, by key (at most one per key: the newest).
    hints: Mutex<HashMap<String, Hint>>,
}

/// An object a write is about to put, with the bytes it is stored as: when the store's
/// event for the key carries exactly these bytes, the cache takes the object instead of
/// decoding them (the two are the same object; the writer had it decoded already).
struct Hint {
    id: u64,
    bytes: Vec<u8>,
    object: Value,
}

/// A hint given to a cache; dropped before [`Hinted::keep`] (the write failed), it is taken
/// back.
pub(crate) struct Hinted {
    /// None: the resource has no cache running.
    cacher: Option<Arc<Cacher>>,
    key: String,
    id: u64,
    kept: bool,
}

impl Hinted {
    /// The write succeeded: the hint stays until the cache sees the write.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Hinted {
    fn drop(&mut self) {
        let Some(cacher) = self.cacher.as_ref().filter(|_| !self.kept) else {
            return;
        };
        let mut hints = cacher.hints();
        if hints.get(&self.key).is_some_and(|h| h.id == self.id) {
            hints.remove(&self.key);
        }
    }
}

/// What a new watcher starts from.
pub(crate) struct Subscription {
    pub backlog: Vec<Arc<Change>>,
    pub rx: broadcast::Receiver<Arc<Change>>,
}

impl Cacher {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn alive(&self) -> bool {
        self.lock().tx.is_some()
    }

    fn hints(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hint>> {
        self.hints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The object the write of `kv` put, if a hint for it is waiting (with the write's
    /// resourceVersion, as decoding gives it).
    fn written(&self, kv: &minik_store::KeyValue) -> Option<Value> {
        let hint = self.hints().remove(&*kv.key)?;
        if hint.bytes != kv.value {
            return None;
        }
        let mut object = hint.object;
        crate::meta::meta_mut(&mut object)
            .ok()?
            .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        Some(object)
    }

    /// List the resource and start following the store.
    async fn start(store: Arc<dyn Backend>, info: &ResourceInfo) -> Result<Arc<Cacher>> {
        let prefix = resource_prefix(info);
        let mut objects = BTreeMap::new();
        let mut after = None;
        let mut revision = None;
        loop {
            let page = store
                .list(
                    &prefix,
                    ListOptions {
                        limit: 1000,
                        continue_after: after,
                        revision,
                    },
                )
                .await?;
            revision = Some(page.revision);
            for kv in &page.kvs {
                objects.insert(kv.key.clone(), Arc::new(decode(kv)?));
            }
            after = page.kvs.last().map(|kv| kv.key.to_string());
            if !page.more {
                break;
            }
        }
        let rv = revision.unwrap_or_default();
        let mut watch = store.watch(&prefix, rv + 1).await?;
        let cacher = Arc::new(Cacher {
            current: tokio::sync::watch::channel(rv).0,
            hints: Mutex::default(),
            state: Mutex::new(State {
                objects,
                rv,
                last_change: rv,
                floor: rv,
                ring: VecDeque::new(),
                tx: Some(broadcast::channel(WATCHER_BUFFER).0),
            }),
        });
        let weak = Arc::downgrade(&cacher);
        tokio::spawn(async move {
            while let Some(Ok(item)) = watch.recv_progress().await {
                let Some(cacher) = weak.upgrade() else { return };
                match item {
                    minik_store::Progress::Event(event) => cacher.apply(&event),
                    minik_store::Progress::UpTo(rv) => {
                        let mut s = cacher.lock();
                        s.rv = s.rv.max(rv);
                        let rv = s.rv;
                        drop(s);
                        cacher.current.send_replace(rv);
                    }
                }
            }
            // The store ended the watch (closed, compacted past us, or we fell behind):
            // end every watcher; the next request starts a fresh cache.
            if let Some(cacher) = weak.upgrade() {
                cacher.lock().tx = None;
            }
        });
        Ok(cacher)
    }

    /// Apply one store event. Only this task changes `objects`, so the previous object read
    /// before decoding is still the one the event replaces.
    fn apply(&self, event: &minik_store::Event) {
        let (prev, written) = match event.kind {
            EventKind::Put => (
                self.lock().objects.get(&event.kv.key).cloned(),
                self.written(&event.kv),
            ),
            EventKind::Delete => (None, None),
        };
        let Some(change) = Change::from_store(event, prev, written) else {
            return;
        };
        let change = Arc::new(change);
        let mut s = self.lock();
        s.last_change = change.rv;
        if change.deleted {
            s.objects.remove(&change.key);
        } else {
            s.objects.insert(change.key.clone(), change.object.clone());
        }
        s.rv = change.rv;
        s.ring.push_back(change.clone());
        while s.ring.len() > RING {
            if let Some(old) = s.ring.pop_front() {
                s.floor = old.rv;
            }
        }
        if let Some(tx) = &s.tx {
            let _ = tx.send(change.clone());
        }
        drop(s);
        self.current.send_replace(change.rv);
    }

    /// Wait (up to `patience`) until the cache has every change up to `rv`; whether it has.
    pub async fn wait_for(&self, rv: i64, patience: std::time::Duration) -> bool {
        let mut current = self.current.subscribe();
        tokio::time::timeout(patience, current.wait_for(|have| *have >= rv))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Revision of the newest change applied: it moves whenever an object changes.
    pub fn last_change(&self) -> i64 {
        self.lock().last_change
    }

    /// The object at `key`, as the cache has it.
    pub fn object(&self, key: &str) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// The objects under `prefix` now.
    pub fn objects(&self, prefix: &str) -> Vec<Arc<Value>> {
        under(&self.lock().objects, prefix)
    }

    /// The objects under `prefix` now, the revision they are at, and a subscription to
    /// every change after it.
    pub fn snapshot(&self, prefix: &str) -> Option<(i64, Vec<Arc<Value>>, Subscription)> {
        // One lock: the objects, their revision and the subscription agree.
        let s = self.lock();
        let rx = s.tx.as_ref()?.subscribe();
        let objects = under(&s.objects, prefix);
        Some((
            s.rv,
            objects,
            Subscription {
                backlog: Vec::new(),
                rx,
            },
        ))
    }

    /// Whether `subscribe(rv)` would succeed (cheaply: without collecting the backlog).
    pub fn reaches(&self, rv: i64) -> bool {
        let s = self.lock();
        rv >= s.floor && s.tx.is_some()
    }

    /// Changes after `rv` and a subscription to the ones to come; `None` when the cache
    /// does not reach back that far (the caller reads the store instead).
    pub fn subscribe(&self, rv: i64) -> Option<Subscription> {
        let s = self.lock();
        if rv < s.floor {
            return None;
        }
        let rx = s.tx.as_ref()?.subscribe();
        let backlog = s.ring.iter().filter(|c| c.rv > rv).cloned().collect();
        Some(Subscription { backlog, rx })
    }
}

/// The objects of `map` whose keys start with `prefix`.
fn under(map: &BTreeMap<Arc<str>, Arc<Value>>, prefix: &str) -> Vec<Arc<Value>> {
    map.range::<str, _>((
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Unbounded,
    ))
    .take_while(|(k, _)| k.starts_with(prefix))
    .map(|(_, v)| v.clone())
    .collect()
}

/// The caches of every resource, made on first use.
#[derive(Clone, Default)]
pub(crate) struct Caches {
    by_prefix: Arc<Mutex<HashMap<String, Arc<Cacher>>>>,
    /// One cache is started at a time.
    starting: Arc<tokio::sync::Mutex<()>>,
}

impl Caches {
    fn live(&self, prefix: &str) -> Option<Arc<Cacher>> {
        let map = self.by_prefix.lock().unwrap_or_else(|e| e.into_inner());
        map.get(prefix).filter(|c| c.alive()).cloned()
    }

    /// Hand the cache of `info`, if it runs, the object about to be stored at `key` as
    /// `bytes`; keep the result until the write is done.
    pub fn hint(&self, info: &ResourceInfo, key: &str, bytes: &[u8], object: Value) -> Hinted {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(cacher) = self.live(&resource_prefix(info)) else {
            // No cache runs: nothing to hand over, nothing to take back.
            return Hinted {
                cacher: None,
                key: String::new(),
                id,
                kept: true,
            };
        };
        let hint = Hint {
            id,
            bytes: bytes.to_vec(),
            object,
        };
        cacher.hints().insert(key.to_string(), hint);
        Hinted {
            cacher: Some(cacher),
            key: key.to_string(),
            id,
            kept: false,
        }
    }

    /// The object at `key` as the running cache of `info` has it, and its revision: where
    /// a compare-and-swap update may start without reading the store (the swap fails if
    /// the copy is stale). None when no cache runs or it lacks the object.
    pub fn cached(&self, info: &ResourceInfo, key: &str) -> Option<(i64, Arc<Value>)> {
        let obj = self.live(&resource_prefix(info))?.object(key)?;
        let revision = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)?
            .parse()
            .ok()?;
        Some((revision, obj))
    }

    pub async fn get(&self, store: &Arc<dyn Backend>, info: &ResourceInfo) -> Result<Arc<Cacher>> {
        let prefix = resource_prefix(info);
        if let Some(c) = self.live(&prefix) {
            return Ok(c);
        }
        let _one = self.starting.lock().await;
        if let Some(c) = self.live(&prefix) {
            return Ok(c);
        }
        let c = Cacher::start(store.clone(), info).await?;
        self.by_prefix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prefix, c.clone());
        Ok(c)
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
