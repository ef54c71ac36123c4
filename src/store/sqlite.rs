//! SQLite backend: the embedded default. WAL, so the analytics connection reads while the
//! writer writes; FULL sync for feedback, so a committed item survives a crash. Every
//! transaction checks that the file at the path is still the one first opened: a deleted or
//! replaced file would otherwise take acknowledged feedback with it, silently.

use super::queries::{apply_migrations, MIGRATIONS_TABLE};
use super::sql::{Backend, Kind, Row, Sql, Tx, V};
use super::StoreError;
use rusqlite::{OpenFlags, TransactionBehavior};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a statement waits for another connection's lock before failing as "busy"
/// (the writer then retries with backoff).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which file a path names: device and inode, so a file deleted, renamed away or replaced
/// (even by one with the same name and content) is told apart from the one opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
}

impl Identity {
    /// `None` when nothing is at the path (or it cannot be read).
    #[cfg(unix)]
    fn of(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| Identity { device: m.dev(), inode: m.ino() })
    }

    /// Without inodes, a file that is still there counts as the same file.
    #[cfg(not(unix))]
    fn of(path: &std::path::Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|_| Identity { device: 0, inode: 0 })
    }
}

/// The store's SQLite file: its path, and (once the store created or opened it at start-up)
/// which file that is. Later connections (the reader's, a reconnection) open that same file
/// or nothing: they never create a new, empty database behind the operator's back.
#[derive(Debug)]
pub struct SqliteFile {
    pub path: PathBuf,
    identity: OnceLock<Identity>,
}

impl SqliteFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path, identity: OnceLock::new() }
    }

    /// Whether the path still names the file first opened.
    fn is_current(&self) -> bool {
        self.identity.get().is_some_and(|opened| Identity::of(&self.path).as_ref() == Some(opened))
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.is_current() {
            Ok(())
        } else {
            Err(StoreError::FileGone)
        }
    }
}

pub struct Sqlite {
    conn: rusqlite::Connection,
    file: std::sync::Arc<SqliteFile>,
    /// The `synchronous` setting in force, so it is only changed when it must be.
    durable: bool,
}

impl Sqlite {
    /// The first open creates the file if need be and records which file it is; any later
    /// open must find that file at the path.
    pub fn open(file: &std::sync::Arc<SqliteFile>) -> Result<Self, StoreError> {
        let conn = match file.identity.get() {
            None => {
                let conn = rusqlite::Connection::open(&file.path)
                    .map_err(|e| StoreError::Config(format!("cannot open SQLite file {}: {e}", file.path.display())))?;
                let identity = Identity::of(&file.path).ok_or_else(|| {
                    StoreError::Config(format!("SQLite file {} vanished as it was opened", file.path.display()))
                })?;
                let _ = file.identity.set(identity);
                conn
            }
            Some(_) => {
                file.check()?;
                let flags = OpenFlags::default().difference(OpenFlags::SQLITE_OPEN_CREATE);
                rusqlite::Connection::open_with_flags(&file.path, flags)?
            }
        };
        file.check()?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { conn, file: file.clone(), durable: true })
    }
}

struct SqliteTx<'a>(&'a rusqlite::Transaction<'a>);

fn to_sqlite(v: &V) -> rusqlite::types::Value {
    match v {
        V::Text(s) => rusqlite::types::Value::Text(s.clone()),
        V::Int(i) => rusqlite::types::Value::Integer(*i),
        V::Null => rusqlite::types::Value::Null,
    }
}

fn read_row(row: &rusqlite::Row<'_>, kinds: &[Kind]) -> rusqlite::Result<Row> {
    Row::read(kinds, |i| row.get(i), |i| row.get(i))
}

impl Sql for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, StoreError> {
        // Cached statements: recording issues the same few inserts thousands of times.
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[V], kinds: &[Kind]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params.iter().map(to_sqlite)), |r| read_row(r, kinds))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn ddl(&mut self, statement: &str) -> Result<(), StoreError> {
        Ok(self.0.execute_batch(statement)?)
    }
}

impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(MIGRATIONS_TABLE)?;
        apply_migrations(self)
    }

    fn transaction(
        &mut self,
        tx: Tx,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let behavior = match tx {
            // A read takes no write lock, so analytics never holds up the writer.
            Tx::Read => TransactionBehavior::Deferred,
            Tx::Write { durable } => {
                if durable != self.durable {
                    // In WAL mode, NORMAL skips the fsync at commit; FULL waits for it.
                    self.conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
                    self.durable = durable;
                }
                TransactionBehavior::Immediate
            }
        };
        self.file.check()?;
        let transaction = self.conn.transaction_with_behavior(behavior)?;
        f(&mut SqliteTx(&transaction))?;
        transaction.commit()?;
        // Committed into the file that was at the path when the transaction began; if it went
        // away meanwhile the commit is not acknowledged (the work is kept and written again:
        // every write is idempotent).
        self.file.check()
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.file.check()?;
        Ok(self.conn.query_row("SELECT 1", [], |_| Ok(()))?)
    }
}
