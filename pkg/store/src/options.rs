//! Settings of a store.

use std::time::Duration;

/// How a store keeps history and serves watchers.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Background compaction keeps at least this much history.
    pub retention: Duration,
    /// How often the background compactor looks; zero turns it off.
    pub compaction_interval: Duration,
    /// How many committed batches a watcher may fall behind before it is ended. Memory for
    /// unread events is at most this many batches of at most `max_batch` writes.
    pub watch_buffer: usize,
    /// How many recent events the hub keeps so that new watchers catch up from memory;
    /// older starts read the history from the database.
    pub watch_recent_events: usize,
    /// The most writes one group commit takes.
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Duration::from_secs(300),
            compaction_interval: Duration::from_secs(60),
            watch_buffer: 1024,
            watch_recent_events: 10_000,
            max_batch: 256,
        }
    }
}
