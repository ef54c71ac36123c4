//! Units of measure through UCUM (catalogue revision 2, A1).
//!
//! A unit string from a FHIR Quantity is read in this order:
//! 1. trimmed, white space removed, and the micro signs `µ`/`μ` read as UCUM's `u`;
//! 2. the table of non-UCUM spellings EHRs send (`cards/units.json`: `beats/minute`, `mEq/L`,
//!    `mcg/L`, `mIU/L`, …), which maps a spelling to the UCUM code it means;
//! 3. UCUM itself, case-sensitive, through the `octofhir-ucum` library;
//! 4. UCUM's case-insensitive codes, only for a unit with no lower-case letter (`MG/DL`):
//!    reading a mixed-case unit case-insensitively would turn `mM` into millimetres.
//!
//! What comes out is a [`ParsedUnit`]: its magnitude and dimension in UCUM base units, its
//! arbitrary atoms (`[IU]`) and the exponents of amount-of-substance and equivalent atoms,
//! which [`AnalyteUnits`] needs for molar mass and valence.

mod analyte;

pub use analyte::{AnalyteUnits, LinearMap, Plausible, UnitSpec};

use octofhir_ucum::{lookup_unit, parse_expression, Case, UnitExpr};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// Longest unit string read. Real units are short; parsing time grows with length and a
/// request can carry any text in `Quantity.unit`.
const MAX_UNIT_LEN: usize = 64;

/// Distinct unit strings remembered. A request may carry many made-up units; when the cache
/// is full it is emptied, so real units become cached again as soon as they recur.
const CACHE_CAPACITY: usize = 1024;

/// `cards/units.json` (schema `units.schema.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpellingTable {
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    pub description: String,
    pub groups: Vec<SpellingGroup>,
}

/// Spellings seen together, with where they are seen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpellingGroup {
    pub source: String,
    /// Spelling as EHRs send it → UCUM code.
    pub spellings: BTreeMap<String, String>,
}

/// Why a unit cannot be used for a value set. Carries no text from the request, so it can
/// go into warnings and logs as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnitProblem {
    #[error("unknown unit: neither UCUM nor a listed spelling")]
    Unknown,
    #[error("a unit of another kind of quantity")]
    WrongDimension,
    #[error(
        "converting amount of substance to mass needs the analyte's molar mass, which its value set does not give"
    )]
    NeedsMolarMass,
    #[error("equivalents need the ion's valence, which its value set does not give")]
    NeedsValence,
    #[error("a special (non-linear) UCUM unit")]
    Special,
}

/// A problem in the spelling table or in a value set's units, found at load.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitsError {
    #[error("spelling {spelling:?} maps to {ucum:?}, which UCUM does not read")]
    NotUcum { group: usize, spelling: String, ucum: String },
    #[error("spelling {spelling:?} is already UCUM: the table lists only what UCUM rejects")]
    AlreadyUcum { group: usize, spelling: String },
    #[error("spelling {spelling:?} is listed twice (after white space and micro signs are normalised)")]
    Duplicate { group: usize, spelling: String },
    #[error("unit {unit:?} ({field}) is neither UCUM nor a listed spelling")]
    UnknownUnit { field: &'static str, unit: String },
    #[error("unit {unit:?} ({field}) is a special (non-linear) UCUM unit")]
    SpecialUnit { field: &'static str, unit: String },
    #[error("unit {unit:?} ({field}) already converts to the canonical unit through UCUM: remove it")]
    Redundant { field: &'static str, unit: String },
    #[error("{field} must be a positive finite number")]
    NotPositive { field: &'static str },
    #[error("plausible: low and high must be finite numbers with 0 < low < high")]
    BadPlausible,
}

impl UnitsError {
    /// JSON pointer of the problem in `cards/units.json` (empty for value-set problems).
    pub fn pointer(&self) -> String {
        match self {
            UnitsError::NotUcum { group, spelling, .. }
            | UnitsError::AlreadyUcum { group, spelling }
            | UnitsError::Duplicate { group, spelling } => {
                format!("/groups/{group}/spellings/{}", spelling.replace('~', "~0").replace('/', "~1"))
            }
            _ => String::new(),
        }
    }
}

/// A unit as UCUM reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedUnit {
    /// The UCUM code read (after the spelling table).
    pub ucum: String,
    /// Magnitude in UCUM base units (a mole counts as 6.02214076e23).
    pub factor: f64,
    /// Exponents of the base units m, s, g, rad, K, C, cd.
    pub dim: [i8; 7],
    /// Arbitrary atoms and their exponents (`[IU]/mL` has `[iU]`¹).
    pub arbitrary: Vec<(&'static str, i32)>,
    /// Net exponent of amount-of-substance atoms (mol, eq) and catalytic ones (kat, U, which
    /// are mol/s): UCUM counts moles as pure numbers, so without this `mmol/L` and a cell
    /// count per litre would look alike.
    pub amount: i32,
    /// Net exponent of `eq` atoms, whose conversion to moles needs the ion's valence.
    pub equivalents: i32,
}

impl ParsedUnit {
    /// Whether two units measure the same kind of quantity, so that UCUM's factors convert
    /// one to the other. Dimensionless units (`%`, `mmol/mol`, `mg/g`) are all commensurable
    /// in UCUM yet measure different things (an HbA1c of 48 mmol/mol is 6.5 %, not 4.8 %):
    /// they are the same kind only when written alike, annotations aside.
    pub fn same_kind(&self, other: &ParsedUnit) -> bool {
        self.dim == other.dim
            && self.arbitrary == other.arbitrary
            && self.amount == other.amount
            && (!self.is_dimensionless() || without_annotations(&self.ucum) == without_annotations(&other.ucum))
    }

    fn is_dimensionless(&self) -> bool {
        self.dim == [0; 7] && self.arbitrary.is_empty() && self.amount == 0
    }
}

fn without_annotations(code: &str) -> String {
    let mut depth = 0usize;
    code.chars()
        .filter(|&c| match c {
            '{' => {
                depth += 1;
                false
            }
            '}' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect()
}

/// A unit read, or why it cannot be.
pub type Reading = Result<Arc<ParsedUnit>, UnitProblem>;

/// Reads units: the UCUM library plus the spelling table, built once per cards load and
/// shared by every value set's [`AnalyteUnits`].
#[derive(Debug)]
pub struct UnitConverter {
    /// Normalised spelling → UCUM code.
    spellings: HashMap<String, String>,
    /// Grams per mole in UCUM base units, from the library's own `g/mol` (its Avogadro
    /// number), for molar ↔ mass conversion.
    gram_per_mole: f64,
    cache: RwLock<HashMap<Box<str>, Reading>>,
}

impl UnitConverter {
    /// Builds the converter from the spelling table; every entry must map a spelling UCUM
    /// rejects to a code UCUM reads.
    pub fn new(table: &SpellingTable) -> Result<Self, Vec<UnitsError>> {
        let mut errors = Vec::new();
        let mut spellings = HashMap::new();
        for (group, g) in table.groups.iter().enumerate() {
            for (spelling, ucum) in &g.spellings {
                let key = normalise(spelling);
                if read_ucum(&key).is_ok() {
                    errors.push(UnitsError::AlreadyUcum { group, spelling: spelling.clone() });
                } else if read_ucum(ucum).is_err() {
                    errors.push(UnitsError::NotUcum { group, spelling: spelling.clone(), ucum: ucum.clone() });
                } else if spellings.insert(key, ucum.clone()).is_some() {
                    errors.push(UnitsError::Duplicate { group, spelling: spelling.clone() });
                }
            }
        }
        // `g/mol` is plain UCUM, so this always reads; were it not to, NaN makes every
        // molar ↔ mass conversion non-finite, which `convert` refuses, rather than a panic.
        let gram_per_mole = read_ucum("g/mol").map(|u| u.factor).unwrap_or(f64::NAN);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self { spellings, gram_per_mole, cache: RwLock::new(HashMap::new()) })
    }

    /// Grams per mole in UCUM base units.
    pub fn gram_per_mole(&self) -> f64 {
        self.gram_per_mole
    }

    /// Reads a unit as sent in a Quantity, remembering the answer for the next time.
    pub fn parse(&self, unit: &str) -> Reading {
        // Checked before the cache, which must hold only short keys.
        if unit.len() > MAX_UNIT_LEN {
            return Err(UnitProblem::Unknown);
        }
        if let Some(hit) = self.cache.read().ok().and_then(|c| c.get(unit).cloned()) {
            return hit;
        }
        let answer = self.read(unit).map(Arc::new);
        // A poisoned lock only costs the cache: the answer is still right.
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(unit.into(), answer.clone());
        }
        answer
    }

    /// Reads a unit without the cache (see the module documentation for the order).
    pub fn read(&self, unit: &str) -> Result<ParsedUnit, UnitProblem> {
        if unit.len() > MAX_UNIT_LEN {
            return Err(UnitProblem::Unknown);
        }
        let key = normalise(unit);
        if let Some(ucum) = self.spellings.get(&key) {
            return read_ucum(ucum);
        }
        match read_ucum(&key) {
            Err(UnitProblem::Unknown) if !key.chars().any(|c| c.is_ascii_lowercase()) => {
                read_with_case(&key, Case::Insensitive)
            }
            other => other,
        }
    }
}

/// Trimmed, without white space, micro signs as UCUM's `u`.
fn normalise(unit: &str) -> String {
    unit.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            'µ' | 'μ' => 'u',
            c => c,
        })
        .collect()
}

fn read_ucum(code: &str) -> Result<ParsedUnit, UnitProblem> {
    read_with_case(code, Case::Sensitive)
}

/// Parses and evaluates without the library's spelling suggestions: `validate`/`analyse`
/// compare an unknown unit with every UCUM unit, about a millisecond each, which a request
/// full of made-up units must not be able to buy.
fn read_with_case(code: &str, case: Case) -> Result<ParsedUnit, UnitProblem> {
    let expr = parse_expression(code).map_err(|_| UnitProblem::Unknown)?;
    let eval = octofhir_ucum::evaluate_with_case(&expr, case).map_err(|_| UnitProblem::Unknown)?;
    if eval.special.is_some() {
        return Err(UnitProblem::Special);
    }
    let factor = eval.factor.to_f64();
    if !factor.is_finite() || factor <= 0.0 {
        return Err(UnitProblem::Unknown);
    }
    let mut atoms = Atoms::default();
    atoms.count(&expr, case, 1);
    Ok(ParsedUnit {
        ucum: code.to_string(),
        factor,
        dim: eval.dim.0,
        arbitrary: eval.arbitrary,
        amount: atoms.amount,
        equivalents: atoms.equivalents,
    })
}

/// Exponents of the atoms UCUM's dimension does not show.
#[derive(Default)]
struct Atoms {
    amount: i32,
    equivalents: i32,
}

impl Atoms {
    /// Walks the parsed expression with the sign/power each atom is raised to. The parser
    /// bounds the nesting depth, and the unit length is bounded before parsing.
    fn count(&mut self, expr: &UnitExpr, case: Case, power: i32) {
        match expr {
            UnitExpr::Symbol(code) => {
                if let Some((_, atom)) = lookup_unit(code, case) {
                    if atom.code == "eq" {
                        self.equivalents = self.equivalents.saturating_add(power);
                    }
                    if matches!(atom.property, "amount of substance" | "catalytic activity") {
                        self.amount = self.amount.saturating_add(power);
                    }
                }
            }
            UnitExpr::Numeric(_) | UnitExpr::Annotation(_) => {}
            UnitExpr::Power(base, n) => self.count(base, case, power.saturating_mul(*n)),
            UnitExpr::Annotated(inner, _) => self.count(inner, case, power),
            UnitExpr::Product(terms) => terms.iter().for_each(|t| self.count(t, case, power)),
            UnitExpr::Quotient(num, den) => {
                self.count(num, case, power);
                self.count(den, case, power.saturating_neg());
            }
            UnitExpr::Reciprocal(inner) => self.count(inner, case, power.saturating_neg()),
        }
    }
}

#[cfg(test)]
mod tests;
