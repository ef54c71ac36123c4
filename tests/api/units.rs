//! Units through UCUM (revision 2 A1): a property test over every value set with units in
//! cards/valuesets (found by reading the directory), and the end-to-end path over HTTP.
//!
//! The property test's oracle is deliberately independent of the UCUM library: a tiny table
//! of prefixes and atoms with their sizes in g, mol, L and s, enough for the units clinical
//! laboratories use. Every unit it generates of an analyte's dimension (and, for analytes
//! with a molar mass, of the other of mass/amount) must give the oracle's canonical value;
//! every unit of another dimension must give `None`.
use crate::helpers::*;
use crate::rules::{catalog, NOW};
use leg_cramp_cds::knowledge::valueset::Units;
use leg_cramp_cds::service::cases::build_request;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What a unit measures (exponents) and its size in the oracle's base (g, mol, L, s).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quantity {
    kind: [i32; 6], // mass, amount, [IU], volume, time, percent
    equivalents: i32,
    size: f64,
}

const PREFIXES: [(&str, f64); 9] = [
    ("", 1.0),
    ("k", 1e3),
    ("d", 1e-1),
    ("c", 1e-2),
    ("m", 1e-3),
    ("u", 1e-6),
    ("n", 1e-9),
    ("p", 1e-12),
    ("f", 1e-15),
];
/// Atom, kind, size, takes prefixes. `U` is µmol/min and `kat` mol/s: amount per time.
const ATOMS: [(&str, [i32; 6], f64, bool); 13] = [
    ("g", [1, 0, 0, 0, 0, 0], 1.0, true),
    ("mol", [0, 1, 0, 0, 0, 0], 1.0, true),
    ("eq", [0, 1, 0, 0, 0, 0], 1.0, true),
    ("U", [0, 1, 0, 0, -1, 0], 1e-6 / 60.0, true),
    ("kat", [0, 1, 0, 0, -1, 0], 1.0, true),
    ("[IU]", [0, 0, 1, 0, 0, 0], 1.0, true),
    ("L", [0, 0, 0, 1, 0, 0], 1.0, true),
    ("s", [0, 0, 0, 0, 1, 0], 1.0, true),
    ("min", [0, 0, 0, 0, 1, 0], 60.0, false),
    ("h", [0, 0, 0, 0, 1, 0], 3600.0, false),
    ("d", [0, 0, 0, 0, 1, 0], 86400.0, false),
    ("wk", [0, 0, 0, 0, 1, 0], 604800.0, false),
    ("%", [0, 0, 0, 0, 0, 1], 1.0, false),
];

fn term(t: &str) -> Option<Quantity> {
    if t.is_empty() || t == "1" {
        return Some(Quantity { kind: [0; 6], equivalents: 0, size: 1.0 });
    }
    // Cubic metres with a prefix: the prefix is cubed too (cm3 = mL).
    if let Some(p) = t.strip_suffix("m3") {
        let (_, f) = PREFIXES.iter().find(|(s, _)| *s == p)?;
        return Some(Quantity { kind: [0, 0, 0, 1, 0, 0], equivalents: 0, size: 1000.0 * f * f * f });
    }
    PREFIXES.iter().find_map(|(p, f)| {
        let atom = t.strip_prefix(p)?;
        let (code, kind, size, metric) = ATOMS.iter().find(|a| a.0 == atom)?;
        (p.is_empty() || *metric).then(|| Quantity {
            kind: *kind,
            equivalents: i32::from(*code == "eq"),
            size: size * f,
        })
    })
}

/// Reads `num/den/den…` (annotations dropped, as UCUM does); `None` outside the oracle.
fn oracle(unit: &str, spellings: &BTreeMap<String, String>) -> Option<Quantity> {
    let unit = spellings.get(unit).map_or(unit, String::as_str);
    let mut bare = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            c if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let bare = bare.trim_end_matches('/');
    let mut parts = bare.split('/');
    let mut q = term(parts.next()?)?;
    for den in parts {
        let d = term(den)?;
        (0..6).for_each(|i| q.kind[i] -= d.kind[i]);
        q.equivalents -= d.equivalents;
        q.size /= d.size;
    }
    Some(q)
}

struct Analyte {
    id: String,
    units: Units,
    canonical: Quantity,
    factors: Vec<(Quantity, f64)>,
}

impl Analyte {
    /// The canonical value of `value` in a unit, by the oracle.
    fn expected(&self, value: f64, u: &Quantity) -> Option<f64> {
        let c = &self.canonical;
        let ratio = |to: &Quantity| -> Option<f64> {
            let z = match c.equivalents - u.equivalents {
                0 => 1.0,
                e => f64::from(self.units.valence?).powi(e),
            };
            Some(u.size / to.size * z)
        };
        if u.kind == c.kind {
            return Some(value * ratio(c)?);
        }
        if let Some((key, factor)) = self.factors.iter().find(|(k, _)| k.kind == u.kind) {
            return Some(value * ratio(key)? * factor);
        }
        let k = u.kind[1] - c.kind[1];
        let mut shifted = u.kind;
        shifted[0] += k;
        shifted[1] -= k;
        (k.abs() == 1 && shifted == c.kind).then_some(())?;
        Some(value * ratio(c)? * self.units.molar_mass?.powi(k))
    }
}

/// Every unit the oracle knows that laboratories and monitors use: concentrations of mass,
/// amount, equivalents, enzyme activity and international units; volume rates (with and
/// without the eGFR annotation); rates; durations; percent.
fn generated_units() -> Vec<String> {
    let volumes = ["L", "dL", "mL", "uL", "cL", "m3", "dm3", "cm3"];
    let mut out = Vec::new();
    for atom in ["g", "mol", "eq", "U", "kat", "[IU]"] {
        for (p, _) in PREFIXES.iter().take(8) {
            out.extend(volumes.iter().map(|v| format!("{p}{atom}/{v}")));
        }
    }
    for p in ["", "d", "m", "u"] {
        for t in ["s", "min", "h"] {
            out.push(format!("{p}L/{t}"));
            out.push(format!("{p}L/{t}/{{1.73_m2}}"));
        }
    }
    out.extend(["/s", "/min", "/h", "{beats}/min", "1/min", "s", "min", "h", "wk", "%"].map(String::from));
    out
}

fn spelling_table() -> BTreeMap<String, String> {
    let table: Value =
        serde_json::from_str(&std::fs::read_to_string(project_path("cards/units.json")).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for g in table["groups"].as_array().unwrap() {
        for (k, v) in g["spellings"].as_object().unwrap() {
            out.insert(k.clone(), v.as_str().unwrap().to_string());
        }
    }
    out
}

/// Every value set with units, found by reading cards/valuesets.
fn analytes(spellings: &BTreeMap<String, String>) -> Vec<Analyte> {
    let catalog = catalog();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(project_path("cards/valuesets")).unwrap() {
        let file: Value = serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let Some(spec) = file.get("units") else { continue };
        let id = file["id"].as_str().unwrap().to_string();
        let units = catalog.rules.index.get(catalog.rules.index.id(&id).unwrap()).units.clone().unwrap();
        let canonical = oracle(&units.canonical, spellings).unwrap_or_else(|| panic!("{id}: oracle cannot read"));
        let factors = spec["factors"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, f)| (oracle(k, spellings).unwrap(), f.as_f64().unwrap()))
            .collect();
        out.push(Analyte { id, units, canonical, factors });
    }
    out
}

#[test]
fn every_unit_of_the_right_dimension_gives_the_same_canonical_value_and_decision() {
    let spellings = spelling_table();
    // Every generated unit and table spelling the oracle can read (a spelling outside its
    // atoms, like `d` in `days`, is covered by the unit tests instead).
    let known: Vec<(String, Quantity)> = generated_units()
        .into_iter()
        .chain(spellings.keys().cloned())
        .filter_map(|u| Some((u.clone(), oracle(&u, &spellings)?)))
        .collect();
    let analytes = analytes(&spellings);
    assert!(analytes.len() >= 15, "only {} value sets with units", analytes.len());
    for a in &analytes {
        let readable = known.iter().filter(|(_, q)| a.expected(1.0, q).is_some()).count();
        assert!(readable >= 2, "{}: {readable} readable units", a.id);
        let config = Config { cases: 64, failure_persistence: None, ..Config::default() };
        let strategy = (1e-3f64..1e4, 1e-6f64..0.5, any::<bool>(), "zz[a-z]{1,6}");
        TestRunner::new(config)
            .run(&strategy, |(value, margin, above, garbage)| {
                for (unit, q) in &known {
                    let got = a.units.to_canonical(value, unit);
                    match a.expected(value, q) {
                        None => prop_assert_eq!(got, None, "{}: {} should not convert", a.id, unit),
                        Some(want) => {
                            let got = got.unwrap_or(f64::NAN);
                            prop_assert!(
                                (got - want).abs() <= 1e-9 * want.abs(),
                                "{}: {value} {unit} gave {got}, want {want}",
                                a.id
                            );
                            // A threshold near the value: the decision is the one the canonical unit gives.
                            let threshold = want * if above { 1.0 + margin } else { 1.0 - margin };
                            let canonical = a.units.to_canonical(want, &a.units.canonical).unwrap();
                            prop_assert_eq!(got < threshold, canonical < threshold, "{}: {} {}", a.id, value, unit);
                        }
                    }
                }
                prop_assert_eq!(a.units.to_canonical(value, &garbage), None);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{}: {e}", a.id));
    }
}

/// The hand factors the molar masses and valences replace (value in canonical = value ×
/// factor), as they stood before units went through UCUM: the data must still agree with
/// them, to their own precision (0.05 %).
#[test]
fn molar_masses_and_valences_agree_with_the_hand_factors_they_replace() {
    let catalog = catalog();
    let old = [
        ("LAB_25OH_VITAMIN_D", "nmol/L", 0.400641),
        ("LAB_CALCIUM_IONIZED", "mg/dL", 0.2495),
        ("LAB_CALCIUM_IONIZED", "mEq/L", 0.5),
        ("LAB_CALCIUM_TOTAL", "mmol/L", 4.008),
        ("LAB_CALCIUM_TOTAL", "mEq/L", 2.004),
        ("LAB_CK", "IU/L", 1.0),
        ("LAB_CK", "ukat/L", 60.0),
        ("LAB_CREATININE", "umol/L", 0.011312),
        ("LAB_FREE_T4", "pmol/L", 0.0777),
        ("LAB_GLUCOSE", "mmol/L", 18.016),
        ("LAB_MAGNESIUM", "mmol/L", 2.431),
        ("LAB_MAGNESIUM", "mEq/L", 1.2155),
        ("LAB_POTASSIUM", "mEq/L", 1.0),
        ("LAB_SODIUM", "mEq/L", 1.0),
        ("LAB_TSH", "uIU/mL", 1.0),
        ("LAB_TSH", "mU/L", 1.0),
        ("LAB_VITAMIN_B12", "pmol/L", 1.355014),
        ("LAB_VITAMIN_B12", "ng/L", 1.0),
        ("LAB_ALBUMIN", "g/L", 0.1),
        ("LAB_EGFR", "mL/min/1.73m2", 1.0),
        ("LAB_D_DIMER", "ng/mL{FEU}", 0.001),
        ("VITAL_HEART_RATE", "bpm", 1.0),
        ("GESTATIONAL_AGE_OBS", "d", 1.0 / 7.0),
    ];
    for (vs, unit, factor) in old {
        let units = catalog.rules.index.get(catalog.rules.index.id(vs).unwrap()).units.as_ref().unwrap();
        let new = units.to_canonical(1.0, unit).unwrap_or_else(|| panic!("{vs}: {unit} not read"));
        assert!((new / factor - 1.0).abs() < 5e-4, "{vs}: 1 {unit} = {new}, the hand factor said {factor}");
    }
}

// ---- End to end over HTTP ---------------------------------------------------------------

fn cramp() -> Value {
    json!({"resourceType": "Condition", "id": "cramp", "clinicalStatus": {"coding": [{"code": "active"}]},
           "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2"}]}, "recordedDate": "2026-06-01"})
}

fn observation(id: &str, loinc: &str, category: &str, value: f64, unit: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
           "effectiveDateTime": "2026-06-15T08:00:00Z", "valueQuantity": {"value": value, "unit": unit}})
}

/// Posts a patient-view with these resources and returns the rule ids of the cards and the
/// response warnings.
async fn cards_for(server: &TestServer, resources: Vec<Value>) -> (Vec<String>, String) {
    let catalog = catalog();
    let patient = json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1971-01-15"});
    let (service, body) = build_request(&catalog, "patient-view", patient, &resources, &[], None).unwrap();
    let (status, response) = server.post_json(&format!("/cds-services/{service}"), &body).await;
    assert_eq!(status, 200, "{response}");
    assert_valid_response(&response);
    let rules = response["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"]["topic"]["code"].as_str().unwrap().to_string())
        .collect();
    (rules, response["extension"]["org.leg-cramp-cds.warnings"].to_string())
}

#[tokio::test]
async fn units_ucum_reads_but_the_old_table_dropped_reach_the_rules() {
    let server = TestServer::builder().args(["--now", NOW]).start();
    let lab = |id: &str, loinc: &str, value: f64, unit: &str| observation(id, loinc, "laboratory", value, unit);
    let cases = [
        // Potassium 2400 umol/L = 2.4 mmol/L < 2.5: the critical electrolyte card.
        (lab("k", "2823-3", 2400.0, "umol/L"), "red-flag-critical-electrolytes"),
        (lab("k", "2823-3", 2.4, "mM"), "red-flag-critical-electrolytes"),
        // eGFR 25 mL/min is read as mL/min/{1.73_m2}.
        (lab("egfr", "98979-8", 25.0, "mL/min"), "renal-hepatic-advanced-ckd-dialysis"),
        (lab("egfr", "98979-8", 25.0, "mL/min/1.73 m2"), "renal-hepatic-advanced-ckd-dialysis"),
        // Vitamin B12 150 ng/L = 150 pg/mL < 200; 100 pmol/L = 135.5 pg/mL.
        (lab("b12", "2132-9", 150.0, "ng/L"), "nutrition-vitamin-b12-deficiency"),
        (lab("b12", "2132-9", 100.0, "pmol/L"), "nutrition-vitamin-b12-deficiency"),
        // 25-OH vitamin D 0.012 ug/mL = 12 ng/mL < 20.
        (lab("vitd", "62292-8", 0.012, "ug/mL"), "nutrition-vitamin-d-deficiency"),
        // Magnesium 0.6 mEq/L = 0.3 mmol/L = 0.73 mg/dL < 1.2 (valence 2).
        (lab("mg", "19123-9", 0.6, "mEq/L"), "red-flag-critical-electrolytes"),
        // TSH 9 mU/L (UK spelling of mIU/L) > 4.5.
        (lab("tsh", "3016-3", 9.0, "mU/L"), "metabolic-endocrine-hypothyroidism"),
    ];
    for (obs, rule) in cases {
        let what = format!("{} {}", obs["valueQuantity"]["value"], obs["valueQuantity"]["unit"]);
        let (rules, warnings) = cards_for(&server, vec![cramp(), obs.clone()]).await;
        assert!(rules.iter().any(|r| r == rule), "{what}: no {rule} in {rules:?} ({warnings})");
        // The same value in a unit of another dimension is never compared.
        let mut wrong = obs;
        wrong["valueQuantity"]["unit"] = json!("mm[Hg]");
        let (rules, warnings) = cards_for(&server, vec![cramp(), wrong]).await;
        assert!(!rules.iter().any(|r| r == rule), "{what} in mm[Hg] fired {rule}");
        assert!(warnings.contains("not convertible"), "{what} in mm[Hg]: no warning in {warnings}");
    }
}

#[tokio::test]
async fn units_heart_rate_in_beats_per_minute_counts_as_tachycardia() {
    let server = TestServer::builder().args(["--now", NOW]).start();
    let swelling = json!({"resourceType": "Condition", "id": "sw", "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R22.41"}]}, "recordedDate": "2026-06-13"});
    for (value, unit, fires) in
        [(120.0, "beats/minute", true), (120.0, "bpm", true), (2.0, "/s", true), (88.0, "beats/minute", false)]
    {
        let hr = observation("hr", "8867-4", "vital-signs", value, unit);
        let (rules, _) = cards_for(&server, vec![cramp(), swelling.clone(), hr]).await;
        assert_eq!(rules.iter().any(|r| r == "red-flag-possible-pe"), fires, "heart rate {value} {unit}: {rules:?}");
    }
}
