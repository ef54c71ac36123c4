//! Merged cards (revision 2 C5): when two or more rules of a merged group fire, one card
//! stands for them — one line per drug and its evidence, the sources of every member once, and
//! the member rules listed in `extension["org.leg-cramp-cds.rules"]` so that feedback and
//! analytics still count each rule.

use super::{evidence, orders, EVIDENCE_EXTENSION, RULES_EXTENSION, RULE_SYSTEM, SOURCE_LABEL};
use crate::facts::PatientFacts;
use crate::knowledge::placeholder::shorten;
use crate::protocol::response::{Link, LinkType, SelectionBehavior, Source};
use crate::protocol::{Card, Coding};
use crate::rules::eval::Evidence;
use crate::rules::merged::MergedCard;
use crate::rules::{Finding, RuleBook};
use serde_json::{json, Map};
use std::collections::HashSet;
use std::fmt::Write;

/// (merged card, positions of its member findings) for every group with two or more members.
pub fn groups(book: &RuleBook, findings: &[Finding]) -> Vec<(usize, Vec<usize>)> {
    book.policy
        .merged
        .iter()
        .enumerate()
        .filter_map(|(m, merged)| {
            let members: Vec<usize> =
                (0..findings.len()).filter(|&i| merged.rules.contains(&findings[i].rule)).collect();
            (members.len() >= 2).then_some((m, members))
        })
        .collect()
}

pub fn card(
    book: &RuleBook,
    facts: &PatientFacts,
    merged: &MergedCard,
    members: &[&Finding],
    patient_id: &str,
    offered: &mut HashSet<String>,
) -> Card {
    let drugs = drug_names(facts, members);
    let mut md = String::with_capacity(2048);
    let _ = writeln!(md, "**Why this card** ({})", merged.title);
    let rule_ids: Vec<String> = members.iter().map(|f| book.rules[f.rule].id.clone()).collect();
    why_lines(book, facts, members, &mut md);
    let links = links(book, members);
    let order_decisions: Vec<_> = {
        let mut out: Vec<(usize, crate::rules::lab_orders::OrderDecision)> = Vec::new();
        for d in members.iter().flat_map(|f| &f.orders) {
            if !out.iter().any(|(o, _)| *o == d.0) {
                out.push(d.clone());
            }
        }
        out
    };
    let all: Vec<String> = members.iter().flat_map(|f| evidence::references(facts, &f.evidence)).collect();
    let resources: Vec<&str> = evidence::unique(all.iter().map(String::as_str));
    let (suggestions, order_lines) =
        orders::render(&book.index, &book.policy.lab_orders, &order_decisions, facts, patient_id, offered);
    let _ = writeln!(md, "\n**What to do**\n\n{}", merged.detail.trim());
    for f in members {
        let rule = &book.rules[f.rule];
        let _ = writeln!(md, "\n*{}*: {}", rule.title, rule.card.detail.trim());
    }
    if !order_lines.is_empty() {
        md.push('\n');
        for l in &order_lines {
            let _ = writeln!(md, "- {l}");
        }
    }
    let mut extension = Map::new();
    extension.insert(RULES_EXTENSION.to_string(), json!(rule_ids));
    extension.insert(EVIDENCE_EXTENSION.to_string(), json!({ "rule": merged.code, "resources": resources }));
    Card {
        uuid: Some(uuid::Uuid::now_v7().to_string()),
        summary: summary(&merged.summary, facts, &drugs),
        detail: Some(md.trim_end().to_string()),
        indicator: members.iter().map(|f| f.indicator).max().unwrap_or(crate::protocol::Indicator::Info),
        source: Source {
            label: SOURCE_LABEL.to_string(),
            url: links.first().map(|l| l.url.clone()),
            icon: None,
            topic: Some(Coding {
                system: RULE_SYSTEM.into(),
                code: merged.code.clone(),
                display: Some(merged.title.clone()),
            }),
        },
        selection_behavior: (!suggestions.is_empty()).then_some(SelectionBehavior::Any),
        suggestions,
        override_reasons: book.override_reasons.clone(),
        links,
        extension,
    }
}

/// "Why this card": the evidence the members share (the cramp itself) once, then each rule
/// with its own lines.
fn why_lines(book: &RuleBook, facts: &PatientFacts, members: &[&Finding], md: &mut String) {
    let member_lines: Vec<Vec<String>> =
        members.iter().map(|f| f.evidence.iter().flat_map(|e| evidence::lines(book, facts, e)).collect()).collect();
    // Sets, so that finding the shared lines is linear in the number of lines.
    let member_sets: Vec<HashSet<&str>> =
        member_lines.iter().map(|lines| lines.iter().map(String::as_str).collect()).collect();
    let shared: Vec<&str> = evidence::unique(
        member_lines[0].iter().map(String::as_str).filter(|l| member_sets.iter().all(|m| m.contains(l))),
    );
    let shared_set: HashSet<&str> = shared.iter().copied().collect();
    for line in &shared {
        let _ = writeln!(md, "- {line}");
    }
    for (f, lines) in members.iter().zip(&member_lines) {
        let _ = writeln!(md, "- **{}**", book.rules[f.rule].title);
        for line in lines.iter().filter(|l| !shared_set.contains(l.as_str())) {
            let _ = writeln!(md, "  - {line}");
        }
    }
}

/// The members' applicable citations with a link, each source once.
fn links(book: &RuleBook, members: &[&Finding]) -> Vec<Link> {
    let mut links: Vec<Link> = Vec::new();
    for f in members {
        for &k in &f.citations {
            let c = &book.rules[f.rule].card.citations[k];
            if let Some(url) = &c.url {
                if !links.iter().any(|l| &l.url == url) {
                    links.push(Link {
                        label: shorten(&c.title, 120),
                        url: url.clone(),
                        kind: LinkType::Absolute,
                        app_context: None,
                        autolaunchable: None,
                    });
                }
            }
        }
    }
    links
}

/// The drugs behind the member findings, each once, as a clinician names them.
fn drug_names(facts: &PatientFacts, members: &[&Finding]) -> Vec<String> {
    let all: Vec<String> = members
        .iter()
        .flat_map(|f| &f.evidence)
        .filter_map(|e| match e {
            Evidence::Medication(i) => Some(facts.medications[*i].short_name()),
            _ => None,
        })
        .collect();
    evidence::unique(all.iter().map(String::as_str)).into_iter().map(str::to_string).collect()
}

/// A card summary is shorter than this (CDS Hooks: "<140 characters").
const MAX_SUMMARY_CHARS: usize = 140;

/// Fills `{count}`, `{possessive}` and `{drugs}`, dropping drug names ("+N more") until the
/// summary is under 140 characters.
fn summary(template: &str, facts: &PatientFacts, drugs: &[String]) -> String {
    let possessive = match facts.gender.as_deref() {
        Some("female") => "her",
        Some("male") => "his",
        _ => "their",
    };
    let base = template.replace("{count}", &drugs.len().to_string()).replace("{possessive}", possessive);
    // A list of more than MAX_SUMMARY_CHARS names is longer than that many characters (a name
    // and its separator take at least one), so longer lists are never tried: bounded work
    // however many drugs there are.
    for shown in (1..=drugs.len().min(MAX_SUMMARY_CHARS)).rev() {
        let mut list = drugs[..shown].join(", ");
        if shown < drugs.len() {
            let _ = write!(list, " +{} more", drugs.len() - shown);
        }
        let s = base.replace("{drugs}", &list);
        if s.chars().count() < MAX_SUMMARY_CHARS {
            return s;
        }
    }
    shorten(&base.replace("{drugs}", &format!("{} medicines", drugs.len())), 139)
}
