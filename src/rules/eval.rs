//! Evaluation: patient facts + rule book → findings. Each finding is a rule that fired, its
//! indicator after escalation, and the evidence (which facts made each predicate true).

use super::book::RuleBook;
use super::expr::{DraftOrderTest, Expr, ReasonFilter, RouteName};
use super::lab_orders::{OrderDecision, ResultMatch};
use crate::facts::dates::days_between;
use crate::facts::PatientFacts;
use crate::knowledge::valueset::VsId;
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
    /// Newer results of the same analyte that could not be used (unreadable value or unit,
    /// or a haemolysed specimen for a high-value decision): the card says so.
    pub set_aside: Vec<usize>,
    /// Another usable result of the same analyte at the same instant with a different value;
    /// the more abnormal one was used and the card names this one.
    pub conflicting: Option<usize>,
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
    /// The analyte as decided on, when it differs from the value set's label
    /// (e.g. "corrected calcium").
    pub analyte: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: usize,
    pub indicator: Indicator,
    pub escalation_reason: Option<String>,
    pub evidence: Vec<Evidence>,
    pub summary_variant: Option<String>,
    pub notes: Vec<String>,
    /// What fills `{finding}`: the evidence that says which of an "A or B" title applied.
    pub finding: Option<Evidence>,
    /// Positions of the rule's citations that apply (conditional ones only when they hold).
    pub citations: Vec<usize>,
    /// Per lab order of the card (index into the lab-order catalogue): offered or not, and why.
    pub orders: Vec<(usize, OrderDecision)>,
}

pub(super) type Truth = Option<Vec<Evidence>>;

/// Whether a draft order passes the predicate's reason and route filters.
pub(super) fn draft_matches(t: &DraftOrderTest, m: &crate::facts::MedicationFact) -> bool {
    let reason_ok = match t.reason {
        ReasonFilter::Any => true,
        ReasonFilter::In(vs) => m.reason_sets.contains(&vs),
        ReasonFilter::NotIn(vs) => m.has_reason && !m.reason_sets.contains(&vs),
        ReasonFilter::Without => !m.has_reason,
    };
    let route_ok = t.routes.is_empty()
        || t.routes.iter().any(|r| {
            use crate::facts::MedicationRoute as M;
            matches!(
                (r, m.route),
                (RouteName::Oral, M::Oral)
                    | (RouteName::Parenteral, M::Parenteral)
                    | (RouteName::Other, M::Other)
                    | (RouteName::Unknown, M::Unknown)
            )
        });
    reason_ok && route_ok
}

pub(super) struct Ctx<'a> {
    pub(super) book: &'a RuleBook,
    pub(super) facts: &'a PatientFacts,
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
        findings.push(ctx.finding(i, evidence));
    }
    let suppressed: Vec<usize> = findings.iter().flat_map(|f| book.rules[f.rule].suppresses.iter().copied()).collect();
    findings.retain(|f| !suppressed.contains(&f.rule));
    // A card that yields to an indicator is withdrawn when another card carries it.
    let present: Vec<(usize, Indicator)> = findings.iter().map(|f| (f.rule, f.indicator)).collect();
    findings.retain(|f| {
        let yields = &book.rules[f.rule].card.yields_to;
        yields.is_empty() || !present.iter().any(|(r, ind)| *r != f.rule && yields.contains(ind))
    });
    findings.sort_by_key(|f| {
        let r = &book.rules[f.rule];
        (r.card.always_last, std::cmp::Reverse(f.indicator), r.priority)
    });
    findings
}

/// The conventions' named facts (such as `LEG_CRAMP_PRESENT`) that hold for this patient:
/// what a population report groups patients by.
pub fn named_facts_holding<'b>(book: &'b RuleBook, facts: &PatientFacts) -> Vec<&'b str> {
    let ctx = Ctx {
        book,
        facts,
        fired: vec![false; book.rules.len()],
        named: RefCell::new(vec![None; book.named_facts.len()]),
    };
    let holds = |i: usize| ctx.eval(&Expr::NamedFact(i)).is_some();
    book.named_facts.iter().enumerate().filter(|(i, _)| holds(*i)).map(|(_, (name, _))| name.as_str()).collect()
}

impl Ctx<'_> {
    /// A fired rule's finding: its indicator after escalation, the variant and notes that apply,
    /// what fills `{finding}`, the context evidence, the citations and lab-order decisions.
    fn finding(&self, i: usize, mut evidence: Vec<Evidence>) -> Finding {
        let rule = &self.book.rules[i];
        let mut indicator = rule.base_indicator(&self.facts.hook);
        let mut escalation_reason = None;
        for (to, when, reason) in &rule.escalations {
            if *to <= indicator {
                continue;
            }
            if let Some(more) = self.eval(when) {
                // The data that raised the indicator is part of the card's "why".
                evidence.extend(more);
                indicator = *to;
                escalation_reason = Some(reason.clone());
            }
        }
        let mut notes = Vec::new();
        let mut summary_variant = None;
        let mut finding = None;
        if let Some((summary, note, ev)) =
            rule.variants.iter().find_map(|(when, s, n)| self.eval(when).map(|ev| (s, n, ev)))
        {
            summary_variant = summary.clone();
            notes.extend(note.clone());
            finding = ev.into_iter().next();
        }
        notes.extend(rule.notes.iter().filter(|(when, _)| self.eval(when).is_some()).map(|(_, t)| t.clone()));
        if finding.is_none() {
            finding = rule.finding_from.as_ref().and_then(|e| self.eval(e)).and_then(|ev| ev.into_iter().next());
        }
        for e in &rule.context_evidence {
            evidence.extend(self.eval(e).unwrap_or_default());
        }
        let citations = (0..rule.card.citations.len())
            .filter(|&k| rule.citation_when[k].as_ref().is_none_or(|w| self.eval(w).is_some()))
            .collect();
        let orders = rule.orders.iter().map(|&o| (o, self.order_decision(o, indicator))).collect();
        Finding {
            rule: i,
            indicator,
            escalation_reason,
            evidence: dedup(evidence),
            summary_variant,
            notes,
            finding,
            citations,
            orders,
        }
    }
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

/// The evidence without repeats, in first-seen order. Linear: items are bucketed by what
/// identifies them (kind and index), and compared in full only within a bucket.
fn dedup(evidence: Vec<Evidence>) -> Vec<Evidence> {
    let mut out: Vec<Evidence> = Vec::with_capacity(evidence.len());
    let mut seen: std::collections::HashMap<EvidenceKey, Vec<usize>> =
        std::collections::HashMap::with_capacity(evidence.len());
    for e in evidence {
        let bucket = seen.entry(EvidenceKey::of(&e)).or_default();
        if !bucket.iter().any(|&k| out[k] == e) {
            bucket.push(out.len());
            out.push(e);
        }
    }
    out
}

/// What identifies a piece of evidence (equal evidence has equal keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EvidenceKey {
    Condition(usize),
    Medication(usize),
    OrderReason(usize),
    Observation(usize, VsId),
    NoRecentObservation(VsId, i64),
    Pregnancy,
    Age(u32),
}

impl EvidenceKey {
    fn of(e: &Evidence) -> Self {
        match e {
            Evidence::Condition(i) => Self::Condition(*i),
            Evidence::Medication(i) => Self::Medication(*i),
            Evidence::OrderReason(i) => Self::OrderReason(*i),
            Evidence::Observation(o) => Self::Observation(o.index, o.vs),
            Evidence::NoRecentObservation { vs, lookback_days } => Self::NoRecentObservation(*vs, *lookback_days),
            Evidence::Pregnancy => Self::Pregnancy,
            Evidence::Age(a) => Self::Age(*a),
        }
    }
}

impl Ctx<'_> {
    /// Whether a card offers a lab order: not where the catalogue forbids it on this
    /// indicator or under its condition, not when recent usable results exist.
    fn order_decision(&self, order: usize, indicator: Indicator) -> OrderDecision {
        let spec = &self.book.policy.lab_orders[order];
        if spec.never_on.contains(&indicator) || spec.not_when.as_ref().is_some_and(|e| self.eval(e).is_some()) {
            return OrderDecision::Withheld;
        }
        let latest = |vs| {
            self.facts.observations.iter().position(|o| {
                o.sets.contains(&vs) && o.unreadable.is_none() && self.within(o.effective, spec.within_days)
            })
        };
        let found: Vec<Option<usize>> = spec.results.iter().map(|&vs| latest(vs)).collect();
        let satisfied = match spec.result_match {
            ResultMatch::All => found.iter().all(Option::is_some),
            ResultMatch::Any => found.iter().any(Option::is_some),
        };
        if satisfied {
            OrderDecision::HaveResults(found.into_iter().flatten().collect())
        } else {
            OrderDecision::Offer
        }
    }

    pub(super) fn within(&self, date: Option<chrono::DateTime<chrono::Utc>>, days: i64) -> bool {
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
            Expr::Condition { vs, within_days, any_date_within_days } => {
                self.condition(*vs, *within_days, *any_date_within_days)
            }
            Expr::Medication { vs, requests, statements, started_at_least_days_ago } => {
                self.medication(*vs, *requests, *statements, *started_at_least_days_ago)
            }
            Expr::DraftOrder(t) => self.draft_order(t),
            Expr::OrderReason(vs) => self.order_reason(*vs),
            Expr::Observation(t) => self.observation(t).map(|e| vec![Evidence::Observation(e)]),
            Expr::ObservationCoded { vs, lookback_days } => self.observation_coded(*vs, *lookback_days),
            Expr::AbsentObservation { vs, lookback_days } => self.absent_observation(*vs, *lookback_days),
            Expr::SameDay(tests) => self.same_day(tests),
            Expr::AgeAtLeast(n) => f.age_years.filter(|a| a >= n).map(|a| vec![Evidence::Age(a)]),
            Expr::Hook(hooks) => hooks.contains(&f.hook).then(Vec::new),
            Expr::RuleFired(i) => self.fired[*i].then(Vec::new),
        }
    }
}
