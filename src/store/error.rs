//! What can go wrong in the feedback store, keeping the database's own error as the source
//! so the log shows the whole chain and the writer can tell a passing fault (connection
//! lost, database locked) from a permanent one.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("feedback store configuration: {0}")]
    Config(String),
    #[error("feedback store URL is not a valid PostgreSQL connection string")]
    Url(#[source] postgres::Error),
    #[error("patient-key secret file {path}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the feedback store's {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    /// A stored row does not have the shape the query expects (a NULL where a value must be).
    #[error("feedback store: column {column} of a stored row is not {expected}")]
    Decode { column: usize, expected: &'static str },
    /// A feedback item refers to something that does not match (pointer, message).
    #[error("{pointer}: {message}")]
    Invalid { pointer: String, message: String },
    /// The file at the SQLite path is no longer the one the store opened: deleted, moved or
    /// replaced while running. Nothing is acknowledged into a file that is gone; the work is
    /// kept and the store resumes if that very file comes back (a restart opens whatever is
    /// then at the path).
    #[error("the SQLite database file was deleted or replaced while the service was running: restore it, or restart the service to use the file now at --database")]
    FileGone,
    /// Answered without trying: the database failed just now and earlier work is waiting.
    #[error("feedback store unavailable: {0}")]
    Unavailable(String),
    #[error("feedback store is not running")]
    Closed,
    /// The worker handling this request stopped (a panic) before answering.
    #[error("the feedback store stopped while handling this request")]
    Interrupted,
    #[error("the feedback store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("too many analytics queries are waiting; try again later")]
    Busy,
}

impl StoreError {
    /// A fault that may pass by itself (connection lost, database restarting, locked, out
    /// of resources): the work is kept and tried again with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => sqlite_transient(e),
            StoreError::Postgres(e) => postgres_transient(e),
            StoreError::Unavailable(_) | StoreError::Timeout(_) | StoreError::Busy | StoreError::FileGone => true,
            _ => false,
        }
    }

    /// The connection is no longer usable: the next operation must open a new one.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            StoreError::Postgres(e) => e.is_closed() || postgres_transient(e),
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::CannotOpen)
            ),
            _ => false,
        }
    }
}

/// Busy, locked, I/O and resource faults; also "read-only because the file moved", which
/// SQLite reports when a write finds its file renamed or deleted (the store checks the file
/// before each transaction; this covers a move in between).
fn sqlite_transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    if let rusqlite::Error::SqliteFailure(failure, _) = e {
        if failure.extended_code == rusqlite::ffi::SQLITE_READONLY_DBMOVED {
            return true;
        }
    }
    matches!(
        e.sqlite_error_code(),
        Some(
            C::DatabaseBusy
                | C::DatabaseLocked
                | C::SystemIoFailure
                | C::DiskFull
                | C::CannotOpen
                | C::FileLockingProtocolFailed
                | C::OutOfMemory
        )
    )
}

/// No SQLSTATE means the client never got an answer (I/O error, connection closed);
/// otherwise the classes PostgreSQL documents as "try again": connection exceptions (08),
/// insufficient resources (53), operator intervention such as a shutdown or restart (57P),
/// serialization failures and deadlocks (40001, 40P01), lock not available (55P03).
fn postgres_transient(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(state) => {
            let code = state.code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || matches!(code, "40001" | "40P01" | "55P03")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None))
    }

    #[test]
    fn busy_and_io_are_transient_constraint_is_not() {
        assert!(sqlite(rusqlite::ffi::SQLITE_BUSY).is_transient());
        assert!(sqlite(rusqlite::ffi::SQLITE_LOCKED).is_transient());
        assert!(sqlite(rusqlite::ffi::SQLITE_IOERR).is_connection_lost());
        assert!(!sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).is_transient());
        assert!(!sqlite(rusqlite::ffi::SQLITE_BUSY).is_connection_lost(), "a lock needs no new connection");
        assert!(sqlite(rusqlite::ffi::SQLITE_READONLY_DBMOVED).is_transient(), "the file moved: kept and retried");
        assert!(!sqlite(rusqlite::ffi::SQLITE_READONLY).is_transient());
        assert!(StoreError::FileGone.is_transient() && !StoreError::FileGone.is_connection_lost());
        assert!(!StoreError::Invalid { pointer: "/feedback/0".into(), message: "x".into() }.is_transient());
    }

    #[test]
    fn the_database_error_is_kept_as_source() {
        let e = sqlite(rusqlite::ffi::SQLITE_BUSY);
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().starts_with("SQLite: "), "{e}");
    }
}
