//! A shared informer: one watch per resource, a local cache every controller reads, and
//! handlers told of each change so they can queue the keys it concerns.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Applied,
    Deleted,
}

type Handler<K> = Arc<dyn Fn(&K, Change) + Send + Sync>;

/// One resource's watch and cache.
pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
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
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            api,
            config,
            store,
            writer: Mutex::new(Some(writer)),
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
        let obj = self
            .store
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))?;
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
        self.handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(f));
    }

    fn notify(&self, obj: &K, change: Change) {
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
        let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let stream = watcher(self.api.clone(), self.config.clone())
            .default_backoff()
            .reflect(writer);
        let mut stream = std::pin::pin!(stream);
        // A (re)list's objects are told once the cache holds all of them, so handlers that
        // read the cache see the whole list.
        let mut listed = Vec::new();
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(watcher::Event::Apply(o))) => self.notify(&o, Change::Applied),
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(o))) => listed.push(o),
                Some(Ok(watcher::Event::InitDone)) => {
                    self.ready.send_replace(true);
                    for o in listed.drain(..) {
                        self.notify(&o, Change::Applied);
                    }
                }
                Some(Ok(watcher::Event::Delete(o))) => self.notify(&o, Change::Deleted),
                Some(Err(e)) => tracing::debug!(error = %e, "watch"),
                None => return,
            }
        }
    }
}
