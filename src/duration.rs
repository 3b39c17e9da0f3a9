//! Durations as people type them (`30m`, `2h`, `1d`, `0.5h`, or anything humantime reads)
//! and as `status` prints them (`Xh Ym Zs`).

use std::time::Duration;

use crate::error::{Error, Result};

/// Nobody reserves a GPU for longer than this on a shared host; a bigger value is a typo.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The store counts reservation times and heartbeats in whole seconds: a reservation, a
/// heartbeat interval or a heartbeat timeout shorter than this cannot be honoured.
pub const WHOLE_SECOND: Duration = Duration::from_secs(1);

const EXAMPLES: &str = "use a number with a unit, e.g. 30m, 2h, 1d, 0.5h or 1h30m (at most 30d)";

/// [`parse`] for what the store keeps in whole seconds (reservation lengths, heartbeat
/// intervals and timeouts): at least [`WHOLE_SECOND`].
pub fn parse_whole_seconds(text: &str) -> Result<Duration> {
    let duration = parse(text)?;
    if duration < WHOLE_SECOND {
        return Err(Error::usage(format!(
            "invalid duration '{text}': it is shorter than a second, \
             and reservations and heartbeats are counted in whole seconds; use at least 1s"
        )));
    }
    Ok(duration)
}

pub fn parse(text: &str) -> Result<Duration> {
    let trimmed = text.trim();
    let invalid = |why: &str| Error::usage(format!("invalid duration '{text}': {why}; {EXAMPLES}"));
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    if trimmed.starts_with('-') {
        return Err(invalid("it is negative"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(invalid("it has no unit"));
    }
    let duration = parse_decimal(trimmed)
        .or_else(|| humantime::parse_duration(trimmed).ok())
        .ok_or_else(|| invalid("it is not a duration"))?;
    if duration.is_zero() {
        return Err(invalid("it is zero"));
    }
    if duration > MAX_DURATION {
        return Err(invalid("it is longer than 30 days"));
    }
    Ok(duration)
}

/// The seed's decimal forms (`0.5h`, `1.5d`), which humantime does not read.
fn parse_decimal(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds_per_unit = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return None,
    };
    let seconds = value * seconds_per_unit;
    // Beyond the maximum the exact value no longer matters; this keeps from_secs_f64 safe.
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_DURATION.as_secs_f64() * 2.0)))
}

/// `status`'s elapsed-time format: `1h 2m 15s` (hours are not folded into days).
pub fn format_hms(seconds: i64) -> String {
    let seconds = seconds.max(0);
    format!(
        "{}h {}m {}s",
        seconds / 3600,
        (seconds % 3600) / 60,
        seconds % 60
    )
}

/// A compact form for what was asked: `4h`, `30m`, `1d`, `1h 30m`.
pub fn format_compact(duration: Duration) -> String {
    let mut rest = duration.as_secs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_forms() {
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("0.5h").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("90min").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn rejects_with_examples() {
        for bad in [
            "abc", "-5m", "0m", "5", "99999d", "", "0.0h", "1.2.3h", "31d",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.message.contains("e.g. 30m"), "{bad}: {err}");
            assert_eq!(err.exit_code, 2);
        }
    }

    #[test]
    fn whole_second_settings_refuse_less_than_a_second() {
        assert_eq!(parse_whole_seconds("1s").unwrap(), WHOLE_SECOND);
        assert_eq!(
            parse_whole_seconds("0.5h").unwrap(),
            Duration::from_secs(1800)
        );
        for short in ["500ms", "1ms", "0.9s", "999ms"] {
            let err = parse_whole_seconds(short).unwrap_err();
            assert!(err.message.contains("at least 1s"), "{short}: {err}");
            assert_eq!(err.exit_code, 2);
        }
        assert!(parse("500ms").is_ok(), "waits and timeouts may be shorter");
    }

    #[test]
    fn formats() {
        assert_eq!(format_hms(3735), "1h 2m 15s");
        assert_eq!(format_hms(0), "0h 0m 0s");
        assert_eq!(format_hms(-5), "0h 0m 0s");
        assert_eq!(format_compact(Duration::from_secs(4 * 3600)), "4h");
        assert_eq!(format_compact(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format_compact(Duration::from_secs(86400)), "1d");
    }

    proptest::proptest! {
        #[test]
        fn parsing_round_trips_with_formatting(seconds in 1u64..=MAX_DURATION.as_secs()) {
            let duration = Duration::from_secs(seconds);
            proptest::prop_assert_eq!(parse(&format_compact(duration)).unwrap(), duration);
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,20}") {
            let _ = parse(&text);
        }
    }
}
