//! Reads at a revision, on the reader pool.

use std::sync::Arc;

use bytes::Bytes;
use sqlx::AssertSqlSafe;

use super::SqliteEngine;
use crate::engine::Latest;
use crate::error::Result;
use crate::types::{Event, EventKind, KeyRange, KeyValue};

/// `WHERE` terms and binds for a key range, optionally starting after a key. Separate SQL
/// texts per shape keep every query on the (name, id) index.
fn range_terms<'a>(
    col: &str,
    range: &'a KeyRange,
    after: Option<&'a str>,
) -> (String, Vec<&'a str>) {
    let mut sql = String::new();
    let mut binds = Vec::new();
    match after {
        Some(a) if a >= range.start.as_str() => {
            sql.push_str(&format!(" AND {col} > ?"));
            binds.push(a);
        }
        _ => {
            sql.push_str(&format!(" AND {col} >= ?"));
            binds.push(range.start.as_str());
        }
    }
    if let Some(end) = &range.end {
        sql.push_str(&format!(" AND {col} < ?"));
        binds.push(end.as_str());
    }
    (sql, binds)
}

type HistoryRow = (
    i64,
    String,
    i64,
    bool,
    Vec<u8>,
    Option<i64>,
    Option<i64>,
    Option<bool>,
    Option<Vec<u8>>,
);

impl SqliteEngine {
    pub(super) async fn read_get(&self, key: &str, revision: i64) -> Result<Option<Latest>> {
        let row: Option<(i64, i64, bool, Vec<u8>)> = sqlx::query_as(
            "SELECT id, created, deleted, value FROM kv WHERE name = ? AND id <= ?
             ORDER BY id DESC LIMIT 1",
        )
        .bind(key)
        .bind(revision)
        .fetch_optional(&self.readers)
        .await?;
        Ok(
            row.map(|(revision, create_revision, deleted, value)| Latest {
                revision,
                create_revision,
                deleted,
                value: Bytes::from(value),
            }),
        )
    }

    pub(super) async fn read_list(
        &self,
        range: &KeyRange,
        after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<Vec<KeyValue>> {
        let (terms, binds) = range_terms("k.name", range, after);
        let sql = format!(
            "SELECT k.name, k.id, k.created, k.value FROM kv k
             WHERE k.deleted = 0 {terms}
               AND k.id = (SELECT MAX(n.id) FROM kv n WHERE n.name = k.name AND n.id <= ?)
             ORDER BY k.name LIMIT ?"
        );
        let mut q = sqlx::query_as::<_, (String, i64, i64, Vec<u8>)>(AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let limit = if limit == 0 { -1 } else { limit as i64 };
        let rows = q
            .bind(revision)
            .bind(limit)
            .fetch_all(&self.readers)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key, mod_revision, create_revision, value)| KeyValue {
                key: Arc::from(key),
                value: Bytes::from(value),
                create_revision,
                mod_revision,
            })
            .collect())
    }

    pub(super) async fn read_count(&self, range: &KeyRange, revision: i64) -> Result<i64> {
        let (terms, binds) = range_terms("k.name", range, None);
        let sql = format!(
            "SELECT COUNT(*) FROM kv k
             WHERE k.deleted = 0 {terms}
               AND k.id = (SELECT MAX(n.id) FROM kv n WHERE n.name = k.name AND n.id <= ?)"
        );
        let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        Ok(q.bind(revision).fetch_one(&self.readers).await?)
    }

    pub(super) async fn read_history(
        &self,
        range: &KeyRange,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let (terms, binds) = range_terms("k.name", range, None);
        let sql = format!(
            "SELECT k.id, k.name, k.created, k.deleted, k.value, p.id, p.created, p.deleted, p.value
             FROM kv k LEFT JOIN kv p ON p.id = k.prev_revision
             WHERE k.id >= ? AND k.id <= ? {terms}
             ORDER BY k.id LIMIT ?"
        );
        let mut q = sqlx::query_as::<_, HistoryRow>(AssertSqlSafe(sql))
            .bind(from)
            .bind(to);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.bind(limit as i64).fetch_all(&self.readers).await?;
        Ok(rows.into_iter().map(history_event).collect())
    }
}

fn history_event(row: HistoryRow) -> Event {
    let (rev, key, created, deleted, value, p_rev, p_created, p_deleted, p_value) = row;
    let key: Arc<str> = Arc::from(key);
    let prev = match (p_rev, p_created, p_deleted, p_value) {
        (Some(mod_revision), Some(create_revision), Some(false), Some(v)) => Some(KeyValue {
            key: key.clone(),
            value: Bytes::from(v),
            create_revision,
            mod_revision,
        }),
        _ => None,
    };
    Event {
        kind: if deleted {
            EventKind::Delete
        } else {
            EventKind::Put
        },
        kv: KeyValue {
            key,
            value: Bytes::from(value),
            create_revision: created,
            mod_revision: rev,
        },
        prev,
    }
}
