//! Writes: batches, compaction and reclaiming space, on the writer connection.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

use super::SqliteEngine;
use crate::engine::{Engine, Latest, NewRow, Op, OpOutcome, decide};
use crate::error::{Error, Result};
use crate::types::{Event, KeyRange, KeyValue};

/// Names per `IN (...)` lookup and rows per multi-row `INSERT`: few distinct SQL texts, so
/// every statement stays in the connection's cache.
const CHUNK: usize = 32;

fn placeholders(n: usize, row: &str) -> String {
    vec![row; n].join(",")
}

/// The newest row of each of `keys`, in one query per chunk.
async fn latest_many(
    conn: &mut SqliteConnection,
    keys: &[&str],
) -> Result<HashMap<String, Latest>> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        // One index seek per name (the MAX optimisation); `IN (...) GROUP BY name` would
        // walk every row of each name's history instead.
        let sql = format!(
            "WITH keys(n) AS (VALUES {})
             SELECT k.name, k.id, k.created, k.deleted, k.value
             FROM keys JOIN kv k ON k.id = (SELECT MAX(id) FROM kv WHERE name = keys.n)",
            placeholders(chunk.len(), "(?)")
        );
        let mut q = sqlx::query_as::<_, (String, i64, i64, bool, Vec<u8>)>(AssertSqlSafe(sql));
        for k in chunk {
            q = q.bind(*k);
        }
        for (name, revision, create_revision, deleted, value) in q.fetch_all(&mut *conn).await? {
            let latest = Latest {
                revision,
                create_revision,
                deleted,
                value: Bytes::from(value),
            };
            out.insert(name, latest);
        }
    }
    Ok(out)
}

/// Append `rows` with one multi-row INSERT per chunk.
async fn insert_many(conn: &mut SqliteConnection, rows: &[NewRow]) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO kv (id, name, created, deleted, prev_revision, value) VALUES {}",
            placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?)")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            q = q
                .bind(row.revision)
                .bind(&*row.key)
                .bind(row.create_revision)
                .bind(row.deleted)
                .bind(row.prev_revision)
                .bind(row.value.as_ref());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Decide `ops` against the newest rows of their keys and append the rows of those that
/// succeed, from revision `first`.
async fn apply_ops(conn: &mut SqliteConnection, ops: &[Op], first: i64) -> Result<Vec<OpOutcome>> {
    let mut keys: Vec<&str> = ops.iter().map(Op::key).collect();
    keys.sort_unstable();
    keys.dedup();
    // The newest row of every key the batch touches; later ops in the batch see the rows
    // earlier ones add.
    let mut newest = latest_many(conn, &keys).await?;
    let mut next = first;
    let mut rows = Vec::with_capacity(ops.len());
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        match decide(op, newest.get(op.key()), next) {
            Ok((row, event)) => {
                newest.insert(row.key.to_string(), row.as_latest());
                rows.push(row);
                next += 1;
                out.push(Ok(event));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    insert_many(conn, &rows).await?;
    Ok(out)
}

impl SqliteEngine {
    /// Run `f` on the writer connection. After a failure, roll back whatever transaction
    /// may still be open so the next write starts clean.
    async fn with_writer<T>(
        &self,
        f: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.writer.lock().await;
        let conn = guard.as_mut().ok_or(Error::Closed)?;
        let result = f(&mut *conn).await;
        if result.is_err() {
            // "no transaction is active" is the usual answer here, and fine.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        result
    }
}

#[async_trait]
impl Engine for SqliteEngine {
    async fn revisions(&self) -> Result<(i64, i64)> {
        self.with_writer(async |conn| {
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM kv")
                .fetch_one(&mut *conn)
                .await?;
            let compacted: Option<i64> =
                sqlx::query_scalar("SELECT value FROM meta WHERE key = 'compacted'")
                    .fetch_optional(&mut *conn)
                    .await?;
            let compacted = compacted.unwrap_or(0);
            Ok((max.unwrap_or(0).max(compacted), compacted))
        })
        .await
    }

    async fn apply(&self, ops: &[Op], first_revision: i64) -> Result<Vec<OpOutcome>> {
        self.with_writer(async |conn| {
            // A batch that fits one INSERT is committed by it alone: no BEGIN and COMMIT
            // round trips to the connection's thread. The read before it cannot go stale,
            // as this connection is the only writer.
            if ops.len() <= CHUNK {
                return apply_ops(conn, ops, first_revision).await;
            }
            let mut tx = conn.begin().await?;
            let out = apply_ops(&mut tx, ops, first_revision).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    async fn get(&self, key: &str, revision: i64) -> Result<Option<Latest>> {
        self.read_get(key, revision).await
    }

    async fn list(
        &self,
        range: &KeyRange,
        after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<Vec<KeyValue>> {
        self.read_list(range, after, limit, revision).await
    }

    async fn count(&self, range: &KeyRange, revision: i64) -> Result<i64> {
        self.read_count(range, revision).await
    }

    async fn history(
        &self,
        range: &KeyRange,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.read_history(range, from, to, limit).await
    }

    async fn set_compacted(&self, revision: i64) -> Result<()> {
        self.with_writer(async |conn| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ('compacted', ?)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(revision)
            .execute(conn)
            .await?;
            Ok(())
        })
        .await
    }

    async fn compact_range(&self, from: i64, to: i64, upto: i64) -> Result<u64> {
        self.with_writer(async |conn| {
            let done = sqlx::query(
                "DELETE FROM kv WHERE id > ? AND id <= ? AND (deleted = 1 OR EXISTS (
                    SELECT 1 FROM kv n WHERE n.name = kv.name AND n.id > kv.id AND n.id <= ?))",
            )
            .bind(from)
            .bind(to)
            .bind(upto)
            .execute(conn)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn reclaim(&self) -> Result<()> {
        self.with_writer(async |conn| {
            sqlx::query("PRAGMA incremental_vacuum")
                .execute(&mut *conn)
                .await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
        .await
    }

    async fn size_on_disk(&self) -> Result<u64> {
        Ok(self.size().await)
    }

    async fn close(&self) {
        self.shutdown().await;
    }
}
