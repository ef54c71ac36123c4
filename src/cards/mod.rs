//! Card building: findings → CDS Hooks 2.0.1 cards. The summary is the rule's template with
//! its placeholders filled; the detail says why (the exact facts, with values and dates),
//! what to do, and the sources; suggestions are real FHIR actions.

use crate::facts::PatientFacts;
use crate::protocol::response::{Action, ActionType, Link, LinkType, SelectionBehavior, Source, Suggestion};
use crate::protocol::{Card, Coding};
use crate::rules::eval::{format_number, Evidence};
use crate::rules::model::{Rule, StaticCardParts};
use crate::rules::{Finding, RuleBook};
use serde_json::{json, Map, Value};
use std::fmt::Write;

pub const SOURCE_LABEL: &str = "Leg Cramp CDS";
pub const RULE_SYSTEM: &str = "urn:leg-cramp-cds:rule";
/// Reverse-domain key of the machine-readable evidence in each card's `extension`.
pub const EVIDENCE_EXTENSION: &str = "org.leg-cramp-cds.evidence";
const DRUG_WIDTH: usize = 40;

pub fn build_cards(book: &RuleBook, facts: &PatientFacts, findings: &[Finding], patient_id: &str) -> Vec<Card> {
    findings.iter().map(|f| build_card(book, facts, f, patient_id)).collect()
}

fn build_card(book: &RuleBook, facts: &PatientFacts, finding: &Finding, patient_id: &str) -> Card {
    let rule = &book.rules[finding.rule];
    let parts = rule.rendered.get_or_init(|| static_parts(rule));
    let fills = Fills::from_evidence(book, facts, &finding.evidence);
    let template = finding.summary_variant.as_deref().unwrap_or(&rule.card.summary);
    let summary = fills
        .fill(template)
        .or_else(|| rule.card_summary_fallback().map(str::to_string))
        .unwrap_or_else(|| fills.fill_lossy(template));
    let mut suggestions = lab_order_suggestions(parts, patient_id);
    let mut only_deletes = false;
    if let Some(action) = &rule.card.draft_order_action {
        let deletes: Vec<Action> = finding
            .evidence
            .iter()
            .filter_map(|e| match e {
                Evidence::Medication(i)
                    if facts.medications[*i].source == crate::facts::MedicationSource::DraftOrder =>
                {
                    Some(Action {
                        kind: ActionType::Delete,
                        description: action.description.clone(),
                        resource: None,
                        resource_id: Some(facts.medications[*i].reference.clone()),
                    })
                }
                _ => None,
            })
            .collect();
        if !deletes.is_empty() {
            only_deletes = suggestions.is_empty();
            suggestions.insert(
                0,
                Suggestion {
                    label: action.label.clone(),
                    uuid: Some(card_uuid().to_string()),
                    is_recommended: Some(true),
                    actions: deletes,
                },
            );
        }
    }
    let selection_behavior = match (suggestions.is_empty(), only_deletes) {
        (true, _) => None,
        (false, true) => Some(SelectionBehavior::AtMostOne),
        (false, false) => Some(SelectionBehavior::Any),
    };
    let links = parts.links.clone();
    let mut extension = Map::new();
    extension.insert(
        EVIDENCE_EXTENSION.to_string(),
        json!({
            "rule": rule.id,
            "resources": evidence_references(facts, &finding.evidence),
        }),
    );
    Card {
        uuid: Some(card_uuid().to_string()),
        summary,
        detail: Some(detail(book, facts, rule, parts, finding)),
        indicator: finding.indicator,
        source: Source {
            label: SOURCE_LABEL.to_string(),
            url: parts.source_url.clone(),
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
        links,
        extension,
    }
}

impl Rule {
    fn card_summary_fallback(&self) -> Option<&str> {
        self.card.summary_fallback.as_deref()
    }
}

fn lab_order_suggestions(parts: &StaticCardParts, patient_id: &str) -> Vec<Suggestion> {
    parts
        .lab_orders
        .iter()
        .map(|(label, description, template)| {
            let mut resource = template.clone();
            resource["subject"] = json!({"reference": format!("Patient/{patient_id}")});
            Suggestion {
                label: label.clone(),
                uuid: Some(card_uuid().to_string()),
                is_recommended: None,
                actions: vec![Action {
                    kind: ActionType::Create,
                    description: description.clone(),
                    resource: Some(resource),
                    resource_id: None,
                }],
            }
        })
        .collect()
}

/// Renders what never changes in a rule's cards (done once per rule, then reused).
fn static_parts(rule: &Rule) -> StaticCardParts {
    let mut closing = String::new();
    if !rule.card.recommendations.is_empty() || !rule.card.orders.is_empty() {
        closing.push('\n');
        for r in &rule.card.recommendations {
            let _ = writeln!(closing, "- {r}");
        }
        for o in &rule.card.orders {
            match &o.when {
                Some(w) => {
                    let _ = writeln!(closing, "- Order {} (LOINC {}): {w}", o.display, o.code);
                }
                None => {
                    let _ = writeln!(closing, "- Order {} (LOINC {})", o.display, o.code);
                }
            }
        }
    }
    let _ = writeln!(closing, "\n**Sources**");
    for (i, c) in rule.card.citations.iter().enumerate() {
        match &c.url {
            Some(u) => {
                let _ = writeln!(closing, "{}. [{}]({u})", i + 1, c.title);
            }
            None => {
                let _ = writeln!(closing, "{}. {}", i + 1, c.title);
            }
        }
    }
    StaticCardParts {
        what_to_do: format!("\n**What to do**\n\n{}\n", rule.card.detail.trim()),
        closing: closing.trim_end().to_string(),
        links: rule
            .card
            .citations
            .iter()
            .filter_map(|c| {
                Some(Link {
                    label: shorten(&c.title, 120),
                    url: c.url.clone()?,
                    kind: LinkType::Absolute,
                    app_context: None,
                    autolaunchable: None,
                })
            })
            .collect(),
        source_url: rule.card.citations.iter().find_map(|c| c.url.clone()),
        lab_orders: rule
            .card
            .orders
            .iter()
            .map(|o| {
                (
                    shorten(&format!("Order {}", o.display), 100),
                    format!("Order {} (LOINC {})", o.display, o.code),
                    service_request(&o.code, &o.display, "-"),
                )
            })
            .collect(),
    }
}

/// A draft lab order, valid FHIR R4 (status, intent and subject are required).
pub fn service_request(loinc: &str, display: &str, patient_id: &str) -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}], "text": display},
        "subject": {"reference": format!("Patient/{patient_id}")}
    })
}

/// Values for the summary placeholders, taken from the evidence.
struct Fills {
    value: Option<String>,
    unit: Option<String>,
    analyte: Option<String>,
    drug: Option<String>,
    ga: Option<String>,
}

impl Fills {
    fn from_evidence(book: &RuleBook, facts: &PatientFacts, evidence: &[Evidence]) -> Self {
        let obs = evidence.iter().find_map(|e| match e {
            Evidence::Observation(o) if o.compared.is_some() => Some(o),
            _ => None,
        });
        let drug = evidence.iter().find_map(|e| match e {
            Evidence::Medication(i) => Some(shorten(&facts.medications[*i].label, DRUG_WIDTH)),
            _ => None,
        });
        let (value, unit, analyte) = match obs {
            Some(o) => {
                let fact = &facts.observations[o.index];
                let vs = book.index.get(o.vs);
                (
                    fact.value.map(format_number),
                    fact.unit.clone().map(|u| shorten(&u, 12)),
                    Some(shorten(vs.label.as_deref().unwrap_or(&fact.label), 24)),
                )
            }
            None => (None, None, None),
        };
        Fills { value, unit, analyte, drug, ga: facts.pregnancy.gestational_age_weeks.map(|w| w.to_string()) }
    }

    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "value" => self.value.as_deref(),
            "unit" => self.unit.as_deref(),
            "analyte" => self.analyte.as_deref(),
            "drug" | "supplement" => self.drug.as_deref(),
            "ga" => self.ga.as_deref(),
            _ => None,
        }
    }

    /// The filled template, or `None` if a placeholder has no value.
    fn fill(&self, template: &str) -> Option<String> {
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}')? + open;
            out.push_str(self.get(&rest[open + 1..close])?);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// Fills what it can; an unknown value reads "see detail".
    fn fill_lossy(&self, template: &str) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}').map(|c| c + open) else { break };
            out.push_str(self.get(&rest[open + 1..close]).unwrap_or("see detail"));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        shorten(&out, 139)
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn date(d: Option<chrono::DateTime<chrono::Utc>>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "undated".into())
}

fn system_name(system: &str) -> &str {
    match system {
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10-CM",
        "http://snomed.info/sct" => "SNOMED CT",
        "http://loinc.org" => "LOINC",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
        "http://www.whocc.no/atc" => "ATC",
        other => other,
    }
}

/// Markdown: why (the evidence), what to do, sources.
fn detail(book: &RuleBook, facts: &PatientFacts, rule: &Rule, parts: &StaticCardParts, finding: &Finding) -> String {
    let mut md = String::with_capacity(parts.what_to_do.len() + parts.closing.len() + 512);
    let _ = writeln!(md, "**Why this card** ({})", rule.title);
    for e in &finding.evidence {
        if let Some(line) = evidence_line(book, facts, e) {
            let _ = writeln!(md, "- {line}");
        }
    }
    if let Some(reason) = &finding.escalation_reason {
        let _ = writeln!(md, "- Raised to **{}**: {reason}", finding.indicator.as_str());
    }
    md.push_str(&parts.what_to_do);
    for n in &finding.notes {
        let _ = writeln!(md, "\n{n}");
    }
    md.push_str(&parts.closing);
    md
}

fn evidence_line(book: &RuleBook, facts: &PatientFacts, e: &Evidence) -> Option<String> {
    Some(match e {
        Evidence::Condition(i) => {
            let c = &facts.conditions[*i];
            let code =
                c.coding.as_ref().map(|k| format!(" ({} {})", system_name(&k.system), k.code)).unwrap_or_default();
            let status = c.clinical_status.as_deref().unwrap_or("no clinical status");
            format!("Condition: {}{code}, {status}, recorded {} ({})", c.label, date(c.dated), c.reference)
        }
        Evidence::Medication(i) | Evidence::OrderReason(i) => {
            let m = &facts.medications[*i];
            let status = m.status.as_deref().unwrap_or("unknown status");
            let since = m.started.map(|d| format!(", since {}", d.format("%Y-%m-%d"))).unwrap_or_default();
            let what = if matches!(e, Evidence::OrderReason(_)) { "Order reason on" } else { "Medication" };
            format!("{what}: {} ({}, {status}{since}; {})", m.label, m.source.as_str(), m.reference)
        }
        Evidence::Observation(o) => {
            let f = &facts.observations[o.index];
            let code =
                f.coding.as_ref().map(|k| format!(" ({} {})", system_name(&k.system), k.code)).unwrap_or_default();
            let value = match (f.value, &f.unit, &f.value_label) {
                (Some(v), Some(u), _) => format!("{}{} {u}", f.comparator.as_deref().unwrap_or(""), format_number(v)),
                (Some(v), None, _) => format_number(v),
                (None, _, Some(l)) => l.clone(),
                _ => "recorded".to_string(),
            };
            let mut line = format!("{}{code}: {value} on {} ({})", f.label, date(f.effective), f.reference);
            if let Some(c) = &o.compared {
                let _ = write!(
                    line,
                    "; {} {} {} {}",
                    format_number(c.value),
                    c.unit,
                    c.comparator,
                    format_number(c.threshold)
                );
                if let Some(a) = &c.adjustment {
                    let _ = write!(line, " ({a})");
                }
                if let Some(s) = &c.source {
                    let _ = write!(line, " [threshold: {s}]");
                }
            }
            line
        }
        Evidence::NoRecentObservation { vs, lookback_days } => {
            let set = book.index.get(*vs);
            format!("No {} result in the last {lookback_days} days", set.label.as_deref().unwrap_or(&set.id))
        }
        Evidence::Pregnancy => {
            let p = &facts.pregnancy;
            let mut s = format!("Pregnant (evidence: {})", p.evidence.join(", "));
            if let Some(w) = p.gestational_age_weeks {
                let _ = write!(
                    s,
                    "; gestational age {w} weeks today{}",
                    if p.third_trimester { " (third trimester)" } else { "" }
                );
            } else if p.third_trimester {
                s.push_str("; third trimester");
            }
            s
        }
        Evidence::Age(a) => format!("Age {a} years"),
    })
}

fn evidence_references(facts: &PatientFacts, evidence: &[Evidence]) -> Vec<String> {
    let mut refs: Vec<String> = Vec::new();
    let mut push = |r: &str| {
        if !refs.iter().any(|x| x == r) {
            refs.push(r.to_string());
        }
    };
    for e in evidence {
        match e {
            Evidence::Condition(i) => push(&facts.conditions[*i].reference),
            Evidence::Medication(i) | Evidence::OrderReason(i) => push(&facts.medications[*i].reference),
            Evidence::Observation(o) => push(&facts.observations[o.index].reference),
            Evidence::Pregnancy => facts.pregnancy.evidence.iter().for_each(|r| push(r)),
            Evidence::NoRecentObservation { .. } | Evidence::Age(_) => {}
        }
    }
    refs
}

/// Card and suggestion ids: UUID version 7 (time-ordered, 74 random bits). Valid CDS Hooks
/// uuids, unguessable, and they append at the end of the store's index instead of landing
/// on random pages, which keeps recording cheap.
fn card_uuid() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
