//! Loading what decides a card's content beyond its trigger: the lab-order catalogue, merged
//! cards, and each rule's conditional citations, context evidence and `{finding}` source.

use super::expr::{Expr, Resolver};
use super::lab_orders::{self, LabOrderSpec, LabOrdersFile};
use super::merged::{self, MergedCard, MergedCardsFile};
use super::model::RuleFile;
use crate::knowledge::load::{read_json, LoadError};
use crate::protocol::schemas::{Document, SchemaSet};
use serde::de::DeserializeOwned;
use std::path::Path;

/// The card-content files of the cards directory, compiled.
#[derive(Debug, Clone, Default)]
pub struct CardPolicy {
    pub lab_orders: Vec<LabOrderSpec>,
    pub merged: Vec<MergedCard>,
}

impl CardPolicy {
    pub fn lab_order(&self, code: &str) -> Option<usize> {
        self.lab_orders.iter().position(|o| o.code == code)
    }
}

fn load_file<T: DeserializeOwned>(
    path: &Path,
    document: Document,
    schemas: &SchemaSet,
    errors: &mut Vec<LoadError>,
) -> Option<T> {
    let err = |pointer: &str, message: String| LoadError { file: path.to_path_buf(), pointer: pointer.into(), message };
    let value = read_json(path).map_err(|e| errors.push(e)).ok()?;
    if let Err(es) = schemas.validate(document, &value) {
        errors.extend(es.into_iter().map(|e| err(&e.pointer, e.message)));
        return None;
    }
    serde_json::from_value(value).map_err(|e| errors.push(err("", e.to_string()))).ok()
}

pub fn load(
    dir: &Path,
    schemas: &SchemaSet,
    resolver: &Resolver,
    rule_ids: &[String],
    errors: &mut Vec<LoadError>,
) -> CardPolicy {
    let mut policy = CardPolicy::default();
    let orders_path = dir.join("lab-orders.json");
    if let Some(file) = load_file::<LabOrdersFile>(&orders_path, Document::LabOrders, schemas, errors) {
        match lab_orders::compile(&file, resolver) {
            Ok(specs) => policy.lab_orders = specs,
            Err(es) => errors.extend(located(&orders_path, es)),
        }
    }
    let merged_path = dir.join("merged-cards.json");
    if let Some(file) = load_file::<MergedCardsFile>(&merged_path, Document::MergedCards, schemas, errors) {
        match merged::compile(&file, rule_ids) {
            Ok(m) => policy.merged = m,
            Err(es) => errors.extend(located(&merged_path, es)),
        }
    }
    policy
}

/// (JSON pointer, message) problems of one file, as load errors naming it.
fn located(path: &Path, problems: Vec<(String, String)>) -> impl Iterator<Item = LoadError> + '_ {
    problems.into_iter().map(move |(pointer, message)| LoadError { file: path.to_path_buf(), pointer, message })
}

/// A rule's card parts that are expressions or references, compiled.
pub struct CompiledCardParts {
    pub citation_when: Vec<Option<Expr>>,
    pub context_evidence: Vec<Expr>,
    pub finding_from: Option<Expr>,
    pub orders: Vec<usize>,
}

/// Compiles a rule file's card parts; errors are (JSON pointer, message).
pub fn compile_card_parts(
    r: &RuleFile,
    resolver: &Resolver,
    policy: &CardPolicy,
) -> Result<CompiledCardParts, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut compile = |e: &super::expr::ExprFile, at: String| match resolver.compile(e, &at) {
        Ok(x) => Some(x),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let citation_when = r
        .card
        .citations
        .iter()
        .enumerate()
        .map(|(k, c)| c.when.as_ref().and_then(|w| compile(w, format!("/card/citations/{k}/when"))))
        .collect();
    let context_evidence = r
        .card
        .context_evidence
        .iter()
        .enumerate()
        .filter_map(|(k, e)| compile(e, format!("/card/context_evidence/{k}")))
        .collect();
    let finding_from = r.card.finding_from.as_ref().and_then(|e| compile(e, "/card/finding_from".into()));
    let mut orders = Vec::new();
    for (k, o) in r.card.orders.iter().enumerate() {
        match policy.lab_order(&o.code) {
            Some(i) => orders.push(i),
            None => errors.push((
                format!("/card/orders/{k}/code"),
                format!("LOINC {} is not in cards/lab-orders.json (its offer condition lives there)", o.code),
            )),
        }
    }
    if r.card.summary.contains("{finding}") && r.card.finding_from.is_none() {
        errors.push(("/card/finding_from".into(), "a summary with {finding} needs finding_from".into()));
    }
    if errors.is_empty() {
        Ok(CompiledCardParts { citation_when, context_evidence, finding_from, orders })
    } else {
        Err(errors)
    }
}
