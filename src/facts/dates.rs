//! FHIR date, dateTime and instant values as UTC instants. Partial dates (`2024`,
//! `2024-03`) mean the start of that period; a dateTime without a zone is taken as UTC.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

pub fn parse_fhir_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(ndt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(Utc.from_utc_datetime(&ndt));
    }
    let date = match s.len() {
        4 => NaiveDate::from_ymd_opt(s.parse().ok()?, 1, 1),
        7 => NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok(),
        10 => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
        _ => None,
    }?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

/// Whole years between a birth date and `now` (FHIR `birthDate` is a date).
pub fn age_years(birth_date: &str, now: DateTime<Utc>) -> Option<u32> {
    let birth = parse_fhir_datetime(birth_date)?.date_naive();
    let today = now.date_naive();
    let mut years = today.years_since(birth)?;
    // years_since already accounts for month/day; keep the explicit bound for clarity.
    if years > 150 {
        years = 150;
    }
    Some(years)
}

/// Days from `then` to `now` (negative if `then` is in the future).
pub fn days_between(then: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    (now - then).num_seconds() as f64 / 86_400.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_dates_of_every_precision_parse() {
        let table = [
            ("2024", "2024-01-01T00:00:00+00:00"),
            ("2024-03", "2024-03-01T00:00:00+00:00"),
            ("2024-03-05", "2024-03-05T00:00:00+00:00"),
            ("2024-03-05T10:20:30Z", "2024-03-05T10:20:30+00:00"),
            ("2024-03-05T10:20:30+02:00", "2024-03-05T08:20:30+00:00"),
            ("2024-03-05T10:20:30.123", "2024-03-05T10:20:30.123+00:00"),
        ];
        for (input, want) in table {
            assert_eq!(parse_fhir_datetime(input).unwrap().to_rfc3339(), want, "{input}");
        }
        assert!(parse_fhir_datetime("yesterday").is_none());
        assert!(parse_fhir_datetime("2024-13-01").is_none());
    }

    #[test]
    fn age_counts_whole_years_at_the_evaluation_instant() {
        let now = parse_fhir_datetime("2026-06-15T12:00:00Z").unwrap();
        assert_eq!(age_years("2008-06-15", now), Some(18));
        assert_eq!(age_years("2008-06-16", now), Some(17));
        assert_eq!(age_years("1960", now), Some(66));
        assert_eq!(age_years("garbage", now), None);
    }
}
