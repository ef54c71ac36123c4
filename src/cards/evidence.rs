//! The "why" of a card: one plain line per fact that made the rule fire, with its value as
//! sent and as decided on, its date, and what was set aside (unreadable, haemolysed or
//! conflicting results), so a clinician can check the card against the chart.

use crate::facts::{MedicationSource, PatientFacts};
use crate::knowledge::numbers::format_number;
use crate::rules::eval::{Evidence, ObservationEvidence};
use crate::rules::RuleBook;
use std::collections::HashSet;
use std::fmt::Write;

pub fn date(d: Option<chrono::DateTime<chrono::Utc>>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "undated".into())
}

fn system_name(system: &str) -> &str {
    match system {
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10-CM",
        "http://hl7.org/fhir/sid/icd-10" => "ICD-10",
        "http://snomed.info/sct" => "SNOMED CT",
        "http://loinc.org" => "LOINC",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
        "http://www.whocc.no/atc" => "ATC",
        other => other,
    }
}

fn source_words(source: MedicationSource) -> &'static str {
    match source {
        MedicationSource::Request => "prescribed",
        MedicationSource::Statement => "reported by the patient",
        MedicationSource::DraftOrder => "being ordered now",
    }
}

/// The analyte's short name (the value set label, else the result's own label).
pub fn analyte_name<'a>(book: &'a RuleBook, facts: &'a PatientFacts, o: &ObservationEvidence) -> &'a str {
    let set = book.index.get(o.vs);
    set.label.as_deref().unwrap_or(&facts.observations[o.index].label)
}

/// Lines for the "Why this card" list.
pub fn lines(book: &RuleBook, facts: &PatientFacts, e: &Evidence) -> Vec<String> {
    match e {
        Evidence::Condition(i) => {
            let c = &facts.conditions[*i];
            let code =
                c.coding.as_ref().map(|k| format!(" ({} {})", system_name(&k.system), k.code)).unwrap_or_default();
            let status = c.clinical_status.as_deref().unwrap_or("no clinical status");
            vec![format!("Condition: {}{code}, {status}, recorded {}", c.label, date(c.dated))]
        }
        Evidence::Medication(i) => {
            let m = &facts.medications[*i];
            let status = m.status.as_deref().unwrap_or("unknown status");
            let since = m.started.map(|d| format!(", since {}", d.format("%Y-%m-%d"))).unwrap_or_default();
            vec![format!("Medication: {} ({}, {status}{since})", m.label, source_words(m.source))]
        }
        Evidence::OrderReason(i) => {
            let m = &facts.medications[*i];
            let reasons = if m.reason_labels.is_empty() { "given".to_string() } else { m.reason_labels.join(", ") };
            vec![format!("Reason on the order for {}: {reasons}", m.label)]
        }
        Evidence::Observation(o) => observation_lines(book, facts, o),
        Evidence::NoRecentObservation { vs, lookback_days } => {
            let set = book.index.get(*vs);
            let name = set.label.as_deref().unwrap_or(&set.id);
            let unusable = facts.observations.iter().find(|o| o.sets.contains(vs) && o.unreadable.is_some()).map(|o| {
                let why = if o.implausible { "is not a possible value" } else { "could not be interpreted" };
                format!("{} on {} {why}", o.shown_value(), date(o.effective))
            });
            match unusable {
                Some(u) => vec![format!("No usable {name} result in the last {lookback_days} days (a result {u})")],
                None => vec![format!("No {name} result in the last {lookback_days} days")],
            }
        }
        Evidence::Pregnancy => {
            let p = &facts.pregnancy;
            let mut s = format!("Pregnant ({} record(s))", p.evidence.len());
            if let Some(w) = p.gestational_age_weeks {
                let _ = write!(
                    s,
                    "; gestational age {w} weeks today{}",
                    if p.third_trimester { " (third trimester)" } else { "" }
                );
            } else if p.third_trimester {
                s.push_str("; third trimester");
            }
            vec![s]
        }
        Evidence::Age(a) => vec![format!("Age {a} years")],
    }
}

fn observation_lines(book: &RuleBook, facts: &PatientFacts, o: &ObservationEvidence) -> Vec<String> {
    let f = &facts.observations[o.index];
    let name = analyte_name(book, facts, o);
    let code = f.coding.as_ref().map(|k| format!(" ({} {})", system_name(&k.system), k.code)).unwrap_or_default();
    let mut line = format!("{}{code}: {} on {}", f.label, f.shown_value(), date(f.effective));
    if let Some(c) = &o.compared {
        let shown = c.analyte.as_deref().unwrap_or(name);
        let _ = write!(
            line,
            "; {shown} {} {} {} {}",
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
    if f.haemolysed {
        line.push_str(" (specimen reported haemolysed)");
    }
    let mut out = vec![line];
    if let Some(k) = o.conflicting {
        let other = &facts.observations[k];
        out.push(format!(
            "Another {name} result at the same time reads {}; the more abnormal value was used",
            other.shown_value()
        ));
    }
    for &k in &o.set_aside {
        let other = &facts.observations[k];
        let why = if other.implausible {
            "is not a possible value and was not used"
        } else if other.unreadable.is_some() {
            "could not be interpreted"
        } else {
            "was haemolysed and not used"
        };
        out.push(format!("A newer {name} result ({}, {}) {why}", other.shown_value(), date(other.effective)));
    }
    out
}

/// References of the resources behind the evidence (the card's machine-readable extension),
/// each once, in first-seen order.
pub fn references(facts: &PatientFacts, evidence: &[Evidence]) -> Vec<String> {
    let mut all: Vec<&str> = Vec::with_capacity(evidence.len());
    for e in evidence {
        match e {
            Evidence::Condition(i) => all.push(&facts.conditions[*i].reference),
            Evidence::Medication(i) | Evidence::OrderReason(i) => all.push(&facts.medications[*i].reference),
            Evidence::Observation(o) => {
                all.push(&facts.observations[o.index].reference);
                all.extend(o.conflicting.iter().chain(&o.set_aside).map(|k| facts.observations[*k].reference.as_str()));
            }
            Evidence::Pregnancy => all.extend(facts.pregnancy.evidence.iter().map(String::as_str)),
            Evidence::NoRecentObservation { .. } | Evidence::Age(_) => {}
        }
    }
    unique(all).into_iter().map(str::to_string).collect()
}

/// Each item once, in first-seen order. Linear (a set remembers what was kept).
pub fn unique<T: Eq + std::hash::Hash + Copy>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|x| seen.insert(*x)).collect()
}
