//! Trigger expressions: the file format (what informaticists write) and the compiled form
//! (names resolved to indices once, at load, so evaluation never looks up strings).

use crate::knowledge::valueset::VsId;

pub use super::resolve::{CompileError, Resolver};
use serde::Deserialize;

/// A boolean expression over typed predicates, as written in rule files.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExprFile {
    All(Vec<ExprFile>),
    Any(Vec<ExprFile>),
    Not(Box<ExprFile>),
    /// A named fact: one of `conventions.facts`, or the derived `PREGNANT` / `THIRD_TRIMESTER`.
    Fact(String),
    Condition(ConditionPred),
    Medication(MedicationPred),
    DraftOrder(DraftOrderPred),
    OrderReason(ValueSetRef),
    Observation(ObservationPred),
    ObservationCoded(CodedObservationPred),
    AbsentObservation(CodedObservationPred),
    /// Observation predicates whose latest matching results share one calendar day.
    SameDay(Vec<ObservationPred>),
    AgeAtLeast(u32),
    Hook(Vec<String>),
    RuleFired(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSetRef {
    pub valueset: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionPred {
    pub valueset: String,
    /// Onset (or recorded date) must fall within this many days.
    #[serde(default)]
    pub within_days: Option<i64>,
    /// Onset *or* recorded date within this many days (e.g. a diagnosis recorded recently).
    #[serde(default)]
    pub any_date_within_days: Option<i64>,
}

/// Routes of administration a draft-order predicate can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteName {
    Oral,
    Parenteral,
    Other,
    Unknown,
}

/// A draft order in scope for the hook, optionally judged on its own reason and route:
/// an order hook decides on the order itself, not only on the patient's record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftOrderPred {
    pub valueset: String,
    /// The order has a reason (code or reference) in this value set.
    #[serde(default)]
    pub reason_in: Option<String>,
    /// The order has a reason, and none of its reasons is in this value set.
    #[serde(default)]
    pub reason_not_in: Option<String>,
    /// The order has no reason at all.
    #[serde(default)]
    pub without_reason: bool,
    /// The order's route is one of these (from its dosage route or dose form).
    #[serde(default)]
    pub routes: Vec<RouteName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MedicationSourceFilter {
    Request,
    Statement,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicationPred {
    pub valueset: String,
    /// Which records count (default: both active MedicationRequests and MedicationStatements).
    #[serde(default)]
    pub sources: Vec<MedicationSourceFilter>,
    /// Therapy started at least this many days ago (an unknown start counts).
    #[serde(default)]
    pub started_at_least_days_ago: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Comparator {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Comparator {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparator::Lt => value < threshold,
            Comparator::Le => value <= threshold,
            Comparator::Gt => value > threshold,
            Comparator::Ge => value >= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparator::Lt => "<",
            Comparator::Le => "≤",
            Comparator::Gt => ">",
            Comparator::Ge => "≥",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationPred {
    pub valueset: String,
    pub lookback_days: i64,
    pub comparator: Comparator,
    /// Fixed threshold, in `unit`.
    #[serde(default)]
    pub value: Option<f64>,
    /// Threshold = this × the observation's own referenceRange.high …
    #[serde(default)]
    pub reference_high_times: Option<f64>,
    /// … or, when it has none, this value (in `unit`).
    #[serde(default)]
    pub fallback: Option<f64>,
    pub unit: String,
    /// Linear correction by a same-day companion result (e.g. albumin-corrected calcium).
    #[serde(default)]
    pub adjust: Option<AdjustmentFile>,
    /// Where the threshold comes from (shown in the card's evidence).
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentFile {
    pub valueset: String,
    pub unit: String,
    /// adjusted = value + factor × (reference − companion), in the predicate's unit.
    pub reference: f64,
    pub factor: f64,
    /// Codes already corrected at the lab (used as reported).
    #[serde(default)]
    pub except_codes: Vec<String>,
    pub label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodedObservationPred {
    pub valueset: String,
    pub lookback_days: i64,
}

/// Compiled expression: every name is an index.
#[derive(Debug, Clone)]
pub enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    NamedFact(usize),
    Pregnant,
    ThirdTrimester,
    Condition { vs: VsId, within_days: Option<i64>, any_date_within_days: Option<i64> },
    Medication { vs: VsId, requests: bool, statements: bool, started_at_least_days_ago: Option<i64> },
    DraftOrder(DraftOrderTest),
    OrderReason(VsId),
    Observation(ObservationTest),
    ObservationCoded { vs: VsId, lookback_days: i64 },
    AbsentObservation { vs: VsId, lookback_days: i64 },
    SameDay(Vec<ObservationTest>),
    AgeAtLeast(u32),
    Hook(Vec<String>),
    RuleFired(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReasonFilter {
    Any,
    In(VsId),
    NotIn(VsId),
    Without,
}

#[derive(Debug, Clone)]
pub struct DraftOrderTest {
    pub vs: VsId,
    pub reason: ReasonFilter,
    /// Empty: any route.
    pub routes: Vec<RouteName>,
}

#[derive(Debug, Clone)]
pub struct ObservationTest {
    pub vs: VsId,
    pub lookback_days: i64,
    pub comparator: Comparator,
    pub threshold: Threshold,
    pub canonical_unit: String,
    pub adjust: Option<Adjustment>,
    pub source: Option<String>,
    /// A high-value test on an analyte that haemolysis falsely raises: haemolysed results
    /// are set aside.
    pub skip_haemolysed: bool,
}

#[derive(Debug, Clone)]
pub enum Threshold {
    /// In the canonical unit.
    Fixed(f64),
    ReferenceHigh {
        times: f64,
        fallback: f64,
    },
}

#[derive(Debug, Clone)]
pub struct Adjustment {
    pub vs: VsId,
    pub unit: String,
    pub reference: f64,
    pub factor: f64,
    pub except_codes: Vec<String>,
    pub label: String,
}

impl Expr {
    /// Value sets of which at least one must be present in the patient's data for this
    /// expression to be true; `None` if no such set exists (negations, facts, ages…).
    /// Rules are indexed by these "anchors" so only plausible rules are evaluated.
    pub fn anchors(&self) -> Option<Vec<VsId>> {
        match self {
            Expr::Condition { vs, .. }
            | Expr::Medication { vs, .. }
            | Expr::DraftOrder(DraftOrderTest { vs, .. })
            | Expr::OrderReason(vs)
            | Expr::ObservationCoded { vs, .. } => Some(vec![*vs]),
            Expr::Observation(t) => Some(vec![t.vs]),
            Expr::SameDay(ts) => ts.first().map(|t| vec![t.vs]),
            Expr::All(xs) => xs.iter().filter_map(Expr::anchors).min_by_key(Vec::len),
            Expr::Any(xs) => {
                let mut all = Vec::new();
                for x in xs {
                    all.extend(x.anchors()?);
                }
                all.sort_unstable();
                all.dedup();
                Some(all)
            }
            _ => None,
        }
    }

    /// Value sets of the medication and draft-order predicates (which drug a card is about).
    pub fn medication_sets(&self, out: &mut Vec<VsId>) {
        match self {
            Expr::All(xs) | Expr::Any(xs) => xs.iter().for_each(|x| x.medication_sets(out)),
            Expr::Medication { vs, .. } | Expr::DraftOrder(DraftOrderTest { vs, .. }) => out.push(*vs),
            _ => {}
        }
    }

    /// Rules this expression refers to (for evaluation order and cycle checks).
    pub fn rule_refs(&self, out: &mut Vec<usize>) {
        match self {
            Expr::All(xs) | Expr::Any(xs) => xs.iter().for_each(|x| x.rule_refs(out)),
            Expr::Not(x) => x.rule_refs(out),
            Expr::RuleFired(i) => out.push(*i),
            _ => {}
        }
    }
}
