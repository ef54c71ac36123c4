//! Loading the rule set: value sets, conventions, override reasons and rules from the cards
//! directory, each file checked against its schema, every name resolved, no cycles, every
//! summary short enough. Any problem is reported as `file: JSON pointer: message`.

use super::compile_rule::{compile_rule, RuleContext};
use super::expr::{Expr, ExprFile, Resolver};
use super::model::{Rule, RuleFile};
use super::order::{evaluation_order, reorder, suppression_cycle};
use crate::knowledge::conventions::Conventions;
use crate::knowledge::load::{json_files, load_value_sets, read_json, LoadError};
use crate::knowledge::valueset::{ValueSetIndex, VsId};
use crate::protocol::schemas::{Document, SchemaSet};
use crate::protocol::Coding;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use super::compile_rule::KNOWN_HOOKS;

#[derive(Debug, Clone)]
pub struct RuleBook {
    pub index: ValueSetIndex,
    pub conventions: Conventions<ExprFile>,
    pub named_facts: Vec<(String, Expr)>,
    /// In evaluation order: a rule comes after every rule its expressions refer to.
    pub rules: Vec<Rule>,
    /// value set → rules anchored on it; rules without an anchor are always candidates.
    pub anchored: HashMap<VsId, Vec<usize>>,
    pub unanchored: Vec<usize>,
    pub override_reasons: Vec<Coding>,
    /// Lab-order catalogue and merged cards.
    pub policy: super::card_policy::CardPolicy,
}

impl RuleBook {
    pub fn load(dir: &Path, schemas: &SchemaSet) -> Result<Self, Vec<LoadError>> {
        let mut errors = Vec::new();
        let Some(index) = load_value_sets(dir, schemas, &mut errors) else { return Err(errors) };
        let (conventions, override_reasons) = load_conventions(dir, &index, &mut errors);
        let Some(conventions) = conventions else { return Err(errors) };
        let files = parse_rule_files(dir, schemas, &mut errors);
        let rule_ids: Vec<String> = files.iter().map(|(_, r)| r.id.clone()).collect();
        let fact_names: Vec<String> = conventions.facts.keys().cloned().collect();
        let haemolysis_raises = haemolysis_sets(dir, &conventions, &index, &mut errors);
        let resolver =
            Resolver { index: &index, facts: &fact_names, rules: &rule_ids, haemolysis_raises: &haemolysis_raises };
        let policy = super::card_policy::load(dir, schemas, &resolver, &rule_ids, &mut errors);
        let conv_file = dir.join("conventions.json");
        let mut named_facts = Vec::new();
        for (name, fact) in &conventions.facts {
            match resolver.compile(&fact.expr, &format!("/facts/{name}/expr")) {
                Ok(e) => named_facts.push((name.clone(), e)),
                Err((ptr, m)) => errors.push(LoadError { file: conv_file.clone(), pointer: ptr, message: m }),
            }
        }
        let ctx = RuleContext { resolver: &resolver, policy: &policy, rule_ids: &rule_ids };
        let mut rules = Vec::new();
        for (i, (file, r)) in files.iter().enumerate() {
            match compile_rule(i, file, r, &ctx) {
                Ok(rule) => rules.push(rule),
                Err(es) => errors.extend(es),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let (rules, policy) = put_in_order(rules, &files, &rule_ids, policy)?;
        let mut anchored: HashMap<VsId, Vec<usize>> = HashMap::new();
        let mut unanchored = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            match rule.trigger.anchors() {
                Some(sets) => sets.into_iter().for_each(|vs| anchored.entry(vs).or_default().push(i)),
                None => unanchored.push(i),
            }
        }
        Ok(RuleBook { index, conventions, named_facts, rules, anchored, unanchored, override_reasons, policy })
    }
}

fn err(file: &Path, pointer: &str, message: String) -> LoadError {
    LoadError { file: file.to_path_buf(), pointer: pointer.to_string(), message }
}

/// `conventions.json` (with every pregnancy value set it names checked) and the override
/// reasons offered on every card.
fn load_conventions(
    dir: &Path,
    index: &ValueSetIndex,
    errors: &mut Vec<LoadError>,
) -> (Option<Conventions<ExprFile>>, Vec<Coding>) {
    let conv_file = dir.join("conventions.json");
    let conventions: Option<Conventions<ExprFile>> = read_json(&conv_file)
        .map_err(|e| errors.push(e))
        .ok()
        .and_then(|v| serde_json::from_value(v).map_err(|e| errors.push(err(&conv_file, "", e.to_string()))).ok());
    let reasons_file = dir.join("override-reasons.json");
    let override_reasons: Vec<Coding> = read_json(&reasons_file)
        .map_err(|e| errors.push(e))
        .ok()
        .and_then(|v| serde_json::from_value(v).map_err(|e| errors.push(err(&reasons_file, "", e.to_string()))).ok())
        .unwrap_or_default();
    if override_reasons.iter().any(|c| c.display.is_none()) {
        errors.push(err(&reasons_file, "", "every override reason needs a display (cds-resp-4)".into()));
    }
    if let Some(c) = &conventions {
        let p = &c.pregnancy;
        for (field, name) in [
            ("status_observation", &p.status_observation),
            ("pregnant_answers", &p.pregnant_answers),
            ("not_pregnant_answers", &p.not_pregnant_answers),
            ("pregnancy_conditions", &p.pregnancy_conditions),
            ("delivery_conditions", &p.delivery_conditions),
            ("gestational_age_observation", &p.gestational_age_observation),
            ("third_trimester_conditions", &p.third_trimester_conditions),
            ("hcg_observation", &p.hcg_observation),
            ("hcg_positive_answers", &p.hcg_positive_answers),
            ("hcg_negative_answers", &p.hcg_negative_answers),
        ] {
            if index.id(name).is_none() {
                errors.push(err(&conv_file, &format!("/pregnancy/{field}"), format!("unknown value set '{name}'")));
            }
        }
    }
    (conventions, override_reasons)
}

/// Every rule file, schema-checked and parsed (before any name is resolved).
fn parse_rule_files(dir: &Path, schemas: &SchemaSet, errors: &mut Vec<LoadError>) -> Vec<(PathBuf, RuleFile)> {
    let mut files = Vec::new();
    for file in json_files(&dir.join("rules"), errors) {
        match read_json(&file) {
            Ok(v) => {
                if let Err(es) = schemas.validate(Document::Rule, &v) {
                    errors.extend(es.into_iter().map(|e| err(&file, &e.pointer, e.message)));
                    continue;
                }
                match serde_json::from_value::<RuleFile>(v) {
                    Ok(r) => files.push((file, r)),
                    Err(e) => errors.push(err(&file, "", e.to_string())),
                }
            }
            Err(e) => errors.push(e),
        }
    }
    files
}

/// The value sets whose high results a haemolysed specimen falsely raises.
fn haemolysis_sets(
    dir: &Path,
    conventions: &Conventions<ExprFile>,
    index: &ValueSetIndex,
    errors: &mut Vec<LoadError>,
) -> Vec<VsId> {
    let conv_file = dir.join("conventions.json");
    let mut out = Vec::new();
    for (k, name) in conventions.observation.haemolysis_raises.iter().enumerate() {
        match index.id(name) {
            Some(id) => out.push(id),
            None => errors.push(err(
                &conv_file,
                &format!("/observation/haemolysis_raises/{k}"),
                format!("unknown value set '{name}'"),
            )),
        }
    }
    out
}

/// Folds `suppressed_by` into `suppresses`, refuses supersession and `rule_fired` cycles, and
/// puts the rules (and the merged cards' references to them) in evaluation order.
fn put_in_order(
    mut rules: Vec<Rule>,
    files: &[(PathBuf, RuleFile)],
    rule_ids: &[String],
    mut policy: super::card_policy::CardPolicy,
) -> Result<(Vec<Rule>, super::card_policy::CardPolicy), Vec<LoadError>> {
    for (me, (_, r)) in files.iter().enumerate() {
        for by in &r.suppressed_by {
            if let Some(other) = rules.iter_mut().find(|x| &x.id == by) {
                if !other.suppresses.contains(&me) {
                    other.suppresses.push(me);
                }
            }
        }
    }
    if let Some(cycle) = suppression_cycle(&rules) {
        let (file, _) = &files[cycle[0]];
        let names: Vec<&str> = cycle.iter().map(|i| rule_ids[*i].as_str()).collect();
        return Err(vec![err(file, "/suppresses", format!("suppression cycle: {}", names.join(" → ")))]);
    }
    let order = evaluation_order(&rules)
        .map_err(|i| vec![err(&files[i].0, "/trigger", "rule_fired references form a cycle".into())])?;
    let mut new_pos = vec![0usize; order.len()];
    for (pos, &old) in order.iter().enumerate() {
        new_pos[old] = pos;
    }
    policy.merged.iter_mut().for_each(|m| m.rules.iter_mut().for_each(|r| *r = new_pos[*r]));
    Ok((reorder(rules, &order), policy))
}
