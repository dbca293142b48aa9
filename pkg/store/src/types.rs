//! The values the store hands out.

use std::sync::Arc;

use bytes::Bytes;

/// One key at one revision. `create_revision` and `mod_revision` become a Kubernetes object's
/// creation and `resourceVersion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Shared, so handing one event to many watchers copies no bytes.
    pub key: Arc<str>,
    pub value: Bytes,
    /// Revision at which the key was (last) created.
    pub create_revision: i64,
    /// Revision of the last change of the key.
    pub mod_revision: i64,
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A create or an update.
    Put,
    /// A delete.
    Delete,
}

/// One change, in commit order. For `Put`, `kv` is the new value and `prev` the value it replaced
/// (none for a create). For `Delete`, `kv` carries the key, the deleting revision as
/// `mod_revision` and an empty value; `prev` is the deleted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision this event was committed at.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// Result of a delete: the revision of the delete and the value that was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub revision: i64,
    pub prev: KeyValue,
}

/// Options of `list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Start after this key (exclusive): the last key of the previous page.
    pub continue_after: Option<String>,
    /// Read at this revision instead of the current one. A paginated list passes the first
    /// page's revision on, so that all pages are one consistent snapshot.
    pub revision: Option<i64>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// The revision this page was read at.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
    /// True when keys remain after the last one returned.
    pub more: bool,
}

/// A half-open key range `[start, end)`; `end = None` means to the end of the key space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub start: String,
    pub end: Option<String>,
}

impl KeyRange {
    /// All keys that start with `prefix`. The end bound is the prefix with its last character
    /// bumped to the next one: UTF-8 orders byte-wise as code points do, so every key with the
    /// prefix sorts below it and every other key above the prefix sorts at or past it.
    pub fn prefix(prefix: &str) -> Self {
        let mut chars: Vec<char> = prefix.chars().collect();
        let end = loop {
            match chars.pop() {
                None => break None,
                Some(c) => {
                    let next = match c as u32 {
                        0xD7FF => Some('\u{E000}'),
                        n => char::from_u32(n + 1),
                    };
                    if let Some(next) = next {
                        chars.push(next);
                        break Some(chars.into_iter().collect());
                    }
                }
            }
        };
        KeyRange {
            start: prefix.to_string(),
            end,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        key >= self.start.as_str() && self.end.as_deref().is_none_or(|e| key < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_bounds() {
        let r = KeyRange::prefix("/registry/pods/");
        assert_eq!(r.end.as_deref(), Some("/registry/pods0"));
        assert!(r.contains("/registry/pods/default/a"));
        assert!(!r.contains("/registry/podsx"));
        assert!(!r.contains("/registry/pod"));
        let uni = KeyRange::prefix("/a\u{D7FF}");
        assert_eq!(uni.end.as_deref(), Some("/a\u{E000}"));
        let all = KeyRange::prefix("");
        assert_eq!(all.end, None);
        assert!(all.contains("anything"));
    }
}
