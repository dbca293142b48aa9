//! The contract every datastore meets (SQLite, in-memory, and later PostgreSQL and etcd).

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{Deleted, KeyValue, ListOptions, ListResult};
use crate::watch::WatchStream;

/// A revisioned key-value store with etcd's semantics.
///
/// One global revision counts every successful write; each key keeps the revision it was
/// created at and the revision of its last change.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Create `key`; fails with `KeyExists` when it exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replace the value of `key` if its mod revision is `expected_revision`
    /// (`Conflict` otherwise, `NotFound` when the key does not exist).
    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue>;

    /// Delete `key`, if given only when its mod revision is `expected_revision`.
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<Deleted>;

    /// The value of `key` now, or at a past `revision`. Returns the revision read at and the
    /// value (none when the key did not exist then).
    async fn get(&self, key: &str, revision: Option<i64>) -> Result<(i64, Option<KeyValue>)>;

    /// The keys under `prefix`, in key order.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;

    /// How many keys are under `prefix` now; returns (revision, count).
    async fn count(&self, prefix: &str) -> Result<(i64, i64)>;

    /// The newest committed revision.
    async fn current_revision(&self) -> Result<i64>;

    /// The revision up to which history has been compacted (0 when never).
    async fn compacted_revision(&self) -> Result<i64>;

    /// Drop the history older than `revision`: the state at `revision` and everything after it
    /// stay readable; reads and watches from before it get `Compacted`.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// Watch the keys under `prefix`, starting with the event at `start_revision`
    /// (0: from the next write). Events come in commit order with no gaps or duplicates.
    async fn watch(&self, prefix: &str, start_revision: i64) -> Result<WatchStream>;

    /// Bytes the store takes on disk (0 for the in-memory store).
    async fn size_on_disk(&self) -> Result<u64>;

    /// Stop accepting writes, finish the ones in flight, end every watch and release the
    /// data directory.
    async fn close(&self);
}
