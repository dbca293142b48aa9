//! Watch: changes of one resource turned into ADDED/MODIFIED/DELETED events, with selectors
//! applied to both sides of a change, initial events and bookmarks. Served from the watch
//! cache; a start older than the cache reaches reads the store's history instead.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use minik_api::ResourceInfo;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::cache::{Cacher, Change, Subscription};
use crate::error::{ApiError, Result};
use crate::list_prefix;
use crate::rest::Registry;
use crate::selector::Selector;

/// Query parameters of a watch.
#[derive(Debug, Clone)]
pub struct WatchParams {
    pub resource_version: Option<String>,
    pub label_selector: Selector,
    pub field_selector: Selector,
    pub allow_bookmarks: bool,
    pub send_initial_events: bool,
    /// End the watch after this long.
    pub timeout: Option<Duration>,
    /// With bookmarks on, send one after this long without events.
    pub bookmark_interval: Duration,
}

impl Default for WatchParams {
    fn default() -> Self {
        WatchParams {
            resource_version: None,
            label_selector: Selector::default(),
            field_selector: Selector::default(),
            allow_bookmarks: false,
            send_initial_events: false,
            timeout: None,
            bookmark_interval: Duration::from_secs(60),
        }
    }
}

/// One event of a watch, as it goes on the wire: `{"type": ..., "object": ...}`.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: &'static str,
    pub object: Arc<Value>,
    /// The serialized line, shared by every watcher that sees the change as it is.
    shared: Option<Arc<Change>>,
}

impl WatchEvent {
    fn new(kind: &'static str, object: Value) -> Self {
        WatchEvent {
            kind,
            object: Arc::new(object),
            shared: None,
        }
    }

    /// The event as one line of a watch response, serialized once per change.
    pub fn json_line(&self) -> Bytes {
        let make = || self.line_with(&*self.object);
        match &self.shared {
            Some(c) => c.line.get_or_init(make).clone(),
            None => make(),
        }
    }

    /// The event as a line without the object's metadata.managedFields, for the server's
    /// own components (their informers have no use for them; kube-scheduler and
    /// kube-controller-manager drop them from theirs too): also serialized once per change.
    pub fn lean_json_line(&self) -> Bytes {
        let make = || self.line_with(&Lean(&self.object));
        match &self.shared {
            Some(c) => c.lean_line.get_or_init(make).clone(),
            None => make(),
        }
    }

    /// A line of this event's type carrying `object` (the event's object as a watcher
    /// wants it shown), serialized straight from the borrowed values.
    pub fn line_with(&self, object: &impl serde::Serialize) -> Bytes {
        #[derive(serde::Serialize)]
        struct Line<'a, T> {
            #[serde(rename = "type")]
            kind: &'a str,
            object: &'a T,
        }
        let line = Line {
            kind: self.kind,
            object,
        };
        let mut out = serde_json::to_vec(&line).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// An object serialized without its metadata.managedFields (nothing is copied).
pub struct Lean<'a>(pub &'a Value);

impl serde::Serialize for Lean<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Metadata<'a>(&'a serde_json::Map<String, Value>);
        impl serde::Serialize for Metadata<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let fields = self.0.iter().filter(|(k, _)| *k != "managedFields");
                s.collect_map(fields)
            }
        }
        let Value::Object(top) = self.0 else {
            return self.0.serialize(s);
        };
        let mut map = s.serialize_map(Some(top.len()))?;
        for (k, v) in top {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    map.serialize_entry(k, &Metadata(meta))?
                }
                v => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// A change of a custom resource converted by its CRD's webhook.
async fn webhook_converted(reg: &Registry, info: &ResourceInfo, c: &Change) -> Result<Arc<Change>> {
    let mut objects = vec![(*c.object).clone()];
    objects.extend(c.prev.as_ref().map(|p| (**p).clone()));
    let mut shown = reg
        .convert_custom(info, objects, &info.api_version())
        .await?
        .into_iter();
    Ok(Arc::new(Change {
        rv: c.rv,
        key: c.key.clone(),
        deleted: c.deleted,
        object: Arc::new(shown.next().unwrap_or(Value::Null)),
        prev: shown.next().map(Arc::new),
        line: Default::default(),
        lean_line: Default::default(),
    }))
}

/// A stored object as the watched resource shows it.
fn converted(info: &ResourceInfo, obj: &Arc<Value>) -> Arc<Value> {
    if crate::convert::converts(info) {
        return Arc::new(crate::convert::from_storage(info, (**obj).clone()));
    }
    obj.clone()
}

fn matches(params: &WatchParams, obj: &Value) -> bool {
    params.label_selector.matches_labels(obj) && params.field_selector.matches_fields(obj)
}

fn bookmark(info: &ResourceInfo, rv: i64, initial_end: bool) -> WatchEvent {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    WatchEvent::new(
        "BOOKMARK",
        json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta}),
    )
}

/// The ERROR event a watch ends with when its start is too old.
pub fn gone_event(message: &str) -> WatchEvent {
    WatchEvent::new(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Expired", "code": 410}),
    )
}

enum Source {
    /// The watch cache's broadcast; a watcher that falls behind it catches up from the
    /// cache's ring of recent changes.
    Cache(Arc<Cacher>, broadcast::Receiver<Arc<Change>>),
    /// The store's history, for a watch from before the cache's oldest change; it moves to
    /// the cache once it has caught up with it (informers list and then watch from the
    /// list's revision, which the cache, started at the first watch, may not reach back
    /// to: served from the store, every watcher would decode every change itself).
    Store(minik_store::WatchStream, Arc<Cacher>),
    Done,
}

/// An open watch.
pub struct WatchStream {
    info: &'static ResourceInfo,
    params: WatchParams,
    /// Only changes of keys under this prefix (the namespace's, or the resource's).
    prefix: String,
    queued: VecDeque<WatchEvent>,
    backlog: VecDeque<Arc<Change>>,
    source: Source,
    last_rv: i64,
    deadline: Option<Instant>,
    /// Set for a custom resource whose CRD converts by webhook: each change is converted
    /// through it.
    webhook: Option<Registry>,
}

enum Next {
    Change(Arc<Change>),
    /// Caught up from the ring after falling behind: the backlog has what follows.
    Resumed,
    Gone(String),
    Failed(String),
    End,
}

impl Registry {
    /// WATCH a resource (in one namespace or all).
    pub async fn watch(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        params: WatchParams,
    ) -> Result<WatchStream> {
        self.check_field_selector(info, &params.field_selector)?;
        let prefix = list_prefix(info, namespace);
        let rv = params.resource_version.as_deref().unwrap_or("");
        let initial = params.send_initial_events || rv.is_empty() || rv == "0";
        let cacher = self.caches.get(&self.store, info).await?;
        let mut queued = VecDeque::new();
        let (start, sub) = if initial {
            // The initial state is at least as new as asked: the store's current revision
            // when no revision is given (a consistent read, as kube-apiserver serves it),
            // else the one named (resourceVersionMatch=NotOlderThan). With
            // resourceVersion=0 any state will do, but the cache (a moment behind the
            // store) may first catch up with what was committed before the request, so
            // that a client sees its own writes.
            let (wanted, reached) = match rv {
                "" | "0" => {
                    let (current, reached) = self.catch_up(&cacher).await?;
                    (current, reached || rv == "0")
                }
                n => {
                    let n = n.parse::<i64>().map_err(|_| {
                        ApiError::BadRequest(format!("invalid resource version: {n:?}"))
                    })?;
                    (n, cacher.wait_for(n, crate::list::CONSISTENT_WAIT).await)
                }
            };
            if !reached {
                return Err(ApiError::Timeout(format!(
                    "the watch cache did not reach resource version {wanted} in time"
                )));
            }
            let (rv, objects, sub) = cacher
                .snapshot(&prefix)
                .ok_or_else(|| ApiError::Internal("the watch cache is restarting".into()))?;
            for obj in self.shown_all(info, objects).await? {
                if matches(&params, &obj) {
                    queued.push_back(WatchEvent {
                        kind: "ADDED",
                        object: obj,
                        shared: None,
                    });
                }
            }
            if params.send_initial_events && params.allow_bookmarks {
                queued.push_back(bookmark(info, rv, true));
            }
            (rv, Some(sub))
        } else {
            let rv = rv
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))?;
            (rv, cacher.subscribe(rv))
        };
        let (backlog, source) = match sub {
            Some(Subscription { backlog, rx }) => (backlog.into(), Source::Cache(cacher, rx)),
            // Older than the cache: the store's history, back to its compaction.
            None => match self.store.watch(&prefix, start + 1).await {
                Ok(w) => {
                    tracing::debug!(%prefix, from = start, "watch older than the watch cache");
                    (VecDeque::new(), Source::Store(w, cacher))
                }
                Err(minik_store::Error::Compacted { .. }) => {
                    queued.push_back(gone_event(&format!("too old resource version: {start}")));
                    (VecDeque::new(), Source::Done)
                }
                Err(e) => return Err(e.into()),
            },
        };
        Ok(WatchStream {
            info,
            deadline: params.timeout.map(|t| Instant::now() + t),
            params,
            prefix,
            queued,
            backlog,
            source,
            last_rv: start,
            webhook: self.conversion_webhook(info).map(|_| self.clone()),
        })
    }
}

impl WatchStream {
    async fn next_change(&mut self) -> Next {
        if let Some(c) = self.backlog.pop_front() {
            return Next::Change(c);
        }
        if let Source::Store(_, cacher) = &self.source
            && cacher.reaches(self.last_rv)
            && let Some(Subscription { backlog, rx }) = cacher.subscribe(self.last_rv)
        {
            self.source = Source::Cache(cacher.clone(), rx);
            self.backlog = backlog.into();
            return Next::Resumed;
        }
        match &mut self.source {
            Source::Done => Next::End,
            Source::Cache(cacher, rx) => loop {
                match rx.recv().await {
                    Ok(c) => return Next::Change(c),
                    // Behind the broadcast: the changes since the last one seen come from
                    // the ring (those already seen or of other namespaces are skipped).
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match cacher.subscribe(self.last_rv) {
                            Some(Subscription { backlog, rx: fresh }) => {
                                *rx = fresh;
                                if !backlog.is_empty() {
                                    self.backlog = backlog.into();
                                    return Next::Resumed;
                                }
                            }
                            None => {
                                return Next::Gone(
                                    "the watch fell too far behind; list and watch again".into(),
                                );
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Next::End,
                }
            },
            Source::Store(w, _) => match w.recv().await {
                Some(Ok(e)) => match Change::from_store_with_prev(&e) {
                    Some(c) => Next::Change(Arc::new(c)),
                    None => Next::Failed(format!("stored object {} is corrupt", e.kv.key)),
                },
                Some(Err(minik_store::Error::Compacted { requested, .. })) => {
                    Next::Gone(format!("too old resource version: {requested}"))
                }
                Some(Err(e)) => Next::Failed(ApiError::from(e).to_string()),
                None => Next::End,
            },
        }
    }

    /// The next event; `None` when the watch is over (timeout, store closed, or after an
    /// ERROR event).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            let idle = self
                .params
                .allow_bookmarks
                .then_some(self.params.bookmark_interval);
            let deadline = self.deadline;
            let wait = async {
                match idle {
                    Some(d) => tokio::time::timeout(d, self.next_change()).await.ok(),
                    None => Some(self.next_change().await),
                }
            };
            let got = match deadline {
                Some(d) => tokio::time::timeout_at(d, wait).await.ok()?,
                None => wait.await,
            };
            match got {
                None => return Some(bookmark(self.info, self.last_rv, false)),
                Some(Next::End) => return None,
                Some(Next::Resumed) => continue,
                Some(Next::Gone(message)) => {
                    self.source = Source::Done;
                    return Some(gone_event(&message));
                }
                Some(Next::Failed(message)) => {
                    self.source = Source::Done;
                    return Some(WatchEvent::new(
                        "ERROR",
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": message,
                            "reason": "InternalError", "code": 500}),
                    ));
                }
                Some(Next::Change(c)) => {
                    if c.rv <= self.last_rv || !c.key.starts_with(self.prefix.as_str()) {
                        continue;
                    }
                    self.last_rv = c.rv;
                    let c = match &self.webhook {
                        Some(reg) => match webhook_converted(reg, self.info, &c).await {
                            Ok(converted) => converted,
                            Err(e) => {
                                self.source = Source::Done;
                                return Some(WatchEvent::new(
                                    "ERROR",
                                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Failure", "message": e.to_string(),
                                        "reason": "InternalError", "code": 500}),
                                ));
                            }
                        },
                        None => c,
                    };
                    if let Some(e) = self.translate(c) {
                        return Some(e);
                    }
                }
            }
        }
    }

    /// Whether the watch is now served by the watch cache (not by the store's history).
    pub fn from_cache(&self) -> bool {
        matches!(self.source, Source::Cache(..))
    }

    /// The event a change is for this watcher, given its selectors (None: not for it).
    fn translate(&self, c: Arc<Change>) -> Option<WatchEvent> {
        if crate::convert::converts(self.info) {
            // Served from another group's storage: convert, and share no serialized line.
            let converted = Change {
                rv: c.rv,
                key: c.key.clone(),
                deleted: c.deleted,
                object: converted(self.info, &c.object),
                prev: c.prev.as_ref().map(|p| converted(self.info, p)),
                line: Default::default(),
                lean_line: Default::default(),
            };
            let mut e = self.translate_plain(Arc::new(converted))?;
            e.shared = None;
            return Some(e);
        }
        self.translate_plain(c)
    }

    fn translate_plain(&self, c: Arc<Change>) -> Option<WatchEvent> {
        let old_matches = c.prev.as_deref().is_some_and(|o| matches(&self.params, o));
        let kind = if c.deleted {
            if !matches(&self.params, &c.object) {
                return None;
            }
            "DELETED"
        } else {
            match (old_matches, matches(&self.params, &c.object)) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        };
        let shared = (kind == c.natural_kind()).then(|| c.clone());
        Some(WatchEvent {
            kind,
            object: c.object.clone(),
            shared,
        })
    }
}
