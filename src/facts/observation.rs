//! Observations as the rules read them: one fact per result (and per component), its value in
//! the canonical unit of each unit-bearing value set of its code, and what makes a result
//! untrustworthy: a value that cannot be read or converted, or a haemolysed specimen.

use super::dates::parse_fhir_datetime;
use super::{first_coding, reference, sets_of_concept, CodeRef};
use crate::fhir::model::{CodeableConcept, Observation, Quantity, ReferenceRange};
use crate::knowledge::conventions::ObservationConvention;
use crate::knowledge::numbers::format_number;
use crate::knowledge::placeholder::shorten;
use crate::knowledge::valueset::{ValueSetIndex, VsId};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub struct ObservationFact {
    pub reference: String,
    pub label: String,
    pub coding: Option<CodeRef>,
    pub sets: Vec<VsId>,
    pub value_sets: Vec<VsId>,
    pub value_label: Option<String>,
    /// As reported (a comparator such as `<` is treated as the bound value).
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub comparator: Option<String>,
    /// Value in the canonical unit of each unit-bearing value set of the code; `None`
    /// when the value cannot be read or its unit converted: such a value is never compared.
    pub canonical: Vec<(VsId, Option<f64>)>,
    /// What was sent when the value could not be used (e.g. "2.4 mM"), for the card's text.
    pub unreadable: Option<String>,
    /// The value was read, but no living patient can have it (≤ 0 as sent, or outside the
    /// value set's plausible range): it is never used for a decision.
    pub implausible: bool,
    pub reference_high: Option<(f64, Option<String>)>,
    pub effective: Option<DateTime<Utc>>,
    /// When the lab released it: breaks ties between results with the same effective time.
    pub issued: Option<DateTime<Utc>>,
    /// The specimen was reported haemolysed (note, interpretation or specimen text/code).
    pub haemolysed: bool,
}

impl ObservationFact {
    pub fn canonical_value(&self, vs: VsId) -> Option<f64> {
        self.canonical.iter().find(|(id, _)| *id == vs).and_then(|(_, v)| *v)
    }

    /// The result as sent: value and unit, or the coded answer.
    pub fn shown_value(&self) -> String {
        match (self.value, &self.unit, &self.value_label, &self.unreadable) {
            (_, _, _, Some(raw)) => raw.clone(),
            (Some(v), Some(u), _, None) => {
                // A comparator is a FHIR code (`<`, `>=`…); anything longer is cut.
                format!("{}{} {u}", shorten(self.comparator.as_deref().unwrap_or(""), 3), format_number(v))
            }
            (Some(v), None, _, None) => format_number(v),
            (None, _, Some(l), None) => l.clone(),
            _ => "recorded".to_string(),
        }
    }
}

/// Newest first (then latest issued), so "latest in value set X" is the first match; undated
/// ones last. The order is total (reference as the last key), so the outcome never depends
/// on the order of resources in the request.
pub fn sort_newest_first(observations: &mut [ObservationFact]) {
    observations.sort_by(|a, b| {
        b.effective
            .cmp(&a.effective)
            .then_with(|| b.issued.cmp(&a.issued))
            .then_with(|| a.reference.cmp(&b.reference))
            .then_with(|| a.value.partial_cmp(&b.value).unwrap_or(std::cmp::Ordering::Equal))
    });
}

/// One fact per observation, plus one per component (e.g. a panel's heart-rate component).
pub fn facts_of(
    o: &Observation,
    index: &ValueSetIndex,
    conv: &ObservationConvention,
    out: &mut Vec<ObservationFact>,
    notes: &mut Vec<String>,
) {
    let effective = o
        .effective_date_time
        .as_deref()
        .or(o.effective_instant.as_deref())
        .or_else(|| o.effective_period.as_ref().and_then(|p| p.start.as_deref().or(p.end.as_deref())))
        .or(o.issued.as_deref())
        .and_then(parse_fhir_datetime);
    let base = Base {
        reference: reference("Observation", o.id.as_deref()),
        effective,
        issued: o.issued.as_deref().and_then(parse_fhir_datetime),
        haemolysed: haemolysed(o, conv),
    };
    let value_problem = o.value_problem.as_deref();
    let main = Part {
        code: o.code.as_ref(),
        quantity: o.value_quantity.as_ref(),
        value_cc: o.value_codeable_concept.as_ref(),
        range: &o.reference_range,
        value_problem,
    };
    out.push(fact(&base, &main, index, notes));
    for c in &o.component {
        let part = Part {
            code: c.code.as_ref(),
            quantity: c.value_quantity.as_ref(),
            value_cc: c.value_codeable_concept.as_ref(),
            range: &c.reference_range,
            value_problem: None,
        };
        out.push(fact(&base, &part, index, notes));
    }
}

/// What an observation and its components share.
struct Base {
    reference: String,
    effective: Option<DateTime<Utc>>,
    issued: Option<DateTime<Utc>>,
    haemolysed: bool,
}

/// The coded result itself: the observation, or one of its components.
struct Part<'a> {
    code: Option<&'a CodeableConcept>,
    quantity: Option<&'a Quantity>,
    value_cc: Option<&'a CodeableConcept>,
    range: &'a [ReferenceRange],
    value_problem: Option<&'a str>,
}

fn fact(base: &Base, part: &Part, index: &ValueSetIndex, notes: &mut Vec<String>) -> ObservationFact {
    let reference = &base.reference;
    let mut sets = Vec::new();
    if let Some(cc) = part.code {
        sets_of_concept(cc, index, &mut sets);
    }
    let mut value_sets = Vec::new();
    if let Some(cc) = part.value_cc {
        sets_of_concept(cc, index, &mut value_sets);
    }
    let quantity = part.quantity;
    let value = quantity.and_then(|q| q.value).filter(|v| v.is_finite());
    let unit = quantity.and_then(|q| q.code.clone().or_else(|| q.unit.clone()));
    let Read { canonical, unreadable, implausible } =
        read_values(reference, &sets, quantity, part.value_problem, index, notes);
    let reference_high = part.range.iter().find_map(|r| {
        let h = r.high.as_ref()?;
        Some((h.value?, h.code.clone().or_else(|| h.unit.clone())))
    });
    ObservationFact {
        reference: reference.clone(),
        label: part.code.and_then(CodeableConcept::label).unwrap_or("(uncoded observation)").to_string(),
        coding: part.code.and_then(first_coding),
        sets,
        value_sets,
        value_label: part.value_cc.and_then(CodeableConcept::label).map(str::to_string),
        value,
        unit,
        comparator: quantity.and_then(|q| q.comparator.clone()),
        canonical,
        unreadable,
        implausible,
        reference_high,
        effective: base.effective,
        issued: base.issued,
        haemolysed: base.haemolysed,
    }
}

/// A result's value in the canonical unit of each of its unit-bearing value sets, or why it
/// cannot be used.
struct Read {
    canonical: Vec<(VsId, Option<f64>)>,
    unreadable: Option<String>,
    implausible: bool,
}

/// Converts the value for each value set of the code; a value that cannot be read or
/// converted, or that no living patient can have, gets `None` and one warning in `notes`.
fn read_values(
    reference: &str,
    sets: &[VsId],
    quantity: Option<&Quantity>,
    value_problem: Option<&str>,
    index: &ValueSetIndex,
    notes: &mut Vec<String>,
) -> Read {
    let value = quantity.and_then(|q| q.value).filter(|v| v.is_finite());
    let unit = quantity.and_then(|q| q.code.clone().or_else(|| q.unit.clone()));
    let mut canonical = Vec::new();
    let mut unreadable = value_problem.map(str::to_string);
    let mut implausible = false;
    for &vs in sets {
        let Some(units) = &index.get(vs).units else { continue };
        let converted = match (value, &unit) {
            (Some(v), Some(u)) => units.to_canonical(v, u).or_else(|| {
                // `unit` is free text; the UCUM `code` may differ from it.
                quantity.and_then(|q| q.unit.as_deref()).and_then(|u2| units.to_canonical(v, u2))
            }),
            _ => None,
        };
        let set = index.get(vs);
        let what = set.label.as_deref().unwrap_or(&set.id);
        // A value sent as 0 or below is never a concentration, a count or a rate; a converted
        // value outside the plausible range is no living patient's.
        let possible = converted.filter(|c| value.is_some_and(|v| v > 0.0) && units.plausible.contains(*c));
        if let (Some(_), None) = (converted, possible) {
            let raw = shown_raw(value, unit.as_deref());
            if unreadable.is_none() {
                let p = &units.plausible;
                notes.push(format!(
                    "{reference}: {what} result {raw} not used: outside what a living patient can have ({}–{} {})",
                    format_number(p.low),
                    format_number(p.high),
                    units.canonical
                ));
                unreadable = Some(raw);
            }
            implausible = true;
        } else if converted.is_none() && unreadable.is_none() {
            let (raw, why) = match (value, &unit) {
                (Some(_), Some(u)) => (
                    shown_raw(value, unit.as_deref()),
                    format!("unit '{}' is not convertible to {} for {what}", shorten(u, 20), units.canonical),
                ),
                (Some(v), None) => (format_number(v), "it has no unit".to_string()),
                (None, _) => ("no value".to_string(), "it has no readable value".to_string()),
            };
            notes.push(format!("{reference}: {what} result {raw} not compared: {why}"));
            unreadable = Some(raw);
        }
        canonical.push((vs, possible));
    }
    Read { canonical, unreadable, implausible }
}

/// A value as sent, for warnings and cards: the number (bounded, whatever it is) and the unit
/// (shortened).
fn shown_raw(value: Option<f64>, unit: Option<&str>) -> String {
    match (value, unit) {
        (Some(v), Some(u)) => format!("{} {}", format_number(v), shorten(u, 20)),
        (Some(v), None) => format_number(v),
        (None, _) => "no value".to_string(),
    }
}

/// A haemolysed specimen (HL7 v2 table 0493 `HEM`, or the word in a note, an interpretation
/// or the specimen's description): potassium leaks from broken red cells, so such a result
/// overstates it.
fn haemolysed(o: &Observation, conv: &ObservationConvention) -> bool {
    let says = |text: &str| {
        let lower = text.to_lowercase();
        conv.haemolysis_words.iter().any(|w| lower.contains(w.as_str()))
    };
    let coded = |cc: &CodeableConcept| {
        cc.coding.iter().any(|c| c.code.as_deref().is_some_and(|code| conv.haemolysis_codes.iter().any(|h| h == code)))
            || cc.coding.iter().filter_map(|c| c.display.as_deref()).any(says)
            || cc.text.as_deref().is_some_and(says)
    };
    o.note.iter().filter_map(|n| n.text.as_deref()).any(says)
        || o.interpretation.iter().any(coded)
        || o.specimen.as_ref().and_then(|s| s.display.as_deref()).is_some_and(says)
}
