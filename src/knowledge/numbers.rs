//! Numbers as the service writes them in facts, evidence and card summaries.

/// Numbers as a clinician writes them: no trailing zeros, at most two decimals. Whatever was
/// sent, the text stays short: a magnitude of a billion or more, or a non-zero one that two
/// decimals would show as 0, is written in scientific notation (`-1.0e300`, `4.9e-324`).
pub fn format_number(v: f64) -> String {
    let magnitude = v.abs();
    if v.is_finite() && (magnitude >= 1e9 || (magnitude > 0.0 && magnitude < 0.005)) {
        return format!("{v:.1e}");
    }
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::format_number;

    #[test]
    fn numbers_stay_short_whatever_their_magnitude() {
        assert_eq!(format_number(2.40), "2.4");
        assert_eq!(format_number(-3.0), "-3");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(123456.789), "123456.79");
        assert_eq!(format_number(-1e300), "-1.0e300");
        assert_eq!(format_number(5e-324), "4.9e-324");
        for v in [f64::MAX, f64::MIN, f64::MIN_POSITIVE, -1e-300, 999_999_999.99] {
            assert!(format_number(v).chars().count() <= 13, "{v} → {}", format_number(v));
        }
    }
}
