//! Which result an observation predicate decides on, and how.
//!
//! The latest *usable* result in the value set within the lookback is compared to the
//! threshold. A later normal value supersedes an earlier abnormal one, but a later result that
//! cannot be used (unreadable value or unit, or a haemolysed specimen for a high-value test)
//! never hides an older readable one: it is set aside and named on the card. Two usable
//! results at the same instant (same effective time and same `issued`) are a conflict: the
//! more abnormal one is used and the card names the other. Facts are sorted totally, so the
//! outcome never depends on the order of resources in the request.

use super::eval::{Comparison, Ctx, ObservationEvidence};
use super::expr::{Comparator, ObservationTest, Threshold};
use crate::facts::ObservationFact;
use crate::knowledge::numbers::format_number;

impl Ctx<'_> {
    pub(super) fn observation(&self, t: &ObservationTest) -> Option<ObservationEvidence> {
        let f = self.facts;
        let mut set_aside = Vec::new();
        let mut chosen: Option<(usize, f64)> = None;
        let mut conflicting = None;
        for (i, o) in f.observations.iter().enumerate() {
            if !o.sets.contains(&t.vs) || !self.within(o.effective, t.lookback_days) {
                continue;
            }
            let usable = o.canonical_value(t.vs).filter(|_| !(t.skip_haemolysed && o.haemolysed));
            match (chosen, usable) {
                (None, None) => set_aside.push(i),
                (None, Some(v)) => chosen = Some((i, v)),
                (Some((c, cv)), Some(v)) if same_instant(&f.observations[c], o) => {
                    if v != cv {
                        if more_abnormal(t.comparator, v, cv) {
                            conflicting = Some(c);
                            chosen = Some((i, v));
                        } else {
                            conflicting = Some(i);
                        }
                    }
                }
                (Some((c, _)), None) if same_instant(&f.observations[c], o) => {}
                (Some(_), _) => break,
            }
        }
        let (index, raw) = chosen?;
        let o = &f.observations[index];
        let (value, adjustment, analyte) = self.adjusted(t, o, raw)?;
        let threshold = self.threshold(t, o);
        t.comparator.holds(value, threshold).then(|| ObservationEvidence {
            index,
            vs: t.vs,
            compared: Some(Comparison {
                value,
                unit: t.canonical_unit.clone(),
                comparator: t.comparator.symbol(),
                threshold,
                source: t.source.clone(),
                adjustment,
                analyte,
            }),
            set_aside,
            conflicting,
        })
    }

    /// The value as decided on: corrected by a same-day companion result where the test says
    /// so (albumin-corrected calcium), with the words that explain the correction.
    fn adjusted(
        &self,
        t: &ObservationTest,
        o: &ObservationFact,
        raw: f64,
    ) -> Option<(f64, Option<String>, Option<String>)> {
        let Some(a) = &t.adjust else { return Some((raw, None, None)) };
        let exempt = o.coding.as_ref().is_some_and(|c| a.except_codes.contains(&c.code));
        let day = o.effective.map(|d| d.date_naive());
        let companion = self.facts.observations.iter().find(|c| {
            c.sets.contains(&a.vs)
                && day.is_some()
                && c.effective.map(|d| d.date_naive()) == day
                && c.canonical_value(a.vs).is_some()
        });
        let (false, Some(c)) = (exempt, companion) else { return Some((raw, None, None)) };
        let units = self.book.index.get(a.vs).units.as_ref()?;
        // Companion in canonical unit, then into the formula's unit.
        let companion_value = c.canonical_value(a.vs)? / units.to_canonical(1.0, &a.unit)?;
        let value = raw + a.factor * (a.reference - companion_value);
        let why =
            format!("{} using {} {} {} ({})", a.label, c.label, format_number(companion_value), a.unit, c.reference);
        let set = self.book.index.get(t.vs);
        let analyte = format!("corrected {}", set.label.as_deref().unwrap_or(&o.label));
        Some((value, Some(why), Some(analyte)))
    }

    fn threshold(&self, t: &ObservationTest, o: &ObservationFact) -> f64 {
        match t.threshold {
            Threshold::Fixed(v) => v,
            Threshold::ReferenceHigh { times, fallback } => {
                let units = self.book.index.get(t.vs).units.as_ref();
                let high = o.reference_high.as_ref().and_then(|(h, unit)| {
                    let units = units?;
                    match unit.as_deref().or(o.unit.as_deref()) {
                        Some(u) => units.to_canonical(*h, u),
                        None => Some(*h),
                    }
                });
                // A limit no living patient's result could have is not the laboratory's.
                let possible = |h: &f64| units.is_some_and(|u| u.plausible.contains(*h));
                high.filter(possible).map(|h| h * times).unwrap_or(fallback)
            }
        }
    }
}

fn same_instant(a: &ObservationFact, b: &ObservationFact) -> bool {
    a.effective.is_some() && a.effective == b.effective && a.issued == b.issued
}

/// Whether `v` is further than `other` in the direction the test looks for.
fn more_abnormal(c: Comparator, v: f64, other: f64) -> bool {
    match c {
        Comparator::Lt | Comparator::Le => v < other,
        Comparator::Gt | Comparator::Ge => v > other,
    }
}
