//! The `PREGNANT` convention: positive evidence (a pregnancy-status answer of "pregnant", a
//! positive qualitative hCG, or an active pregnancy diagnosis, within the lookback) not
//! cancelled by later negative evidence (a "not pregnant" answer, a negative hCG, or a
//! delivery/postpartum diagnosis dated after it); never for the genders the convention
//! excludes. Gestational age = latest recorded age + whole weeks since; an age past the
//! convention's maximum with no delivery recorded means the record is incomplete, and the
//! pregnancy is not treated as current.

use super::{dates::days_between, ConditionFact, ObservationFact};
use crate::knowledge::conventions::PregnancyConvention;
use crate::knowledge::valueset::{ValueSetIndex, VsId};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PregnancyFact {
    pub pregnant: bool,
    /// References of the resources that established the pregnancy.
    pub evidence: Vec<String>,
    /// Gestational age at the evaluation instant, in whole weeks, when recorded.
    pub gestational_age_weeks: Option<u32>,
    pub gestational_age_source: Option<String>,
    pub third_trimester: bool,
    /// Why recorded pregnancy evidence was not used, for the response warnings.
    pub note: Option<String>,
}

/// The value sets of the convention, resolved once.
struct Sets {
    status_obs: VsId,
    yes: VsId,
    no: VsId,
    hcg_obs: VsId,
    hcg_yes: VsId,
    hcg_no: VsId,
    preg_dx: VsId,
    delivery_dx: VsId,
    ga_obs: VsId,
    third_dx: VsId,
}

impl Sets {
    fn resolve(conv: &PregnancyConvention, index: &ValueSetIndex) -> Option<Self> {
        let id = |name: &str| index.id(name);
        Some(Sets {
            status_obs: id(&conv.status_observation)?,
            yes: id(&conv.pregnant_answers)?,
            no: id(&conv.not_pregnant_answers)?,
            hcg_obs: id(&conv.hcg_observation)?,
            hcg_yes: id(&conv.hcg_positive_answers)?,
            hcg_no: id(&conv.hcg_negative_answers)?,
            preg_dx: id(&conv.pregnancy_conditions)?,
            delivery_dx: id(&conv.delivery_conditions)?,
            ga_obs: id(&conv.gestational_age_observation)?,
            third_dx: id(&conv.third_trimester_conditions)?,
        })
    }
}

/// Dated positive and negative evidence.
#[derive(Default)]
struct Evidence<'a> {
    positive: Vec<(DateTime<Utc>, &'a str)>,
    negative: Vec<DateTime<Utc>>,
}

impl<'a> Evidence<'a> {
    /// A coded answer to `question`: the latest one within the lookback counts as positive
    /// when it is in `yes`; every dated answer in `no` is negative evidence.
    fn answers(
        &mut self,
        observations: &'a [ObservationFact],
        (question, yes, no): (VsId, VsId, VsId),
        within: impl Fn(Option<DateTime<Utc>>) -> bool,
        now: DateTime<Utc>,
    ) {
        // Observations are newest first: the first answer is the latest one.
        if let Some(latest) = observations.iter().find(|o| o.sets.contains(&question) && within(o.effective)) {
            if latest.value_sets.contains(&yes) {
                self.positive.push((latest.effective.unwrap_or(now), &latest.reference));
            }
        }
        let negatives = observations.iter().filter(|o| o.sets.contains(&question) && o.value_sets.contains(&no));
        self.negative.extend(negatives.filter_map(|o| o.effective));
    }
}

pub fn derive(
    conv: &PregnancyConvention,
    index: &ValueSetIndex,
    gender: Option<&str>,
    conditions: &[ConditionFact],
    observations: &[ObservationFact],
    now: DateTime<Utc>,
) -> PregnancyFact {
    // The loader checks these names exist; an incomplete test index just derives nothing.
    let Some(s) = Sets::resolve(conv, index) else { return PregnancyFact::default() };
    if gender.is_some_and(|g| conv.never_pregnant_genders.iter().any(|x| x == g)) {
        return PregnancyFact::default();
    }
    let within =
        |d: Option<DateTime<Utc>>| d.is_some_and(|d| (0.0..=conv.lookback_days as f64).contains(&days_between(d, now)));

    let mut ev = Evidence::default();
    ev.answers(observations, (s.status_obs, s.yes, s.no), within, now);
    ev.answers(observations, (s.hcg_obs, s.hcg_yes, s.hcg_no), within, now);
    for c in conditions {
        if c.sets.contains(&s.preg_dx) && c.active && within(c.dated) {
            ev.positive.push((c.dated.unwrap_or(now), &c.reference));
        }
        if c.sets.contains(&s.delivery_dx) && !c.refuted {
            ev.negative.extend(c.dated);
        }
    }
    let Some(latest_positive) = ev.positive.iter().map(|(d, _)| *d).max() else {
        return PregnancyFact::default();
    };
    if ev.negative.iter().any(|d| *d > latest_positive) {
        return PregnancyFact::default();
    }
    // The latest usable age: one that cannot be read, or that no pregnancy can have, never
    // hides an older readable one (it is named in the warnings).
    let ga = observations.iter().filter(|o| o.sets.contains(&s.ga_obs) && within(o.effective)).find_map(|o| {
        let weeks = o.canonical_value(s.ga_obs)?;
        let elapsed_weeks = (days_between(o.effective?, now) / 7.0).floor().max(0.0);
        Some(((weeks + elapsed_weeks).floor() as u32, o.reference.clone()))
    });
    let (gestational_age_weeks, gestational_age_source) = ga.unzip();
    if let Some(weeks) = gestational_age_weeks.filter(|w| f64::from(*w) > conv.max_gestational_weeks) {
        // No delivery after the evidence is recorded (that case returned above), yet the
        // computed age is past term: the delivery was most likely never entered.
        return PregnancyFact {
            note: Some(format!(
                "Pregnancy not treated as current: the computed gestational age is {weeks} weeks and no delivery is recorded (the record looks incomplete)"
            )),
            ..PregnancyFact::default()
        };
    }
    let third_by_dx = conditions.iter().any(|c| c.sets.contains(&s.third_dx) && c.active);
    PregnancyFact {
        pregnant: true,
        evidence: ev.positive.iter().map(|(_, r)| r.to_string()).collect(),
        third_trimester: third_by_dx || gestational_age_weeks.is_some_and(|w| w as f64 >= conv.third_trimester_weeks),
        gestational_age_weeks,
        gestational_age_source,
        note: None,
    }
}
