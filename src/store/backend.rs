//! The two database backends behind one small SQL interface, and the store logic written
//! once over it.

use super::migrations::{parse_ts, ts, MIGRATIONS};
use super::{
    FeedbackReceipt, FeedbackRow, IssuedCard, ReasonCount, RuleAnalytics, SuppressedCard, SuppressionMap,
    ALREADY_ADDRESSED,
};
use chrono::{DateTime, Utc};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    Config(String),
    Database(String),
    /// A feedback item refers to something that does not match (pointer, message).
    Invalid {
        pointer: String,
        message: String,
    },
    Closed,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Config(m) => write!(f, "feedback store configuration: {m}"),
            StoreError::Database(m) => write!(f, "feedback store: {m}"),
            StoreError::Invalid { pointer, message } => write!(f, "{pointer}: {message}"),
            StoreError::Closed => write!(f, "feedback store is not running"),
        }
    }
}

impl std::error::Error for StoreError {}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Text(String),
    Int(i64),
    Null,
}

impl V {
    fn text(self) -> Option<String> {
        match self {
            V::Text(s) => Some(s),
            _ => None,
        }
    }
    fn int(&self) -> i64 {
        match self {
            V::Int(i) => *i,
            _ => 0,
        }
    }
}

fn opt(s: &Option<String>) -> V {
    s.clone().map(V::Text).unwrap_or(V::Null)
}

#[derive(Clone, Copy)]
pub enum Kind {
    Text,
    Int,
}

/// What the store logic needs from a transaction.
pub trait Sql {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, StoreError>;
    fn query(&mut self, sql: &str, params: &[V], kinds: &[Kind]) -> Result<Vec<Vec<V>>, StoreError>;
}

pub trait Backend: Send {
    fn name(&self) -> &'static str;
    /// Durability of the next transactions: `false` lets the database skip the flush to disk
    /// at commit (issued-card records: a crash may lose the last few, never corrupt);
    /// `true` (feedback) makes the commit durable before it returns.
    fn set_durable(&mut self, _durable: bool) -> Result<(), StoreError> {
        Ok(())
    }
    fn migrate(&mut self) -> Result<(), StoreError>;
    /// Runs `f` in one transaction: committed if it returns Ok, rolled back otherwise.
    fn transaction(&mut self, f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), StoreError>) -> Result<(), StoreError>;

    fn record(&mut self, issued: &[IssuedCard], suppressed: &[SuppressedCard]) -> Result<(), StoreError> {
        self.set_durable(false)?;
        let result = self.transaction(&mut |tx| {
            for c in issued {
                tx.exec(
                    "INSERT INTO issued_cards (card_uuid, service, rule, indicator, hook_instance, patient_key, issued_at, suggestion_uuids)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (card_uuid) DO NOTHING",
                    &[
                        V::Text(c.card_uuid.clone()),
                        V::Text(c.service.clone()),
                        V::Text(c.rule.clone()),
                        V::Text(c.indicator.clone()),
                        V::Text(c.hook_instance.clone()),
                        V::Text(c.patient_key.clone()),
                        V::Text(ts(c.issued_at)),
                        V::Text(serde_json::to_string(&c.suggestion_uuids).unwrap_or_else(|_| "[]".into())),
                    ],
                )?;
            }
            for s in suppressed {
                tx.exec(
                    "INSERT INTO suppressed_cards (id, service, rule, patient_key, hook_instance, at) VALUES (?, ?, ?, ?, ?, ?)",
                    &[
                        V::Text(uuid::Uuid::new_v4().to_string()),
                        V::Text(s.service.clone()),
                        V::Text(s.rule.clone()),
                        V::Text(s.patient_key.clone()),
                        V::Text(s.hook_instance.clone()),
                        V::Text(ts(s.at)),
                    ],
                )?;
            }
            Ok(())
        });
        self.set_durable(true)?;
        result
    }

    /// Stores a request's feedback in one transaction; returns the receipt and the
    /// suppressions it created (patient key, rule, until).
    #[allow(clippy::type_complexity)]
    fn store_feedback(
        &mut self,
        service: &str,
        rows: &[FeedbackRow],
        suppress_days: i64,
        now: DateTime<Utc>,
    ) -> Result<(FeedbackReceipt, Vec<(String, String, DateTime<Utc>)>), StoreError> {
        let mut receipt = FeedbackReceipt::default();
        let mut created = Vec::new();
        self.transaction(&mut |tx| {
            receipt = FeedbackReceipt::default();
            created.clear();
            for row in rows {
                let card = tx.query(
                    "SELECT rule, indicator, patient_key, suggestion_uuids FROM issued_cards WHERE card_uuid = ? AND service = ?",
                    &[V::Text(row.card_uuid.clone()), V::Text(service.to_string())],
                    &[Kind::Text, Kind::Text, Kind::Text, Kind::Text],
                )?;
                let card = card.into_iter().next().map(|r| {
                    let mut it = r.into_iter().map(|v| v.text().unwrap_or_default());
                    let (rule, indicator, key) =
                        (it.next().unwrap_or_default(), it.next().unwrap_or_default(), it.next().unwrap_or_default());
                    let suggestions: Vec<String> = serde_json::from_str(&it.next().unwrap_or_default()).unwrap_or_default();
                    (rule, indicator, key, suggestions)
                });
                if let Some((_, _, _, issued_suggestions)) = &card {
                    for (j, s) in row.accepted_suggestions.iter().enumerate() {
                        if !issued_suggestions.contains(s) {
                            return Err(StoreError::Invalid {
                                pointer: format!("/feedback/{}/acceptedSuggestions/{j}/id", row.index),
                                message: format!("'{s}' is not a suggestion of card {}", row.card_uuid),
                            });
                        }
                    }
                }
                let fingerprint = fingerprint(service, row);
                let inserted = tx.exec(
                    "INSERT INTO feedback (fingerprint, service, card_uuid, known_card, outcome, accepted_suggestions,
                        override_system, override_code, override_display, user_comment, outcome_timestamp, received_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING",
                    &[
                        V::Text(fingerprint),
                        V::Text(service.to_string()),
                        V::Text(row.card_uuid.clone()),
                        V::Int(card.is_some() as i64),
                        V::Text(row.outcome.clone()),
                        V::Text(serde_json::to_string(&row.accepted_suggestions).unwrap_or_else(|_| "[]".into())),
                        opt(&row.override_system),
                        opt(&row.override_code),
                        opt(&row.override_display),
                        opt(&row.user_comment),
                        V::Text(ts(row.outcome_timestamp)),
                        V::Text(ts(now)),
                    ],
                )?;
                if inserted == 0 {
                    receipt.duplicates += 1;
                    continue;
                }
                receipt.stored += 1;
                let Some((rule, indicator, patient_key, _)) = card else {
                    receipt.unknown_cards += 1;
                    continue;
                };
                let addressed = row.outcome == "overridden"
                    && row.override_system.as_deref() == Some(ALREADY_ADDRESSED.0)
                    && row.override_code.as_deref() == Some(ALREADY_ADDRESSED.1);
                // Critical cards are never suppressed.
                if addressed && indicator != "critical" && suppress_days > 0 {
                    let until = row.outcome_timestamp.max(now - chrono::Duration::days(1)) + chrono::Duration::days(suppress_days);
                    tx.exec(
                        "INSERT INTO suppressions (patient_key, rule, until_at, card_uuid) VALUES (?, ?, ?, ?)
                         ON CONFLICT (patient_key, rule) DO UPDATE SET until_at = excluded.until_at, card_uuid = excluded.card_uuid
                         WHERE suppressions.until_at < excluded.until_at",
                        &[V::Text(patient_key.clone()), V::Text(rule.clone()), V::Text(ts(until)), V::Text(row.card_uuid.clone())],
                    )?;
                    created.push((patient_key, rule, until));
                }
            }
            Ok(())
        })?;
        Ok((receipt, created))
    }

    fn analytics(&mut self, since: Option<DateTime<Utc>>) -> Result<Vec<RuleAnalytics>, StoreError> {
        let since = since.map(ts).unwrap_or_else(|| "0000".into());
        let mut out: BTreeMap<String, RuleAnalytics> = BTreeMap::new();
        let mut rows_issued = Vec::new();
        let mut rows_outcome = Vec::new();
        let mut rows_suppressed = Vec::new();
        let mut rows_reasons = Vec::new();
        self.transaction(&mut |tx| {
            let p = [V::Text(since.clone())];
            rows_issued = tx.query("SELECT rule, COUNT(*) FROM issued_cards WHERE issued_at >= ? GROUP BY rule", &p, &[Kind::Text, Kind::Int])?;
            rows_outcome = tx.query(
                "SELECT c.rule, f.outcome, COUNT(DISTINCT f.card_uuid) FROM feedback f JOIN issued_cards c ON c.card_uuid = f.card_uuid
                 WHERE f.known_card = 1 AND f.received_at >= ? GROUP BY c.rule, f.outcome",
                &p,
                &[Kind::Text, Kind::Text, Kind::Int],
            )?;
            rows_suppressed =
                tx.query("SELECT rule, COUNT(*) FROM suppressed_cards WHERE at >= ? GROUP BY rule", &p, &[Kind::Text, Kind::Int])?;
            rows_reasons = tx.query(
                "SELECT c.rule, f.override_code, MAX(f.override_display), COUNT(DISTINCT f.card_uuid) FROM feedback f
                 JOIN issued_cards c ON c.card_uuid = f.card_uuid
                 WHERE f.known_card = 1 AND f.outcome = 'overridden' AND f.override_code IS NOT NULL AND f.received_at >= ?
                 GROUP BY c.rule, f.override_code",
                &p,
                &[Kind::Text, Kind::Text, Kind::Text, Kind::Int],
            )?;
            Ok(())
        })?;
        for r in rows_issued {
            let rule = r[0].clone().text().unwrap_or_default();
            get(&mut out, &rule).issued = r[1].int() as u64;
        }
        for r in rows_outcome {
            let rule = r[0].clone().text().unwrap_or_default();
            let a = get(&mut out, &rule);
            match r[1].clone().text().as_deref() {
                Some("accepted") => a.accepted = r[2].int() as u64,
                Some("overridden") => a.overridden = r[2].int() as u64,
                _ => {}
            }
        }
        for r in rows_suppressed {
            let rule = r[0].clone().text().unwrap_or_default();
            get(&mut out, &rule).suppressed = r[1].int() as u64;
        }
        for r in rows_reasons {
            let rule = r[0].clone().text().unwrap_or_default();
            let reason = ReasonCount {
                code: r[1].clone().text().unwrap_or_default(),
                display: r[2].clone().text(),
                count: r[3].int() as u64,
            };
            get(&mut out, &rule).top_override_reasons.push(reason);
        }
        for a in out.values_mut() {
            let acted = a.accepted + a.overridden;
            a.override_rate = if acted == 0 { 0.0 } else { a.overridden as f64 / acted as f64 };
            a.top_override_reasons.sort_by(|x, y| y.count.cmp(&x.count).then(x.code.cmp(&y.code)));
            a.top_override_reasons.truncate(3);
        }
        Ok(out.into_values().collect())
    }

    fn active_suppressions(&mut self, now: DateTime<Utc>) -> Result<SuppressionMap, StoreError> {
        let mut rows = Vec::new();
        self.transaction(&mut |tx| {
            rows = tx.query(
                "SELECT patient_key, rule, until_at FROM suppressions WHERE until_at > ?",
                &[V::Text(ts(now))],
                &[Kind::Text, Kind::Text, Kind::Text],
            )?;
            Ok(())
        })?;
        let mut map = SuppressionMap::new();
        for r in rows {
            let mut it = r.into_iter().map(|v| v.text().unwrap_or_default());
            if let (Some(p), Some(rule), Some(until)) = (it.next(), it.next(), it.next().as_deref().and_then(parse_ts))
            {
                super::suppress(&mut map, &p, &rule, until);
            }
        }
        Ok(map)
    }
}

fn get<'a>(out: &'a mut BTreeMap<String, RuleAnalytics>, rule: &str) -> &'a mut RuleAnalytics {
    out.entry(rule.to_string()).or_insert_with(|| RuleAnalytics::empty(rule))
}

/// Identical feedback items (same service, card, outcome, suggestions, reason, comment and
/// timestamp) have the same fingerprint: a repeat is acknowledged, not stored twice.
fn fingerprint(service: &str, row: &FeedbackRow) -> String {
    let mut h = sha2::Sha256::new();
    for part in [
        service,
        &row.card_uuid,
        &row.outcome,
        &row.accepted_suggestions.join(","),
        row.override_system.as_deref().unwrap_or(""),
        row.override_code.as_deref().unwrap_or(""),
        row.user_comment.as_deref().unwrap_or(""),
        &ts(row.outcome_timestamp),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)";

/// Applies, in order, every migration not yet recorded in `schema_migrations`.
fn apply_migrations(b: &mut dyn Backend) -> Result<(), StoreError> {
    for (version, ddl) in MIGRATIONS {
        let mut done = false;
        b.transaction(&mut |tx| {
            let rows =
                tx.query("SELECT version FROM schema_migrations WHERE version = ?", &[V::Int(*version)], &[Kind::Int])?;
            done = !rows.is_empty();
            if !done {
                for statement in ddl.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    tx.exec(statement, &[])?;
                }
                tx.exec(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    &[V::Int(*version), V::Text(ts(Utc::now()))],
                )?;
            }
            Ok(())
        })?;
        if !done {
            tracing::info!(version, backend = b.name(), "migration applied");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- SQLite

pub struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn =
            rusqlite::Connection::open(path).map_err(|e| StoreError::Config(format!("{}: {e}", path.display())))?;
        // WAL for concurrent readers; FULL sync so a committed feedback survives a crash.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        Ok(Self { conn })
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

impl Sql for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, StoreError> {
        let p: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
        // Cached statements: recording issues the same few inserts thousands of times.
        let mut stmt = self.0.prepare_cached(sql).map_err(db)?;
        stmt.execute(rusqlite::params_from_iter(p)).map(|n| n as u64).map_err(db)
    }

    fn query(&mut self, sql: &str, params: &[V], kinds: &[Kind]) -> Result<Vec<Vec<V>>, StoreError> {
        let p: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
        let mut stmt = self.0.prepare_cached(sql).map_err(db)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(p), |row| {
                kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        Ok(match k {
                            Kind::Text => row.get::<_, Option<String>>(i)?.map(V::Text).unwrap_or(V::Null),
                            Kind::Int => row.get::<_, Option<i64>>(i)?.map(V::Int).unwrap_or(V::Null),
                        })
                    })
                    .collect::<Result<Vec<V>, rusqlite::Error>>()
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }
}

impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn set_durable(&mut self, durable: bool) -> Result<(), StoreError> {
        // In WAL mode, NORMAL skips the fsync at commit; FULL waits for it.
        self.conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" }).map_err(db)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(MIGRATIONS_TABLE).map_err(db)?;
        apply_migrations(self)
    }

    fn transaction(&mut self, f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
        f(&mut SqliteTx(&tx))?;
        tx.commit().map_err(db)
    }
}

// ---------------------------------------------------------------- PostgreSQL

pub struct Postgres {
    client: postgres::Client,
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let client = postgres::Client::connect(url, postgres::NoTls)
            .map_err(|e| StoreError::Config(format!("PostgreSQL: {e}")))?;
        Ok(Self { client })
    }
}

/// `?` placeholders to PostgreSQL's `$n`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

struct PgTx<'a, 'b>(&'a mut postgres::Transaction<'b>);

fn pg_params(params: &[V]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn postgres::types::ToSql + Sync> {
            match v {
                V::Text(s) => Box::new(s.clone()),
                V::Int(i) => Box::new(*i),
                V::Null => Box::new(Option::<String>::None),
            }
        })
        .collect()
}

impl Sql for PgTx<'_, '_> {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, StoreError> {
        let boxed = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        self.0.execute(numbered(sql).as_str(), &refs).map_err(db)
    }

    fn query(&mut self, sql: &str, params: &[V], kinds: &[Kind]) -> Result<Vec<Vec<V>>, StoreError> {
        let boxed = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self.0.query(numbered(sql).as_str(), &refs).map_err(db)?;
        rows.iter()
            .map(|row| {
                kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        Ok(match k {
                            Kind::Text => {
                                row.try_get::<_, Option<String>>(i).map_err(db)?.map(V::Text).unwrap_or(V::Null)
                            }
                            Kind::Int => row.try_get::<_, Option<i64>>(i).map_err(db)?.map(V::Int).unwrap_or(V::Null),
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

impl Backend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn set_durable(&mut self, durable: bool) -> Result<(), StoreError> {
        let setting = if durable { "SET synchronous_commit = on" } else { "SET synchronous_commit = off" };
        self.client.batch_execute(setting).map_err(db)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        // Several replicas may start at once: serialise migrations with an advisory lock.
        self.client.batch_execute("SELECT pg_advisory_lock(725001)").map_err(db)?;
        let result = (|| {
            self.client.batch_execute(MIGRATIONS_TABLE).map_err(db)?;
            apply_migrations(self)
        })();
        self.client.batch_execute("SELECT pg_advisory_unlock(725001)").map_err(db)?;
        result
    }

    fn transaction(&mut self, f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut tx = self.client.transaction().map_err(db)?;
        f(&mut PgTx(&mut tx))?;
        tx.commit().map_err(db)
    }
}
