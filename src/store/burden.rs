//! Every recorded card with the response it came in, for the alert-burden report
//! (`report --html`): cards per response and per patient key, rules, indicators, and whether
//! each was issued silently. Read once on a connection of the report command's own, not
//! through a running service's store threads.

use super::migrations::ts;
use super::sql::{Kind, Target, Tx, V};
use super::StoreError;
use chrono::{DateTime, Utc};

/// One recorded card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCard {
    pub hook_instance: String,
    /// The pseudonymous patient key (never a patient id).
    pub patient_key: String,
    pub service: String,
    pub indicator: String,
    pub silent: bool,
    /// The rules the card stands for (one, or each rule of a merged card).
    pub rules: Vec<String>,
}

/// The cards recorded since `since`, grouped by response (`hook_instance`), in time order.
pub fn recorded_cards(database: &str, since: Option<DateTime<Utc>>) -> Result<Vec<RecordedCard>, StoreError> {
    let mut conn = Target::parse(database)?.connect()?;
    conn.migrate()?;
    let since = since.map(ts).unwrap_or_else(|| "0000".into());
    let mut out: Vec<RecordedCard> = Vec::new();
    conn.transaction(Tx::Read, &mut |tx| {
        out.clear();
        let rows = tx.query(
            "SELECT c.card_uuid, c.hook_instance, c.patient_key, c.service, c.indicator, c.silent, r.rule
             FROM issued_cards c JOIN issued_card_rules r ON r.card_uuid = c.card_uuid
             WHERE c.issued_at >= ? ORDER BY c.issued_at, c.hook_instance, c.card_uuid, r.rule",
            &[V::Text(since.clone())],
            &[Kind::Text, Kind::Text, Kind::Text, Kind::Text, Kind::Text, Kind::Int, Kind::Text],
        )?;
        let mut last_card = String::new();
        for row in rows {
            let rule = row.text(6)?.to_string();
            if row.text(0)? == last_card {
                if let Some(card) = out.last_mut() {
                    card.rules.push(rule);
                }
                continue;
            }
            last_card = row.text(0)?.to_string();
            out.push(RecordedCard {
                hook_instance: row.text(1)?.to_string(),
                patient_key: row.text(2)?.to_string(),
                service: row.text(3)?.to_string(),
                indicator: row.text(4)?.to_string(),
                silent: row.count(5)? != 0,
                rules: vec![rule],
            });
        }
        Ok(())
    })?;
    Ok(out)
}
