//! What can go wrong in the store after start-up, as values the callers can tell apart: a
//! stopped thread (the collector is shutting down or a thread died), a file-system call that
//! failed (with what the store was doing), a part that could not be written or read, and why
//! the store cannot take data now.

use std::io;

use super::parts::PartError;

/// A failure of a store operation (flush, retention, a WAL cut).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// One of the store's threads (the log writer, the flusher) is gone.
    #[error("the {0} has stopped")]
    Stopped(&'static str),
    /// A file-system call failed; `action` says what the store was doing.
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    /// A part could not be written or read.
    #[error(transparent)]
    Part(#[from] PartError),
    /// The shared bucket refused or could not take a request; says which and why.
    #[error("{0}")]
    Bucket(String),
    /// A series segment could not be written.
    #[error(transparent)]
    Series(#[from] super::series::SeriesError),
}

impl StoreError {
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
        let action = action.into();
        move |source| StoreError::Io { action, source }
    }
}

/// Why the store cannot take data now (`/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The head is so far behind the flusher that writes are refused.
    #[error("flushing has fallen behind: {0}")]
    FlushBehind(String),
    /// The last WAL write or flush failed (the reason recorded when it did).
    #[error("{0}")]
    LastWriteFailed(String),
    #[error("the data directory is on a read-only file system")]
    ReadOnly,
    #[error("the data directory's file system has {free} bytes free; at least {min} are needed")]
    DiskFull { free: u64, min: u64 },
    #[error("cannot read the data directory's file system: {0}")]
    FileSystem(String),
}
