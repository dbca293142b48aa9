//! minik's revisioned key-value store: etcd's contract (one global revision, create and mod
//! revisions per key, compare-and-swap, reads at a past revision, watch from a revision,
//! compaction) on SQLite, with an in-memory twin for tests. It knows nothing of Kubernetes.
//!
//! Open one with [`open`]; every backend meets the [`Backend`] contract.

mod backend;
mod compactor;
mod engine;
mod error;
mod local;
mod lock;
mod memory;
mod options;
mod recent;
pub mod snapshot;
mod sqlite;
mod types;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use backend::Backend;
pub use error::{Error, Result};
pub use lock::{DirLock, private_dir, private_file};
pub use options::StoreOptions;
pub use types::{Deleted, Event, EventKind, KeyValue, ListOptions, ListResult};
pub use watch::{Progress, WatchStream};

/// Where the SQLite database lives inside a data directory.
pub fn default_sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("db").join("state.db")
}

/// Open the datastore named by `endpoint`:
/// - empty or `sqlite://`: SQLite at `<data_dir>/db/state.db`;
/// - `sqlite:///path/to/file.db` (or `sqlite:relative.db`): SQLite at that path;
/// - `memory://`: in memory, nothing kept (tests).
///
/// The directory holding a SQLite database is made 0700 and locked: a second process gets
/// `Error::Locked`.
pub async fn open(
    endpoint: &str,
    data_dir: &Path,
    options: StoreOptions,
) -> Result<Arc<dyn Backend>> {
    let engine: Arc<dyn engine::Engine> = match parse_endpoint(endpoint, data_dir)? {
        Endpoint::Memory => Arc::new(memory::MemoryEngine::default()),
        Endpoint::Sqlite(path) => {
            if path.starts_with(data_dir) {
                private_dir(data_dir)?;
            }
            Arc::new(sqlite::SqliteEngine::open(&path).await?)
        }
    };
    Ok(Arc::new(local::LocalStore::start(engine, options).await?))
}

#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Memory,
    Sqlite(PathBuf),
}

fn parse_endpoint(endpoint: &str, data_dir: &Path) -> Result<Endpoint> {
    let e = endpoint.trim();
    if e.is_empty() || e == "sqlite" || e == "sqlite://" {
        return Ok(Endpoint::Sqlite(default_sqlite_path(data_dir)));
    }
    if e == "memory" || e == "memory://" {
        return Ok(Endpoint::Memory);
    }
    if let Some(rest) = e.strip_prefix("sqlite://").or(e.strip_prefix("sqlite:")) {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Ok(Endpoint::Sqlite(default_sqlite_path(data_dir)));
        }
        return Ok(Endpoint::Sqlite(PathBuf::from(path)));
    }
    let scheme = e.split("://").next().unwrap_or(e);
    match scheme {
        "postgres" | "postgresql" | "http" | "https" | "etcd" => Err(Error::Unsupported(format!(
            "{e}: the {scheme} datastore is not built yet; use sqlite:// (the default)"
        ))),
        _ => Err(Error::InvalidArgument(format!(
            "datastore endpoint {e:?}: expected sqlite://PATH, memory:// or nothing"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let d = Path::new("/var/lib/minik");
        let default = Endpoint::Sqlite(PathBuf::from("/var/lib/minik/db/state.db"));
        assert_eq!(parse_endpoint("", d).unwrap(), default);
        assert_eq!(parse_endpoint("sqlite://", d).unwrap(), default);
        assert_eq!(
            parse_endpoint("sqlite:///tmp/x.db?_journal=WAL", d).unwrap(),
            Endpoint::Sqlite(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(parse_endpoint("memory://", d).unwrap(), Endpoint::Memory);
        assert!(matches!(
            parse_endpoint("postgres://u@h/db", d),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            parse_endpoint("bogus", d),
            Err(Error::InvalidArgument(_))
        ));
    }
}
