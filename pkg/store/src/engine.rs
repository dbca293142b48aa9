//! The storage engine under the shared writer: what differs between SQLite and memory.
//!
//! `LocalStore` (local.rs) owns revision assignment, group commit, the watch hub and
//! compaction; an `Engine` only applies a batch atomically and answers reads at a revision.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::types::{Event, EventKind, KeyRange, KeyValue};

/// One write asked of the store.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: i64,
    },
    Delete {
        key: String,
        expected: Option<i64>,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// The newest row of a key as the engine stores it (a tombstone when `deleted`).
#[derive(Debug, Clone)]
pub(crate) struct Latest {
    pub revision: i64,
    pub create_revision: i64,
    pub deleted: bool,
    pub value: Bytes,
}

/// A row to append: the outcome of one op at revision `revision`.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    pub key: Arc<str>,
    pub revision: i64,
    pub create_revision: i64,
    pub deleted: bool,
    /// Revision of the row this one follows (0 for the first row of a key).
    pub prev_revision: i64,
    pub value: Bytes,
}

impl NewRow {
    /// The row as the newest row of its key, for ops later in the same batch.
    pub fn as_latest(&self) -> Latest {
        Latest {
            revision: self.revision,
            create_revision: self.create_revision,
            deleted: self.deleted,
            value: self.value.clone(),
        }
    }
}

/// Decide what `op` does given the key's newest row: the row to append and its event, or
/// the error for the caller. Shared by every engine so the semantics cannot drift.
pub(crate) fn decide(op: &Op, latest: Option<&Latest>, revision: i64) -> Result<(NewRow, Event)> {
    let live = latest.filter(|l| !l.deleted);
    let key: Arc<str> = Arc::from(op.key());
    let prev_kv = live.map(|l| KeyValue {
        key: key.clone(),
        value: l.value.clone(),
        create_revision: l.create_revision,
        mod_revision: l.revision,
    });
    let check = |expected: Option<i64>| -> Result<&Latest> {
        let l = live.ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        match expected {
            Some(e) if e != l.revision => Err(Error::Conflict {
                key: key.to_string(),
                expected: e,
                current: l.revision,
            }),
            _ => Ok(l),
        }
    };
    let prev_revision = latest.map_or(0, |l| l.revision);
    let (create_revision, deleted, value, kind) = match op {
        Op::Create { value, .. } => {
            if live.is_some() {
                return Err(Error::KeyExists {
                    key: key.to_string(),
                });
            }
            (revision, false, value.clone(), EventKind::Put)
        }
        Op::Update {
            value, expected, ..
        } => {
            let l = check(Some(*expected))?;
            (l.create_revision, false, value.clone(), EventKind::Put)
        }
        Op::Delete { expected, .. } => {
            let l = check(*expected)?;
            (l.create_revision, true, Bytes::new(), EventKind::Delete)
        }
    };
    let row = NewRow {
        key: key.clone(),
        revision,
        create_revision,
        deleted,
        prev_revision,
        value: value.clone(),
    };
    let event = Event {
        kind,
        kv: KeyValue {
            key,
            value,
            create_revision,
            mod_revision: revision,
        },
        prev: prev_kv,
    };
    Ok((row, event))
}

/// The outcome of one op in a batch.
pub(crate) type OpOutcome = Result<Event>;

/// A storage engine. Only the store's single writer calls `apply` and `compact`.
#[async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    /// (current revision, compacted revision) as stored.
    async fn revisions(&self) -> Result<(i64, i64)>;

    /// Apply `ops` in order as one durable transaction. Successful ops get consecutive
    /// revisions from `first_revision`; a failed op changes nothing and takes no revision.
    /// An `Err` means nothing of the batch was committed.
    async fn apply(&self, ops: &[Op], first_revision: i64) -> Result<Vec<OpOutcome>>;

    /// The newest row of `key` at or before `revision`, tombstones included.
    async fn get(&self, key: &str, revision: i64) -> Result<Option<Latest>>;

    /// Live keys in `range` after `after`, at `revision`, in key order, at most `limit`
    /// (0: all).
    async fn list(
        &self,
        range: &KeyRange,
        after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<Vec<KeyValue>>;

    /// Number of live keys in `range` at `revision`.
    async fn count(&self, range: &KeyRange, revision: i64) -> Result<i64>;

    /// Events in `range` with revisions in `[from, to]`, in order, at most `limit`.
    async fn history(
        &self,
        range: &KeyRange,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Event>>;

    /// Record `revision` as the compacted revision.
    async fn set_compacted(&self, revision: i64) -> Result<()>;

    /// Remove the rows in `(from, to]` that the state at `upto` no longer needs: rows
    /// superseded at or before `upto`, and tombstones. Returns how many rows went.
    async fn compact_range(&self, from: i64, to: i64, upto: i64) -> Result<u64>;

    /// Give freed space back to the file system, where the engine can.
    async fn reclaim(&self) -> Result<()>;

    /// Bytes on disk.
    async fn size_on_disk(&self) -> Result<u64>;

    /// Close files and connections.
    async fn close(&self);
}

/// Turn a stored row into the `KeyValue` a reader sees (none for a tombstone).
pub(crate) fn live_kv(key: &str, latest: Option<Latest>) -> Option<KeyValue> {
    latest.filter(|l| !l.deleted).map(|l| KeyValue {
        key: Arc::from(key),
        value: l.value,
        create_revision: l.create_revision,
        mod_revision: l.revision,
    })
}
