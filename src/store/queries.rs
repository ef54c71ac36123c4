//! The store logic, written once over [`Backend`]/[`Sql`] for both databases: recording
//! issued cards, storing feedback (and the suppressions it creates), analytics, and the
//! migration runner.

use super::migrations::{parse_ts, ts, MIGRATIONS};
use super::sql::{Backend, Kind, Sql, Tx, V};
use super::{
    suppress, FeedbackReceipt, FeedbackRow, ReasonCount, Record, RuleAnalytics, StoreError, SuppressionMap,
    ALREADY_ADDRESSED,
};
use chrono::{DateTime, Utc};
use sha2::Digest;
use std::collections::BTreeMap;

pub const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)";

/// A suppression created by feedback: this patient's card of this rule is withheld until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub patient_key: String,
    pub rule: String,
    pub until: DateTime<Utc>,
}

/// Applies, in order, every migration not yet recorded in `schema_migrations`; each one in
/// its own transaction, statement by statement.
pub fn apply_migrations(b: &mut dyn Backend) -> Result<(), StoreError> {
    for (version, statements) in MIGRATIONS {
        let mut applied = false;
        b.transaction(Tx::Write { durable: true }, &mut |tx| {
            let rows =
                tx.query("SELECT version FROM schema_migrations WHERE version = ?", &[V::Int(*version)], &[Kind::Int])?;
            applied = rows.is_empty();
            if applied {
                for statement in statements.iter() {
                    tx.ddl(statement)?;
                }
                tx.exec(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    &[V::Int(*version), V::Text(ts(Utc::now()))],
                )?;
            }
            Ok(())
        })?;
        if applied {
            tracing::info!(version, backend = b.name(), "migration applied");
        }
    }
    Ok(())
}

/// Writes issued and withheld card records in one (non-durable) transaction. A card already
/// recorded is left as it is, so a retried batch is harmless.
pub fn record(b: &mut dyn Backend, records: &[Record]) -> Result<(), StoreError> {
    b.transaction(Tx::Write { durable: false }, &mut |tx| {
        for r in records {
            match r {
                Record::Issued(c) => {
                    tx.exec(
                        "INSERT INTO issued_cards (card_uuid, service, rule, indicator, hook_instance, patient_key, issued_at, suggestion_uuids, silent)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (card_uuid) DO NOTHING",
                        &[
                            V::Text(c.card_uuid.clone()),
                            V::Text(c.service.clone()),
                            V::Text(c.topic.clone()),
                            V::Text(c.indicator.clone()),
                            V::Text(c.hook_instance.clone()),
                            V::Text(c.patient_key.clone()),
                            V::Text(ts(c.issued_at)),
                            V::Text(serde_json::Value::from(c.suggestion_uuids.clone()).to_string()),
                            V::Int(c.silent as i64),
                        ],
                    )?;
                    for rule in &c.rules {
                        tx.exec(
                            "INSERT INTO issued_card_rules (card_uuid, rule, issued_at, silent) VALUES (?, ?, ?, ?)
                             ON CONFLICT (card_uuid, rule) DO NOTHING",
                            &[
                                V::Text(c.card_uuid.clone()),
                                V::Text(rule.clone()),
                                V::Text(ts(c.issued_at)),
                                V::Int(c.silent as i64),
                            ],
                        )?;
                    }
                }
                Record::Suppressed { id, card: s } => {
                    tx.exec(
                        "INSERT INTO suppressed_cards (id, service, rule, patient_key, hook_instance, at) VALUES (?, ?, ?, ?, ?, ?)
                         ON CONFLICT (id) DO NOTHING",
                        &[
                            V::Text(id.clone()),
                            V::Text(s.service.clone()),
                            V::Text(s.rule.clone()),
                            V::Text(s.patient_key.clone()),
                            V::Text(s.hook_instance.clone()),
                            V::Text(ts(s.at)),
                        ],
                    )?;
                }
            }
        }
        Ok(())
    })
}

/// A card this service issued, as feedback needs it.
struct KnownCard {
    indicator: String,
    patient_key: String,
    suggestions: Vec<String>,
    rules: Vec<String>,
}

fn known_card(tx: &mut dyn Sql, service: &str, card_uuid: &str) -> Result<Option<KnownCard>, StoreError> {
    let rows = tx.query(
        "SELECT indicator, patient_key, suggestion_uuids FROM issued_cards WHERE card_uuid = ? AND service = ?",
        &[V::Text(card_uuid.to_string()), V::Text(service.to_string())],
        &[Kind::Text, Kind::Text, Kind::Text],
    )?;
    let Some(row) = rows.first() else { return Ok(None) };
    let suggestions = serde_json::from_str(row.text(2)?)
        .map_err(|_| StoreError::Decode { column: 2, expected: "a JSON array of suggestion ids" })?;
    let rules = tx
        .query(
            "SELECT rule FROM issued_card_rules WHERE card_uuid = ? ORDER BY rule",
            &[V::Text(card_uuid.to_string())],
            &[Kind::Text],
        )?
        .iter()
        .map(|r| r.text(0).map(str::to_string))
        .collect::<Result<_, _>>()?;
    Ok(Some(KnownCard {
        indicator: row.text(0)?.to_string(),
        patient_key: row.text(1)?.to_string(),
        suggestions,
        rules,
    }))
}

/// Stores a request's feedback in one durable transaction (all items or none); returns the
/// receipt and the suppressions in force because of it. Items about cards this service never
/// issued (or no longer keeps) are counted in the receipt, not stored: they cannot be acted
/// on, and storing them would let anyone grow the database without limit.
pub fn store_feedback(
    b: &mut dyn Backend,
    service: &str,
    rows: &[FeedbackRow],
    suppress_days: i64,
    now: DateTime<Utc>,
) -> Result<(FeedbackReceipt, Vec<Suppression>), StoreError> {
    let mut receipt = FeedbackReceipt::default();
    let mut created = Vec::new();
    b.transaction(Tx::Write { durable: true }, &mut |tx| {
        receipt = FeedbackReceipt::default();
        created.clear();
        for row in rows {
            let Some(card) = known_card(tx, service, &row.card_uuid)? else {
                receipt.unknown_cards += 1;
                continue;
            };
            check_suggestions(row, &card)?;
            let addressed = addressed(row, &card, suppress_days);
            if insert_feedback(tx, service, row, now)? {
                receipt.stored += 1;
                if addressed {
                    withhold(tx, &card, &row.card_uuid, now + chrono::Duration::days(suppress_days), &mut created)?;
                }
            } else {
                receipt.duplicates += 1;
                if addressed {
                    // A repeat (the EHR retrying after an answer it did not get) brings back
                    // the suppression the first one created, for a mirror that missed it.
                    in_force(tx, &card, now, &mut created)?;
                }
            }
        }
        Ok(())
    })?;
    Ok((receipt, created))
}

fn check_suggestions(row: &FeedbackRow, card: &KnownCard) -> Result<(), StoreError> {
    match row.accepted_suggestions.iter().enumerate().find(|(_, s)| !card.suggestions.contains(s)) {
        None => Ok(()),
        Some((j, s)) => Err(StoreError::Invalid {
            pointer: format!("/feedback/{}/acceptedSuggestions/{j}/id", row.index),
            message: format!("'{s}' is not a suggestion of card {}", row.card_uuid),
        }),
    }
}

/// Inserts one item about a known card; `false` when an identical item is already stored.
fn insert_feedback(tx: &mut dyn Sql, service: &str, row: &FeedbackRow, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let inserted = tx.exec(
        "INSERT INTO feedback (fingerprint, service, card_uuid, known_card, outcome, accepted_suggestions,
            override_system, override_code, override_display, user_comment, outcome_timestamp, received_at)
         VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING",
        &[
            V::Text(fingerprint(service, row)),
            V::Text(service.to_string()),
            V::Text(row.card_uuid.clone()),
            V::Text(row.outcome.clone()),
            V::Text(serde_json::Value::from(row.accepted_suggestions.clone()).to_string()),
            V::opt(&row.override_system),
            V::opt(&row.override_code),
            V::opt(&row.override_display),
            V::opt(&row.user_comment),
            V::Text(ts(row.outcome_timestamp)),
            V::Text(ts(now)),
        ],
    )?;
    Ok(inserted > 0)
}

/// "Already addressed" withholds each rule the card stands for (a merged card: every rule it
/// lists) for this patient. Critical cards are never withheld.
fn addressed(row: &FeedbackRow, card: &KnownCard, suppress_days: i64) -> bool {
    row.outcome == "overridden"
        && row.override_system.as_deref() == Some(ALREADY_ADDRESSED.0)
        && row.override_code.as_deref() == Some(ALREADY_ADDRESSED.1)
        && card.indicator != "critical"
        && suppress_days > 0
}

/// Withholds the card's rules for its patient until `until`, which runs from when the service
/// received the feedback: the client's `outcomeTimestamp` is the clinician's account, not
/// the service's clock, and does not set how long a card stays hidden.
fn withhold(
    tx: &mut dyn Sql,
    card: &KnownCard,
    card_uuid: &str,
    until: DateTime<Utc>,
    created: &mut Vec<Suppression>,
) -> Result<(), StoreError> {
    for rule in &card.rules {
        tx.exec(
            "INSERT INTO suppressions (patient_key, rule, until_at, card_uuid) VALUES (?, ?, ?, ?)
             ON CONFLICT (patient_key, rule) DO UPDATE SET until_at = excluded.until_at, card_uuid = excluded.card_uuid
             WHERE suppressions.until_at < excluded.until_at",
            &[
                V::Text(card.patient_key.clone()),
                V::Text(rule.clone()),
                V::Text(ts(until)),
                V::Text(card_uuid.to_string()),
            ],
        )?;
        created.push(Suppression { patient_key: card.patient_key.clone(), rule: rule.clone(), until });
    }
    Ok(())
}

/// The suppressions of the card's rules for its patient still in force.
fn in_force(
    tx: &mut dyn Sql,
    card: &KnownCard,
    now: DateTime<Utc>,
    created: &mut Vec<Suppression>,
) -> Result<(), StoreError> {
    for rule in &card.rules {
        for r in tx.query(
            "SELECT until_at FROM suppressions WHERE patient_key = ? AND rule = ? AND until_at > ?",
            &[V::Text(card.patient_key.clone()), V::Text(rule.clone()), V::Text(ts(now))],
            &[Kind::Text],
        )? {
            let until =
                parse_ts(r.text(0)?).ok_or(StoreError::Decode { column: 0, expected: "an RFC 3339 instant" })?;
            created.push(Suppression { patient_key: card.patient_key.clone(), rule: rule.clone(), until });
        }
    }
    Ok(())
}

/// Per rule: cards issued (a merged card counts for each rule it lists), accepted and
/// overridden cards (feedback on a card counts for each of its rules), withheld cards, and
/// the most common override reasons.
pub fn analytics(b: &mut dyn Backend, since: Option<DateTime<Utc>>) -> Result<Vec<RuleAnalytics>, StoreError> {
    let since = since.map(ts).unwrap_or_else(|| "0000".into());
    let mut out: BTreeMap<String, RuleAnalytics> = BTreeMap::new();
    b.transaction(Tx::Read, &mut |tx| {
        out.clear();
        let p = [V::Text(since.clone())];
        let counts = [Kind::Text, Kind::Int];
        for r in tx.query(
            "SELECT rule, silent, COUNT(*) FROM issued_card_rules WHERE issued_at >= ? GROUP BY rule, silent",
            &p,
            &[Kind::Text, Kind::Int, Kind::Int],
        )? {
            let a = entry(&mut out, r.text(0)?);
            match r.count(1)? {
                0 => a.issued = r.count(2)?,
                _ => a.silent += r.count(2)?,
            }
        }
        for r in tx.query("SELECT rule, COUNT(*) FROM suppressed_cards WHERE at >= ? GROUP BY rule", &p, &counts)? {
            entry(&mut out, r.text(0)?).suppressed = r.count(1)?;
        }
        for r in tx.query(
            "SELECT r.rule, f.outcome, COUNT(DISTINCT f.card_uuid) FROM feedback f
             JOIN issued_card_rules r ON r.card_uuid = f.card_uuid
             WHERE f.known_card = 1 AND f.received_at >= ? GROUP BY r.rule, f.outcome",
            &p,
            &[Kind::Text, Kind::Text, Kind::Int],
        )? {
            let a = entry(&mut out, r.text(0)?);
            match r.text(1)? {
                "accepted" => a.accepted = r.count(2)?,
                "overridden" => a.overridden = r.count(2)?,
                _ => {}
            }
        }
        for r in tx.query(
            "SELECT r.rule, f.override_code, MAX(f.override_display), COUNT(DISTINCT f.card_uuid) FROM feedback f
             JOIN issued_card_rules r ON r.card_uuid = f.card_uuid
             WHERE f.known_card = 1 AND f.outcome = 'overridden' AND f.override_code IS NOT NULL AND f.received_at >= ?
             GROUP BY r.rule, f.override_code",
            &p,
            &[Kind::Text, Kind::Text, Kind::Text, Kind::Int],
        )? {
            let reason = ReasonCount {
                code: r.text(1)?.to_string(),
                display: r.opt_text(2)?.map(str::to_string),
                count: r.count(3)?,
            };
            entry(&mut out, r.text(0)?).top_override_reasons.push(reason);
        }
        Ok(())
    })?;
    for a in out.values_mut() {
        let acted = a.accepted + a.overridden;
        a.override_rate = if acted == 0 { 0.0 } else { a.overridden as f64 / acted as f64 };
        a.top_override_reasons.sort_by(|x, y| y.count.cmp(&x.count).then(x.code.cmp(&y.code)));
        a.top_override_reasons.truncate(3);
    }
    Ok(out.into_values().collect())
}

fn entry<'a>(out: &'a mut BTreeMap<String, RuleAnalytics>, rule: &str) -> &'a mut RuleAnalytics {
    out.entry(rule.to_string()).or_insert_with(|| RuleAnalytics::empty(rule))
}

pub fn active_suppressions(b: &mut dyn Backend, now: DateTime<Utc>) -> Result<SuppressionMap, StoreError> {
    let mut map = SuppressionMap::new();
    b.transaction(Tx::Read, &mut |tx| {
        map.clear();
        for r in tx.query(
            "SELECT patient_key, rule, until_at FROM suppressions WHERE until_at > ?",
            &[V::Text(ts(now))],
            &[Kind::Text, Kind::Text, Kind::Text],
        )? {
            let until =
                parse_ts(r.text(2)?).ok_or(StoreError::Decode { column: 2, expected: "an RFC 3339 instant" })?;
            suppress(&mut map, r.text(0)?, r.text(1)?, until);
        }
        Ok(())
    })?;
    Ok(map)
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
