//! `LocalStore`: the one writer with group commit, the watch hub and compaction, over an
//! `Engine` (SQLite or memory).
//!
//! Every write goes through one task. It takes all writes queued while the previous batch
//! was committing and commits them as one transaction (one fsync), then publishes the events
//! to the hub and answers the callers. Reads go straight to the engine at a revision.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backend::Backend;
use crate::compactor;
use crate::engine::{Engine, Op, OpOutcome, live_kv};
use crate::error::{Error, Result};
use crate::options::StoreOptions;
use crate::recent::Recent;
use crate::types::{Deleted, Event, EventKind, KeyRange, KeyValue, ListOptions, ListResult};
use crate::watch::{Hub, WatchStream};

/// How many revisions one compaction step covers; writes run between steps.
const COMPACT_STEP: i64 = 10_000;

enum Request {
    Write(Op, oneshot::Sender<OpOutcome>),
    SetCompacted(i64, oneshot::Sender<Result<()>>),
    CompactRange(i64, i64, i64, oneshot::Sender<Result<u64>>),
    Reclaim(oneshot::Sender<Result<()>>),
}

/// Shared between the store handle, the writer and the compactor.
pub(crate) struct Shared {
    engine: Arc<dyn Engine>,
    hub: Hub,
    current: AtomicI64,
    /// Keys written lately, read without the engine.
    recent: Recent,
    compacted: Arc<AtomicI64>,
    /// One compaction at a time.
    compaction: Mutex<()>,
}

/// A store with a local writer. See the module docs.
pub(crate) struct LocalStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl LocalStore {
    pub async fn start(engine: Arc<dyn Engine>, options: StoreOptions) -> Result<Self> {
        let (current, compacted) = engine.revisions().await?;
        let shared = Arc::new(Shared {
            engine,
            hub: Hub::new(options.watch_buffer, options.watch_recent_events, current),
            current: AtomicI64::new(current),
            recent: Recent::default(),
            compacted: Arc::new(AtomicI64::new(compacted)),
            compaction: Mutex::new(()),
        });
        let (tx, rx) = mpsc::channel(options.max_batch.max(1) * 4);
        let writer = tokio::spawn(writer(shared.clone(), rx, options.max_batch.max(1)));
        let store = LocalStore {
            shared,
            tx: Mutex::new(Some(tx)),
            tasks: Mutex::new(vec![writer]),
        };
        if !options.compaction_interval.is_zero() {
            let handle = tokio::spawn(compactor::run(store.handle().await?, options));
            store.tasks.lock().await.push(handle);
        }
        Ok(store)
    }

    /// A handle for background tasks that send requests to the writer.
    async fn handle(&self) -> Result<Handle> {
        let tx = self.tx.lock().await.clone().ok_or(Error::Closed)?;
        Ok(Handle {
            shared: self.shared.clone(),
            tx,
        })
    }

    async fn write(&self, op: Op) -> Result<Event> {
        if op.key().is_empty() {
            return Err(Error::InvalidArgument("key must not be empty".into()));
        }
        self.handle().await?.call(|r| Request::Write(op, r)).await?
    }

    /// The revision to read at: the current one, or a past one still available.
    fn read_revision(&self, revision: Option<i64>) -> Result<i64> {
        let current = self.shared.current.load(Ordering::Acquire);
        match revision {
            None | Some(0) => Ok(current),
            Some(r) if r > current => Err(Error::FutureRevision {
                requested: r,
                current,
            }),
            Some(r) if r < 0 => Err(Error::InvalidArgument(format!("revision {r} < 0"))),
            Some(r) => self.check_compacted(r).map(|()| r),
        }
    }

    /// Fails when history before `revision` may be gone; call after a read too.
    fn check_compacted(&self, revision: i64) -> Result<()> {
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if revision < compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted,
            });
        }
        Ok(())
    }
}

/// What the compactor needs: the shared state and a way to the writer.
#[derive(Clone)]
pub(crate) struct Handle {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Request>,
}

impl Handle {
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    pub fn current(&self) -> i64 {
        self.shared.current.load(Ordering::Acquire)
    }

    /// Compact to `target` in steps, letting writes in between.
    pub async fn compact(&self, target: i64) -> Result<()> {
        let _one = self.shared.compaction.lock().await;
        let current = self.current();
        if target > current {
            return Err(Error::FutureRevision {
                requested: target,
                current,
            });
        }
        if target <= self.shared.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        // Record the revision first: readers check it after reading, so a reader that sees
        // an older value knows no row it needed was removed.
        self.call(|r| Request::SetCompacted(target, r)).await??;
        let mut removed = 0;
        let mut from = 0;
        while from < target {
            let to = (from + COMPACT_STEP).min(target);
            removed += self
                .call(|r| Request::CompactRange(from, to, target, r))
                .await??;
            from = to;
        }
        self.call(Request::Reclaim).await??;
        tracing::debug!(revision = target, removed, "compacted the store");
        Ok(())
    }
}

async fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>, max_batch: usize) {
    let mut held: Option<Request> = None;
    loop {
        let first = match held.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => break,
            },
        };
        let (op, reply) = match first {
            Request::Write(op, reply) => (op, reply),
            other => {
                serve_maintenance(&shared, other).await;
                continue;
            }
        };
        let mut ops = vec![op];
        let mut replies = vec![reply];
        while ops.len() < max_batch {
            match rx.try_recv() {
                Ok(Request::Write(op, reply)) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Ok(other) => {
                    held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        commit(&shared, &ops, replies).await;
    }
    tracing::debug!("store writer stopped");
}

async fn commit(shared: &Shared, ops: &[Op], replies: Vec<oneshot::Sender<OpOutcome>>) {
    let first = shared.current.load(Ordering::Acquire) + 1;
    match shared.engine.apply(ops, first).await {
        Ok(outcomes) => {
            let events: Vec<Event> = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok().cloned())
                .collect();
            if let Some(last) = events.last() {
                let last = last.revision();
                // Readable before it is announced: a watcher that reads what an event
                // names must find it.
                shared.recent.commit(&events, &shared.current, last);
                shared.hub.publish(events);
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A caller that went away does not undo a committed write.
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, writes = ops.len(), "store commit failed");
            shared.recent.clear();
            resync(shared).await;
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// After a failed commit, take the revision from the engine: a commit that failed late (an
/// fsync error, say) may have landed after all. If it did, watchers missed its events, so
/// they are ended and re-watch from the database.
async fn resync(shared: &Shared) {
    let ours = shared.current.load(Ordering::Acquire);
    match shared.engine.revisions().await {
        Ok((stored, _)) if stored != ours => {
            tracing::error!(
                ours,
                stored,
                "revision moved in a failed commit; ending watches"
            );
            shared.hub.reset(stored);
            shared.current.store(stored, Ordering::Release);
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot read the store's revision"),
    }
}

async fn serve_maintenance(shared: &Shared, request: Request) {
    match request {
        Request::Write(..) => unreachable!("writes are batched by the writer"),
        Request::SetCompacted(revision, reply) => {
            let result = shared.engine.set_compacted(revision).await;
            if result.is_ok() {
                shared.compacted.store(revision, Ordering::Release);
            }
            let _ = reply.send(result);
        }
        Request::CompactRange(from, to, upto, reply) => {
            let _ = reply.send(shared.engine.compact_range(from, to, upto).await);
        }
        Request::Reclaim(reply) => {
            let _ = reply.send(shared.engine.reclaim().await);
        }
    }
}

#[async_trait]
impl Backend for LocalStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let op = Op::Create {
            key: key.to_string(),
            value: Bytes::from(value),
        };
        Ok(self.write(op).await?.kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        let op = Op::Update {
            key: key.to_string(),
            value: Bytes::from(value),
            expected: expected_revision,
        };
        Ok(self.write(op).await?.kv)
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<Deleted> {
        let op = Op::Delete {
            key: key.to_string(),
            expected: expected_revision,
        };
        let event = self.write(op).await?;
        debug_assert_eq!(event.kind, EventKind::Delete);
        let prev = event.prev.ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        Ok(Deleted {
            revision: event.kv.mod_revision,
            prev,
        })
    }

    async fn get(&self, key: &str, revision: Option<i64>) -> Result<(i64, Option<KeyValue>)> {
        if matches!(revision, None | Some(0))
            && let Some((rev, kv)) = self.shared.recent.get(key, &self.shared.current)
        {
            return Ok((rev, Some(kv)));
        }
        let rev = self.read_revision(revision)?;
        let row = self.shared.engine.get(key, rev).await?;
        self.check_compacted(rev)?;
        Ok((rev, live_kv(key, row)))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let rev = self.read_revision(options.revision)?;
        let range = KeyRange::prefix(prefix);
        let fetch = match options.limit {
            0 => 0,
            n => n + 1,
        };
        let mut kvs = self
            .shared
            .engine
            .list(&range, options.continue_after.as_deref(), fetch, rev)
            .await?;
        self.check_compacted(rev)?;
        let more = options.limit > 0 && kvs.len() > options.limit;
        kvs.truncate(if more { options.limit } else { kvs.len() });
        Ok(ListResult {
            revision: rev,
            kvs,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<(i64, i64)> {
        let rev = self.read_revision(None)?;
        let n = self
            .shared
            .engine
            .count(&KeyRange::prefix(prefix), rev)
            .await?;
        Ok((rev, n))
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<i64> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.handle().await?.compact(revision).await
    }

    async fn watch(&self, prefix: &str, start_revision: i64) -> Result<WatchStream> {
        if start_revision < 0 {
            return Err(Error::InvalidArgument(format!(
                "watch start revision {start_revision} < 0"
            )));
        }
        let range = KeyRange::prefix(prefix);
        let sub = self.shared.hub.subscribe(&range, start_revision)?;
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if sub.start <= compacted {
            return Err(Error::Compacted {
                requested: sub.start,
                compacted,
            });
        }
        Ok(WatchStream::new(
            range,
            sub,
            self.shared.engine.clone(),
            self.shared.compacted.clone(),
        ))
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.shared.engine.size_on_disk().await
    }

    async fn close(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().await);
        // Background tasks hold senders too: stop them first so the writer sees the channel
        // close once the writes already queued are committed.
        let writer = (!tasks.is_empty()).then(|| tasks.remove(0));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        drop(self.tx.lock().await.take());
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        self.shared.hub.close();
        self.shared.engine.close().await;
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
