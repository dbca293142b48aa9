//! The SQLite engine: one append-only table of rows, one per revision.
//!
//! `kv(id = revision, name, created = create revision, deleted, prev_revision, value)`, with
//! an index on (name, id). The newest row of a name at or before revision R is its state at R.
//! WAL with `synchronous=FULL`: a commit is on disk when it returns. One writer connection
//! (used only by the store's writer task) and a pool of reader connections.

mod read;
mod write;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::lock::{DirLock, private_dir, private_file};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kv (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        value BLOB NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
];

/// The SQLite engine.
pub(crate) struct SqliteEngine {
    path: PathBuf,
    writer: Mutex<Option<SqliteConnection>>,
    readers: SqlitePool,
    lock: std::sync::Mutex<Option<DirLock>>,
}

impl SqliteEngine {
    /// Open (creating if needed) the database at `path`, locking its directory.
    pub async fn open(path: &Path) -> Result<Self> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        private_dir(dir)?;
        let lock = DirLock::acquire(dir)?;
        private_file(path)?;
        let base = SqliteConnectOptions::from_str("sqlite://")
            .map_err(Error::from)?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .pragma("journal_size_limit", (64 << 20).to_string())
            .disable_statement_logging();
        let mut writer = base
            .clone()
            .create_if_missing(true)
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .connect()
            .await?;
        for stmt in SCHEMA {
            sqlx::query(*stmt).execute(&mut writer).await?;
        }
        // Rows come back through a channel from SQLite's worker thread; a deeper buffer
        // lets big lists stream without a wake-up per row.
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(base.pragma("query_only", "ON").row_buffer_size(1024))
            .await?;
        tracing::info!(path = %path.display(), "opened SQLite datastore");
        Ok(SqliteEngine {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(writer)),
            readers,
            lock: std::sync::Mutex::new(Some(lock)),
        })
    }

    fn files(&self) -> [PathBuf; 3] {
        let p = self.path.display();
        [
            self.path.clone(),
            PathBuf::from(format!("{p}-wal")),
            PathBuf::from(format!("{p}-shm")),
        ]
    }

    async fn size(&self) -> u64 {
        let mut total = 0;
        for f in self.files() {
            if let Ok(m) = tokio::fs::metadata(&f).await {
                total += m.len();
            }
        }
        total
    }

    async fn shutdown(&self) {
        let writer = self.writer.lock().await.take();
        if let Some(conn) = writer
            && let Err(e) = conn.close().await
        {
            tracing::warn!(error = %e, "closing the SQLite writer");
        }
        self.readers.close().await;
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
