//! The rule file format (`cards/rules/*.json`, schema `schemas/rule.schema.json`) and the
//! compiled rule the engine runs.

use super::expr::{Expr, ExprFile};
use crate::protocol::Indicator;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    pub id: String,
    pub title: String,
    /// The catalogue section (red-flag, electrolyte, …); read by informaticists, not the engine.
    pub category: String,
    pub hooks: Vec<String>,
    pub priority: i32,
    pub requires_leg_cramp: bool,
    /// `adult`: not for patients younger than `conventions.adult_age_years`.
    pub population: Population,
    pub trigger: ExprFile,
    pub card: CardTemplate,
    #[serde(default)]
    pub suppresses: Vec<String>,
    #[serde(default)]
    pub suppressed_by: Vec<String>,
    /// The catalogue's must-not-fire statements, kept beside the cases that test them.
    #[serde(default)]
    pub must_not_fire: Vec<String>,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Population {
    Adult,
    All,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardTemplate {
    pub indicator: Indicator,
    #[serde(default)]
    pub indicator_by_hook: BTreeMap<String, Indicator>,
    #[serde(default)]
    pub indicator_rationale: Option<String>,
    #[serde(default)]
    pub escalations: Vec<Escalation>,
    /// One sentence, < 140 characters once placeholders are filled:
    /// `{value}` `{unit}` `{analyte}` `{drug}` `{supplement}` `{ga}`.
    pub summary: String,
    /// Used when a placeholder has nothing to fill it (e.g. triggered by a diagnosis, no lab).
    #[serde(default)]
    pub summary_fallback: Option<String>,
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// What to do (Markdown); the engine prepends the evidence and appends the citations.
    pub detail: String,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default)]
    pub recommendations: Vec<String>,
    #[serde(default)]
    pub orders: Vec<LabOrder>,
    #[serde(default)]
    pub draft_order_action: Option<DraftOrderAction>,
    pub citations: Vec<Citation>,
    /// Sorts after every other card (the baseline self-care card).
    #[serde(default)]
    pub always_last: bool,
    /// The card is withdrawn when another card of one of these indicators fires (a general
    /// self-care card does not sit under a red flag).
    #[serde(default)]
    pub yields_to: Vec<Indicator>,
    /// Facts that do not decide whether the card fires but belong in its "why" when present
    /// (e.g. recent surgery on a DVT card).
    #[serde(default)]
    pub context_evidence: Vec<ExprFile>,
    /// Where `{finding}` comes from: the first evidence of this expression (unless a matching
    /// variant's own condition supplies it), so a rule with an "A or B" title says which.
    #[serde(default)]
    pub finding_from: Option<ExprFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub to: Indicator,
    pub when: ExprFile,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub when: ExprFile,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    pub when: ExprFile,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabOrder {
    /// LOINC code of the test to order; its condition is in `cards/lab-orders.json`.
    pub code: String,
    pub display: String,
}

/// A suggestion acting on the draft order(s) that triggered the card (e.g. delete quinine).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftOrderAction {
    pub label: String,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    pub title: String,
    #[serde(default)]
    pub url: Option<String>,
    /// Cited only when this holds (e.g. the source of the analyte that fired).
    #[serde(default)]
    pub when: Option<ExprFile>,
}

/// A test case: a patient as FHIR resources, the hook, the evaluation instant, and whether
/// the rule must fire (and with which indicator).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub expect: Expectation,
    #[serde(default)]
    pub indicator: Option<Indicator>,
    /// Text the card's detail must contain (e.g. the gestational age).
    #[serde(default)]
    pub detail_contains: Vec<String>,
    /// Rules that must not be in the same response (e.g. a suppressed rule).
    #[serde(default)]
    pub absent_rules: Vec<String>,
    /// Defaults to the rule's first hook.
    #[serde(default)]
    pub hook: Option<String>,
    pub now: String,
    #[serde(default)]
    pub patient: Option<Value>,
    #[serde(default)]
    pub resources: Vec<Value>,
    #[serde(default)]
    pub draft_orders: Vec<Value>,
    /// order-select: references of the selected draft orders (default: all of them).
    #[serde(default)]
    pub selections: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expectation {
    Fire,
    NoFire,
}

/// A rule ready to run: expressions compiled, references resolved.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub hooks: Vec<String>,
    pub priority: i32,
    pub adult_only: bool,
    pub trigger: Expr,
    /// Value sets of the trigger's medication and draft-order predicates: which drug the
    /// card is about (its `{drug}` is that drug's matched ingredient).
    pub drug_sets: Vec<crate::knowledge::valueset::VsId>,
    pub escalations: Vec<(Indicator, Expr, String)>,
    pub variants: Vec<(Expr, Option<String>, Option<String>)>,
    pub notes: Vec<(Expr, String)>,
    /// Per citation: the condition under which it is cited (`None`: always).
    pub citation_when: Vec<Option<Expr>>,
    pub context_evidence: Vec<Expr>,
    pub finding_from: Option<Expr>,
    /// Index into `RuleBook::lab_orders` of each of the card's orders.
    pub orders: Vec<usize>,
    pub card: CardTemplate,
    pub suppresses: Vec<usize>,
    pub tests: Vec<TestCase>,
}

impl Rule {
    pub fn base_indicator(&self, hook: &str) -> Indicator {
        self.card.indicator_by_hook.get(hook).copied().unwrap_or(self.card.indicator)
    }
}
