//! One analyte's units: its canonical unit (the one rule thresholds are written in) and what
//! UCUM alone cannot convert.
//!
//! - **Molar mass** (g/mol): UCUM counts moles as pure numbers, so `mmol/L` and `mg/dL` are of
//!   different dimensions and UCUM rightly refuses to convert them. With the analyte's molar
//!   mass, an amount-of-substance unit is multiplied by it (mass = amount × M) and back.
//! - **Valence**: UCUM defines `eq` as exactly one mole whatever the charge, but clinically
//!   1 mEq of Mg²⁺ or Ca²⁺ is 0.5 mmol. A unit with `eq` to the power e is therefore scaled by
//!   valence^-e on its way to moles. Without a valence, units with `eq` are not read (unless
//!   the canonical unit has as many, so that the valence cancels).
//! - **Factors**: equivalences UCUM cannot express, keyed by a unit; any unit UCUM converts
//!   to the key is accepted too (creatine kinase in `[IU]/L` = `U/L`: the enzyme IU is the
//!   enzyme unit, while UCUM's `[IU]` is an arbitrary WHO unit).
//! - **Linear maps**: scales that are not proportional (HbA1c: NGSP % = 0.09148 × IFCC
//!   mmol/mol + 2.152).
//! - **Plausible range**: what a living patient's result can be, in the canonical unit. A
//!   value outside it (or a value ≤ 0 as sent) is not a measurement of this patient: it is
//!   never used for a decision and is named in the warnings.

use super::{ParsedUnit, UnitConverter, UnitProblem, UnitsError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `units` object of a value set (schema `valueset.schema.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSpec {
    pub canonical: String,
    #[serde(default)]
    pub molar_mass: Option<f64>,
    #[serde(default)]
    pub valence: Option<u8>,
    #[serde(default)]
    pub factors: BTreeMap<String, f64>,
    #[serde(default)]
    pub linear: BTreeMap<String, LinearMap>,
    /// Required: every analyte a rule can compare has one.
    pub plausible: Plausible,
}

/// The values a living patient's result can take, in the canonical unit (bounds included),
/// and why: chosen beyond anything survivable (the most extreme values reported in survivors)
/// and well inside the absurd.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plausible {
    pub low: f64,
    pub high: f64,
    /// Where the bounds come from (case reports, records, or the reasoning).
    pub source: String,
}

impl Plausible {
    /// Whether a value in the canonical unit can be a living patient's result.
    pub fn contains(&self, value: f64) -> bool {
        value.is_finite() && value > 0.0 && (self.low..=self.high).contains(&value)
    }
}

/// canonical = slope × value + intercept, with its published source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearMap {
    pub slope: f64,
    pub intercept: f64,
    pub source: String,
}

/// An analyte's units, ready to convert any value into its canonical unit.
#[derive(Debug, Clone)]
pub struct AnalyteUnits {
    /// As written in the value set: rule thresholds are in this unit.
    pub canonical: String,
    pub molar_mass: Option<f64>,
    pub valence: Option<u8>,
    parsed: Arc<ParsedUnit>,
    factors: Vec<(Arc<ParsedUnit>, f64)>,
    linear: Vec<(Arc<ParsedUnit>, f64, f64)>,
    /// What a living patient's result can be, in the canonical unit.
    pub plausible: Plausible,
    converter: Arc<UnitConverter>,
}

impl AnalyteUnits {
    /// Checks and prepares a value set's units.
    pub fn new(spec: &UnitSpec, converter: &Arc<UnitConverter>) -> Result<Self, Vec<UnitsError>> {
        let mut errors = Vec::new();
        let read = |field: &'static str, unit: &str, errors: &mut Vec<UnitsError>| match converter.read(unit) {
            Ok(p) => Some(Arc::new(p)),
            Err(UnitProblem::Special) => {
                errors.push(UnitsError::SpecialUnit { field, unit: unit.to_string() });
                None
            }
            Err(_) => {
                errors.push(UnitsError::UnknownUnit { field, unit: unit.to_string() });
                None
            }
        };
        let parsed = read("canonical", &spec.canonical, &mut errors);
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if spec.molar_mass.is_some_and(|m| !positive(m)) {
            errors.push(UnitsError::NotPositive { field: "molar_mass" });
        }
        if spec.valence == Some(0) {
            errors.push(UnitsError::NotPositive { field: "valence" });
        }
        let mut factors = Vec::new();
        for (unit, factor) in &spec.factors {
            if !positive(*factor) {
                errors.push(UnitsError::NotPositive { field: "factors" });
            }
            if let Some(p) = read("factors", unit, &mut errors) {
                if parsed.as_ref().is_some_and(|c| c.same_kind(&p)) {
                    errors.push(UnitsError::Redundant { field: "factors", unit: unit.clone() });
                }
                factors.push((p, *factor));
            }
        }
        let p = &spec.plausible;
        if !(positive(p.low) && positive(p.high) && p.low < p.high) {
            errors.push(UnitsError::BadPlausible);
        }
        let mut linear = Vec::new();
        for (unit, map) in &spec.linear {
            if !positive(map.slope) || !map.intercept.is_finite() {
                errors.push(UnitsError::NotPositive { field: "linear slope" });
            }
            if let Some(p) = read("linear", unit, &mut errors) {
                linear.push((p, map.slope, map.intercept));
            }
        }
        match parsed {
            Some(parsed) if errors.is_empty() => Ok(Self {
                canonical: spec.canonical.clone(),
                molar_mass: spec.molar_mass,
                valence: spec.valence,
                parsed,
                factors,
                linear,
                plausible: spec.plausible.clone(),
                converter: Arc::clone(converter),
            }),
            _ => Err(errors),
        }
    }

    /// Converts a value in `unit` to the canonical unit; `None` when the unit cannot be
    /// read or converted (such a value is never compared).
    pub fn to_canonical(&self, value: f64, unit: &str) -> Option<f64> {
        self.convert(value, unit).ok()
    }

    /// Why `unit` cannot be converted to the canonical unit, or `None` when it can.
    pub fn explain(&self, unit: &str) -> Option<UnitProblem> {
        self.convert(1.0, unit).err()
    }

    /// Converts a value in `unit` to the canonical unit, or says why not.
    pub fn convert(&self, value: f64, unit: &str) -> Result<f64, UnitProblem> {
        let input = self.converter.parse(unit)?;
        let c = &self.parsed;
        let out = if input.same_kind(c) {
            value * self.ratio(&input, c)?
        } else if let Some((key, slope, intercept)) = self.linear.iter().find(|(k, _, _)| input.same_kind(k)) {
            slope * value * self.ratio(&input, key)? + intercept
        } else if let Some((key, factor)) = self.factors.iter().find(|(k, _)| input.same_kind(k)) {
            value * self.ratio(&input, key)? * factor
        } else {
            value * self.molar_ratio(&input)?
        };
        // A unit with a huge exponent can overflow; such a value is not a reading.
        if out.is_finite() {
            Ok(out)
        } else {
            Err(UnitProblem::Unknown)
        }
    }

    /// Factor from `from` to `to`, two units of the same kind; equivalents become moles with
    /// the valence unless both have as many.
    fn ratio(&self, from: &ParsedUnit, to: &ParsedUnit) -> Result<f64, UnitProblem> {
        Ok(from.factor / to.factor * self.valence_factor(to.equivalents.saturating_sub(from.equivalents))?)
    }

    /// valence^exponent: the factor that turns equivalents into moles.
    fn valence_factor(&self, exponent: i32) -> Result<f64, UnitProblem> {
        if exponent == 0 {
            return Ok(1.0);
        }
        let z = self.valence.ok_or(UnitProblem::NeedsValence)?;
        Ok(f64::from(z).powi(exponent))
    }

    /// Factor from an amount-of-substance unit to a mass canonical unit or back, through the
    /// molar mass: the input's dimension plus k mass exponents and minus k amount exponents
    /// must be the canonical one (k = 1: moles to grams, k = -1: grams to moles).
    fn molar_ratio(&self, input: &ParsedUnit) -> Result<f64, UnitProblem> {
        let c = &self.parsed;
        const MASS: usize = 2;
        let k = [1i32, -1].into_iter().find(|&k| {
            let mut dim = input.dim.map(i32::from);
            dim[MASS] += k;
            dim == c.dim.map(i32::from)
                && input.amount - k == c.amount
                && input.arbitrary.is_empty()
                && c.arbitrary.is_empty()
        });
        let Some(k) = k else { return Err(UnitProblem::WrongDimension) };
        let molar_mass = self.molar_mass.ok_or(UnitProblem::NeedsMolarMass)?;
        let grams_per_mole = molar_mass * self.converter.gram_per_mole();
        Ok(input.factor / c.factor
            * grams_per_mole.powi(k)
            * self.valence_factor(c.equivalents.saturating_sub(input.equivalents))?)
    }
}
