//! Recording what a service call issued and withheld, for feedback and analytics: one
//! `IssuedCard` per card, standing for the rules the card lists (a merged card) or its topic.

use super::Evaluation;
use crate::store::{FeedbackStore, IssuedCard, SuppressedCard};

use crate::cards::card_rules;

/// The call the records belong to.
pub(crate) struct Recorded<'a> {
    pub service: &'a str,
    pub hook_instance: &'a str,
    /// Silent mode: the cards were evaluated and are recorded, but not shown.
    pub silent: bool,
}

/// Queues what was issued and what was withheld (off the request path).
pub(crate) fn record(
    store: &FeedbackStore,
    record_cards: bool,
    call: &Recorded,
    patient_key: &str,
    now: chrono::DateTime<chrono::Utc>,
    evaluation: &Evaluation,
) {
    let Recorded { service, hook_instance, silent } = *call;
    if record_cards {
        let issued = evaluation
            .response
            .cards
            .iter()
            .filter_map(|card| {
                let topic = card.source.topic.as_ref()?.code.clone();
                Some(IssuedCard {
                    card_uuid: card.uuid.clone()?,
                    suggestion_uuids: card.suggestions.iter().filter_map(|s| s.uuid.clone()).collect(),
                    service: service.to_string(),
                    rules: card_rules(card),
                    topic,
                    indicator: card.indicator.as_str().to_string(),
                    silent,
                    hook_instance: hook_instance.to_string(),
                    patient_key: patient_key.to_string(),
                    issued_at: now,
                })
            })
            .collect();
        store.record_issued(issued);
    }
    let snoozed = evaluation
        .snoozed
        .iter()
        .map(|rule| SuppressedCard {
            service: service.to_string(),
            rule: rule.clone(),
            patient_key: patient_key.to_string(),
            hook_instance: hook_instance.to_string(),
            at: now,
        })
        .collect();
    store.record_suppressed(snoozed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cards::RULES_EXTENSION;
    use crate::protocol::CdsResponse;
    use crate::store::{StoreOptions, ALREADY_ADDRESSED};

    fn evaluation() -> Evaluation {
        let card = |uuid: &str, topic: &str, rules: Option<serde_json::Value>| {
            let mut c = serde_json::json!({"uuid": uuid, "summary": "s", "indicator": "warning",
                "source": {"label": "l", "topic": {"system": "urn:x", "code": topic}},
                "suggestions": [{"label": "do", "uuid": format!("{uuid}-s")}]});
            if let Some(rules) = rules {
                c["extension"] = serde_json::json!({ RULES_EXTENSION: rules });
            }
            c
        };
        let response: CdsResponse = serde_json::from_value(serde_json::json!({"cards": [
            card("merged", "medication-review", Some(serde_json::json!(["statin-myopathy", "laba-cramps"]))),
            card("plain", "electrolyte-hypomagnesemia", None),
            card("empty-list", "lifestyle-self-care-baseline", Some(serde_json::json!([]))),
        ]}))
        .unwrap();
        Evaluation { response, rule_ids: vec![], snoozed: vec!["pad-claudication".into()], named_facts: vec![] }
    }

    #[tokio::test]
    async fn record_stores_a_merged_card_under_each_rule_it_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = FeedbackStore::open_with(path.to_str().unwrap(), Some("k"), StoreOptions::default()).unwrap();
        let now = chrono::Utc::now();
        let call = Recorded { service: "leg-cramp-causes", hook_instance: "h", silent: false };
        record(&store, true, &call, "pk", now, &evaluation());
        let reason = |card: &str| crate::store::FeedbackRow {
            index: 0,
            card_uuid: card.into(),
            outcome: "overridden".into(),
            accepted_suggestions: vec![],
            override_system: Some(ALREADY_ADDRESSED.0.into()),
            override_code: Some(ALREADY_ADDRESSED.1.into()),
            override_display: None,
            user_comment: None,
            outcome_timestamp: now,
        };
        let receipt = store.store_feedback("leg-cramp-causes".into(), vec![reason("merged")], 30).await.unwrap();
        assert_eq!(receipt.unknown_cards, 0);
        let stats: std::collections::HashMap<String, (u64, u64, u64)> = store
            .analytics(None)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.rule, (a.issued, a.overridden, a.suppressed)))
            .collect();
        assert_eq!(stats["statin-myopathy"], (1, 1, 0));
        assert_eq!(stats["laba-cramps"], (1, 1, 0));
        assert_eq!(stats["electrolyte-hypomagnesemia"], (1, 0, 0), "an ordinary card stands for its topic");
        assert_eq!(stats["lifestyle-self-care-baseline"], (1, 0, 0), "an empty list falls back to the topic");
        assert_eq!(stats["pad-claudication"], (0, 0, 1), "withheld cards are recorded");
        assert!(!stats.contains_key("medication-review"));
        let snoozed = store.suppressed_rules("pk", now);
        assert!(snoozed.contains("statin-myopathy") && snoozed.contains("laba-cramps") && snoozed.len() == 2);
    }
}
