//! The `PREGNANT` convention: positive evidence (a pregnancy-status answer of "pregnant", or
//! an active pregnancy diagnosis, within the lookback) not cancelled by later negative evidence
//! (a "not pregnant" answer, or a delivery/postpartum diagnosis dated after it); never for the
//! genders the convention excludes. Gestational age = latest recorded age + whole weeks since.

use super::{dates::days_between, ConditionFact, ObservationFact};
use crate::rules::conventions::PregnancyConvention;
use crate::rules::valueset::ValueSetIndex;
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
}

pub fn derive(
    conv: &PregnancyConvention,
    index: &ValueSetIndex,
    gender: Option<&str>,
    conditions: &[ConditionFact],
    observations: &[ObservationFact],
    now: DateTime<Utc>,
) -> PregnancyFact {
    let id = |name: &str| index.id(name);
    let (Some(status_obs), Some(yes), Some(no), Some(preg_dx), Some(delivery_dx), Some(ga_obs), Some(third_dx)) = (
        id(&conv.status_observation),
        id(&conv.pregnant_answers),
        id(&conv.not_pregnant_answers),
        id(&conv.pregnancy_conditions),
        id(&conv.delivery_conditions),
        id(&conv.gestational_age_observation),
        id(&conv.third_trimester_conditions),
    ) else {
        // The loader checks these names exist; an incomplete test index just derives nothing.
        return PregnancyFact::default();
    };
    if gender.is_some_and(|g| conv.never_pregnant_genders.iter().any(|x| x == g)) {
        return PregnancyFact::default();
    }
    let within =
        |d: Option<DateTime<Utc>>| d.is_some_and(|d| (0.0..=conv.lookback_days as f64).contains(&days_between(d, now)));

    // Positive and negative evidence, each with its date.
    let mut positive: Vec<(DateTime<Utc>, &str)> = Vec::new();
    let mut negative: Vec<DateTime<Utc>> = Vec::new();
    // Observations are newest first: the first status answer is the latest one.
    if let Some(latest) = observations.iter().find(|o| o.sets.contains(&status_obs) && within(o.effective)) {
        if latest.value_sets.contains(&yes) {
            positive.push((latest.effective.unwrap_or(now), &latest.reference));
        }
    }
    for o in observations.iter().filter(|o| o.sets.contains(&status_obs) && o.value_sets.contains(&no)) {
        if let Some(d) = o.effective {
            negative.push(d);
        }
    }
    for c in conditions {
        if c.sets.contains(&preg_dx) && c.active && within(c.dated) {
            positive.push((c.dated.unwrap_or(now), &c.reference));
        }
        if c.sets.contains(&delivery_dx) && !c.refuted {
            if let Some(d) = c.dated {
                negative.push(d);
            }
        }
    }
    let Some(latest_positive) = positive.iter().map(|(d, _)| *d).max() else {
        return PregnancyFact::default();
    };
    if negative.iter().any(|d| *d > latest_positive) {
        return PregnancyFact::default();
    }
    let ga = observations.iter().find(|o| o.sets.contains(&ga_obs) && within(o.effective)).and_then(|o| {
        let weeks = o.canonical_value(ga_obs)?;
        let elapsed_weeks = (days_between(o.effective?, now) / 7.0).floor().max(0.0);
        Some(((weeks + elapsed_weeks).floor() as u32, o.reference.clone()))
    });
    let third_by_dx = conditions.iter().any(|c| c.sets.contains(&third_dx) && c.active);
    let (gestational_age_weeks, gestational_age_source) = match ga {
        Some((w, r)) => (Some(w), Some(r)),
        None => (None, None),
    };
    PregnancyFact {
        pregnant: true,
        evidence: positive.iter().map(|(_, r)| r.to_string()).collect(),
        third_trimester: third_by_dx || gestational_age_weeks.is_some_and(|w| w as f64 >= conv.third_trimester_weeks),
        gestational_age_weeks,
        gestational_age_source,
    }
}
