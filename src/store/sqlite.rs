//! SQLite backend: the embedded default. WAL, so the analytics connection reads while the
//! writer writes; FULL sync for feedback, so a committed item survives a crash.

use super::queries::{apply_migrations, MIGRATIONS_TABLE};
use super::sql::{Backend, Kind, Row, Sql, Tx, V};
use super::StoreError;
use rusqlite::TransactionBehavior;
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another connection's lock before failing as "busy"
/// (the writer then retries with backoff).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Sqlite {
    conn: rusqlite::Connection,
    /// The `synchronous` setting in force, so it is only changed when it must be.
    durable: bool,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)
            .map_err(|e| StoreError::Config(format!("cannot open SQLite file {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { conn, durable: true })
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
        let transaction = self.conn.transaction_with_behavior(behavior)?;
        f(&mut SqliteTx(&transaction))?;
        Ok(transaction.commit()?)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.query_row("SELECT 1", [], |_| Ok(()))?)
    }
}
