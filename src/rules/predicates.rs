//! The predicates over the patient's record: conditions, medications, draft orders and their
//! reasons, coded or absent observations, same-day results. Each returns the evidence that made
//! it true (`None` when false). Numeric observation tests are in `observed.rs`.

use super::eval::{draft_matches, Ctx, Evidence, ObservationEvidence, Truth};
use super::expr::{DraftOrderTest, ObservationTest, ReasonFilter};
use crate::facts::dates::days_between;
use crate::facts::MedicationSource;
use crate::knowledge::valueset::VsId;

fn some_if_any(ev: Vec<Evidence>) -> Truth {
    (!ev.is_empty()).then_some(ev)
}

impl Ctx<'_> {
    pub(super) fn condition(&self, vs: VsId, within_days: Option<i64>, any_date_within_days: Option<i64>) -> Truth {
        some_if_any(
            self.facts
                .conditions
                .iter()
                .enumerate()
                .filter(|(_, c)| c.active && c.sets.contains(&vs))
                .filter(|(_, c)| within_days.is_none_or(|d| self.within(c.dated, d)))
                .filter(|(_, c)| {
                    any_date_within_days.is_none_or(|d| self.within(c.dated, d) || self.within(c.recorded, d))
                })
                .map(|(i, _)| Evidence::Condition(i))
                .collect(),
        )
    }

    pub(super) fn medication(
        &self,
        vs: VsId,
        requests: bool,
        statements: bool,
        started_at_least_days_ago: Option<i64>,
    ) -> Truth {
        let now = self.facts.now;
        some_if_any(
            self.facts
                .medications
                .iter()
                .enumerate()
                .filter(|(_, m)| m.active && m.sets.contains(&vs))
                .filter(|(_, m)| match m.source {
                    MedicationSource::Request => requests,
                    MedicationSource::Statement => statements,
                    MedicationSource::DraftOrder => false,
                })
                .filter(|(_, m)| {
                    started_at_least_days_ago.is_none_or(|d| m.started.is_none_or(|s| days_between(s, now) >= d as f64))
                })
                .map(|(i, _)| Evidence::Medication(i))
                .collect(),
        )
    }

    pub(super) fn draft_order(&self, t: &DraftOrderTest) -> Truth {
        let mut ev = Vec::new();
        for (i, m) in self.facts.medications.iter().enumerate() {
            if m.draft_in_scope && m.sets.contains(&t.vs) && draft_matches(t, m) {
                ev.push(Evidence::Medication(i));
                if m.has_reason && t.reason != ReasonFilter::Any {
                    ev.push(Evidence::OrderReason(i));
                }
            }
        }
        some_if_any(ev)
    }

    pub(super) fn order_reason(&self, vs: VsId) -> Truth {
        some_if_any(
            self.facts
                .medications
                .iter()
                .enumerate()
                .filter(|(_, m)| m.draft_in_scope && m.reason_sets.contains(&vs))
                .map(|(i, _)| Evidence::OrderReason(i))
                .collect(),
        )
    }

    pub(super) fn observation_coded(&self, vs: VsId, lookback_days: i64) -> Truth {
        self.facts
            .observations
            .iter()
            .position(|o| {
                (o.sets.contains(&vs) || o.value_sets.contains(&vs)) && self.within(o.effective, lookback_days)
            })
            .map(|index| {
                vec![Evidence::Observation(ObservationEvidence {
                    index,
                    vs,
                    compared: None,
                    set_aside: Vec::new(),
                    conflicting: None,
                })]
            })
    }

    pub(super) fn absent_observation(&self, vs: VsId, lookback_days: i64) -> Truth {
        // An unreadable result is no result: it cannot stand in for a check.
        let present = self
            .facts
            .observations
            .iter()
            .any(|o| o.sets.contains(&vs) && o.unreadable.is_none() && self.within(o.effective, lookback_days));
        (!present).then(|| vec![Evidence::NoRecentObservation { vs, lookback_days }])
    }

    pub(super) fn same_day(&self, tests: &[ObservationTest]) -> Truth {
        let mut ev = Vec::new();
        let mut day = None;
        for t in tests {
            let e = self.observation(t)?;
            let d = self.facts.observations[e.index].effective?.date_naive();
            if *day.get_or_insert(d) != d {
                return None;
            }
            ev.push(Evidence::Observation(e));
        }
        Some(ev)
    }
}
