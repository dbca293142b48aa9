//! A shared informer: one watch per resource, a local cache every controller reads, and
//! handlers told of each change so they can queue the keys it concerns.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Applied,
    Deleted,
}

type Handler<K> = Arc<dyn Fn(&Arc<K>, Change) + Send + Sync>;

/// The objects an informer (or another writer) holds. Each object is kept as it was
/// decoded, shared by the cache and every reader, never copied (kube's reflector copies
/// each object it is sent).
pub struct Store<K: Resource<DynamicType = ()>> {
    objects: Arc<RwLock<HashMap<ObjectRef<K>, Arc<K>>>>,
}

impl<K: Resource<DynamicType = ()>> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            objects: self.objects.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: Arc::default(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Store<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ObjectRef<K>, Arc<K>>> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ObjectRef<K>, Arc<K>>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The object `key` names.
    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every object.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// Add or replace `obj`.
    pub fn insert(&self, obj: Arc<K>) {
        self.write().insert(ObjectRef::from_obj(&*obj), obj);
    }

    /// Remove the object `obj` names.
    pub fn remove(&self, obj: &K) {
        self.write().remove(&ObjectRef::from_obj(obj));
    }

    fn replace(&self, objects: HashMap<ObjectRef<K>, Arc<K>>) {
        *self.write() = objects;
    }
}

/// One resource's watch and cache.
pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    /// Set by the one `run`.
    running: AtomicBool,
    handlers: Mutex<Vec<Handler<K>>>,
    /// True once the first list is in the cache.
    ready: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        Self::with_config(api, watcher::Config::default())
    }

    /// An informer of the objects `config` selects (e.g. a kubelet's pods, by field).
    pub fn with_config(api: Api<K>, config: watcher::Config) -> Arc<Self> {
        Arc::new(Informer {
            api,
            config,
            store: Store::default(),
            running: AtomicBool::new(false),
            handlers: Mutex::default(),
            ready: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The cache (complete once `synced` returns).
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// The cached namespaced object a queue key (`namespace/name`) names, with its namespace.
    pub fn namespaced<'k>(&self, key: &'k str) -> Option<(&'k str, Arc<K>)> {
        let (ns, name) = key.split_once('/')?;
        let obj = self.store.get(&ObjectRef::new(name).within(ns))?;
        Some((ns, obj))
    }

    /// Wait until the first list has filled the cache (any number of tasks may wait; kube's
    /// `Store::wait_until_ready` wakes only one of them).
    pub async fn synced(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Whether the first list is in the cache.
    pub fn is_synced(&self) -> bool {
        *self.ready.borrow()
    }

    /// Call `f` on every change from now on (handlers are added before `run`).
    pub fn on(&self, f: impl Fn(&K, Change) + Send + Sync + 'static) {
        self.on_shared(move |o: &Arc<K>, change| f(o, change));
    }

    /// `on`, with the object as the cache shares it (to keep it without copying it).
    pub fn on_shared(&self, f: impl Fn(&Arc<K>, Change) + Send + Sync + 'static) {
        self.handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(f));
    }

    fn notify(&self, obj: &Arc<K>, change: Change) {
        let handlers = self
            .handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for h in handlers {
            h(obj, change);
        }
    }

    /// Watch until `stop` (once; later calls return at once).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let stream = watcher(self.api.clone(), self.config.clone()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        // A (re)list fills a new map that replaces the cache when it is complete; its
        // objects are told then, so handlers that read the cache see the whole list.
        let mut listed: Vec<Arc<K>> = Vec::new();
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(watcher::Event::Apply(o))) => {
                    let o = Arc::new(o);
                    self.store.insert(o.clone());
                    self.notify(&o, Change::Applied);
                }
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(o))) => listed.push(Arc::new(o)),
                Some(Ok(watcher::Event::InitDone)) => {
                    let objects = listed
                        .iter()
                        .map(|o| (ObjectRef::from_obj(&**o), o.clone()));
                    self.store.replace(objects.collect());
                    self.ready.send_replace(true);
                    for o in listed.drain(..) {
                        self.notify(&o, Change::Applied);
                    }
                }
                Some(Ok(watcher::Event::Delete(o))) => {
                    self.store.remove(&o);
                    self.notify(&Arc::new(o), Change::Deleted);
                }
                Some(Err(e)) => tracing::debug!(error = %e, "watch"),
                None => return,
            }
        }
    }
}
