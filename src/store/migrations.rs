//! Versioned schema migrations, applied in order at start-up (and on every reconnection of
//! the writer), the same on SQLite and PostgreSQL (portable SQL: TEXT timestamps in
//! fixed-width RFC 3339 UTC, BIGINT flags). Each migration is a list of single statements,
//! run one by one in one transaction: nothing splits or rewrites their text.

pub const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE issued_cards (
                card_uuid TEXT PRIMARY KEY,
                service TEXT NOT NULL,
                rule TEXT NOT NULL,
                indicator TEXT NOT NULL,
                hook_instance TEXT NOT NULL,
                patient_key TEXT NOT NULL,
                issued_at TEXT NOT NULL,
                suggestion_uuids TEXT NOT NULL
            )",
            "CREATE INDEX issued_cards_rule ON issued_cards (rule, issued_at)",
            "CREATE TABLE feedback (
                fingerprint TEXT PRIMARY KEY,
                service TEXT NOT NULL,
                card_uuid TEXT NOT NULL,
                known_card BIGINT NOT NULL,
                outcome TEXT NOT NULL,
                accepted_suggestions TEXT NOT NULL,
                override_system TEXT,
                override_code TEXT,
                override_display TEXT,
                user_comment TEXT,
                outcome_timestamp TEXT NOT NULL,
                received_at TEXT NOT NULL
            )",
            "CREATE INDEX feedback_card ON feedback (card_uuid)",
            "CREATE TABLE suppressions (
                patient_key TEXT NOT NULL,
                rule TEXT NOT NULL,
                until_at TEXT NOT NULL,
                card_uuid TEXT NOT NULL,
                PRIMARY KEY (patient_key, rule)
            )",
            "CREATE TABLE suppressed_cards (
                id TEXT PRIMARY KEY,
                service TEXT NOT NULL,
                rule TEXT NOT NULL,
                patient_key TEXT NOT NULL,
                hook_instance TEXT NOT NULL,
                at TEXT NOT NULL
            )",
            "CREATE INDEX suppressed_cards_rule ON suppressed_cards (rule, at)",
        ],
    ),
    (
        // A card may stand for several rules (a merged "medication-review" card): the rules
        // of each card, one row per rule, with the card's issue time for per-rule windows.
        // `issued_cards.rule` keeps the card's topic code. Existing cards get their one rule.
        2,
        &[
            "CREATE TABLE issued_card_rules (
                card_uuid TEXT NOT NULL,
                rule TEXT NOT NULL,
                issued_at TEXT NOT NULL,
                PRIMARY KEY (card_uuid, rule)
            )",
            "CREATE INDEX issued_card_rules_rule ON issued_card_rules (rule, issued_at)",
            "INSERT INTO issued_card_rules (card_uuid, rule, issued_at) SELECT card_uuid, rule, issued_at FROM issued_cards",
        ],
    ),
    (
        // JWT replay ledger (see `replay`): token ids used by any replica, until the token
        // expires. The key is SHA-256 of issuer and jti; no token, issuer or jti is stored.
        3,
        &[
            "CREATE TABLE used_jwt_ids (
                token_key TEXT PRIMARY KEY,
                expires_at TEXT NOT NULL
            )",
            "CREATE INDEX used_jwt_ids_expires ON used_jwt_ids (expires_at)",
        ],
    ),
    (
        // Retention (`--retain-days`) deletes by time: an index on each table's time. Feedback
        // about unknown cards is no longer stored; what earlier versions stored is deleted.
        4,
        &[
            "CREATE INDEX issued_cards_issued_at ON issued_cards (issued_at)",
            "CREATE INDEX suppressed_cards_at ON suppressed_cards (at)",
            "CREATE INDEX feedback_received_at ON feedback (received_at)",
            "CREATE INDEX suppressions_until_at ON suppressions (until_at)",
            "DELETE FROM feedback WHERE known_card = 0",
        ],
    ),
    (
        // Silent mode: cards evaluated and recorded but not shown. Analytics count them apart
        // (per rule, from issued_card_rules; per response, from issued_cards).
        5,
        &[
            "ALTER TABLE issued_cards ADD COLUMN silent BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE issued_card_rules ADD COLUMN silent BIGINT NOT NULL DEFAULT 0",
        ],
    ),
];

/// Timestamps as fixed-width RFC 3339 UTC text, so string order is time order.
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_ts(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.to_utc())
}
