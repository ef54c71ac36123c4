//! The report from the feedback store (`report --html`): the cards recorded in production,
//! issued and silent, counted per response (one chart opening or order signing), with each
//! rule's feedback — accepted, overridden, override rate, top reasons — beside its firing.
//! A committee compares it with the simulation of the same rules.

use super::{CallSummary, CardSummary, Count, PatientOutcome, Report, RuleFeedback, RuleLine, Tally, Unit};
use crate::store::{RecordedCard, RuleAnalytics};
use std::collections::{BTreeMap, HashSet};

pub fn from_store(
    cards: &[RecordedCard],
    analytics: &[RuleAnalytics],
    source: String,
    since: Option<String>,
) -> Report {
    let mut tally = Tally::new(Unit::Response);
    let mut patients = HashSet::new();
    for response in cards.chunk_by(|a, b| a.hook_instance == b.hook_instance && a.service == b.service) {
        let first = &response[0];
        patients.insert(first.patient_key.as_str());
        let summaries = response
            .iter()
            .map(|c| CardSummary {
                rules: c.rules.clone(),
                indicator: c.indicator.clone(),
                silent: c.silent,
                lab_orders: Vec::new(),
            })
            .collect();
        let call = CallSummary { hook: first.service.clone(), cards: summaries, warnings: Vec::new() };
        tally.add(&PatientOutcome {
            patient: first.patient_key.clone(),
            calls: vec![call],
            named_facts: Default::default(),
        });
    }
    let mut report = tally.finish(source, since, Some(patients.len() as u64));
    let mut lines: BTreeMap<String, RuleLine> = report.rules.drain(..).map(|l| (l.rule.clone(), l)).collect();
    for a in analytics {
        let line = lines.entry(a.rule.clone()).or_insert_with(|| RuleLine {
            rule: a.rule.clone(),
            fired: 0,
            rate: 0.0,
            indicators: BTreeMap::new(),
            co_fires_with: Vec::new(),
            feedback: None,
        });
        line.feedback = Some(RuleFeedback {
            issued: a.issued,
            silent: a.silent,
            accepted: a.accepted,
            overridden: a.overridden,
            suppressed: a.suppressed,
            override_rate: a.override_rate,
            top_override_reasons: a
                .top_override_reasons
                .iter()
                .map(|r| Count { name: r.display.clone().unwrap_or_else(|| r.code.clone()), count: r.count })
                .collect(),
        });
    }
    report.rules = lines.into_values().collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(instance: &str, key: &str, rules: &[&str], silent: bool) -> RecordedCard {
        RecordedCard {
            hook_instance: instance.into(),
            patient_key: key.into(),
            service: "leg-cramp-causes".into(),
            indicator: "info".into(),
            silent,
            rules: rules.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn responses_are_counted_with_their_rules_feedback() {
        let cards = [
            card("h1", "k1", &["a", "b"], true),
            card("h1", "k1", &["c"], true),
            card("h2", "k1", &["a"], false),
            card("h3", "k2", &["c"], false),
        ];
        let mut a = RuleAnalytics::empty("a");
        (a.issued, a.silent, a.overridden, a.accepted, a.override_rate) = (1, 1, 1, 1, 0.5);
        let r = from_store(&cards, &[a, RuleAnalytics::empty("z")], "store".into(), None);
        assert_eq!((r.evaluated, r.patients, r.cards.total, r.cards.silent), (3, 2, 4, 2));
        assert_eq!((r.cards_per_unit.all.median, r.cards_per_unit.all.max), (1, 2));
        let line = |rule: &str| r.rules.iter().find(|l| l.rule == rule).unwrap();
        assert_eq!(line("a").fired, 2);
        assert_eq!(line("a").feedback.as_ref().unwrap().silent, 1);
        assert_eq!(line("z").fired, 0, "a rule with feedback but no card in the window is listed");
        assert!(line("c").feedback.is_none());
    }
}
