//! Durations in the DSL: an integer and a unit (`500ms`, `10s`, `5m`, `4h`, `2d`).

/// A duration in milliseconds, parsed from the DSL's `<n><unit>` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Millis(pub u64);

/// A duration string that does not follow `<integer><ms|s|m|h|d>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{0}`: write an integer and a unit, e.g. 500ms, 10s, 5m, 4h, 2d")]
pub struct DurationError(pub String);

/// Parses `500ms`, `10s`, `5m`, `4h`, `2d`.
pub fn parse_duration(text: &str) -> Result<Millis, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| DurationError(text.to_owned()))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError(text.to_owned())),
    };
    n.checked_mul(factor).map(Millis).ok_or_else(|| DurationError(text.to_owned()))
}

/// Formats milliseconds the way a person reads them (`1.5s`, `250ms`, `4h`).
pub fn format_millis(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1_000.0),
        60_000..=3_599_999 if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        60_000..=3_599_999 => format!("{:.1}m", ms as f64 / 60_000.0),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ => format!("{:.1}h", ms as f64 / 3_600_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Millis(10_000)));
        assert_eq!(parse_duration("5m"), Ok(Millis(300_000)));
        assert_eq!(parse_duration("4h"), Ok(Millis(14_400_000)));
        assert_eq!(parse_duration("2d"), Ok(Millis(172_800_000)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "10", "s", "1.5s", "10 sec", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
