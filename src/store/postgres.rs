//! PostgreSQL backend: one store shared by several replicas. Same migrations and SQL as
//! SQLite (`?` placeholders numbered here).

use super::queries::{apply_migrations, MIGRATIONS_TABLE};
use super::sql::{numbered, Backend, Kind, Row, Sql, Tx, V};
use super::StoreError;
use postgres::types::ToSql;

/// Serialises migrations when several replicas start at once.
const MIGRATION_LOCK: i64 = 725001;

pub struct Postgres {
    client: postgres::Client,
}

impl Postgres {
    pub fn connect(config: &postgres::Config) -> Result<Self, StoreError> {
        Ok(Self { client: config.connect(postgres::NoTls)? })
    }
}

struct PgTx<'a, 'b>(&'a mut postgres::Transaction<'b>);

fn pg_params(params: &[V]) -> Vec<Box<dyn ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                V::Text(s) => Box::new(s.clone()),
                V::Int(i) => Box::new(*i),
                V::Null => Box::new(Option::<String>::None),
            }
        })
        .collect()
}

fn read_row(row: &postgres::Row, kinds: &[Kind]) -> Result<Row, StoreError> {
    Ok(Row::read(kinds, |i| row.try_get(i), |i| row.try_get(i))?)
}

impl Sql for PgTx<'_, '_> {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, StoreError> {
        let boxed = pg_params(params);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        Ok(self.0.execute(numbered(sql).as_str(), &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[V], kinds: &[Kind]) -> Result<Vec<Row>, StoreError> {
        let boxed = pg_params(params);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        self.0.query(numbered(sql).as_str(), &refs)?.iter().map(|row| read_row(row, kinds)).collect()
    }

    fn ddl(&mut self, statement: &str) -> Result<(), StoreError> {
        Ok(self.0.batch_execute(statement)?)
    }
}

impl Backend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let result =
            self.client.batch_execute(MIGRATIONS_TABLE).map_err(StoreError::from).and_then(|()| apply_migrations(self));
        self.client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
        result
    }

    fn transaction(
        &mut self,
        tx: Tx,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut transaction = match tx {
            // One snapshot for all the analytics queries, so their counts agree.
            Tx::Read => self
                .client
                .build_transaction()
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()?,
            Tx::Write { .. } => self.client.transaction()?,
        };
        if tx == (Tx::Write { durable: false }) {
            // Scoped to this transaction: the session stays durable for feedback.
            transaction.batch_execute("SET LOCAL synchronous_commit = off")?;
        }
        f(&mut PgTx(&mut transaction))?;
        Ok(transaction.commit()?)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        Ok(self.client.batch_execute("SELECT 1")?)
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
