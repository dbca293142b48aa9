//! The in-memory engine: the same contract as SQLite, nothing on disk. For tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::engine::{Engine, Latest, NewRow, Op, OpOutcome, decide};
use crate::error::Result;
use crate::types::{Event, EventKind, KeyRange, KeyValue};

#[derive(Default)]
struct State {
    /// Rows of each key, ascending by revision.
    keys: BTreeMap<String, BTreeMap<i64, Row>>,
    /// Key of each row by revision, for history reads.
    by_revision: BTreeMap<i64, String>,
    current: i64,
    compacted: i64,
}

#[derive(Clone)]
struct Row {
    create_revision: i64,
    deleted: bool,
    prev_revision: i64,
    value: bytes::Bytes,
}

impl Row {
    fn latest(&self, revision: i64) -> Latest {
        Latest {
            revision,
            create_revision: self.create_revision,
            deleted: self.deleted,
            value: self.value.clone(),
        }
    }
}

impl State {
    fn at(&self, key: &str, revision: i64) -> Option<Latest> {
        let rows = self.keys.get(key)?;
        let (rev, row) = rows.range(..=revision).next_back()?;
        Some(row.latest(*rev))
    }

    fn range<'a>(
        &'a self,
        range: &'a KeyRange,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a BTreeMap<i64, Row>)> + 'a {
        let lower = match after {
            Some(a) if a >= range.start.as_str() => Bound::Excluded(a.to_string()),
            _ => Bound::Included(range.start.clone()),
        };
        self.keys
            .range((lower, Bound::Unbounded))
            .take_while(move |(k, _)| range.end.as_deref().is_none_or(|e| k.as_str() < e))
    }

    fn insert(&mut self, row: NewRow) {
        self.by_revision.insert(row.revision, row.key.to_string());
        self.current = row.revision;
        self.keys.entry(row.key.to_string()).or_default().insert(
            row.revision,
            Row {
                create_revision: row.create_revision,
                deleted: row.deleted,
                prev_revision: row.prev_revision,
                value: row.value,
            },
        );
    }
}

/// An engine that keeps every row in memory.
#[derive(Default)]
pub(crate) struct MemoryEngine {
    state: Mutex<State>,
}

impl MemoryEngine {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied batch: `apply` computes
        // every row before inserting any.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    async fn revisions(&self) -> Result<(i64, i64)> {
        let s = self.lock();
        Ok((s.current, s.compacted))
    }

    async fn apply(&self, ops: &[Op], first_revision: i64) -> Result<Vec<OpOutcome>> {
        let mut s = self.lock();
        let mut next = first_revision;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let latest = s.at(op.key(), i64::MAX);
            match decide(op, latest.as_ref(), next) {
                Ok((row, event)) => {
                    s.insert(row);
                    next += 1;
                    out.push(Ok(event));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        Ok(out)
    }

    async fn get(&self, key: &str, revision: i64) -> Result<Option<Latest>> {
        Ok(self.lock().at(key, revision))
    }

    async fn list(
        &self,
        range: &KeyRange,
        after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<Vec<KeyValue>> {
        let s = self.lock();
        let live = s.range(range, after).filter_map(|(key, rows)| {
            let (rev, row) = rows.range(..=revision).next_back()?;
            (!row.deleted).then(|| KeyValue {
                key: Arc::from(key.as_str()),
                value: row.value.clone(),
                create_revision: row.create_revision,
                mod_revision: *rev,
            })
        });
        Ok(match limit {
            0 => live.collect(),
            n => live.take(n).collect(),
        })
    }

    async fn count(&self, range: &KeyRange, revision: i64) -> Result<i64> {
        let s = self.lock();
        let n = s
            .range(range, None)
            .filter(|(_, rows)| {
                rows.range(..=revision)
                    .next_back()
                    .is_some_and(|(_, r)| !r.deleted)
            })
            .count();
        Ok(n as i64)
    }

    async fn history(
        &self,
        range: &KeyRange,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let s = self.lock();
        let mut out = Vec::new();
        for (rev, key) in s.by_revision.range(from..=to) {
            if out.len() >= limit {
                break;
            }
            if !range.contains(key) {
                continue;
            }
            let rows = &s.keys[key];
            let row = &rows[rev];
            let prev = rows
                .get(&row.prev_revision)
                .filter(|p| !p.deleted)
                .map(|p| KeyValue {
                    key: Arc::from(key.as_str()),
                    value: p.value.clone(),
                    create_revision: p.create_revision,
                    mod_revision: row.prev_revision,
                });
            out.push(Event {
                kind: if row.deleted {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                kv: KeyValue {
                    key: Arc::from(key.as_str()),
                    value: row.value.clone(),
                    create_revision: row.create_revision,
                    mod_revision: *rev,
                },
                prev,
            });
        }
        Ok(out)
    }

    async fn set_compacted(&self, revision: i64) -> Result<()> {
        self.lock().compacted = revision;
        Ok(())
    }

    async fn compact_range(&self, from: i64, to: i64, upto: i64) -> Result<u64> {
        let mut s = self.lock();
        let candidates: Vec<(i64, String)> = s
            .by_revision
            .range(from + 1..=to)
            .map(|(r, k)| (*r, k.clone()))
            .collect();
        let mut removed = 0;
        for (rev, key) in candidates {
            let Some(rows) = s.keys.get_mut(&key) else {
                continue;
            };
            let superseded = rev < upto && rows.range(rev + 1..=upto).next().is_some();
            if superseded || rows[&rev].deleted {
                rows.remove(&rev);
                if rows.is_empty() {
                    s.keys.remove(&key);
                }
                s.by_revision.remove(&rev);
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn reclaim(&self) -> Result<()> {
        Ok(())
    }

    async fn size_on_disk(&self) -> Result<u64> {
        Ok(0)
    }

    async fn close(&self) {}
}
