//! Counting outcomes into a report, one at a time, in memory that does not grow with the
//! population: histograms of card counts, per-rule and per-pair counters, per-code counters.

use super::outcome::{warning_kind, PatientOutcome};
use super::{
    Burden, CardCounts, Count, Distribution, LabOrders, Malformed, MalformedInput, OrderCount, Report, RuleLine, Unit,
    WarningKind,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Malformed inputs and warning examples kept for the report (the rest are counted).
const EXAMPLES: usize = 20;
const WARNING_EXAMPLES: usize = 3;
const EXAMPLE_CHARS: usize = 160;
/// Co-firing rules listed per rule.
const CO_FIRING: usize = 5;

#[derive(Debug)]
pub struct Tally {
    unit: Unit,
    evaluated: u64,
    with_cards: u64,
    cards: CardCounts,
    histogram: BTreeMap<u32, u64>,
    by_fact: BTreeMap<String, BTreeMap<u32, u64>>,
    calls: BTreeMap<String, u64>,
    rule_units: BTreeMap<String, u64>,
    rule_indicators: BTreeMap<String, BTreeMap<String, u64>>,
    pairs: HashMap<(String, String), u64>,
    offered: BTreeMap<String, (String, u64)>,
    duplicated: BTreeMap<String, (String, u64)>,
    responses_with_duplicates: u64,
    warnings: BTreeMap<&'static str, (u64, u64, Vec<String>)>,
    malformed: Malformed,
}

impl Tally {
    pub fn new(unit: Unit) -> Self {
        Self {
            unit,
            evaluated: 0,
            with_cards: 0,
            cards: CardCounts::default(),
            histogram: BTreeMap::new(),
            by_fact: BTreeMap::new(),
            calls: BTreeMap::new(),
            rule_units: BTreeMap::new(),
            rule_indicators: BTreeMap::new(),
            pairs: HashMap::new(),
            offered: BTreeMap::new(),
            duplicated: BTreeMap::new(),
            responses_with_duplicates: 0,
            warnings: BTreeMap::new(),
            malformed: Malformed::default(),
        }
    }

    /// Named facts to report even when no unit had them (so a distribution is always there).
    pub fn expect_named_facts<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            self.by_fact.entry(name.to_string()).or_default();
        }
    }

    pub fn add(&mut self, outcome: &PatientOutcome) {
        self.evaluated += 1;
        let n = outcome.card_count();
        self.with_cards += u64::from(n > 0);
        *self.histogram.entry(n).or_default() += 1;
        for fact in &outcome.named_facts {
            *self.by_fact.entry(fact.clone()).or_default().entry(n).or_default() += 1;
        }
        for call in &outcome.calls {
            *self.calls.entry(call.hook.clone()).or_default() += 1;
            self.count_orders(call);
            for card in &call.cards {
                self.cards.total += 1;
                self.cards.silent += u64::from(card.silent);
                *self.cards.by_indicator.entry(card.indicator.clone()).or_default() += 1;
                for rule in &card.rules {
                    *self
                        .rule_indicators
                        .entry(rule.clone())
                        .or_default()
                        .entry(card.indicator.clone())
                        .or_default() += 1;
                }
            }
        }
        let rules = outcome.rules();
        for (i, a) in rules.iter().enumerate() {
            *self.rule_units.entry(a.clone()).or_default() += 1;
            for b in &rules[i + 1..] {
                let key = if a < b { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
                *self.pairs.entry(key).or_default() += 1;
            }
        }
        self.count_warnings(outcome);
    }

    fn count_orders(&mut self, call: &super::CallSummary) {
        let mut seen = BTreeSet::new();
        let mut duplicate = false;
        for (code, display) in call.cards.iter().flat_map(|c| &c.lab_orders) {
            self.offered.entry(code.clone()).or_insert_with(|| (display.clone(), 0)).1 += 1;
            if !seen.insert(code) {
                duplicate = true;
                self.duplicated.entry(code.clone()).or_insert_with(|| (display.clone(), 0)).1 += 1;
            }
        }
        self.responses_with_duplicates += u64::from(duplicate);
    }

    fn count_warnings(&mut self, outcome: &PatientOutcome) {
        let mut kinds = BTreeSet::new();
        for warning in outcome.calls.iter().flat_map(|c| &c.warnings) {
            let kind = warning_kind(warning);
            let entry = self.warnings.entry(kind).or_default();
            entry.0 += 1;
            if kinds.insert(kind) {
                entry.1 += 1;
            }
            keep_first(&mut entry.2, warning.chars().take(EXAMPLE_CHARS).collect(), WARNING_EXAMPLES);
        }
    }

    /// An input that could not be evaluated (an unreadable file or line, a rejected request).
    pub fn add_malformed(&mut self, input: &str, reason: &str) {
        self.malformed.count += 1;
        let example = MalformedInput {
            input: input.chars().take(EXAMPLE_CHARS).collect(),
            reason: reason.chars().take(EXAMPLE_CHARS * 2).collect(),
        };
        keep_first(&mut self.malformed.examples, example, EXAMPLES);
    }

    pub fn malformed_count(&self) -> u64 {
        self.malformed.count
    }

    pub fn evaluated(&self) -> u64 {
        self.evaluated
    }

    /// The report. `patients` is the number of distinct patients (a store report knows it
    /// separately from the responses it counts).
    pub fn finish(self, source: String, as_of: Option<String>, patients: Option<u64>) -> Report {
        let evaluated = self.evaluated;
        let rate = |n: u64| if evaluated == 0 { 0.0 } else { n as f64 / evaluated as f64 };
        let rules = self
            .rule_units
            .iter()
            .map(|(rule, &fired)| RuleLine {
                rule: rule.clone(),
                fired,
                rate: rate(fired),
                indicators: self.rule_indicators.get(rule).cloned().unwrap_or_default(),
                co_fires_with: co_firing(&self.pairs, rule),
                feedback: None,
            })
            .collect();
        let orders = |m: BTreeMap<String, (String, u64)>| {
            let mut v: Vec<OrderCount> =
                m.into_iter().map(|(code, (display, count))| OrderCount { code, display, count }).collect();
            v.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(&b.code)));
            v
        };
        let data_warnings = self
            .warnings
            .into_iter()
            .map(|(kind, (warnings, units, examples))| WarningKind {
                kind: kind.to_string(),
                warnings,
                units,
                examples,
            })
            .collect();
        Report {
            source,
            as_of,
            unit: self.unit,
            evaluated,
            patients: patients.unwrap_or(evaluated),
            with_cards: self.with_cards,
            with_named_fact: self.by_fact.iter().map(|(k, h)| (k.clone(), h.values().sum())).collect(),
            calls: self.calls,
            cards: self.cards,
            cards_per_unit: Burden {
                all: Distribution::from_histogram(&self.histogram),
                by_named_fact: self.by_fact.iter().map(|(k, h)| (k.clone(), Distribution::from_histogram(h))).collect(),
            },
            rules,
            lab_orders: LabOrders {
                offered: orders(self.offered),
                responses_with_duplicates: self.responses_with_duplicates,
                duplicates: orders(self.duplicated),
            },
            data_warnings,
            malformed: self.malformed,
        }
    }
}

/// Keeps the `max` smallest examples, sorted: the same whatever order inputs came in (the
/// report of a population is the same from NDJSON and from Bundles).
fn keep_first<T: Ord>(examples: &mut Vec<T>, example: T, max: usize) {
    if let Err(at) = examples.binary_search(&example) {
        if at < max {
            examples.insert(at, example);
            examples.truncate(max);
        }
    }
}

/// The rules most often fired together with `rule`, most frequent first.
fn co_firing(pairs: &HashMap<(String, String), u64>, rule: &str) -> Vec<Count> {
    let mut v: Vec<Count> = pairs
        .iter()
        .filter_map(|((a, b), &count)| match (a == rule, b == rule) {
            (true, _) => Some(Count { name: b.clone(), count }),
            (_, true) => Some(Count { name: a.clone(), count }),
            _ => None,
        })
        .collect();
    v.sort_by(|x, y| y.count.cmp(&x.count).then(x.name.cmp(&y.name)));
    v.truncate(CO_FIRING);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CallSummary, CardSummary};

    fn card(rules: &[&str], indicator: &str, orders: &[&str]) -> CardSummary {
        CardSummary {
            rules: rules.iter().map(|r| r.to_string()).collect(),
            indicator: indicator.into(),
            silent: false,
            lab_orders: orders.iter().map(|o| (o.to_string(), format!("lab {o}"))).collect(),
        }
    }

    fn patient(id: &str, cards: Vec<CardSummary>, facts: &[&str]) -> PatientOutcome {
        PatientOutcome {
            patient: id.into(),
            calls: vec![CallSummary { hook: "patient-view".into(), cards, warnings: vec![] }],
            named_facts: facts.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn rules_pairs_orders_and_burden_are_counted() {
        let mut t = Tally::new(Unit::Patient);
        t.expect_named_facts(["LEG_CRAMP_PRESENT", "OTHER"]);
        t.add(&patient(
            "a",
            vec![card(&["x", "y"], "warning", &["k"]), card(&["z"], "info", &["k", "m"])],
            &["LEG_CRAMP_PRESENT"],
        ));
        t.add(&patient("b", vec![card(&["x"], "info", &[])], &["LEG_CRAMP_PRESENT"]));
        t.add(&patient("c", vec![], &[]));
        t.add_malformed("file.json", "not a Bundle");
        let r = t.finish("test".into(), None, None);
        assert_eq!((r.evaluated, r.with_cards, r.cards.total, r.malformed.count), (3, 2, 3, 1));
        let x = r.rules.iter().find(|l| l.rule == "x").unwrap();
        assert_eq!(x.fired, 2);
        assert!((x.rate - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(x.indicators, BTreeMap::from([("info".to_string(), 1), ("warning".to_string(), 1)]));
        assert_eq!(x.co_fires_with, vec![Count { name: "y".into(), count: 1 }, Count { name: "z".into(), count: 1 }]);
        assert_eq!(r.lab_orders.responses_with_duplicates, 1);
        assert_eq!(r.lab_orders.duplicates[0].code, "k");
        assert_eq!(r.lab_orders.offered[0], OrderCount { code: "k".into(), display: "lab k".into(), count: 2 });
        let cramp = &r.cards_per_unit.by_named_fact["LEG_CRAMP_PRESENT"];
        assert_eq!((cramp.count, cramp.median, cramp.max), (2, 1, 2));
        assert_eq!(r.cards_per_unit.by_named_fact["OTHER"].count, 0, "an expected fact is reported even when absent");
        assert_eq!(r.cards_per_unit.all.histogram, vec![(0, 1), (1, 1), (2, 1)]);
    }
}
