//! Watch: the store's events for one resource turned into ADDED/MODIFIED/DELETED of objects,
//! with selectors applied to both sides of a change, initial events and bookmarks.

use std::collections::VecDeque;
use std::time::Duration;

use minik_api::ResourceInfo;
use minik_store::{EventKind, KeyValue};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::{ApiError, Result};
use crate::list::ListParams;
use crate::list_prefix;
use crate::rest::{Registry, decode};
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
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub kind: &'static str,
    pub object: Value,
}

impl WatchEvent {
    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "object": self.object})
    }
}

/// An open watch.
pub struct WatchStream {
    info: &'static ResourceInfo,
    params: WatchParams,
    queued: VecDeque<WatchEvent>,
    inner: Option<minik_store::WatchStream>,
    last_rv: i64,
    deadline: Option<Instant>,
}

fn matches(params: &WatchParams, obj: &Value) -> bool {
    params.label_selector.matches_labels(obj) && params.field_selector.matches_fields(obj)
}

fn bookmark(info: &ResourceInfo, rv: i64, initial_end: bool) -> WatchEvent {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    WatchEvent {
        kind: "BOOKMARK",
        object: json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta}),
    }
}

/// The ERROR event a watch ends with when its start is too old.
pub fn gone_event(message: &str) -> WatchEvent {
    WatchEvent {
        kind: "ERROR",
        object: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Expired", "code": 410}),
    }
}

impl Registry {
    /// WATCH a resource (in one namespace or all).
    pub async fn watch(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        params: WatchParams,
    ) -> Result<WatchStream> {
        let mut queued = VecDeque::new();
        let rv = params.resource_version.as_deref().unwrap_or("");
        let initial = params.send_initial_events || rv.is_empty() || rv == "0";
        let start = if initial {
            let list = self
                .list(
                    info,
                    namespace,
                    &ListParams {
                        label_selector: params.label_selector.clone(),
                        field_selector: params.field_selector.clone(),
                        ..Default::default()
                    },
                )
                .await?;
            for item in list["items"].as_array().into_iter().flatten() {
                queued.push_back(WatchEvent {
                    kind: "ADDED",
                    object: item.clone(),
                });
            }
            let list_rv = list["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            if params.send_initial_events && params.allow_bookmarks {
                queued.push_back(bookmark(info, list_rv, true));
            }
            list_rv
        } else {
            rv.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))?
        };
        let inner = match self
            .store
            .watch(&list_prefix(info, namespace), start + 1)
            .await
        {
            Ok(w) => Some(w),
            Err(minik_store::Error::Compacted { .. }) => {
                queued.push_back(gone_event(&format!("too old resource version: {start}")));
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(WatchStream {
            info,
            deadline: params.timeout.map(|t| Instant::now() + t),
            params,
            queued,
            inner,
            last_rv: start,
        })
    }
}

impl WatchStream {
    /// The next event; `None` when the watch is over (timeout, store closed, or after an
    /// ERROR event).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            let inner = self.inner.as_mut()?;
            let idle = self
                .params
                .allow_bookmarks
                .then_some(self.params.bookmark_interval);
            let wait = async {
                match idle {
                    Some(d) => tokio::time::timeout(d, inner.recv()).await.ok(),
                    None => Some(inner.recv().await),
                }
            };
            let got = match self.deadline {
                Some(d) => match tokio::time::timeout_at(d, wait).await {
                    Ok(g) => g,
                    Err(_) => return None,
                },
                None => wait.await,
            };
            match got {
                None => return Some(bookmark(self.info, self.last_rv, false)),
                Some(None) => return None,
                Some(Some(Err(minik_store::Error::Compacted { requested, .. }))) => {
                    self.inner = None;
                    return Some(gone_event(&format!(
                        "too old resource version: {requested}"
                    )));
                }
                Some(Some(Err(e))) => {
                    self.inner = None;
                    let err = ApiError::from(e);
                    return Some(WatchEvent {
                        kind: "ERROR",
                        object: json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": err.to_string(),
                            "reason": "InternalError", "code": 500}),
                    });
                }
                Some(Some(Ok(event))) => {
                    self.last_rv = event.kv.mod_revision;
                    if let Some(e) = self.translate(&event) {
                        return Some(e);
                    }
                }
            }
        }
    }

    fn translate(&self, event: &minik_store::Event) -> Option<WatchEvent> {
        let with_rv = |kv: &KeyValue, rv: i64| -> Option<Value> {
            let mut obj = decode(kv).ok()?;
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            Some(obj)
        };
        let rv = event.kv.mod_revision;
        let old = event.prev.as_ref().and_then(|p| decode(p).ok());
        let old_matches = old.as_ref().is_some_and(|o| matches(&self.params, o));
        match event.kind {
            EventKind::Delete => {
                let obj = with_rv(event.prev.as_ref()?, rv)?;
                old_matches.then_some(WatchEvent {
                    kind: "DELETED",
                    object: obj,
                })
            }
            EventKind::Put => {
                let obj = with_rv(&event.kv, rv)?;
                let new_matches = matches(&self.params, &obj);
                let kind = match (old.is_some() && old_matches, new_matches) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                };
                Some(WatchEvent { kind, object: obj })
            }
        }
    }
}
