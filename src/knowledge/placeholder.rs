//! Summary placeholders: the one table of what each may hold and how wide it may get. The
//! load-time check ("a summary can never reach 140 characters") and the renderer both read
//! it, so the promise and the output cannot drift apart.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// The value decided on, in the rule's canonical unit.
    Value,
    Unit,
    Analyte,
    Drug,
    Supplement,
    /// Gestational age in weeks.
    Ga,
    /// What an "A or B" rule found (e.g. "CK 9800 U/L").
    Finding,
}

impl Placeholder {
    pub const ALL: [Placeholder; 7] = [
        Placeholder::Value,
        Placeholder::Unit,
        Placeholder::Analyte,
        Placeholder::Drug,
        Placeholder::Supplement,
        Placeholder::Ga,
        Placeholder::Finding,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Value => "value",
            Placeholder::Unit => "unit",
            Placeholder::Analyte => "analyte",
            Placeholder::Drug => "drug",
            Placeholder::Supplement => "supplement",
            Placeholder::Ga => "ga",
            Placeholder::Finding => "finding",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Longest text this placeholder puts into a summary; the renderer shortens to it.
    pub fn max_width(self) -> usize {
        match self {
            Placeholder::Value => 8,
            Placeholder::Unit => 12,
            Placeholder::Analyte => 24,
            Placeholder::Drug | Placeholder::Supplement => 40,
            Placeholder::Ga => 2,
            Placeholder::Finding => 40,
        }
    }
}

/// Longest a summary can get once every placeholder is filled at its maximum width.
pub fn max_filled_length(template: &str) -> Result<usize, String> {
    let mut len = 0;
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        len += rest[..open].chars().count();
        let close = rest[open..].find('}').ok_or_else(|| format!("unclosed '{{' in summary {template:?}"))?;
        let name = &rest[open + 1..open + close];
        let p = Placeholder::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Placeholder::ALL.iter().map(|p| p.name()).collect();
            format!("unknown placeholder {{{name}}}; known: {}", known.join(", "))
        })?;
        len += p.max_width();
        rest = &rest[open + close + 1..];
    }
    Ok(len + rest.chars().count())
}

/// The template with each placeholder filled (each value shortened to its width), or `None`
/// if one has no value.
pub fn fill<'a>(template: &str, value: impl Fn(Placeholder) -> Option<&'a str>) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        let p = Placeholder::parse(&rest[open + 1..close])?;
        out.push_str(&shorten(value(p)?, p.max_width()));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Shortens to `max` characters, ending with an ellipsis when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A number as a clinician writes it, never wider than a `{value}`: at most two decimals, no
/// trailing zeros; a magnitude too large for that is written in scientific notation.
pub fn format_value(v: f64) -> String {
    let plain = crate::knowledge::numbers::format_number(v);
    if plain.chars().count() <= Placeholder::Value.max_width() {
        plain
    } else {
        format!("{v:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_length_counts_placeholders_at_full_width() {
        assert_eq!(max_filled_length("abc"), Ok(3));
        assert_eq!(max_filled_length("{drug} x"), Ok(42));
        assert!(max_filled_length("{nope}").unwrap_err().contains("unknown placeholder"));
        assert!(max_filled_length("{drug").is_err());
    }

    #[test]
    fn values_never_exceed_their_width() {
        for v in [-1e40, 1e300, -1e300, 5e-324, 123456.789, -0.004, f64::MAX, f64::MIN] {
            let s = format_value(v);
            assert!(s.chars().count() <= 8, "{v} → {s}");
        }
        assert_eq!(format_value(2.4), "2.4");
        let filled = fill("x {value} {drug}", |p| match p {
            Placeholder::Value => Some("123456789012"),
            _ => Some("a very long drug name that goes on and on and on and on"),
        })
        .unwrap();
        assert!(filled.chars().count() <= 2 + 8 + 1 + 40, "{filled}");
    }
}
