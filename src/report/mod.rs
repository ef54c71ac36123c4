//! The alert-burden report a CDS governance committee reads before go-live: how often each
//! rule fires, how many cards a patient (or a response) gets, which lab orders are offered and
//! whether one is offered twice, and what data could not be used. One report, two sources: a
//! population evaluated offline (`simulate`, [`outcome`] per patient) and the feedback store's
//! issued and silent cards (`report --html`, [`live`]). Written as `report.json` and a
//! self-contained `report.html` ([`html`], charts from [`charts`]).

pub mod charts;
pub mod html;
pub mod live;
pub mod outcome;
pub mod tally;

use serde::Serialize;
use std::collections::BTreeMap;

pub use outcome::{CallSummary, CardSummary, PatientOutcome};
pub use tally::Tally;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("{0}")]
    Chart(#[from] charts::ChartError),
}

/// Writes `report.json` and `report.html` into `dir` (created if needed).
pub fn write_files(dir: &std::path::Path, report: &Report) -> Result<(), ReportError> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ReportError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write { path: dir.to_path_buf(), source })?;
    let json = serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    write("report.json", json + "\n")?;
    write("report.html", html::render(report)?)
}

/// What one counted unit is: a simulated patient (all its calls), or one recorded response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Patient,
    Response,
}

impl Unit {
    pub fn plural(self) -> &'static str {
        match self {
            Unit::Patient => "patients",
            Unit::Response => "responses",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Where the figures come from (the inputs simulated, or the feedback store).
    pub source: String,
    /// The evaluation instant of a simulation; the `--since` of a store report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    pub unit: Unit,
    /// Units counted (patients evaluated, or responses recorded).
    pub evaluated: u64,
    /// Distinct patients (a store report counts pseudonymous keys).
    pub patients: u64,
    /// Units with at least one card.
    pub with_cards: u64,
    /// Units per named fact that held (e.g. `LEG_CRAMP_PRESENT`); simulation only.
    pub with_named_fact: BTreeMap<String, u64>,
    /// Calls (simulation) or responses (store) per hook or service.
    pub calls: BTreeMap<String, u64>,
    pub cards: CardCounts,
    pub cards_per_unit: Burden,
    pub rules: Vec<RuleLine>,
    pub lab_orders: LabOrders,
    pub data_warnings: Vec<WarningKind>,
    pub malformed: Malformed,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardCounts {
    pub total: u64,
    /// Recorded in silent mode: evaluated and stored, not shown (store reports).
    pub silent: u64,
    pub by_indicator: BTreeMap<String, u64>,
}

/// Cards per unit: over all units, and over those where each named fact held.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Burden {
    pub all: Distribution,
    pub by_named_fact: BTreeMap<String, Distribution>,
}

/// A distribution of small counts. Percentiles are nearest-rank: the value at rank
/// ⌈p/100 × n⌉ of the sorted counts, so they are counts that occurred.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Distribution {
    pub count: u64,
    pub mean: f64,
    pub median: u32,
    pub p95: u32,
    pub max: u32,
    /// (cards, units with that many cards), ascending; zero counts included up to the max.
    pub histogram: Vec<(u32, u64)>,
}

impl Distribution {
    pub fn from_histogram(counts: &BTreeMap<u32, u64>) -> Self {
        let count: u64 = counts.values().sum();
        if count == 0 {
            return Self::default();
        }
        let max = counts.keys().next_back().copied().unwrap_or(0);
        let total: u64 = counts.iter().map(|(k, n)| u64::from(*k) * n).sum();
        let rank = |p: u64| {
            let target = (p * count).div_ceil(100).max(1);
            let mut seen = 0;
            counts.iter().find(|(_, n)| {
                seen += **n;
                seen >= target
            })
        };
        Self {
            count,
            mean: total as f64 / count as f64,
            median: rank(50).map_or(0, |(k, _)| *k),
            p95: rank(95).map_or(0, |(k, _)| *k),
            max,
            histogram: (0..=max).map(|k| (k, counts.get(&k).copied().unwrap_or(0))).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleLine {
    pub rule: String,
    /// Units with a card standing for this rule.
    pub fired: u64,
    /// `fired` / units evaluated.
    pub rate: f64,
    /// Cards standing for this rule, by indicator (a merged card counts for each of its rules).
    pub indicators: BTreeMap<String, u64>,
    /// The rules most often on cards of the same unit, with how many units.
    pub co_fires_with: Vec<Count>,
    /// Feedback from the store (store reports only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<RuleFeedback>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleFeedback {
    pub issued: u64,
    pub silent: u64,
    pub accepted: u64,
    pub overridden: u64,
    pub suppressed: u64,
    pub override_rate: f64,
    pub top_override_reasons: Vec<Count>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabOrders {
    /// Lab order suggestions by code (`system|code`), with their display.
    pub offered: Vec<OrderCount>,
    /// Responses that offered the same lab code more than once.
    pub responses_with_duplicates: u64,
    pub duplicates: Vec<OrderCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderCount {
    pub code: String,
    pub display: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WarningKind {
    pub kind: String,
    pub warnings: u64,
    /// Units with at least one warning of this kind.
    pub units: u64,
    /// Up to three warnings as written in responses (bounded in length).
    pub examples: Vec<String>,
}

/// Inputs that could not be evaluated: reported, never fatal.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Malformed {
    pub count: u64,
    /// The first few, each with where it was and why.
    pub examples: Vec<MalformedInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MalformedInput {
    pub input: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_counts_that_occurred() {
        // 0 cards ×10, 1 ×5, 2 ×3, 5 ×2: 20 units.
        let counts = BTreeMap::from([(0, 10), (1, 5), (2, 3), (5, 2)]);
        let d = Distribution::from_histogram(&counts);
        assert_eq!((d.count, d.median, d.p95, d.max), (20, 0, 5, 5));
        assert!((d.mean - 1.05).abs() < 1e-9);
        assert_eq!(d.histogram, vec![(0, 10), (1, 5), (2, 3), (3, 0), (4, 0), (5, 2)]);
        let one = Distribution::from_histogram(&BTreeMap::from([(3, 1)]));
        assert_eq!((one.median, one.p95, one.max), (3, 3, 3));
        assert_eq!(Distribution::from_histogram(&BTreeMap::new()), Distribution::default());
        // Rank 10 of 20 is the last 0: an even count takes the lower middle, not an average.
        let d = Distribution::from_histogram(&BTreeMap::from([(0, 10), (1, 10)]));
        assert_eq!((d.median, d.p95), (0, 1));
    }
}
