//! One rule file → a compiled rule: its identity checked, its expressions compiled, its
//! summaries proven short enough, its references resolved, its test cases balanced. Every
//! problem is a `file: JSON pointer: message` load error; a rule with any is not built.

use super::card_policy::{compile_card_parts, CardPolicy};
use super::expr::{Expr, ExprFile, Resolver};
use super::model::{Expectation, Population, Rule, RuleFile};
use crate::knowledge::load::LoadError;
use crate::knowledge::placeholder::max_filled_length;
use crate::protocol::Indicator;
use std::path::Path;

pub const KNOWN_HOOKS: [&str; 3] = ["patient-view", "order-select", "order-sign"];

/// What compiling a rule resolves names against.
pub(super) struct RuleContext<'a> {
    pub resolver: &'a Resolver<'a>,
    pub policy: &'a CardPolicy,
    pub rule_ids: &'a [String],
}

/// Collects a rule file's errors as it is compiled.
struct Problems<'a> {
    file: &'a Path,
    errors: Vec<LoadError>,
}

impl Problems<'_> {
    fn add(&mut self, pointer: &str, message: impl Into<String>) {
        self.errors.push(LoadError { file: self.file.to_path_buf(), pointer: pointer.into(), message: message.into() });
    }

    fn compile(&mut self, resolver: &Resolver, e: &ExprFile, at: &str) -> Option<Expr> {
        match resolver.compile(e, at) {
            Ok(x) => Some(x),
            Err((ptr, m)) => {
                self.add(&ptr, m);
                None
            }
        }
    }
}

/// The `i`-th rule file, compiled; `Err` lists every problem found in it.
pub(super) fn compile_rule(i: usize, file: &Path, r: &RuleFile, ctx: &RuleContext) -> Result<Rule, Vec<LoadError>> {
    let mut p = Problems { file, errors: Vec::new() };
    check_identity(i, r, ctx, &mut p);
    let parts = compile_card_parts(r, ctx.resolver, ctx.policy)
        .map_err(|es| es.into_iter().for_each(|(ptr, m)| p.add(&ptr, m)))
        .ok();
    let exprs = compile_expressions(r, ctx.resolver, &mut p);
    check_summaries(r, &mut p);
    let suppresses = resolve_supersession(r, ctx.rule_ids, &mut p);
    let fires = r.tests.iter().filter(|t| t.expect == Expectation::Fire).count();
    if fires == 0 || fires == r.tests.len() {
        p.add("/tests", "needs at least one 'fire' and one 'no-fire' case");
    }
    let (Some(parts), Some((trigger, escalations, variants, notes)), true) = (parts, exprs, p.errors.is_empty()) else {
        return Err(p.errors);
    };
    let mut drug_sets = Vec::new();
    trigger.medication_sets(&mut drug_sets);
    Ok(Rule {
        id: r.id.clone(),
        title: r.title.clone(),
        hooks: r.hooks.clone(),
        priority: r.priority,
        adult_only: r.population == Population::Adult,
        trigger,
        drug_sets,
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
    })
}

fn check_identity(i: usize, r: &RuleFile, ctx: &RuleContext, p: &mut Problems) {
    if ctx.rule_ids[..i].contains(&r.id) {
        p.add("/id", format!("duplicate rule id '{}'", r.id));
    }
    if p.file.file_stem().and_then(|s| s.to_str()) != Some(r.id.as_str()) {
        p.add("/id", format!("id '{}' must equal the file name", r.id));
    }
    for (h, hook) in r.hooks.iter().enumerate() {
        if !KNOWN_HOOKS.contains(&hook.as_str()) {
            p.add(&format!("/hooks/{h}"), format!("unknown hook '{hook}'"));
        }
    }
    if r.requires_leg_cramp && !gated(&r.trigger) {
        p.add(
            "/trigger",
            "requires_leg_cramp is true: the trigger must be 'all' with {\"fact\": \"LEG_CRAMP_PRESENT\"} among its items",
        );
    }
    if !r.card.citations.iter().any(|c| c.url.is_some()) {
        p.add("/card/citations", "at least one citation needs a url");
    }
}

type Escalations = Vec<(Indicator, Expr, String)>;
type Variants = Vec<(Expr, Option<String>, Option<String>)>;
type Notes = Vec<(Expr, String)>;

/// The trigger, escalations, variants and conditional notes, compiled.
fn compile_expressions(
    r: &RuleFile,
    resolver: &Resolver,
    p: &mut Problems,
) -> Option<(Expr, Escalations, Variants, Notes)> {
    let trigger = p.compile(resolver, &r.trigger, "/trigger");
    let mut escalations = Vec::new();
    for (k, e) in r.card.escalations.iter().enumerate() {
        if let Some(when) = p.compile(resolver, &e.when, &format!("/card/escalations/{k}/when")) {
            escalations.push((e.to, when, e.reason.clone()));
        }
    }
    let mut variants = Vec::new();
    for (k, v) in r.card.variants.iter().enumerate() {
        if let Some(when) = p.compile(resolver, &v.when, &format!("/card/variants/{k}/when")) {
            variants.push((when, v.summary.clone(), v.note.clone()));
        }
    }
    let mut notes = Vec::new();
    for (k, n) in r.card.notes.iter().enumerate() {
        if let Some(when) = p.compile(resolver, &n.when, &format!("/card/notes/{k}/when")) {
            notes.push((when, n.text.clone()));
        }
    }
    Some((trigger?, escalations, variants, notes))
}

/// Every summary, filled at each placeholder's full width, stays under 140 characters.
fn check_summaries(r: &RuleFile, p: &mut Problems) {
    let mut summaries = vec![("/card/summary".to_string(), r.card.summary.clone())];
    if r.card.summary.contains('{') && r.card.summary_fallback.is_none() {
        p.add("/card/summary_fallback", "a summary with placeholders needs a summary_fallback");
    }
    if let Some(s) = &r.card.summary_fallback {
        if s.contains('{') {
            p.add("/card/summary_fallback", "the fallback summary cannot have placeholders");
        }
        summaries.push(("/card/summary_fallback".to_string(), s.clone()));
    }
    for (k, v) in r.card.variants.iter().enumerate() {
        if let Some(s) = &v.summary {
            summaries.push((format!("/card/variants/{k}/summary"), s.clone()));
        }
    }
    for (ptr, s) in summaries {
        match max_filled_length(&s) {
            Ok(n) if n >= 140 => p.add(
                &ptr,
                format!("summary can reach {n} characters once placeholders are filled; must stay under 140"),
            ),
            Ok(_) => {}
            Err(m) => p.add(&ptr, m),
        }
    }
}

/// Positions of the rules this one supersedes; `suppressed_by` names are checked too.
fn resolve_supersession(r: &RuleFile, rule_ids: &[String], p: &mut Problems) -> Vec<usize> {
    let mut suppresses = Vec::new();
    for (k, s) in r.suppresses.iter().enumerate() {
        match rule_ids.iter().position(|x| x == s) {
            Some(found) => suppresses.push(found),
            None => p.add(&format!("/suppresses/{k}"), format!("unknown rule '{s}'")),
        }
    }
    for (k, s) in r.suppressed_by.iter().enumerate() {
        if !rule_ids.contains(s) {
            p.add(&format!("/suppressed_by/{k}"), format!("unknown rule '{s}'"));
        }
    }
    suppresses
}

fn gated(trigger: &ExprFile) -> bool {
    matches!(trigger, ExprFile::All(xs) if xs.iter().any(|x| matches!(x, ExprFile::Fact(f) if f == "LEG_CRAMP_PRESENT")))
}
