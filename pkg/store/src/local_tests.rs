//! The writer's failure path: a commit that reports an error but landed anyway.

use std::sync::atomic::AtomicBool;

use super::*;
use crate::memory::MemoryEngine;
use crate::types::KeyRange;

/// Commits like the memory engine, then (when armed) reports a failure, as a late fsync
/// error would.
#[derive(Default)]
struct LandsThenFails {
    inner: MemoryEngine,
    armed: AtomicBool,
}

#[async_trait]
impl Engine for LandsThenFails {
    async fn revisions(&self) -> Result<(i64, i64)> {
        self.inner.revisions().await
    }
    async fn apply(&self, ops: &[Op], first: i64) -> Result<Vec<OpOutcome>> {
        let out = self.inner.apply(ops, first).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(Error::Database("fsync failed".into()));
        }
        Ok(out)
    }
    async fn get(&self, key: &str, rev: i64) -> Result<Option<crate::engine::Latest>> {
        self.inner.get(key, rev).await
    }
    async fn list(
        &self,
        range: &KeyRange,
        after: Option<&str>,
        limit: usize,
        rev: i64,
    ) -> Result<Vec<KeyValue>> {
        self.inner.list(range, after, limit, rev).await
    }
    async fn count(&self, range: &KeyRange, rev: i64) -> Result<i64> {
        self.inner.count(range, rev).await
    }
    async fn history(&self, r: &KeyRange, from: i64, to: i64, n: usize) -> Result<Vec<Event>> {
        self.inner.history(r, from, to, n).await
    }
    async fn set_compacted(&self, rev: i64) -> Result<()> {
        self.inner.set_compacted(rev).await
    }
    async fn compact_range(&self, from: i64, to: i64, upto: i64) -> Result<u64> {
        self.inner.compact_range(from, to, upto).await
    }
    async fn reclaim(&self) -> Result<()> {
        Ok(())
    }
    async fn size_on_disk(&self) -> Result<u64> {
        Ok(0)
    }
    async fn close(&self) {}
}

#[tokio::test]
async fn a_failed_commit_that_landed_ends_watches_and_keeps_revisions_true() {
    let engine = Arc::new(LandsThenFails::default());
    let options = StoreOptions {
        compaction_interval: std::time::Duration::ZERO,
        ..StoreOptions::default()
    };
    let store = LocalStore::start(engine.clone(), options).await.unwrap();
    let a = store.create("/f/a", b"1".to_vec()).await.unwrap();
    let mut w = store.watch("/f/", 0).await.unwrap();
    engine.armed.store(true, Ordering::SeqCst);
    assert!(matches!(
        store.create("/f/b", b"2".to_vec()).await,
        Err(Error::Database(_))
    ));
    // The watcher cannot have seen /f/b: it is ended so its client re-watches.
    assert!(w.recv().await.is_none());
    // The store's revision follows what was stored, and a re-watch finds the event.
    assert_eq!(store.current_revision().await.unwrap(), a.mod_revision + 1);
    let mut again = store.watch("/f/", a.mod_revision + 1).await.unwrap();
    let e = again.recv().await.unwrap().unwrap();
    assert_eq!(&*e.kv.key, "/f/b");
    let c = store.create("/f/c", b"3".to_vec()).await.unwrap();
    assert_eq!(c.mod_revision, a.mod_revision + 2);
    assert_eq!(again.recv().await.unwrap().unwrap().kv, c);
}
