//! The report's charts as inline SVG, drawn by `plotters` (SVG backend only): a histogram of
//! cards per unit, and how many units each rule fired for. Text is SVG `<text>`, rendered by
//! the browser's own fonts, so nothing is fetched.

use super::{Distribution, RuleLine};
use plotters::prelude::*;

const BAR: RGBColor = RGBColor(0x2f, 0x6f, 0xb3);
const FONT: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
#[error("chart '{chart}' could not be drawn: {message}")]
pub struct ChartError {
    chart: &'static str,
    message: String,
}

fn failed<E: std::fmt::Display>(chart: &'static str) -> impl Fn(E) -> ChartError {
    move |e| ChartError { chart, message: e.to_string() }
}

/// A histogram of cards per unit (x: cards, y: units).
pub fn burden_histogram(title: &str, unit_plural: &str, d: &Distribution) -> Result<String, ChartError> {
    let err = failed("cards per unit");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let top = d.histogram.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        let cards = (d.max + 1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((0u32..cards).into_segmented(), 0u64..top + top / 10 + 1)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("cards")
            .y_desc(unit_plural)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(k) | SegmentValue::Exact(k) => k.to_string(),
                SegmentValue::Last => String::new(),
            })
            .label_style((FONT, 12))
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(BAR.filled())
                    .margin(3)
                    .data(d.histogram.iter().map(|&(k, n)| (k, n))),
            )
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// Units each rule fired for, one horizontal bar per rule, most frequent first.
pub fn rules_fired(unit_plural: &str, rules: &[RuleLine]) -> Result<String, ChartError> {
    let err = failed("rules fired");
    let mut sorted: Vec<&RuleLine> = rules.iter().collect();
    sorted.sort_by(|a, b| b.fired.cmp(&a.fired).then(a.rule.cmp(&b.rule)));
    let names: Vec<String> = sorted.iter().map(|r| r.rule.clone()).collect();
    let n = sorted.len().max(1) as u32;
    let mut svg = String::new();
    {
        let height = 60 + 18 * n;
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let top = sorted.first().map_or(1, |r| r.fired).max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{unit_plural} with a card of each rule"), (FONT, 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(300)
            .build_cartesian_2d(0u64..top + top / 10 + 1, (0u32..n).into_segmented())
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            // Row n-1 is drawn at the top: the most frequent rule.
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    n.checked_sub(1 + *i).and_then(|row| names.get(row as usize)).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .label_style((FONT, 11))
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(
                Histogram::horizontal(&chart)
                    .style(BAR.filled())
                    .margin(2)
                    .data(sorted.iter().enumerate().map(|(i, r)| (n - 1 - i as u32, r.fired))),
            )
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn charts_are_svg_with_one_bar_per_bucket() {
        let d = Distribution::from_histogram(&BTreeMap::from([(0, 4), (1, 3), (3, 1)]));
        let svg = burden_histogram("Cards per patient", "patients", &d).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Cards per patient"));
        // One bar per bucket from 0 to the max; the three non-empty ones have a height.
        let bars: Vec<&str> = svg.split("<rect").filter(|r| r.contains("fill=\"#2F6FB3\"")).collect();
        assert_eq!(bars.len(), 4, "{svg}");
        assert_eq!(bars.iter().filter(|r| !r.contains("height=\"0\"")).count(), 3, "{svg}");
        let line = |rule: &str, fired| RuleLine {
            rule: rule.into(),
            fired,
            rate: 0.0,
            indicators: BTreeMap::new(),
            co_fires_with: vec![],
            feedback: None,
        };
        let svg = rules_fired("patients", &[line("a-rule", 3), line("b-rule", 7)]).unwrap();
        let y_of = |label: &str| {
            let at = svg.find(&format!(">\n{label}\n<")).unwrap_or_else(|| panic!("{label} in {svg}"));
            let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
            tag.split("y=\"").nth(1).unwrap().split('"').next().unwrap().parse::<f64>().unwrap()
        };
        assert!(y_of("b-rule") < y_of("a-rule"), "the most frequent rule is on top");
    }
}
