//! Loading the rule set: value sets, conventions, override reasons and rules from the cards
//! directory, each file checked against its schema, every name resolved, no cycles, every
//! summary short enough. Any problem is reported as `file: JSON pointer: message`.

use super::expr::{Expr, ExprFile, Resolver};
use super::model::{Expectation, Population, Rule, RuleFile};
use crate::knowledge::conventions::Conventions;
use crate::knowledge::load::{json_files, load_value_sets, read_json, LoadError};
use crate::knowledge::valueset::{ValueSetIndex, VsId};
use crate::protocol::schemas::{Document, SchemaSet};
use crate::protocol::Coding;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const KNOWN_HOOKS: [&str; 3] = ["patient-view", "order-select", "order-sign"];

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
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn load(dir: &Path, schemas: &SchemaSet) -> Result<Self, Vec<LoadError>> {
        let mut errors = Vec::new();
        let err = |file: &Path, pointer: &str, message: String| LoadError {
            file: file.to_path_buf(),
            pointer: pointer.to_string(),
            message,
        };

        // Value sets, units and medication vocabulary.
        let Some(index) = load_value_sets(dir, schemas, &mut errors) else { return Err(errors) };

        // Conventions and override reasons.
        let conv_file = dir.join("conventions.json");
        let conventions: Option<Conventions<ExprFile>> = read_json(&conv_file)
            .map_err(|e| errors.push(e))
            .ok()
            .and_then(|v| serde_json::from_value(v).map_err(|e| errors.push(err(&conv_file, "", e.to_string()))).ok());
        let reasons_file = dir.join("override-reasons.json");
        let override_reasons: Vec<Coding> = read_json(&reasons_file)
            .map_err(|e| errors.push(e))
            .ok()
            .and_then(|v| {
                serde_json::from_value(v).map_err(|e| errors.push(err(&reasons_file, "", e.to_string()))).ok()
            })
            .unwrap_or_default();
        if override_reasons.iter().any(|c| c.display.is_none()) {
            errors.push(err(&reasons_file, "", "every override reason needs a display (cds-resp-4)".into()));
        }
        let Some(conventions) = conventions else { return Err(errors) };
        let p = &conventions.pregnancy;
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

        // Rules: parse and schema-check every file first, so names can be resolved.
        let mut files: Vec<(PathBuf, RuleFile)> = Vec::new();
        for file in json_files(&dir.join("rules"), &mut errors) {
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
        let rule_ids: Vec<String> = files.iter().map(|(_, r)| r.id.clone()).collect();
        let fact_names: Vec<String> = conventions.facts.keys().cloned().collect();
        let haemolysis_raises: Vec<VsId> = conventions
            .observation
            .haemolysis_raises
            .iter()
            .enumerate()
            .filter_map(|(k, name)| {
                let id = index.id(name);
                if id.is_none() {
                    errors.push(err(
                        &conv_file,
                        &format!("/observation/haemolysis_raises/{k}"),
                        format!("unknown value set '{name}'"),
                    ));
                }
                id
            })
            .collect();
        let resolver =
            Resolver { index: &index, facts: &fact_names, rules: &rule_ids, haemolysis_raises: &haemolysis_raises };

        let policy = super::card_policy::load(dir, schemas, &resolver, &rule_ids, &mut errors);

        let mut named_facts = Vec::new();
        for (name, fact) in &conventions.facts {
            match resolver.compile(&fact.expr, &format!("/facts/{name}/expr")) {
                Ok(e) => named_facts.push((name.clone(), e)),
                Err((ptr, m)) => errors.push(err(&conv_file, &ptr, m)),
            }
        }

        let mut rules = Vec::new();
        for (i, (file, r)) in files.iter().enumerate() {
            let before = errors.len();
            if rule_ids[..i].contains(&r.id) {
                errors.push(err(file, "/id", format!("duplicate rule id '{}'", r.id)));
            }
            if file.file_stem().and_then(|s| s.to_str()) != Some(r.id.as_str()) {
                errors.push(err(file, "/id", format!("id '{}' must equal the file name", r.id)));
            }
            for (h, hook) in r.hooks.iter().enumerate() {
                if !KNOWN_HOOKS.contains(&hook.as_str()) {
                    errors.push(err(file, &format!("/hooks/{h}"), format!("unknown hook '{hook}'")));
                }
            }
            let parts = match super::card_policy::compile_card_parts(r, &resolver, &policy) {
                Ok(p) => Some(p),
                Err(es) => {
                    errors.extend(es.into_iter().map(|(ptr, m)| err(file, &ptr, m)));
                    None
                }
            };
            let mut compile = |e: &super::expr::ExprFile, at: &str| match resolver.compile(e, at) {
                Ok(x) => Some(x),
                Err((ptr, m)) => {
                    errors.push(err(file, &ptr, m));
                    None
                }
            };
            let trigger = compile(&r.trigger, "/trigger");
            let escalations: Vec<_> = r
                .card
                .escalations
                .iter()
                .enumerate()
                .filter_map(|(k, e)| {
                    Some((e.to, compile(&e.when, &format!("/card/escalations/{k}/when"))?, e.reason.clone()))
                })
                .collect();
            let variants: Vec<_> = r
                .card
                .variants
                .iter()
                .enumerate()
                .filter_map(|(k, v)| {
                    Some((compile(&v.when, &format!("/card/variants/{k}/when"))?, v.summary.clone(), v.note.clone()))
                })
                .collect();
            let notes: Vec<_> = r
                .card
                .notes
                .iter()
                .enumerate()
                .filter_map(|(k, n)| Some((compile(&n.when, &format!("/card/notes/{k}/when"))?, n.text.clone())))
                .collect();
            if r.requires_leg_cramp && !gated(&r.trigger) {
                errors.push(err(
                    file,
                    "/trigger",
                    "requires_leg_cramp is true: the trigger must be 'all' with {\"fact\": \"LEG_CRAMP_PRESENT\"} among its items".into(),
                ));
            }
            let mut summaries = vec![("/card/summary".to_string(), r.card.summary.clone())];
            if r.card.summary.contains('{') && r.card.summary_fallback.is_none() {
                errors.push(err(
                    file,
                    "/card/summary_fallback",
                    "a summary with placeholders needs a summary_fallback".into(),
                ));
            }
            if let Some(s) = &r.card.summary_fallback {
                if s.contains('{') {
                    errors.push(err(
                        file,
                        "/card/summary_fallback",
                        "the fallback summary cannot have placeholders".into(),
                    ));
                }
                summaries.push(("/card/summary_fallback".to_string(), s.clone()));
            }
            for (k, v) in r.card.variants.iter().enumerate() {
                if let Some(s) = &v.summary {
                    summaries.push((format!("/card/variants/{k}/summary"), s.clone()));
                }
            }
            for (ptr, s) in summaries {
                match crate::knowledge::placeholder::max_filled_length(&s) {
                    Ok(n) if n >= 140 => errors.push(err(
                        file,
                        &ptr,
                        format!("summary can reach {n} characters once placeholders are filled; must stay under 140"),
                    )),
                    Ok(_) => {}
                    Err(m) => errors.push(err(file, &ptr, m)),
                }
            }
            if !r.card.citations.iter().any(|c| c.url.is_some()) {
                errors.push(err(file, "/card/citations", "at least one citation needs a url".into()));
            }
            let suppresses: Vec<usize> = r
                .suppresses
                .iter()
                .enumerate()
                .filter_map(|(k, s)| {
                    let found = rule_ids.iter().position(|x| x == s);
                    if found.is_none() {
                        errors.push(err(file, &format!("/suppresses/{k}"), format!("unknown rule '{s}'")));
                    }
                    found
                })
                .collect();
            for (k, s) in r.suppressed_by.iter().enumerate() {
                if !rule_ids.contains(s) {
                    errors.push(err(file, &format!("/suppressed_by/{k}"), format!("unknown rule '{s}'")));
                }
            }
            let fires = r.tests.iter().filter(|t| t.expect == Expectation::Fire).count();
            if fires == 0 || fires == r.tests.len() {
                errors.push(err(file, "/tests", "needs at least one 'fire' and one 'no-fire' case".into()));
            }
            let (Some(parts), true) = (parts, errors.len() == before) else { continue };
            rules.push(Rule {
                file: file.clone(),
                id: r.id.clone(),
                title: r.title.clone(),
                category: r.category.clone(),
                hooks: r.hooks.clone(),
                priority: r.priority,
                adult_only: r.population == Population::Adult,
                trigger: trigger.expect("compiled"),
                escalations,
                variants,
                notes,
                citation_when: parts.citation_when,
                context_evidence: parts.context_evidence,
                finding_from: parts.finding_from,
                orders: parts.orders,
                card: r.card.clone(),
                suppresses,
                tests: r.tests.clone(),
                must_not_fire: r.must_not_fire.clone(),
                rendered: std::sync::OnceLock::new(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // `suppressed_by` is the mirror of `suppresses`: fold it in.
        for (me, (_, r)) in files.iter().enumerate() {
            for by in &r.suppressed_by {
                let other = rules.iter_mut().find(|x| &x.id == by).expect("checked");
                if !other.suppresses.contains(&me) {
                    other.suppresses.push(me);
                }
            }
        }
        if let Some(cycle) = suppression_cycle(&rules) {
            let (file, _) = &files[cycle[0]];
            let names: Vec<&str> = cycle.iter().map(|i| rule_ids[*i].as_str()).collect();
            return Err(vec![err(file, "/suppresses", format!("suppression cycle: {}", names.join(" → ")))]);
        }
        let order = match evaluation_order(&rules) {
            Ok(o) => o,
            Err(i) => {
                return Err(vec![err(&files[i].0, "/trigger", "rule_fired references form a cycle".into())]);
            }
        };
        let rules = reorder(rules, &order);
        let mut policy = policy;
        let mut new_pos = vec![0usize; order.len()];
        for (pos, &old) in order.iter().enumerate() {
            new_pos[old] = pos;
        }
        policy.merged.iter_mut().for_each(|m| m.rules.iter_mut().for_each(|r| *r = new_pos[*r]));
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

fn gated(trigger: &super::expr::ExprFile) -> bool {
    use super::expr::ExprFile;
    matches!(trigger, ExprFile::All(xs) if xs.iter().any(|x| matches!(x, ExprFile::Fact(f) if f == "LEG_CRAMP_PRESENT")))
}

fn suppression_cycle(rules: &[Rule]) -> Option<Vec<usize>> {
    // Indices in `suppresses` are positions in the file list, which is `rules` order here.
    fn visit(i: usize, rules: &[Rule], state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[i] = 1;
        path.push(i);
        for &j in &rules[i].suppresses {
            if state[j] == 1 {
                let start = path.iter().position(|&p| p == j).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(j);
                return Some(cycle);
            }
            if state[j] == 0 {
                if let Some(c) = visit(j, rules, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; rules.len()];
    (0..rules.len()).find_map(|i| if state[i] == 0 { visit(i, rules, &mut state, &mut Vec::new()) } else { None })
}

fn rule_dependencies(rule: &Rule) -> Vec<usize> {
    let mut deps = Vec::new();
    rule.trigger.rule_refs(&mut deps);
    rule.escalations.iter().for_each(|(_, e, _)| e.rule_refs(&mut deps));
    rule.variants.iter().for_each(|(e, _, _)| e.rule_refs(&mut deps));
    rule.notes.iter().for_each(|(e, _)| e.rule_refs(&mut deps));
    rule.citation_when.iter().flatten().for_each(|e| e.rule_refs(&mut deps));
    rule.context_evidence.iter().for_each(|e| e.rule_refs(&mut deps));
    rule.finding_from.iter().for_each(|e| e.rule_refs(&mut deps));
    deps
}

/// Topological order over `rule_fired` references; `Err(i)` names a rule in a cycle.
fn evaluation_order(rules: &[Rule]) -> Result<Vec<usize>, usize> {
    let deps: Vec<Vec<usize>> = rules.iter().map(rule_dependencies).collect();
    let mut order = Vec::with_capacity(rules.len());
    let mut state = vec![0u8; rules.len()];
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) -> Result<(), usize> {
        match state[i] {
            2 => return Ok(()),
            1 => return Err(i),
            _ => {}
        }
        state[i] = 1;
        for &d in &deps[i] {
            visit(d, deps, state, order)?;
        }
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..rules.len() {
        visit(i, &deps, &mut state, &mut order)?;
    }
    Ok(order)
}

/// Puts rules in evaluation order and renumbers every rule index they hold.
fn reorder(rules: Vec<Rule>, order: &[usize]) -> Vec<Rule> {
    let mut new_pos = vec![0usize; rules.len()];
    for (pos, &old) in order.iter().enumerate() {
        new_pos[old] = pos;
    }
    let mut slots: Vec<Option<Rule>> = rules.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&old| {
            let mut r = slots[old].take().expect("each rule once");
            r.suppresses.iter_mut().for_each(|s| *s = new_pos[*s]);
            renumber(&mut r.trigger, &new_pos);
            r.escalations.iter_mut().for_each(|(_, e, _)| renumber(e, &new_pos));
            r.variants.iter_mut().for_each(|(e, _, _)| renumber(e, &new_pos));
            r.notes.iter_mut().for_each(|(e, _)| renumber(e, &new_pos));
            r.citation_when.iter_mut().flatten().for_each(|e| renumber(e, &new_pos));
            r.context_evidence.iter_mut().for_each(|e| renumber(e, &new_pos));
            r.finding_from.iter_mut().for_each(|e| renumber(e, &new_pos));
            r
        })
        .collect()
}

fn renumber(e: &mut Expr, new_pos: &[usize]) {
    match e {
        Expr::All(xs) | Expr::Any(xs) => xs.iter_mut().for_each(|x| renumber(x, new_pos)),
        Expr::Not(x) => renumber(x, new_pos),
        Expr::RuleFired(i) => *i = new_pos[*i],
        _ => {}
    }
}
