//! Compiling trigger expressions: every value-set, fact and rule name resolved to an index once,
//! at load, each problem reported with the JSON pointer of the offending element.

use super::expr::*;
use crate::knowledge::valueset::{ValueSetIndex, VsId};

/// What compilation needs to resolve names. Errors carry a JSON pointer suffix.
pub struct Resolver<'a> {
    pub index: &'a ValueSetIndex,
    pub facts: &'a [String],
    pub rules: &'a [String],
    /// Value sets whose high results a haemolysed specimen falsely raises.
    pub haemolysis_raises: &'a [VsId],
}

pub type CompileError = (String, String);

impl Resolver<'_> {
    pub fn compile(&self, e: &ExprFile, at: &str) -> Result<Expr, CompileError> {
        Ok(match e {
            ExprFile::All(xs) => Expr::All(self.list(xs, &format!("{at}/all"))?),
            ExprFile::Any(xs) => Expr::Any(self.list(xs, &format!("{at}/any"))?),
            ExprFile::Not(x) => Expr::Not(Box::new(self.compile(x, &format!("{at}/not"))?)),
            ExprFile::Fact(name) => match name.as_str() {
                "PREGNANT" => Expr::Pregnant,
                "THIRD_TRIMESTER" => Expr::ThirdTrimester,
                _ => Expr::NamedFact(
                    self.facts
                        .iter()
                        .position(|f| f == name)
                        .ok_or_else(|| (format!("{at}/fact"), format!("unknown fact '{name}'")))?,
                ),
            },
            ExprFile::Condition(p) => Expr::Condition {
                vs: self.vs(&p.valueset, &format!("{at}/condition/valueset"))?,
                within_days: p.within_days,
                any_date_within_days: p.any_date_within_days,
            },
            ExprFile::Medication(p) => Expr::Medication {
                vs: self.vs(&p.valueset, &format!("{at}/medication/valueset"))?,
                requests: p.sources.is_empty() || p.sources.contains(&MedicationSourceFilter::Request),
                statements: p.sources.is_empty() || p.sources.contains(&MedicationSourceFilter::Statement),
                started_at_least_days_ago: p.started_at_least_days_ago,
            },
            ExprFile::DraftOrder(p) => Expr::DraftOrder(self.draft_order(p, &format!("{at}/draft_order"))?),
            ExprFile::OrderReason(r) => {
                Expr::OrderReason(self.vs(&r.valueset, &format!("{at}/order_reason/valueset"))?)
            }
            ExprFile::Observation(p) => Expr::Observation(self.observation(p, &format!("{at}/observation"))?),
            ExprFile::ObservationCoded(p) => Expr::ObservationCoded {
                vs: self.vs(&p.valueset, &format!("{at}/observation_coded/valueset"))?,
                lookback_days: p.lookback_days,
            },
            ExprFile::AbsentObservation(p) => Expr::AbsentObservation {
                vs: self.vs(&p.valueset, &format!("{at}/absent_observation/valueset"))?,
                lookback_days: p.lookback_days,
            },
            ExprFile::SameDay(ps) => Expr::SameDay(
                ps.iter()
                    .enumerate()
                    .map(|(i, p)| self.observation(p, &format!("{at}/same_day/{i}")))
                    .collect::<Result<_, _>>()?,
            ),
            ExprFile::AgeAtLeast(n) => Expr::AgeAtLeast(*n),
            ExprFile::Hook(h) => Expr::Hook(h.clone()),
            ExprFile::RuleFired(id) => Expr::RuleFired(
                self.rules
                    .iter()
                    .position(|r| r == id)
                    .ok_or_else(|| (format!("{at}/rule_fired"), format!("unknown rule '{id}'")))?,
            ),
        })
    }

    fn list(&self, xs: &[ExprFile], at: &str) -> Result<Vec<Expr>, CompileError> {
        if xs.is_empty() {
            return Err((at.to_string(), "empty list".into()));
        }
        xs.iter().enumerate().map(|(i, x)| self.compile(x, &format!("{at}/{i}"))).collect()
    }

    fn vs(&self, name: &str, at: &str) -> Result<VsId, CompileError> {
        self.index.id(name).ok_or_else(|| (at.to_string(), format!("unknown value set '{name}'")))
    }

    fn draft_order(&self, p: &DraftOrderPred, at: &str) -> Result<DraftOrderTest, CompileError> {
        let reason = match (&p.reason_in, &p.reason_not_in, p.without_reason) {
            (None, None, false) => ReasonFilter::Any,
            (Some(vs), None, false) => ReasonFilter::In(self.vs(vs, &format!("{at}/reason_in"))?),
            (None, Some(vs), false) => ReasonFilter::NotIn(self.vs(vs, &format!("{at}/reason_not_in"))?),
            (None, None, true) => ReasonFilter::Without,
            _ => return Err((at.to_string(), "give at most one of reason_in, reason_not_in, without_reason".into())),
        };
        Ok(DraftOrderTest { vs: self.vs(&p.valueset, &format!("{at}/valueset"))?, reason, routes: p.routes.clone() })
    }

    fn observation(&self, p: &ObservationPred, at: &str) -> Result<ObservationTest, CompileError> {
        let vs = self.vs(&p.valueset, &format!("{at}/valueset"))?;
        let units = self
            .index
            .get(vs)
            .units
            .as_ref()
            .ok_or_else(|| (format!("{at}/valueset"), format!("value set '{}' has no units", p.valueset)))?;
        let to_canonical = |v: f64, field: &str| {
            units.to_canonical(v, &p.unit).ok_or_else(|| {
                (format!("{at}/{field}"), format!("unit '{}' is not convertible to {}", p.unit, units.canonical))
            })
        };
        let threshold = match (p.value, p.reference_high_times, p.fallback) {
            (Some(v), None, None) => Threshold::Fixed(to_canonical(v, "value")?),
            (None, Some(times), Some(fallback)) => {
                Threshold::ReferenceHigh { times, fallback: to_canonical(fallback, "fallback")? }
            }
            _ => return Err((at.to_string(), "give either 'value', or 'reference_high_times' with 'fallback'".into())),
        };
        let adjust = match &p.adjust {
            None => None,
            Some(a) => {
                let avs = self.vs(&a.valueset, &format!("{at}/adjust/valueset"))?;
                let ok = self.index.get(avs).units.as_ref().and_then(|u| u.to_canonical(1.0, &a.unit)).is_some();
                if !ok {
                    return Err((
                        format!("{at}/adjust/unit"),
                        format!("unit '{}' unknown for '{}'", a.unit, a.valueset),
                    ));
                }
                Some(Adjustment {
                    vs: avs,
                    unit: a.unit.clone(),
                    reference: a.reference,
                    factor: a.factor,
                    except_codes: a.except_codes.clone(),
                    label: a.label.clone(),
                })
            }
        };
        Ok(ObservationTest {
            vs,
            lookback_days: p.lookback_days,
            comparator: p.comparator,
            threshold,
            canonical_unit: units.canonical.clone(),
            adjust,
            source: p.source.clone(),
            skip_haemolysed: matches!(p.comparator, Comparator::Gt | Comparator::Ge)
                && self.haemolysis_raises.contains(&vs),
        })
    }
}
