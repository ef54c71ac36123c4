//! Card building: findings → CDS Hooks 2.0.1 cards. The summary is the rule's template with
//! its placeholders filled by the values decided on; the detail says why (the exact facts,
//! with values and dates), what to do, and any source without a link; citations with a link
//! are the card's links (each source appears once). Suggestions are real FHIR actions, and a
//! lab order appears once per response.

mod evidence;
mod merge;
mod orders;

pub use orders::service_request;

use crate::facts::{MedicationSource, PatientFacts};
use crate::knowledge::placeholder::{self, format_value, shorten, Placeholder};
use crate::protocol::response::{Action, ActionType, Link, LinkType, SelectionBehavior, Source, Suggestion};
use crate::protocol::{Card, Coding};
use crate::rules::eval::Evidence;
use crate::rules::model::Rule;
use crate::rules::{Finding, RuleBook};
use serde_json::{json, Map};
use std::collections::HashSet;
use std::fmt::Write;

pub const SOURCE_LABEL: &str = "Leg Cramp CDS";
pub const RULE_SYSTEM: &str = "urn:leg-cramp-cds:rule";
/// Reverse-domain key of the machine-readable evidence in each card's `extension`.
pub const EVIDENCE_EXTENSION: &str = "org.leg-cramp-cds.evidence";
/// The rules a merged card stands for (feedback and analytics count each of them).
pub const RULES_EXTENSION: &str = "org.leg-cramp-cds.rules";

/// The rules a card stands for: those its rules extension lists (a merged card), else its
/// topic code. Recording, feedback and the population report count a card under each.
pub fn card_rules(card: &Card) -> Vec<String> {
    let listed: Vec<String> = card
        .extension
        .get(RULES_EXTENSION)
        .and_then(|v| v.as_array())
        .map(|ids| ids.iter().filter_map(|id| id.as_str()).filter(|id| !id.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    match (listed.is_empty(), &card.source.topic) {
        (false, _) => listed,
        (true, Some(topic)) => vec![topic.code.clone()],
        (true, None) => Vec::new(),
    }
}

/// Cards in display order. Merged groups become one card at the place of their first member;
/// each lab code is offered once, on the highest-ranked card that suggests it.
pub fn build_cards(book: &RuleBook, facts: &PatientFacts, findings: &[Finding], patient_id: &str) -> Vec<Card> {
    let groups = merge::groups(book, findings);
    let mut offered = HashSet::new();
    let mut cards = Vec::with_capacity(findings.len());
    let mut done = vec![false; findings.len()];
    for i in 0..findings.len() {
        if done[i] {
            continue;
        }
        match groups.iter().find(|(_, members)| members.contains(&i)) {
            Some((merged, members)) => {
                members.iter().for_each(|&m| done[m] = true);
                let group: Vec<&Finding> = members.iter().map(|&m| &findings[m]).collect();
                cards.push(merge::card(book, facts, &book.policy.merged[*merged], &group, patient_id, &mut offered));
            }
            None => {
                done[i] = true;
                cards.push(build_card(book, facts, &findings[i], patient_id, &mut offered));
            }
        }
    }
    cards
}

fn build_card(
    book: &RuleBook,
    facts: &PatientFacts,
    finding: &Finding,
    patient_id: &str,
    offered: &mut HashSet<String>,
) -> Card {
    let rule = &book.rules[finding.rule];
    let values = PlaceholderValues::from_finding(book, facts, finding);
    let template = finding.summary_variant.as_deref().unwrap_or(&rule.card.summary);
    let summary = placeholder::fill(template, |p| values.get(p))
        .or_else(|| rule.card.summary_fallback.clone())
        .unwrap_or_else(|| shorten(&rule.title, 139));
    let (lab_suggestions, order_lines) =
        orders::render(&book.index, &book.policy.lab_orders, &finding.orders, facts, patient_id, offered);
    let mut suggestions = draft_order_suggestions(rule, facts, finding);
    let only_deletes = !suggestions.is_empty() && lab_suggestions.is_empty();
    suggestions.extend(lab_suggestions);
    let selection_behavior = match (suggestions.is_empty(), only_deletes) {
        (true, _) => None,
        (false, true) => Some(SelectionBehavior::AtMostOne),
        (false, false) => Some(SelectionBehavior::Any),
    };
    let mut extension = Map::new();
    extension.insert(
        EVIDENCE_EXTENSION.to_string(),
        json!({ "rule": rule.id, "resources": evidence::references(facts, &finding.evidence) }),
    );
    Card {
        uuid: Some(uuid::Uuid::now_v7().to_string()),
        summary,
        detail: Some(detail(book, facts, rule, finding, &order_lines)),
        indicator: finding.indicator,
        source: Source {
            label: SOURCE_LABEL.to_string(),
            url: finding.citations.iter().find_map(|&k| rule.card.citations[k].url.clone()),
            icon: None,
            topic: Some(Coding {
                system: RULE_SYSTEM.into(),
                code: rule.id.clone(),
                display: Some(rule.title.clone()),
            }),
        },
        suggestions,
        selection_behavior,
        override_reasons: book.override_reasons.clone(),
        links: links(rule, &finding.citations),
        extension,
    }
}

/// A suggestion acting on the draft orders that triggered the card (e.g. remove quinine).
fn draft_order_suggestions(rule: &Rule, facts: &PatientFacts, finding: &Finding) -> Vec<Suggestion> {
    let Some(action) = &rule.card.draft_order_action else { return Vec::new() };
    let mut seen = HashSet::new();
    let deletes: Vec<Action> = finding
        .evidence
        .iter()
        .filter_map(|e| match e {
            Evidence::Medication(i) if facts.medications[*i].source == MedicationSource::DraftOrder => {
                let reference = &facts.medications[*i].reference;
                seen.insert(reference.as_str()).then(|| Action {
                    kind: ActionType::Delete,
                    description: action.description.clone(),
                    resource: None,
                    resource_id: Some(reference.clone()),
                })
            }
            _ => None,
        })
        .collect();
    if deletes.is_empty() {
        return Vec::new();
    }
    vec![Suggestion {
        label: action.label.clone(),
        uuid: Some(uuid::Uuid::now_v7().to_string()),
        is_recommended: Some(true),
        actions: deletes,
    }]
}

/// The applicable citations that have a link: shown by the EHR as link buttons.
fn links(rule: &Rule, citations: &[usize]) -> Vec<Link> {
    citations
        .iter()
        .filter_map(|&k| {
            let c = &rule.card.citations[k];
            Some(Link {
                label: shorten(&c.title, 120),
                url: c.url.clone()?,
                kind: LinkType::Absolute,
                app_context: None,
                autolaunchable: None,
            })
        })
        .collect()
}

/// Values for the summary placeholders: the values the rule decided on.
struct PlaceholderValues {
    value: Option<String>,
    unit: Option<String>,
    analyte: Option<String>,
    drug: Option<String>,
    ga: Option<String>,
    finding: Option<String>,
}

impl PlaceholderValues {
    fn from_finding(book: &RuleBook, facts: &PatientFacts, finding: &Finding) -> Self {
        let obs = finding.evidence.iter().find_map(|e| match e {
            Evidence::Observation(o) if o.compared.is_some() => Some(o),
            _ => None,
        });
        // The matched ingredient of the drug the rule is about, never a cut product string.
        let drug_sets = &book.rules[finding.rule].drug_sets;
        let drug = finding.evidence.iter().find_map(|e| match e {
            Evidence::Medication(i) => {
                let m = &facts.medications[*i];
                let vs = m.ingredients.iter().map(|g| g.vs).find(|vs| drug_sets.contains(vs));
                Some(vs.map_or_else(|| m.label.clone(), |vs| m.drug_label(vs)))
            }
            _ => None,
        });
        let (value, unit, analyte) = match obs.and_then(|o| Some((o, o.compared.as_ref()?))) {
            Some((o, c)) => (
                Some(format_value(c.value)),
                Some(c.unit.clone()),
                Some(c.analyte.clone().unwrap_or_else(|| evidence::analyte_name(book, facts, o).to_string())),
            ),
            None => (None, None, None),
        };
        PlaceholderValues {
            value,
            unit,
            analyte,
            drug,
            ga: facts.pregnancy.gestational_age_weeks.map(|w| w.to_string()),
            finding: finding.finding.as_ref().and_then(|e| finding_words(book, facts, e)),
        }
    }

    fn get(&self, p: Placeholder) -> Option<&str> {
        match p {
            Placeholder::Value => self.value.as_deref(),
            Placeholder::Unit => self.unit.as_deref(),
            Placeholder::Analyte => self.analyte.as_deref(),
            Placeholder::Drug | Placeholder::Supplement => self.drug.as_deref(),
            Placeholder::Ga => self.ga.as_deref(),
            Placeholder::Finding => self.finding.as_deref(),
        }
    }
}

/// A few words for what an "A or B" rule found: "CK 9800 U/L", "sodium 121 mmol/L", or the
/// recorded finding's name.
fn finding_words(book: &RuleBook, facts: &PatientFacts, e: &Evidence) -> Option<String> {
    Some(match e {
        Evidence::Observation(o) => {
            let name = evidence::analyte_name(book, facts, o);
            match &o.compared {
                Some(c) => {
                    format!("{} {} {}", c.analyte.as_deref().unwrap_or(name), format_value(c.value), c.unit)
                }
                None => format!("{name} {}", facts.observations[o.index].shown_value()),
            }
        }
        Evidence::Condition(i) => facts.conditions[*i].label.to_lowercase(),
        Evidence::Medication(i) => facts.medications[*i].label.clone(),
        _ => return None,
    })
}

/// Markdown: why (the evidence), what to do, orders, and sources without a link.
fn detail(book: &RuleBook, facts: &PatientFacts, rule: &Rule, finding: &Finding, order_lines: &[String]) -> String {
    let mut md = String::with_capacity(1024);
    let _ = writeln!(md, "**Why this card** ({})", rule.title);
    for e in &finding.evidence {
        for line in evidence::lines(book, facts, e) {
            let _ = writeln!(md, "- {line}");
        }
    }
    if rule.adult_only && facts.age_years.is_none() {
        let _ = writeln!(md, "- Age unknown (no birth date recorded): adult guidance applied");
    }
    if let Some(reason) = &finding.escalation_reason {
        let _ = writeln!(md, "- Raised to **{}**: {reason}", finding.indicator.as_str());
    }
    let _ = writeln!(md, "\n**What to do**\n\n{}", rule.card.detail.trim());
    for n in &finding.notes {
        let _ = writeln!(md, "\n{n}");
    }
    if !rule.card.recommendations.is_empty() || !order_lines.is_empty() {
        md.push('\n');
        for r in rule.card.recommendations.iter().chain(order_lines) {
            let _ = writeln!(md, "- {r}");
        }
    }
    let unlinked: Vec<&str> = finding
        .citations
        .iter()
        .map(|&k| &rule.card.citations[k])
        .filter(|c| c.url.is_none())
        .map(|c| c.title.as_str())
        .collect();
    if !unlinked.is_empty() {
        let _ = writeln!(md, "\n**Sources** (also see the links)");
        for (i, t) in unlinked.iter().enumerate() {
            let _ = writeln!(md, "{}. {t}", i + 1);
        }
    }
    md.trim_end().to_string()
}
