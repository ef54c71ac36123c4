use super::*;
use serde_json::json;

fn table(spellings: serde_json::Value) -> SpellingTable {
    serde_json::from_value(json!({"description": "d", "groups": [{"source": "s", "spellings": spellings}]})).unwrap()
}

fn converter() -> Arc<UnitConverter> {
    let t = table(
        json!({"beats/minute": "/min", "mEq/L": "meq/L", "mIU/L": "m[IU]/L", "uIU/mL": "u[IU]/mL", "IU/L": "[IU]/L",
                         "mM": "mmol/L", "mL/min/1.73m2": "mL/min/{1.73_m2}", "weeks": "wk"}),
    );
    Arc::new(UnitConverter::new(&t).unwrap())
}

fn analyte(spec: serde_json::Value) -> AnalyteUnits {
    AnalyteUnits::new(&serde_json::from_value(with_plausible(spec)).unwrap(), &converter()).unwrap()
}

/// A units object with a (wide) plausible range, which every value set must give.
fn with_plausible(mut spec: serde_json::Value) -> serde_json::Value {
    spec["plausible"] = json!({"low": 1e-9, "high": 1e9, "source": "test"});
    spec
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1e-12))
}

#[test]
fn spellings_then_ucum_then_upper_case_ucum() {
    let c = converter();
    assert_eq!(c.read("beats/minute").unwrap().ucum, "/min");
    assert_eq!(c.read("{beats}/min").unwrap().dim, c.read("/min").unwrap().dim);
    assert_eq!(c.read(" µmol/L ").unwrap().ucum, "umol/L", "micro sign and white space");
    assert_eq!(c.read("μg/L").unwrap().ucum, "ug/L", "Greek mu");
    assert_eq!(c.read("mL/min/1.73 m2").unwrap().ucum, "mL/min/{1.73_m2}");
    assert_eq!(c.read("MG/DL").unwrap().factor, c.read("mg/dL").unwrap().factor);
    assert_eq!(c.read("MMOL/L").unwrap().amount, 1);
    // Mixed case is never read case-insensitively: `nM` (nanomolar) would become nanometres.
    assert_eq!(c.read("nM"), Err(UnitProblem::Unknown));
    assert_eq!(c.read("NM").unwrap().dim, c.read("nm").unwrap().dim, "upper case is UCUM's case-insensitive form");
    assert_eq!(c.read("furlongs"), Err(UnitProblem::Unknown));
    assert_eq!(c.read(""), Err(UnitProblem::Unknown));
    assert_eq!(c.read(&"m.".repeat(40)), Err(UnitProblem::Unknown), "longer than any real unit");
    assert_eq!(c.read("Cel"), Err(UnitProblem::Special));
}

#[test]
fn amount_and_equivalent_atoms_are_counted() {
    let c = converter();
    let u = c.read("mEq/L").unwrap();
    assert_eq!((u.amount, u.equivalents), (1, 1));
    let u = c.read("mg/mmol").unwrap();
    assert_eq!((u.amount, u.equivalents), (-1, 0));
    assert_eq!(c.read("ukat/L").unwrap().amount, 1, "katal is mol/s");
    assert_eq!(c.read("U/L").unwrap().amount, 1, "the enzyme unit is umol/min");
    assert_eq!(c.read("10*3/uL").unwrap().amount, 0, "a count is not an amount of substance");
    assert_eq!(c.read("mol2/L").unwrap().amount, 2);
    assert_eq!(c.read("m[IU]/L").unwrap().arbitrary.len(), 1);
}

#[test]
fn dimensionless_units_are_the_same_kind_only_when_written_alike() {
    let c = converter();
    let pct = c.read("%").unwrap();
    assert!(!pct.same_kind(&c.read("mmol/mol").unwrap()));
    assert!(!pct.same_kind(&c.read("1").unwrap()));
    assert!(pct.same_kind(&c.read("%{HbA1c}").unwrap()), "annotations aside");
    assert!(c.read("{beats}/min").unwrap().same_kind(&c.read("/min").unwrap()));
    assert!(!c.read("mmol/L").unwrap().same_kind(&c.read("10*6/L").unwrap()));
}

#[test]
fn the_table_holds_only_what_ucum_rejects_and_maps_it_to_ucum() {
    let errors = UnitConverter::new(&table(json!({"mg/dl": "mg/dL", "bpm": "beats", "mM": "mmol/L", "m M": "mmol/L"})))
        .unwrap_err();
    assert!(errors.contains(&UnitsError::AlreadyUcum { group: 0, spelling: "mg/dl".into() }), "{errors:?}");
    assert!(errors.contains(&UnitsError::NotUcum { group: 0, spelling: "bpm".into(), ucum: "beats".into() }));
    assert!(errors.iter().any(|e| matches!(e, UnitsError::Duplicate { .. })), "{errors:?}");
    assert_eq!(UnitsError::AlreadyUcum { group: 3, spelling: "mg/dl".into() }.pointer(), "/groups/3/spellings/mg~1dl");
}

#[test]
fn molar_units_convert_through_the_molar_mass_both_ways() {
    let mg = analyte(json!({"canonical": "mg/dL", "molar_mass": 24.305, "valence": 2}));
    assert!(close(mg.to_canonical(1.0, "mmol/L"), 2.4305));
    assert!(close(mg.to_canonical(1000.0, "umol/L"), 2.4305));
    assert!(close(mg.to_canonical(2.0, "mEq/L"), 2.4305), "1 mEq of Mg2+ is 0.5 mmol");
    assert!(close(mg.to_canonical(24.305, "mg/L"), 2.4305));
    let ca = analyte(json!({"canonical": "mmol/L", "molar_mass": 40.078, "valence": 2}));
    assert!(close(ca.to_canonical(4.0078, "mg/dL"), 1.0));
    assert!(close(ca.to_canonical(2.0, "meq/L"), 1.0));
    let k = analyte(json!({"canonical": "mmol/L", "valence": 1}));
    assert!(close(k.to_canonical(2400.0, "umol/L"), 2.4));
    assert!(close(k.to_canonical(2.4, "mM"), 2.4));
    assert_eq!(k.explain("mg/dL"), Some(UnitProblem::NeedsMolarMass));
    assert_eq!(k.explain("10*3/uL"), Some(UnitProblem::WrongDimension), "a cell count is not molar");
}

#[test]
fn equivalents_need_a_valence_unless_it_cancels() {
    let na = analyte(json!({"canonical": "mmol/L", "molar_mass": 22.99}));
    assert_eq!(na.explain("mEq/L"), Some(UnitProblem::NeedsValence));
    let per_eq = analyte(json!({"canonical": "meq/L"}));
    assert!(close(per_eq.to_canonical(1.0, "meq/dL"), 10.0), "eq to eq needs no valence");
}

#[test]
fn factors_and_linear_maps_cover_what_ucum_cannot_say() {
    let ck = analyte(json!({"canonical": "U/L", "factors": {"[IU]/L": 1}}));
    assert!(close(ck.to_canonical(300.0, "IU/L"), 300.0));
    assert!(close(ck.to_canonical(0.3, "[IU]/mL"), 300.0), "any unit UCUM converts to the key");
    assert!(close(ck.to_canonical(5.0, "ukat/L"), 300.0));
    let tsh = analyte(json!({"canonical": "mIU/L", "factors": {"mU/L": 1}}));
    assert!(close(tsh.to_canonical(4.5, "uIU/mL"), 4.5));
    assert!(close(tsh.to_canonical(4.5, "mU/L"), 4.5));
    let a1c = analyte(
        json!({"canonical": "%", "linear": {"mmol/mol": {"slope": 0.09148, "intercept": 2.152, "source": "s"}}}),
    );
    assert!(close(a1c.to_canonical(48.0, "mmol/mol"), 0.09148 * 48.0 + 2.152));
    assert!(close(a1c.to_canonical(6.5, "%"), 6.5));
    assert_eq!(a1c.explain("1"), Some(UnitProblem::WrongDimension), "a bare ratio is not NGSP %");
}

#[test]
fn annotations_are_ignored_as_ucum_says() {
    let egfr = analyte(json!({"canonical": "mL/min/{1.73_m2}"}));
    assert!(close(egfr.to_canonical(25.0, "mL/min"), 25.0));
    assert!(close(egfr.to_canonical(25.0, "mL/min/1.73m2"), 25.0));
    assert_eq!(egfr.explain("mL/min/m2"), Some(UnitProblem::WrongDimension));
    let hr = analyte(json!({"canonical": "/min"}));
    assert!(close(hr.to_canonical(120.0, "beats/minute"), 120.0));
    assert!(close(hr.to_canonical(2.0, "/s"), 120.0));
    let ga = analyte(json!({"canonical": "wk"}));
    assert!(close(ga.to_canonical(14.0, "d"), 2.0));
    assert!(close(ga.to_canonical(30.0, "weeks"), 30.0));
}

#[test]
fn value_set_units_are_checked_at_load() {
    let c = converter();
    let spec = |v: serde_json::Value| serde_json::from_value::<UnitSpec>(with_plausible(v)).unwrap();
    let errors = AnalyteUnits::new(&spec(json!({"canonical": "Cel"})), &c).unwrap_err();
    assert!(matches!(errors[0], UnitsError::SpecialUnit { .. }), "{errors:?}");
    let errors = AnalyteUnits::new(&spec(json!({"canonical": "mg/dL", "molar_mass": 0.0, "factors": {"nope": 2}})), &c)
        .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn the_cache_stays_bounded_and_answers_stay_right() {
    let c = converter();
    for i in 0..CACHE_CAPACITY + 10 {
        assert_eq!(c.parse(&format!("made-up-{i}")), Err(UnitProblem::Unknown));
    }
    assert!(c.cache.read().unwrap().len() <= CACHE_CAPACITY);
    c.cache.write().unwrap().clear();
    assert_eq!(c.parse(&"x".repeat(100_000)), Err(UnitProblem::Unknown));
    assert!(c.cache.read().unwrap().is_empty(), "a long unit is never kept");
    assert_eq!(c.parse("mmol/L").unwrap().ucum, "mmol/L");
    assert_eq!(c.parse("mmol/L").unwrap().ucum, "mmol/L", "from the cache");
}
