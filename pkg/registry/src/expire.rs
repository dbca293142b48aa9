//! Events expire: kube-apiserver stores them with a TTL (`--event-ttl`, 1 hour by default);
//! here a sweep deletes the ones whose last activity is older than the TTL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::Result;
use crate::rest::Registry;

/// When an event was last active: lastTimestamp, eventTime, or its creation.
fn last_active(e: &Value) -> Option<DateTime<Utc>> {
    [
        "/lastTimestamp",
        "/series/lastObservedTime",
        "/eventTime",
        "/deprecatedLastTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| e.pointer(p).and_then(Value::as_str))
    .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
    .map(|t| t.with_timezone(&Utc))
    .max()
}

impl Registry {
    /// Delete events older than `ttl`; returns how many went.
    pub async fn expire_events(&self, ttl: Duration) -> Result<usize> {
        let cutoff = Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let mut removed = 0;
        // events.k8s.io/v1 events live in the same storage as core ones.
        for (group, version) in [("", "v1")] {
            let Some(info) = minik_api::find(group, version, "events") else {
                continue;
            };
            let list = self.list(info, None, &Default::default()).await?;
            for e in &list.items {
                if last_active(e).is_some_and(|t| t >= cutoff) {
                    continue;
                }
                let ns = e.pointer("/metadata/namespace").and_then(Value::as_str);
                let name = e
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let key = crate::object_key(info, ns, name);
                let rv = e
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse().ok());
                match self.store.delete(&key, rv).await {
                    Ok(_) => removed += 1,
                    // Updated or gone meanwhile: the next sweep looks again.
                    Err(
                        minik_store::Error::Conflict { .. } | minik_store::Error::NotFound { .. },
                    ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }
}
