//! `report.html`: one self-contained page (inline CSS and SVG, a Content-Security-Policy that
//! forbids every fetch), readable by a committee without any tool.

use super::charts::{self, ChartError};
use super::{Distribution, Report, RuleLine};
use std::fmt::Write;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f5f8}.chart svg{max-width:100%;height:auto}\
.muted{color:#666;font-size:.85rem}";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn render(report: &Report) -> Result<String, ChartError> {
    let mut page = String::new();
    let unit = report.unit.plural();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Alert burden report</title><style>{STYLE}</style></head><body>\
         <h1>Alert burden report</h1><p>{}{}</p>",
        escape(&report.source),
        report.as_of.as_deref().map(|t| format!(" — as of {}", escape(t))).unwrap_or_default()
    );
    overview(&mut page, report);
    burden(&mut page, report)?;
    rules(&mut page, report)?;
    lab_orders(&mut page, report);
    warnings(&mut page, report, unit);
    malformed(&mut page, report);
    page.push_str("</body></html>\n");
    Ok(page)
}

fn overview(page: &mut String, r: &Report) {
    let unit = r.unit.plural();
    let _ = write!(page, "<h2>Overview</h2><table><tbody>");
    let mut row = |k: &str, v: String| {
        let _ = write!(page, "<tr><th>{}</th><td class=\"n\">{}</td></tr>", escape(k), escape(&v));
    };
    row(&format!("{unit} evaluated"), r.evaluated.to_string());
    if r.patients != r.evaluated {
        row("distinct patients", r.patients.to_string());
    }
    row(&format!("{unit} with at least one card"), r.with_cards.to_string());
    for (fact, n) in &r.with_named_fact {
        row(&format!("{unit} where {fact} held"), n.to_string());
    }
    for (hook, n) in &r.calls {
        row(&format!("calls: {hook}"), n.to_string());
    }
    row("cards", r.cards.total.to_string());
    if r.cards.silent > 0 {
        row("of which silent (recorded, not shown)", r.cards.silent.to_string());
    }
    for (indicator, n) in &r.cards.by_indicator {
        row(&format!("cards: {indicator}"), n.to_string());
    }
    row("inputs that could not be evaluated", r.malformed.count.to_string());
    page.push_str("</tbody></table>");
}

fn burden(page: &mut String, r: &Report) -> Result<(), ChartError> {
    let unit = r.unit.plural();
    let _ = write!(
        page,
        "<h2>Cards per {}</h2><p class=\"muted\">Percentiles are nearest-rank (a count that occurred).</p>\
         <table><thead><tr><th>{unit}</th><th>n</th><th>mean</th><th>median</th><th>p95</th><th>max</th></tr></thead><tbody>",
        escape(&singular(unit))
    );
    let mut line = |label: &str, d: &Distribution| {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(label),
            d.count,
            d.mean,
            d.median,
            d.p95,
            d.max
        );
    };
    line(&format!("all {unit}"), &r.cards_per_unit.all);
    for (fact, d) in &r.cards_per_unit.by_named_fact {
        line(&format!("{unit} where {fact} held"), d);
    }
    page.push_str("</tbody></table>");
    let title = format!("Cards per {} (all)", singular(unit));
    chart(page, &charts::burden_histogram(&title, unit, &r.cards_per_unit.all)?);
    for (fact, d) in &r.cards_per_unit.by_named_fact {
        let title = format!("Cards per {} where {fact} held", singular(unit));
        chart(page, &charts::burden_histogram(&title, unit, d)?);
    }
    Ok(())
}

fn singular(plural: &str) -> String {
    plural.trim_end_matches('s').to_string()
}

fn chart(page: &mut String, svg: &str) {
    let _ = write!(page, "<figure class=\"chart\">{svg}</figure>");
}

fn rules(page: &mut String, r: &Report) -> Result<(), ChartError> {
    let unit = r.unit.plural();
    let _ = write!(page, "<h2>Rules</h2>");
    chart(page, &charts::rules_fired(unit, &r.rules)?);
    let feedback = r.rules.iter().any(|l| l.feedback.is_some());
    let _ = write!(
        page,
        "<table><thead><tr><th>rule</th><th>{unit}</th><th>rate</th><th>critical</th><th>warning</th><th>info</th><th>fires with</th>{}</tr></thead><tbody>",
        if feedback {
            "<th>issued</th><th>silent</th><th>accepted</th><th>overridden</th><th>withheld</th><th>override rate</th><th>top override reasons</th>"
        } else {
            ""
        }
    );
    for line in &r.rules {
        rule_row(page, line, feedback);
    }
    page.push_str("</tbody></table>");
    Ok(())
}

fn rule_row(page: &mut String, l: &RuleLine, feedback: bool) {
    let ind = |k: &str| l.indicators.get(k).copied().unwrap_or(0);
    let with: Vec<String> = l.co_fires_with.iter().map(|c| format!("{} ({})", c.name, c.count)).collect();
    let _ = write!(
        page,
        "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>",
        escape(&l.rule),
        l.fired,
        l.rate * 100.0,
        ind("critical"),
        ind("warning"),
        ind("info"),
        escape(&with.join(", "))
    );
    if let (true, Some(f)) = (feedback, &l.feedback) {
        let reasons: Vec<String> = f.top_override_reasons.iter().map(|c| format!("{} ({})", c.name, c.count)).collect();
        let _ = write!(
            page,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.0}%</td><td>{}</td>",
            f.issued,
            f.silent,
            f.accepted,
            f.overridden,
            f.suppressed,
            f.override_rate * 100.0,
            escape(&reasons.join(", "))
        );
    } else if feedback {
        page.push_str("<td></td><td></td><td></td><td></td><td></td><td></td><td></td>");
    }
    page.push_str("</tr>");
}

fn lab_orders(page: &mut String, r: &Report) {
    let o = &r.lab_orders;
    let _ = write!(
        page,
        "<h2>Lab orders offered</h2><p>Responses offering the same lab order twice: <strong>{}</strong></p>",
        o.responses_with_duplicates
    );
    for (title, list) in [("offered", &o.offered), ("offered twice in one response", &o.duplicates)] {
        if list.is_empty() {
            let _ = write!(page, "<p class=\"muted\">No lab order {title}.</p>");
            continue;
        }
        let _ = write!(
            page,
            "<table><thead><tr><th>lab order ({title})</th><th>code</th><th>times</th></tr></thead><tbody>"
        );
        for c in list {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                escape(&c.display),
                escape(&c.code),
                c.count
            );
        }
        page.push_str("</tbody></table>");
    }
}

fn warnings(page: &mut String, r: &Report, unit: &str) {
    let _ = write!(page, "<h2>Data warnings</h2>");
    if r.data_warnings.is_empty() {
        page.push_str("<p class=\"muted\">None.</p>");
        return;
    }
    let _ = write!(
        page,
        "<table><thead><tr><th>kind</th><th>warnings</th><th>{unit}</th><th>examples</th></tr></thead><tbody>"
    );
    for w in &r.data_warnings {
        let examples: Vec<String> = w.examples.iter().map(|e| escape(e)).collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&w.kind),
            w.warnings,
            w.units,
            examples.join("<br>")
        );
    }
    page.push_str("</tbody></table>");
}

fn malformed(page: &mut String, r: &Report) {
    let _ = write!(page, "<h2>Inputs that could not be evaluated</h2><p>{}</p>", r.malformed.count);
    if r.malformed.examples.is_empty() {
        return;
    }
    page.push_str("<table><thead><tr><th>input</th><th>why</th></tr></thead><tbody>");
    for m in &r.malformed.examples {
        let _ = write!(page, "<tr><td>{}</td><td>{}</td></tr>", escape(&m.input), escape(&m.reason));
    }
    page.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CallSummary, CardSummary, PatientOutcome, Tally, Unit};

    #[test]
    fn the_page_is_self_contained_and_escapes_what_it_shows() {
        let mut t = Tally::new(Unit::Patient);
        let card =
            CardSummary { rules: vec!["<rule>".into()], indicator: "info".into(), silent: false, lab_orders: vec![] };
        let call = CallSummary { hook: "patient-view".into(), cards: vec![card], warnings: vec!["skipped x".into()] };
        t.add(&PatientOutcome { patient: "p".into(), calls: vec![call], ..Default::default() });
        t.add_malformed("bad.json", "not JSON: <oops>");
        let html = render(&t.finish("2 inputs".into(), Some("2026-12-01T12:00:00Z".into()), None)).unwrap();
        assert!(html.contains("default-src 'none'"));
        assert!(html.contains("&lt;rule&gt;") && !html.contains("<rule>"));
        assert!(html.contains("not JSON: &lt;oops&gt;"));
        // The only URLs are the SVG namespace, which is a name, never fetched.
        assert_eq!(html.matches("http://").count(), html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
        assert!(!html.contains("https://"));
        assert!(
            !html.contains("src=") && !html.contains("href=") && !html.contains("url("),
            "nothing is fetched or linked"
        );
        assert_eq!(html.matches("<svg").count(), 2, "histogram and rules chart");
    }
}
