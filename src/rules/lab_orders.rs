//! Lab orders as data (`cards/lab-orders.json`): each order a card may suggest and the machine
//! condition under which it is offered (revision 2 C1). A card never offers a test whose
//! usable result is recent; it states that result instead. Loaded with the rules, because a
//! `not_when` condition is an expression over the same value sets.

use super::expr::{Expr, ExprFile, Resolver};
use crate::knowledge::valueset::VsId;
use crate::protocol::Indicator;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabOrdersFile {
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    pub description: String,
    pub orders: BTreeMap<String, LabOrderFile>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultMatch {
    /// A panel: every listed analyte must have a recent usable result.
    #[default]
    All,
    /// Any one listed analyte's recent result answers the question.
    Any,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabOrderFile {
    pub display: String,
    pub label: String,
    pub results: Vec<String>,
    #[serde(default, rename = "match")]
    pub result_match: ResultMatch,
    pub within_days: i64,
    #[serde(default)]
    pub never_on: Vec<Indicator>,
    #[serde(default)]
    pub not_when: Option<ExprFile>,
    #[serde(default)]
    pub instead: Option<String>,
}

/// One orderable test, compiled.
#[derive(Debug, Clone)]
pub struct LabOrderSpec {
    pub code: String,
    pub display: String,
    /// How a clinician names it on a card ("magnesium").
    pub label: String,
    pub results: Vec<VsId>,
    pub result_match: ResultMatch,
    pub within_days: i64,
    pub never_on: Vec<Indicator>,
    pub not_when: Option<Expr>,
    pub instead: Option<String>,
}

/// Compiles the file; errors are (JSON pointer, message).
pub fn compile(file: &LabOrdersFile, resolver: &Resolver) -> Result<Vec<LabOrderSpec>, Vec<(String, String)>> {
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for (code, o) in &file.orders {
        let at = format!("/orders/{code}");
        let mut results = Vec::new();
        for (k, name) in o.results.iter().enumerate() {
            match resolver.index.id(name) {
                Some(id) => results.push(id),
                None => errors.push((format!("{at}/results/{k}"), format!("unknown value set '{name}'"))),
            }
        }
        let not_when = match &o.not_when {
            None => None,
            Some(e) => match resolver.compile(e, &format!("{at}/not_when")) {
                Ok(x) => Some(x),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        specs.push(LabOrderSpec {
            code: code.clone(),
            display: o.display.clone(),
            label: o.label.clone(),
            results,
            result_match: o.result_match,
            within_days: o.within_days,
            never_on: o.never_on.clone(),
            not_when,
            instead: o.instead.clone(),
        });
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

/// What became of one order on one card.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderDecision {
    /// No recent usable result: offered as a suggestion.
    Offer,
    /// Recent usable results (observation fact indices): stated instead of an order.
    HaveResults(Vec<usize>),
    /// Not offered on this card (indicator or condition); the card says what instead.
    Withheld,
}
