//! Errors of the store. The API server maps them to `metav1.Status` once, at its boundary.

/// Everything a store operation can fail with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// `create` of a key that exists.
    #[error("key {key:?} already exists")]
    KeyExists { key: String },
    /// `update`/`delete`/`get` of a key that does not exist.
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// Compare-and-swap failed: the key's mod revision is not the expected one.
    #[error("key {key:?} was modified: expected revision {expected}, current {current}")]
    Conflict {
        key: String,
        expected: i64,
        current: i64,
    },
    /// The requested revision has been compacted away (the API server answers 410 Gone).
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// The requested revision is newer than the store's current revision.
    #[error("required revision {requested} is in the future (current revision {current})")]
    FutureRevision { requested: i64, current: i64 },
    /// A watcher fell too far behind the writer and was ended; its client must re-list.
    #[error(
        "watcher fell too far behind and was closed; list again and watch from the new revision"
    )]
    WatcherTooSlow,
    /// Bad input to a store call (an empty key, an invalid endpoint, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store has been closed.
    #[error("the store is closed")]
    Closed,
    /// Another process holds the data directory.
    #[error(
        "data directory {path} is in use by another minik process (lock {lock} is held); stop it or use another --data-dir"
    )]
    Locked { path: String, lock: String },
    /// The endpoint names a backend this build does not have yet.
    #[error("datastore endpoint {0:?} is not supported")]
    Unsupported(String),
    /// A file-system error, with what was being done.
    #[error("{context}: {message}")]
    Io { context: String, message: String },
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Database(err.to_string())
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
