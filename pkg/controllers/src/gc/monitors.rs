//! One metadata-only watch per resource the garbage collector tracks, feeding the graph;
//! started and stopped as discovery finds resources come and go.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use super::Collector;
use super::discovery::{self, Resource};
use super::graph::Node;

/// Kinds never collected (as kube-controller-manager ignores events).
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

struct Monitor {
    kind: Arc<Resource>,
    stop: CancellationToken,
    /// Cancelled once the first list is in the graph.
    synced: CancellationToken,
}

#[derive(Default)]
pub struct Monitors {
    running: HashMap<(String, String), Monitor>,
}

impl Monitors {
    /// Resolves once every monitor has listed its resource.
    pub fn synced(&self) -> impl Future<Output = ()> + use<> {
        let all: Vec<CancellationToken> = self.running.values().map(|m| m.synced.clone()).collect();
        async move {
            for s in all {
                s.cancelled().await;
            }
        }
    }

    pub fn stop_all(&mut self) {
        for (_, m) in self.running.drain() {
            m.stop.cancel();
        }
    }
}

/// Whether the garbage collector tracks `r`.
fn tracked(r: &Resource) -> bool {
    r.supports(&["delete", "list", "watch"])
        && !IGNORED.contains(&(r.ar.group.as_str(), r.ar.plural.as_str()))
}

impl Collector {
    /// Discover the served resources, and start and stop monitors to match.
    pub(super) async fn sync_monitors(
        self: Arc<Self>,
        monitors: &mut Monitors,
        stop: &CancellationToken,
    ) {
        let found = match discovery::discover(&self.client).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: discovery failed");
                return;
            }
        };
        if let Some(msg) = found.failure_message() {
            tracing::debug!(msg, "garbage collector: partial discovery");
        }
        let resources: Vec<Arc<Resource>> = found.resources.into_iter().map(Arc::new).collect();
        {
            let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            for r in &resources {
                kinds.insert((r.ar.group.clone(), r.ar.kind.clone()), r.clone());
            }
        }
        let wanted: HashSet<(String, String)> = resources
            .iter()
            .filter(|r| tracked(r))
            .map(|r| (r.ar.group.clone(), r.ar.plural.clone()))
            .collect();
        // Resources no longer served: their monitors stop (only when every group answered).
        if found.failed.is_empty() {
            let gone: Vec<_> = monitors
                .running
                .keys()
                .filter(|k| !wanted.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                if let Some(m) = monitors.running.remove(&key) {
                    m.stop.cancel();
                    self.forget_kind(&m.kind);
                }
            }
        }
        for r in resources.into_iter().filter(|r| tracked(r)) {
            let key = (r.ar.group.clone(), r.ar.plural.clone());
            if monitors.running.contains_key(&key) {
                continue;
            }
            let m = Monitor {
                kind: r.clone(),
                stop: stop.child_token(),
                synced: CancellationToken::new(),
            };
            tokio::spawn(self.clone().watch(r, m.stop.clone(), m.synced.clone()));
            monitors.running.insert(key, m);
        }
    }

    /// Every object of a resource no longer served is gone.
    fn forget_kind(&self, kind: &Resource) {
        let tasks: Vec<_> = {
            let mut g = self.graph();
            g.uids_of(kind)
                .iter()
                .flat_map(|uid| g.remove(uid))
                .collect()
        };
        self.enqueue(tasks);
    }

    /// Watch one resource's metadata until `stop`, keeping the graph up to date.
    async fn watch(
        self: Arc<Self>,
        kind: Arc<Resource>,
        stop: CancellationToken,
        synced: CancellationToken,
    ) {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &kind.ar);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut listed: HashSet<String> = HashSet::new();
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(o))) => {
                    listed.extend(o.metadata.uid.clone());
                    self.observed(&kind, &o);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    // What was not listed again went while the watch was down.
                    let tasks: Vec<_> = {
                        let mut g = self.graph();
                        let stale: Vec<String> = g
                            .uids_of(&kind)
                            .into_iter()
                            .filter(|u| !listed.contains(u))
                            .collect();
                        stale.iter().flat_map(|uid| g.remove(uid)).collect()
                    };
                    self.enqueue(tasks);
                    listed.clear();
                    synced.cancel();
                }
                Some(Ok(watcher::Event::Apply(o))) => self.observed(&kind, &o),
                Some(Ok(watcher::Event::Delete(o))) => {
                    self.poke_if_definition(&kind);
                    if let Some(uid) = o.metadata.uid.as_deref() {
                        let tasks = self.graph().remove(uid);
                        self.enqueue(tasks);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(resource = kind.group_resource(), error = %e, "garbage collector watch");
                }
                None => return,
            }
        }
    }

    fn observed(&self, kind: &Arc<Resource>, o: &PartialObjectMeta<DynamicObject>) {
        self.poke_if_definition(kind);
        if let Some((uid, node)) = Node::from_meta(kind.clone(), &o.metadata) {
            let tasks = self.graph().upsert(uid, node);
            self.enqueue(tasks);
        }
    }

    /// A CustomResourceDefinition changed: the served resources may have too.
    fn poke_if_definition(&self, kind: &Resource) {
        if kind.ar.group == "apiextensions.k8s.io" && kind.ar.kind == "CustomResourceDefinition" {
            self.rediscover.notify_one();
        }
    }
}
