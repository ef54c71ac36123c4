//! Sample requests (`samples/`) keep meaningful dates over time: each carries
//! `extension["org.leg-cramp-cds.sample"].anchor`, the instant its dates were written for, and
//! every FHIR date/dateTime in it is shifted by the whole days between the anchor and the
//! evaluation instant before use (by `eval` and by the demo page). A lab "6 days ago" stays
//! 6 days ago, whenever the sample is run.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::Value;

pub const SAMPLE_EXTENSION: &str = "org.leg-cramp-cds.sample";

/// The anchor instant of a sample request, if it is one.
pub fn anchor(request: &Value) -> Option<DateTime<Utc>> {
    let s = request.get("extension")?.get(SAMPLE_EXTENSION)?.get("anchor")?.as_str()?;
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.to_utc())
}

/// Shifts the sample's dates to `now`; returns the shift in days (0 if not a sample).
pub fn resolve(request: &mut Value, now: DateTime<Utc>) -> i64 {
    let Some(anchor) = anchor(request) else { return 0 };
    let days = (now.date_naive() - anchor.date_naive()).num_days();
    if days != 0 {
        for key in ["context", "prefetch"] {
            if let Some(v) = request.get_mut(key) {
                shift_dates(v, days);
            }
        }
        // Now anchored at the evaluation instant: resolving again changes nothing.
        request["extension"][SAMPLE_EXTENSION]["anchor"] =
            Value::String(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    days
}

/// Moves every FHIR date (`YYYY-MM-DD`) and dateTime string by `days`.
pub fn shift_dates(value: &mut Value, days: i64) {
    match value {
        Value::String(s) => {
            if let Some(shifted) = shift_one(s, days) {
                *s = shifted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shift_dates(v, days)),
        Value::Object(map) => map.values_mut().for_each(|v| shift_dates(v, days)),
        _ => {}
    }
}

fn shift_one(s: &str, days: i64) -> Option<String> {
    let b = s.as_bytes();
    let looks_like_date = b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && b[..4].iter().all(u8::is_ascii_digit);
    if !looks_like_date {
        return None;
    }
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some((d + Duration::days(days)).format("%Y-%m-%d").to_string());
    }
    if b[10] != b'T' {
        return None;
    }
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    Some((dt + Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Every resource of a request's prefetch (Bundles flattened) as a FHIR transaction Bundle
/// of `PUT Type/id` entries, so loading it twice is harmless.
pub fn transaction_bundle(request: &Value) -> Value {
    let mut entries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |r: &Value| {
        let (Some(kind), Some(id)) =
            (r.get("resourceType").and_then(Value::as_str), r.get("id").and_then(Value::as_str))
        else {
            return;
        };
        if seen.insert(format!("{kind}/{id}")) {
            entries
                .push(serde_json::json!({"resource": r, "request": {"method": "PUT", "url": format!("{kind}/{id}")}}));
        }
    };
    if let Some(prefetch) = request.get("prefetch").and_then(Value::as_object) {
        for v in prefetch.values() {
            match v.get("resourceType").and_then(Value::as_str) {
                Some("Bundle") => {
                    v["entry"].as_array().into_iter().flatten().filter_map(|e| e.get("resource")).for_each(&mut push)
                }
                Some(_) => push(v),
                None => {}
            }
        }
    }
    serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_shift_by_whole_days_and_other_strings_stay() {
        let mut v = json!({
            "extension": {"org.leg-cramp-cds.sample": {"anchor": "2026-06-15T12:00:00Z"}},
            "context": {"patientId": "2026-06-15x"},
            "prefetch": {"a": {"effectiveDateTime": "2026-06-09T12:00:00Z", "birthDate": "1960-02-29", "code": "2823-3", "n": 5}}
        });
        let now: DateTime<Utc> = "2026-06-25T08:00:00Z".parse().unwrap();
        assert_eq!(resolve(&mut v, now), 10);
        assert_eq!(v["prefetch"]["a"]["effectiveDateTime"], "2026-06-19T12:00:00Z");
        assert_eq!(v["prefetch"]["a"]["birthDate"], "1960-03-10");
        assert_eq!(v["prefetch"]["a"]["code"], "2823-3");
        assert_eq!(v["context"]["patientId"], "2026-06-15x");
        assert_eq!(v["extension"]["org.leg-cramp-cds.sample"]["anchor"], "2026-06-25T08:00:00Z");
        assert_eq!(resolve(&mut v, now), 0, "resolving twice is a no-op");
        assert_eq!(v["prefetch"]["a"]["effectiveDateTime"], "2026-06-19T12:00:00Z");
        let mut plain = json!({"prefetch": {"d": "2020-01-01"}});
        assert_eq!(resolve(&mut plain, now), 0);
        assert_eq!(plain["prefetch"]["d"], "2020-01-01");
    }
}
