//! Snapshots of a SQLite datastore, one file each: a consistent copy taken online with
//! `VACUUM INTO` (one read transaction's view while the writer goes on), plus small files
//! (certificates, keys) kept in a table of their own, and the restore of both.
//!
//! A snapshot is a SQLite database (rollback journal, not WAL) holding the store's tables and
//! `minik_snapshot_files(path, mode, content)`. Restoring copies it next to the target
//! database, drops that table, switches it to WAL and renames it into place.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::error::{Error, Result};

pub use files::{SnapshotFile, collect_files, write_files};
use files::{TempFile, check_relative, copy_private, sibling};

/// The name of the table of a snapshot that carries the files, as a literal for `concat!`
/// (sqlx takes only static SQL).
macro_rules! files_table {
    () => {
        "minik_snapshot_files"
    };
}

/// The table of a snapshot that carries the files.
pub const FILES_TABLE: &str = files_table!();

/// What every SQLite database file starts with.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The store's revision at the time of the snapshot.
    pub revision: i64,
    /// Keys that exist at that revision.
    pub keys: i64,
    /// How many files it carries.
    pub files: usize,
}

/// Save a snapshot of the SQLite database `db` (which a server may be using) and `files` to
/// `dest`, which must not exist. The file appears complete or not at all, mode 0600.
pub async fn save(db: &Path, dest: &Path, files: &[SnapshotFile]) -> Result<SnapshotInfo> {
    if !is_sqlite(db)? {
        return Err(Error::InvalidArgument(format!(
            "{} is not a SQLite datastore",
            db.display()
        )));
    }
    if dest.exists() {
        return Err(Error::InvalidArgument(format!(
            "{} already exists",
            dest.display()
        )));
    }
    let temp = TempFile::new(sibling(dest, true, ".partial")?);
    let mut source = connect(db, true).await?;
    require_tables(&mut source, db, &["kv", "meta"]).await?;
    let target = temp
        .0
        .to_str()
        .ok_or_else(|| Error::InvalidArgument(format!("{}: not a UTF-8 path", temp.0.display())))?;
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut source)
        .await?;
    source.close().await?;
    fs::set_permissions(&temp.0, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("setting mode 0600 on {target}"), e))?;
    let mut conn = connect_with(&temp.0, SqliteJournalMode::Delete).await?;
    let create = concat!(
        "CREATE TABLE ",
        files_table!(),
        " (path TEXT PRIMARY KEY, mode INTEGER NOT NULL, content BLOB NOT NULL)"
    );
    let mut tx = conn.begin().await?;
    sqlx::query(create).execute(&mut *tx).await?;
    let insert = concat!(
        "INSERT INTO ",
        files_table!(),
        " (path, mode, content) VALUES (?, ?, ?)"
    );
    for f in files {
        check_relative(&f.path)?;
        sqlx::query(insert)
            .bind(&f.path)
            .bind(i64::from(f.mode))
            .bind(&f.content)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let info = info(&mut conn).await?;
    conn.close().await?;
    temp.persist(dest)?;
    Ok(info)
}

/// Check that `snapshot` is a readable, intact minik snapshot; what it holds.
pub async fn inspect(snapshot: &Path) -> Result<SnapshotInfo> {
    let mut conn = open_snapshot(snapshot).await?;
    let info = info(&mut conn).await?;
    conn.close().await?;
    Ok(info)
}

/// Restore `snapshot` as the SQLite database `db`, which must not exist (nor its `-wal` and
/// `-shm` files; see [`move_aside`]); the files it carries are returned, for the caller to
/// put back with [`write_files`]. The caller keeps servers off `db` (see `DirLock`).
pub async fn restore(snapshot: &Path, db: &Path) -> Result<(SnapshotInfo, Vec<SnapshotFile>)> {
    let mut conn = open_snapshot(snapshot).await?;
    let info = info(&mut conn).await?;
    let files = read_files(&mut conn).await?;
    conn.close().await?;
    if let Some(existing) = db_files(db).into_iter().find(|p| p.exists()) {
        return Err(Error::InvalidArgument(format!(
            "{} exists; move the old datastore aside first",
            existing.display()
        )));
    }
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_dir(dir)?;
    }
    let temp = TempFile::new(sibling(db, true, ".restore")?);
    copy_private(snapshot, &temp.0)?;
    let mut conn = connect_with(&temp.0, SqliteJournalMode::Wal).await?;
    sqlx::query(concat!("DROP TABLE ", files_table!()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    temp.persist(db)?;
    Ok((info, files))
}

/// Move the database `db` and its `-wal` and `-shm` files (those that exist) to the same
/// names with `suffix` appended to `db`'s name; the new path of the database.
pub fn move_aside(db: &Path, suffix: &str) -> Result<PathBuf> {
    let moved = sibling(db, false, suffix)?;
    for (from, to) in db_files(db).into_iter().zip(db_files(&moved)) {
        if from.exists() {
            fs::rename(&from, &to).map_err(|e| {
                Error::io(format!("moving {} to {}", from.display(), to.display()), e)
            })?;
        }
    }
    Ok(moved)
}
/// Whether `path` is a file that starts like a SQLite database.
fn is_sqlite(path: &Path) -> Result<bool> {
    let mut head = [0u8; 16];
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    Ok(file.read_exact(&mut head).is_ok() && &head == SQLITE_HEADER)
}

async fn open_snapshot(snapshot: &Path) -> Result<SqliteConnection> {
    let not_snapshot = |why: &str| {
        Error::InvalidArgument(format!(
            "{} is not a minik snapshot ({why})",
            snapshot.display()
        ))
    };
    if !is_sqlite(snapshot)? {
        return Err(not_snapshot("not a SQLite database"));
    }
    let mut conn = connect(snapshot, true).await?;
    require_tables(&mut conn, snapshot, &["kv", "meta", FILES_TABLE]).await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await?;
    if check != "ok" {
        return Err(not_snapshot(&format!("damaged: {check}")));
    }
    Ok(conn)
}

async fn require_tables(conn: &mut SqliteConnection, path: &Path, tables: &[&str]) -> Result<()> {
    for table in tables {
        let found: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(table)
                .fetch_optional(&mut *conn)
                .await?;
        if found.is_none() {
            let what = if *table == FILES_TABLE {
                "a minik snapshot"
            } else {
                "a minik datastore"
            };
            return Err(Error::InvalidArgument(format!(
                "{} is not {what} (it has no table {table})",
                path.display()
            )));
        }
    }
    Ok(())
}

async fn info(conn: &mut SqliteConnection) -> Result<SnapshotInfo> {
    let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM kv")
        .fetch_one(&mut *conn)
        .await?;
    let compacted: Option<i64> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'compacted'")
            .fetch_optional(&mut *conn)
            .await?;
    let keys: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM kv k WHERE k.deleted = 0 AND k.id = (SELECT MAX(id) FROM kv WHERE name = k.name)",
    )
    .fetch_one(&mut *conn)
    .await?;
    let has_files: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(FILES_TABLE)
            .fetch_optional(&mut *conn)
            .await?;
    let files: i64 = match has_files {
        Some(_) => {
            sqlx::query_scalar(concat!("SELECT COUNT(*) FROM ", files_table!()))
                .fetch_one(&mut *conn)
                .await?
        }
        None => 0,
    };
    Ok(SnapshotInfo {
        revision: max.unwrap_or(0).max(compacted.unwrap_or(0)),
        keys,
        files: usize::try_from(files).unwrap_or(0),
    })
}

async fn read_files(conn: &mut SqliteConnection) -> Result<Vec<SnapshotFile>> {
    let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(concat!(
        "SELECT path, mode, content FROM ",
        files_table!(),
        " ORDER BY path"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(path, mode, content)| {
            check_relative(&path)?;
            Ok(SnapshotFile {
                path,
                mode: u32::try_from(mode).unwrap_or(0o600) & 0o7777,
                content,
            })
        })
        .collect()
}

fn base_options(path: &Path) -> Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .busy_timeout(Duration::from_secs(30))
        .disable_statement_logging())
}

/// A connection to an existing database, read-only when asked.
async fn connect(path: &Path, read_only: bool) -> Result<SqliteConnection> {
    Ok(base_options(path)?.read_only(read_only).connect().await?)
}

/// A read-write connection to an existing database, in `mode`, committing durably.
async fn connect_with(path: &Path, mode: SqliteJournalMode) -> Result<SqliteConnection> {
    Ok(base_options(path)?
        .journal_mode(mode)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?)
}

/// The files of a SQLite database in WAL mode.
fn db_files(db: &Path) -> [PathBuf; 3] {
    let p = db.display();
    [
        db.to_path_buf(),
        PathBuf::from(format!("{p}-wal")),
        PathBuf::from(format!("{p}-shm")),
    ]
}

mod files;
#[cfg(test)]
mod tests;
