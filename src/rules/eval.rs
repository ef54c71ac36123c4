//! Evaluation: patient facts + rule book → findings. Each finding is a rule that fired, its
//! indicator after escalation, and the evidence (which facts made each predicate true).

use super::book::RuleBook;
use super::expr::{Expr, ObservationTest, Threshold};
use super::valueset::VsId;
use crate::facts::dates::days_between;
use crate::facts::PatientFacts;
use crate::protocol::Indicator;
use std::cell::RefCell;

/// Why a predicate was true, pointing into the facts.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    Condition(usize),
    Medication(usize),
    OrderReason(usize),
    Observation(ObservationEvidence),
    NoRecentObservation { vs: VsId, lookback_days: i64 },
    Pregnancy,
    Age(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservationEvidence {
    pub index: usize,
    pub vs: VsId,
    /// Present when a threshold was compared: value (canonical unit, adjusted), the test, the bound.
    pub compared: Option<Comparison>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub value: f64,
    pub unit: String,
    pub comparator: &'static str,
    pub threshold: f64,
    pub source: Option<String>,
    /// e.g. "corrected for albumin 2.8 g/dL (Observation/alb)".
    pub adjustment: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: usize,
    pub indicator: Indicator,
    pub escalation_reason: Option<String>,
    pub evidence: Vec<Evidence>,
    pub summary_variant: Option<String>,
    pub notes: Vec<String>,
}

type Truth = Option<Vec<Evidence>>;

struct Ctx<'a> {
    book: &'a RuleBook,
    facts: &'a PatientFacts,
    fired: Vec<bool>,
    named: RefCell<Vec<Option<Truth>>>,
}

/// Evaluates every candidate rule for the hook; returns findings sorted for display
/// (critical > warning > info, then priority, `always_last` at the end), suppressions applied.
pub fn evaluate(book: &RuleBook, facts: &PatientFacts) -> Vec<Finding> {
    let mut ctx = Ctx {
        book,
        facts,
        fired: vec![false; book.rules.len()],
        named: RefCell::new(vec![None; book.named_facts.len()]),
    };
    let candidates = candidate_rules(book, facts);
    let mut findings = Vec::new();
    for (i, rule) in book.rules.iter().enumerate() {
        if !candidates[i] || !rule.hooks.contains(&facts.hook) {
            continue;
        }
        if rule.adult_only && facts.age_years.is_some_and(|a| a < book.conventions.adult_age_years) {
            continue;
        }
        let Some(evidence) = ctx.eval(&rule.trigger) else { continue };
        ctx.fired[i] = true;
        let mut evidence = evidence;
        let mut indicator = rule.base_indicator(&facts.hook);
        let mut escalation_reason = None;
        for (to, when, reason) in &rule.escalations {
            if *to <= indicator {
                continue;
            }
            if let Some(more) = ctx.eval(when) {
                // The data that raised the indicator is part of the card's "why".
                evidence.extend(more);
                indicator = *to;
                escalation_reason = Some(reason.clone());
            }
        }
        let mut notes = Vec::new();
        let mut summary_variant = None;
        for (when, summary, note) in &rule.variants {
            if ctx.eval(when).is_some() {
                summary_variant = summary.clone();
                notes.extend(note.clone());
                break;
            }
        }
        for (when, text) in &rule.notes {
            if ctx.eval(when).is_some() {
                notes.push(text.clone());
            }
        }
        findings.push(Finding {
            rule: i,
            indicator,
            escalation_reason,
            evidence: dedup(evidence),
            summary_variant,
            notes,
        });
    }
    let suppressed: Vec<usize> = findings.iter().flat_map(|f| book.rules[f.rule].suppresses.iter().copied()).collect();
    findings.retain(|f| !suppressed.contains(&f.rule));
    findings.sort_by_key(|f| {
        let r = &book.rules[f.rule];
        (r.card.always_last, std::cmp::Reverse(f.indicator), r.priority)
    });
    findings
}

/// Rules that could fire given which value sets occur in the patient's data.
fn candidate_rules(book: &RuleBook, facts: &PatientFacts) -> Vec<bool> {
    let mut candidate = vec![false; book.rules.len()];
    for &i in &book.unanchored {
        candidate[i] = true;
    }
    let mut mark = |sets: &[VsId]| {
        for vs in sets {
            if let Some(rules) = book.anchored.get(vs) {
                rules.iter().for_each(|&i| candidate[i] = true);
            }
        }
    };
    facts.conditions.iter().for_each(|c| mark(&c.sets));
    facts.medications.iter().for_each(|m| {
        mark(&m.sets);
        mark(&m.reason_sets)
    });
    facts.observations.iter().for_each(|o| {
        mark(&o.sets);
        mark(&o.value_sets)
    });
    // Rules that depend on a candidate through rule_fired are evaluated in order anyway:
    // a rule_fired predicate of a non-candidate rule is simply false.
    candidate
}

fn dedup(mut evidence: Vec<Evidence>) -> Vec<Evidence> {
    let mut out: Vec<Evidence> = Vec::with_capacity(evidence.len());
    for e in evidence.drain(..) {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

impl Ctx<'_> {
    fn within(&self, date: Option<chrono::DateTime<chrono::Utc>>, days: i64) -> bool {
        // A day of slack for clocks and time zones on "today" results.
        date.is_some_and(|d| (-1.0..=days as f64).contains(&days_between(d, self.facts.now)))
    }

    fn eval(&self, e: &Expr) -> Truth {
        let f = self.facts;
        match e {
            Expr::All(xs) => {
                let mut ev = Vec::new();
                for x in xs {
                    ev.extend(self.eval(x)?);
                }
                Some(ev)
            }
            Expr::Any(xs) => {
                let mut ev = Vec::new();
                let mut any = false;
                for x in xs {
                    if let Some(e) = self.eval(x) {
                        any = true;
                        ev.extend(e);
                    }
                }
                any.then_some(ev)
            }
            Expr::Not(x) => match self.eval(x) {
                Some(_) => None,
                None => Some(Vec::new()),
            },
            Expr::NamedFact(i) => {
                if let Some(cached) = &self.named.borrow()[*i] {
                    return cached.clone();
                }
                let value = self.eval(&self.book.named_facts[*i].1);
                self.named.borrow_mut()[*i] = Some(value.clone());
                value
            }
            Expr::Pregnant => f.pregnancy.pregnant.then(|| vec![Evidence::Pregnancy]),
            Expr::ThirdTrimester => {
                (f.pregnancy.pregnant && f.pregnancy.third_trimester).then(|| vec![Evidence::Pregnancy])
            }
            Expr::Condition { vs, within_days } => {
                let ev: Vec<Evidence> = f
                    .conditions
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.active && c.sets.contains(vs))
                    .filter(|(_, c)| within_days.is_none_or(|d| self.within(c.dated, d)))
                    .map(|(i, _)| Evidence::Condition(i))
                    .collect();
                (!ev.is_empty()).then_some(ev)
            }
            Expr::Medication { vs, requests, statements, started_at_least_days_ago } => {
                use crate::facts::MedicationSource as S;
                let ev: Vec<Evidence> = f
                    .medications
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.active && m.sets.contains(vs))
                    .filter(|(_, m)| match m.source {
                        S::Request => *requests,
                        S::Statement => *statements,
                        S::DraftOrder => false,
                    })
                    .filter(|(_, m)| {
                        started_at_least_days_ago
                            .is_none_or(|d| m.started.is_none_or(|s| days_between(s, f.now) >= d as f64))
                    })
                    .map(|(i, _)| Evidence::Medication(i))
                    .collect();
                (!ev.is_empty()).then_some(ev)
            }
            Expr::DraftOrder(vs) => {
                let ev: Vec<Evidence> = f
                    .medications
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.draft_in_scope && m.sets.contains(vs))
                    .map(|(i, _)| Evidence::Medication(i))
                    .collect();
                (!ev.is_empty()).then_some(ev)
            }
            Expr::OrderReason(vs) => {
                let ev: Vec<Evidence> = f
                    .medications
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.draft_in_scope && m.reason_sets.contains(vs))
                    .map(|(i, _)| Evidence::OrderReason(i))
                    .collect();
                (!ev.is_empty()).then_some(ev)
            }
            Expr::Observation(t) => self.observation(t).map(|e| vec![Evidence::Observation(e)]),
            Expr::ObservationCoded { vs, lookback_days } => f
                .observations
                .iter()
                .position(|o| {
                    (o.sets.contains(vs) || o.value_sets.contains(vs)) && self.within(o.effective, *lookback_days)
                })
                .map(|i| vec![Evidence::Observation(ObservationEvidence { index: i, vs: *vs, compared: None })]),
            Expr::AbsentObservation { vs, lookback_days } => {
                let present =
                    f.observations.iter().any(|o| o.sets.contains(vs) && self.within(o.effective, *lookback_days));
                (!present).then(|| vec![Evidence::NoRecentObservation { vs: *vs, lookback_days: *lookback_days }])
            }
            Expr::SameDay(tests) => {
                let mut ev = Vec::new();
                let mut day = None;
                for t in tests {
                    let e = self.observation(t)?;
                    let d = f.observations[e.index].effective?.date_naive();
                    if *day.get_or_insert(d) != d {
                        return None;
                    }
                    ev.push(Evidence::Observation(e));
                }
                Some(ev)
            }
            Expr::AgeAtLeast(n) => f.age_years.filter(|a| a >= n).map(|a| vec![Evidence::Age(a)]),
            Expr::Hook(hooks) => hooks.contains(&f.hook).then(Vec::new),
            Expr::RuleFired(i) => self.fired[*i].then(Vec::new),
        }
    }

    /// The latest usable result in the value set within the lookback, compared to the
    /// threshold. A later normal value supersedes an earlier abnormal one; a value whose unit
    /// cannot be converted is never compared.
    fn observation(&self, t: &ObservationTest) -> Option<ObservationEvidence> {
        let f = self.facts;
        let index =
            f.observations.iter().position(|o| o.sets.contains(&t.vs) && self.within(o.effective, t.lookback_days))?;
        let o = &f.observations[index];
        let mut value = o.canonical_value(t.vs)?;
        let mut adjustment = None;
        if let Some(a) = &t.adjust {
            let exempt = o.coding.as_ref().is_some_and(|c| a.except_codes.contains(&c.code));
            let day = o.effective.map(|d| d.date_naive());
            let companion = f
                .observations
                .iter()
                .find(|c| c.sets.contains(&a.vs) && c.effective.map(|d| d.date_naive()) == day && day.is_some());
            if let (false, Some(c)) = (exempt, companion) {
                let units = self.book.index.get(a.vs).units.as_ref()?;
                // Companion in canonical unit, then into the formula's unit.
                let canonical = c.canonical_value(a.vs)?;
                let per_unit = units.to_canonical(1.0, &a.unit)?;
                let companion_value = canonical / per_unit;
                value += a.factor * (a.reference - companion_value);
                adjustment = Some(format!(
                    "{} using {} {} {} ({})",
                    a.label,
                    c.label,
                    format_number(companion_value),
                    a.unit,
                    c.reference
                ));
            }
        }
        let threshold = match t.threshold {
            Threshold::Fixed(v) => v,
            Threshold::ReferenceHigh { times, fallback } => {
                let high = o.reference_high.as_ref().and_then(|(h, unit)| {
                    let units = self.book.index.get(t.vs).units.as_ref()?;
                    match unit.as_deref().or(o.unit.as_deref()) {
                        Some(u) => units.to_canonical(*h, u),
                        None => Some(*h),
                    }
                });
                high.map(|h| h * times).unwrap_or(fallback)
            }
        };
        t.comparator.holds(value, threshold).then(|| ObservationEvidence {
            index,
            vs: t.vs,
            compared: Some(Comparison {
                value,
                unit: t.canonical_unit.clone(),
                comparator: t.comparator.symbol(),
                threshold,
                source: t.source.clone(),
                adjustment,
            }),
        })
    }
}

/// Numbers as a clinician writes them: no trailing zeros, at most two decimals.
pub fn format_number(v: f64) -> String {
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}
