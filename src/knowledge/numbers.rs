//! Numbers as the service writes them in facts, evidence and card summaries.

/// Numbers as a clinician writes them: no trailing zeros, at most two decimals.
pub fn format_number(v: f64) -> String {
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}
