//! List with selectors, pagination (one snapshot; an expired token is 410) and
//! resourceVersion semantics.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minik_api::ResourceInfo;
use minik_store::ListOptions;
use serde_json::{Value, json};

use crate::cache::Cacher;
use crate::error::{ApiError, Result};
use crate::list_prefix;
use crate::rest::{Registry, decode};
use crate::selector::Selector;

/// A list response: its objects are shared with the watch cache, never copied, and are
/// written out as they are.
#[derive(Debug, Clone)]
pub struct ObjectList {
    pub kind: &'static str,
    pub api_version: String,
    /// resourceVersion, and continue when there is more.
    pub metadata: Value,
    pub items: Vec<Arc<Value>>,
}

impl ObjectList {
    pub fn resource_version(&self) -> &str {
        self.metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

impl serde::Serialize for ObjectList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Items<'a>(&'a [Arc<Value>]);
        impl serde::Serialize for Items<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|v| &**v))
            }
        }
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("kind", self.kind)?;
        m.serialize_entry("apiVersion", &self.api_version)?;
        m.serialize_entry("metadata", &self.metadata)?;
        m.serialize_entry("items", &Items(&self.items))?;
        m.end()
    }
}

/// How long a consistent list waits for the watch cache before reading the store.
pub(crate) const CONSISTENT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResourceVersionMatch {
    #[default]
    Unset,
    NotOlderThan,
    Exact,
}

/// Query parameters of a list.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: Selector,
    pub field_selector: Selector,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: ResourceVersionMatch,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    rv: i64,
    start: String,
}

fn parse_rv(rv: &str) -> Result<i64> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

fn decode_token(token: &str) -> Result<Token> {
    let bad = || {
        ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

impl Registry {
    /// LIST: the objects of a resource (in one namespace or all), as a `<Kind>List`.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList> {
        if crate::rest::is_component_status(info) {
            return Ok(self.component_list(info).await);
        }
        self.check_field_selector(info, &params.field_selector)?;
        if params.continue_token.is_none()
            && let Some(list) = self.list_from_cache(info, namespace, params).await?
        {
            return Ok(list);
        }
        let prefix = list_prefix(info, namespace);
        let (revision, mut after) = match &params.continue_token {
            Some(t) => {
                let t = decode_token(t)?;
                (Some(t.rv), Some(format!("{prefix}{}", t.start)))
            }
            None => (self.list_revision(params).await?, None),
        };
        let mut items = Vec::new();
        let mut snapshot = revision;
        let mut more = false;
        let page = if params.limit == 0 {
            0
        } else {
            params.limit.max(1)
        };
        loop {
            let result = self
                .store
                .list(
                    &prefix,
                    ListOptions {
                        limit: page,
                        continue_after: after.clone(),
                        revision: snapshot,
                    },
                )
                .await
                .map_err(|e| match e {
                    minik_store::Error::Compacted { .. } if params.continue_token.is_some() => {
                        ApiError::Gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into())
                    }
                    other => other.into(),
                })?;
            snapshot = Some(result.revision);
            after = result.kvs.last().map(|kv| kv.key.to_string());
            for kv in &result.kvs {
                let obj = self.shown(info, decode(kv)?).await?;
                if params.label_selector.matches_labels(&obj)
                    && params.field_selector.matches_fields(&obj)
                {
                    items.push(Arc::new(obj));
                }
            }
            if !result.more {
                break;
            }
            if params.limit > 0 && items.len() >= params.limit {
                more = true;
                break;
            }
        }
        let rv = snapshot.unwrap_or_default();
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if more && let Some(last) = &after {
            let token = Token {
                rv,
                start: last.strip_prefix(&prefix).unwrap_or(last).to_string(),
            };
            let bytes =
                serde_json::to_vec(&token).map_err(|e| ApiError::Internal(e.to_string()))?;
            metadata["continue"] = json!(URL_SAFE_NO_PAD.encode(bytes));
        }
        Ok(ObjectList {
            kind: info.list_kind,
            api_version: info.api_version(),
            metadata,
            items,
        })
    }

    /// Lists at resourceVersion 0 ("any") or NotOlderThan a version the watch cache has
    /// reached are served from the cache, whole (as kube-apiserver does, without paging).
    /// The stored objects of a built-in resource as the watch cache has them now (possibly a
    /// moment behind the store): cheap, for admission's lookups.
    pub async fn cached_objects(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
    ) -> Result<Vec<Arc<Value>>> {
        let cacher = self.caches.get(&self.store, info).await?;
        Ok(cacher.objects(&list_prefix(info, namespace)))
    }

    /// The revision of the newest change of `info` the watch cache has seen (starting the
    /// cache if needed; a moment behind the store): it moves whenever an object of the
    /// resource changes, so whatever was derived from the resource before is stale once it
    /// has moved.
    pub async fn last_change(&self, info: &ResourceInfo) -> Result<i64> {
        Ok(self.caches.get(&self.store, info).await?.last_change())
    }

    /// Give a watch cache (a moment behind the store) up to `CONSISTENT_WAIT` to catch up
    /// with the store's current revision: that revision, and whether the cache reached it.
    pub(crate) async fn catch_up(&self, cacher: &Cacher) -> Result<(i64, bool)> {
        let current = self.store.current_revision().await?;
        Ok((current, cacher.wait_for(current, CONSISTENT_WAIT).await))
    }

    async fn list_from_cache(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<Option<ObjectList>> {
        let rv = params.resource_version.as_deref();
        let from_cache = match (rv, params.resource_version_match) {
            (Some("0"), ResourceVersionMatch::Unset | ResourceVersionMatch::NotOlderThan) => true,
            (Some(rv), ResourceVersionMatch::NotOlderThan) => !rv.is_empty(),
            (None | Some(""), ResourceVersionMatch::Unset) => params.limit == 0,
            _ => false,
        };
        if !from_cache {
            return Ok(None);
        }
        let cacher = self.caches.get(&self.store, info).await?;
        let wanted = match rv {
            // Any state will do, but the cache may catch up first with what was committed
            // before the request (so that a client sees its own writes).
            Some("0") => {
                self.catch_up(&cacher).await?;
                0
            }
            Some(rv) if !rv.is_empty() => parse_rv(rv)?,
            // A consistent read (the newest data) of a whole list: from the cache once it
            // has caught up with the store's current revision, as kube-apiserver does.
            _ => match self.catch_up(&cacher).await? {
                (current, true) => current,
                (_, false) => return Ok(None),
            },
        };
        let Some((rv, objects, _)) = cacher.snapshot(&list_prefix(info, namespace)) else {
            return Ok(None);
        };
        if rv < wanted {
            return Ok(None);
        }
        let items: Vec<Arc<Value>> = self
            .shown_all(info, objects)
            .await?
            .into_iter()
            .filter(|o| {
                params.label_selector.matches_labels(o) && params.field_selector.matches_fields(o)
            })
            .collect();
        Ok(Some(ObjectList {
            kind: info.list_kind,
            api_version: info.api_version(),
            metadata: json!({"resourceVersion": rv.to_string()}),
            items,
        }))
    }

    /// The revision a list without a continue token reads at (None: the newest).
    async fn list_revision(&self, params: &ListParams) -> Result<Option<i64>> {
        let rv = match params.resource_version.as_deref() {
            None | Some("") | Some("0") => return Ok(None),
            Some(rv) => parse_rv(rv)?,
        };
        match params.resource_version_match {
            ResourceVersionMatch::Exact => Ok(Some(rv)),
            _ => {
                let current = self.store.current_revision().await?;
                if rv > current {
                    return Err(ApiError::Timeout(format!(
                        "Too large resource version: {rv}, current: {current}"
                    )));
                }
                Ok(None)
            }
        }
    }
}
