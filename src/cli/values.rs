//! The value parsers of the command-line flags: sizes, counts and durations with their bounds.

/// Parses `10485760`, `512KiB`, `10MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`: binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("'{s}' is not a size (e.g. 10MiB)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' (use KiB, MiB or GiB)")),
    };
    n.checked_mul(factor).filter(|&b| b > 0).ok_or_else(|| format!("'{s}' is out of range"))
}

/// A count of things in flight or threads: 1 to 100000.
pub(super) fn parse_count(s: &str) -> Result<usize, String> {
    parse_from_1_to(s, 100_000)
}

/// A queue bound: 1 to 10 million records.
pub(super) fn parse_queue_bound(s: &str) -> Result<usize, String> {
    parse_from_1_to(s, 10_000_000)
}

pub(super) fn parse_from_1_to(s: &str, max: usize) -> Result<usize, String> {
    s.trim().parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| format!("'{s}' is not 1 to {max}"))
}

/// Parses `3s`, `500ms`, `2m`, or a bare number of seconds; up to an hour.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration_up_to(s, 3600.0)
}

/// A JWT lifetime bound: a duration up to 24 h.
pub fn parse_token_lifetime(s: &str) -> Result<std::time::Duration, String> {
    parse_duration_up_to(s, 86_400.0)
}

/// Parses `3s`, `500ms`, `2m`, `1h`, or a bare number of seconds, more than 0 and at most
/// `max_secs`.
pub(super) fn parse_duration_up_to(s: &str, max_secs: f64) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 3s, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit '{other}' (use ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs <= max_secs) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn token_lifetimes_parse_up_to_a_day() {
        assert_eq!(parse_token_lifetime("1h"), Ok(std::time::Duration::from_secs(3600)));
        assert_eq!(parse_token_lifetime("5m"), Ok(std::time::Duration::from_secs(300)));
        assert!(parse_token_lifetime("25h").is_err());
        assert!(parse_token_lifetime("0s").is_err());
        assert!(parse_duration("2h").is_err(), "timeouts stay under an hour");
    }
}
