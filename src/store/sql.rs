//! The small SQL interface the store logic is written against, and the connection that
//! reopens itself: each store thread owns a [`Link`], which connects on first use and again
//! after the database went away.

use super::StoreError;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Text(String),
    Int(i64),
    Null,
}

impl V {
    pub fn opt(s: &Option<String>) -> V {
        s.clone().map(V::Text).unwrap_or(V::Null)
    }
}

#[derive(Clone, Copy)]
pub enum Kind {
    Text,
    Int,
}

/// One result row, read by column with its expected type: a NULL where a value is needed is
/// an error, not a silent default.
#[derive(Debug)]
pub struct Row(pub Vec<V>);

impl Row {
    pub fn text(&self, column: usize) -> Result<&str, StoreError> {
        self.opt_text(column)?.ok_or(StoreError::Decode { column, expected: "text" })
    }

    pub fn opt_text(&self, column: usize) -> Result<Option<&str>, StoreError> {
        match self.0.get(column) {
            Some(V::Text(s)) => Ok(Some(s)),
            Some(V::Null) => Ok(None),
            _ => Err(StoreError::Decode { column, expected: "text or NULL" }),
        }
    }

    pub fn count(&self, column: usize) -> Result<u64, StoreError> {
        match self.0.get(column) {
            Some(V::Int(i)) => u64::try_from(*i).map_err(|_| StoreError::Decode { column, expected: "a count" }),
            _ => Err(StoreError::Decode { column, expected: "an integer" }),
        }
    }
}

impl Row {
    /// Reads one row column by column with the driver's own typed getters.
    pub fn read<E>(
        kinds: &[Kind],
        mut text: impl FnMut(usize) -> Result<Option<String>, E>,
        mut int: impl FnMut(usize) -> Result<Option<i64>, E>,
    ) -> Result<Row, E> {
        let mut values = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            values.push(match kind {
                Kind::Text => text(i)?.map(V::Text).unwrap_or(V::Null),
                Kind::Int => int(i)?.map(V::Int).unwrap_or(V::Null),
            });
        }
        Ok(Row(values))
    }
}

/// What the store logic needs from a transaction.
pub trait Sql {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, StoreError>;
    fn query(&mut self, sql: &str, params: &[V], kinds: &[Kind]) -> Result<Vec<Row>, StoreError>;
    /// One schema statement, sent as written (no placeholder rewriting, no parameters).
    fn ddl(&mut self, statement: &str) -> Result<(), StoreError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tx {
    /// A consistent read-only snapshot (analytics, suppression refresh).
    Read,
    /// A write. `durable: false` lets the database skip the flush to disk at commit
    /// (issued-card records: a crash may lose the last few, never corrupt); `true`
    /// (feedback) makes the commit durable before it returns.
    Write { durable: bool },
}

pub trait Backend: Send {
    fn name(&self) -> &'static str;
    /// Brings the schema up to date (see `queries::apply_migrations`).
    fn migrate(&mut self) -> Result<(), StoreError>;
    /// Runs `f` in one transaction: committed if it returns Ok, rolled back otherwise.
    fn transaction(
        &mut self,
        tx: Tx,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// A round trip to the database.
    fn ping(&mut self) -> Result<(), StoreError>;
    /// The connection is known to be gone (the server closed it, e.g. on a restart).
    fn is_closed(&self) -> bool {
        false
    }
}

/// Where the store lives; opens connections to it.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite(std::sync::Arc<super::sqlite::SqliteFile>),
    Postgres(Box<postgres::Config>),
}

/// Bounds on a PostgreSQL connection unless the URL sets its own: a dead server is noticed
/// in seconds, not after the kernel's TCP timeouts (minutes to hours).
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PG_TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

impl Target {
    pub fn parse(database: &str) -> Result<Self, StoreError> {
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            let mut config = postgres::Config::from_str(database).map_err(StoreError::Url)?;
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(PG_CONNECT_TIMEOUT);
            }
            if config.get_tcp_user_timeout().is_none() {
                config.tcp_user_timeout(PG_TCP_USER_TIMEOUT);
            }
            if config.get_application_name().is_none() {
                config.application_name("leg-cramp-cds");
            }
            Ok(Target::Postgres(Box::new(config)))
        } else {
            Ok(Target::Sqlite(std::sync::Arc::new(super::sqlite::SqliteFile::new(PathBuf::from(database)))))
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        }
    }

    pub fn connect(&self) -> Result<Box<dyn Backend>, StoreError> {
        Ok(match self {
            Target::Sqlite(file) => Box::new(super::sqlite::Sqlite::open(file)?),
            Target::Postgres(config) => Box::new(super::postgres::Postgres::connect(config)?),
        })
    }
}

/// A connection that is opened on first use and dropped when the database says it is gone,
/// so the next use reconnects. The writer's link also brings the schema up to date on every
/// connection (cheap when nothing is pending; a database restored from an older backup is
/// migrated again).
pub struct Link {
    target: Target,
    migrate: bool,
    conn: Option<Box<dyn Backend>>,
}

impl Link {
    pub fn new(target: Target, migrate: bool) -> Self {
        Self { target, migrate, conn: None }
    }

    /// A link that starts with an already open (and migrated) connection.
    pub fn with_connection(target: Target, migrate: bool, conn: Box<dyn Backend>) -> Self {
        Self { target, migrate, conn: Some(conn) }
    }

    /// Runs `f` on the connection, opening one if needed. When a connection that had been
    /// idle turns out to be dead (the server restarted since its last use), `f` runs once
    /// more on a fresh one: every store operation is idempotent (inserts ignore conflicts,
    /// feedback is fingerprinted), and an uncommitted transaction died with its connection.
    pub fn run<T>(&mut self, mut f: impl FnMut(&mut dyn Backend) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let reused = self.conn.is_some();
        match self.run_once(&mut f) {
            Err(e) if reused && e.is_connection_lost() => {
                tracing::info!(error = %e, "feedback store connection lost; reconnecting");
                self.run_once(&mut f)
            }
            result => result,
        }
    }

    fn run_once<T>(&mut self, f: &mut impl FnMut(&mut dyn Backend) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let result = self.connected().and_then(f);
        if let Err(e) = &result {
            if e.is_connection_lost() {
                self.conn = None;
            }
        }
        result
    }

    fn connected(&mut self) -> Result<&mut dyn Backend, StoreError> {
        if self.conn.as_ref().is_some_and(|c| c.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut conn = self.target.connect()?;
            if self.migrate {
                conn.migrate()?;
            }
            self.conn = Some(conn);
        }
        match self.conn.as_deref_mut() {
            Some(conn) => Ok(conn),
            None => Err(StoreError::Closed),
        }
    }
}

/// `?` placeholders to PostgreSQL's `$n`, leaving any `?` inside a quoted literal alone.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut quoted = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals_only() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c = '?' AND d = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d = $2"
        );
        assert_eq!(numbered("SELECT 'it''s ?' , ?"), "SELECT 'it''s ?' , $1");
    }

    #[test]
    fn a_null_where_a_value_is_needed_is_an_error() {
        let row = Row(vec![V::Text("r".into()), V::Null, V::Int(3), V::Int(-1)]);
        assert_eq!(row.text(0).unwrap(), "r");
        assert_eq!(row.opt_text(1).unwrap(), None);
        assert!(matches!(row.text(1), Err(StoreError::Decode { column: 1, .. })));
        assert_eq!(row.count(2).unwrap(), 3);
        assert!(row.count(3).is_err(), "a negative count is not a count");
        assert!(row.text(9).is_err(), "a missing column is an error");
    }

    #[test]
    fn postgres_urls_get_bounded_timeouts() {
        let Target::Postgres(c) = Target::parse("postgres://u@127.0.0.1:5432/db").unwrap() else { panic!("postgres") };
        assert_eq!(c.get_connect_timeout(), Some(&PG_CONNECT_TIMEOUT));
        let Target::Postgres(c) = Target::parse("postgres://u@127.0.0.1:5432/db?connect_timeout=2").unwrap() else {
            panic!("postgres")
        };
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)), "the URL's own setting wins");
        assert!(matches!(Target::parse("x.sqlite").unwrap(), Target::Sqlite(_)));
        assert!(matches!(Target::parse("postgres://u@h:notaport/db"), Err(StoreError::Url(_))));
    }
}
