//! Timestamps and dates from JSON values, after Firehose's OpenX rules.
//!
//! A timestamp column accepts:
//! - ISO-8601 strings: `2026-11-01T12:30:00Z`, `2026-11-01T12:30:00.123+02:00`,
//!   `2026-11-01T12:30:00` (no zone: UTC), `2026-11-01` (midnight UTC);
//! - `yyyy-MM-dd HH:mm:ss[.fffffffff]` (a space instead of `T`, UTC unless a
//!   zone follows);
//! - epoch numbers, as JSON numbers or strings of digits: a magnitude below
//!   100,000,000,000 is epoch seconds (that is up to the year 5138, and may
//!   have a fraction), a larger one epoch milliseconds (from March 1973 on).
//!
//! Digits finer than the column's unit are truncated (towards the past).

use chrono::NaiveDate;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// Below this magnitude an epoch number is seconds, above it milliseconds.
pub const EPOCH_MILLIS_THRESHOLD: f64 = 100_000_000_000.0;

/// Nanoseconds since the epoch of an epoch number (seconds or milliseconds
/// by magnitude).
pub fn epoch_number_nanos(value: f64) -> Option<i128> {
    if !value.is_finite() {
        return None;
    }
    let nanos = if value.abs() < EPOCH_MILLIS_THRESHOLD {
        value * 1e9
    } else {
        value * 1e6
    };
    // Beyond what an i64 of nanoseconds holds in any unit we write: refuse.
    (nanos.abs() < 9.2e27).then_some(nanos as i128)
}

/// Nanoseconds since the epoch of an integer epoch number.
pub fn epoch_integer_nanos(value: i64) -> i128 {
    if (value.unsigned_abs() as f64) < EPOCH_MILLIS_THRESHOLD {
        value as i128 * NANOS_PER_SECOND
    } else {
        value as i128 * 1_000_000
    }
}

/// Nanoseconds since the epoch of a timestamp string.
pub fn parse_timestamp_nanos(text: &str) -> Option<i128> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
        || text.starts_with('-') && text.len() > 1 && text[1..].bytes().all(|b| b.is_ascii_digit())
    {
        return text.parse::<i64>().ok().map(epoch_integer_nanos);
    }
    let bytes = text.as_bytes();
    let date = parse_date(text.get(..10)?)?;
    let days = days_since_epoch(date) as i128;
    if bytes.len() == 10 {
        return Some(days * 86_400 * NANOS_PER_SECOND);
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let rest = &text[11..];
    let (hour, minute, rest) = (two(rest, 0)?, two(rest, 3)?, rest);
    if rest.as_bytes().get(2) != Some(&b':') {
        return None;
    }
    let mut pos = 5;
    let mut second = 0;
    let mut fraction_nanos: i128 = 0;
    if rest.as_bytes().get(pos) == Some(&b':') {
        second = two(rest, pos + 1)?;
        pos += 3;
        if matches!(rest.as_bytes().get(pos), Some(b'.' | b',')) {
            pos += 1;
            let digits = rest[pos..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let fraction: i128 = rest[pos..pos + digits].parse().ok()?;
            fraction_nanos = fraction * 10i128.pow(9 - digits as u32);
            pos += digits;
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let zone = rest[pos..].trim_start();
    let offset_seconds: i128 = match zone {
        "" | "Z" | "z" | "UTC" => 0,
        _ => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = &zone[1..];
            let (h, m) = match digits.len() {
                2 => (two(digits, 0)?, 0),
                4 => (two(digits, 0)?, two(digits, 2)?),
                5 if digits.as_bytes()[2] == b':' => (two(digits, 0)?, two(digits, 3)?),
                _ => return None,
            };
            sign * (h as i128 * 3600 + m as i128 * 60)
        }
    };
    let seconds = days * 86_400 + hour as i128 * 3600 + minute as i128 * 60 + second as i128 - offset_seconds;
    Some(seconds * NANOS_PER_SECOND + fraction_nanos)
}

fn two(text: &str, at: usize) -> Option<u32> {
    let digits = text.get(at..at + 2)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i32 = text[..4].parse().ok()?;
    NaiveDate::from_ymd_opt(year, two(text, 5)?, two(text, 8)?)
}

fn days_since_epoch(date: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    (date - epoch).num_days()
}

/// Days since the epoch of a date string: `yyyy-MM-dd`, or a timestamp
/// string (its UTC date).
pub fn parse_date_days(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.len() == 10 {
        return parse_date(text).map(|d| days_since_epoch(d) as i32);
    }
    let nanos = parse_timestamp_nanos(text)?;
    i32::try_from(nanos.div_euclid(86_400 * NANOS_PER_SECOND)).ok()
}

/// Nanoseconds to the column unit's count, truncated towards the past.
pub fn nanos_to_unit(nanos: i128, unit: arrow_schema::TimeUnit) -> Option<i64> {
    let per = match unit {
        arrow_schema::TimeUnit::Second => NANOS_PER_SECOND,
        arrow_schema::TimeUnit::Millisecond => 1_000_000,
        arrow_schema::TimeUnit::Microsecond => 1_000,
        arrow_schema::TimeUnit::Nanosecond => 1,
    };
    i64::try_from(nanos.div_euclid(per)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i128 = 1_518_033_528; // 2018-02-07T19:58:48Z

    #[test]
    fn every_accepted_form() {
        let s = NANOS_PER_SECOND;
        assert_eq!(parse_timestamp_nanos("2018-02-07T19:58:48Z"), Some(T * s));
        assert_eq!(parse_timestamp_nanos("2018-02-07T19:58:48"), Some(T * s));
        assert_eq!(parse_timestamp_nanos("2018-02-07T21:58:48+02:00"), Some(T * s));
        assert_eq!(parse_timestamp_nanos("2018-02-07T14:58:48-0500"), Some(T * s));
        assert_eq!(
            parse_timestamp_nanos("2018-02-07T19:58:48.123Z"),
            Some(T * s + 123_000_000)
        );
        assert_eq!(parse_timestamp_nanos("2018-02-07 19:58:48"), Some(T * s));
        assert_eq!(
            parse_timestamp_nanos("2018-02-07 19:58:48.123456789"),
            Some(T * s + 123_456_789)
        );
        assert_eq!(parse_timestamp_nanos("2018-02-07T19:58Z"), Some((T - 48) * s));
        assert_eq!(parse_timestamp_nanos("2018-02-07"), Some((T - 71_928) * s));
        assert_eq!(parse_timestamp_nanos("1518033528"), Some(T * s));
        assert_eq!(parse_timestamp_nanos("1518033528123"), Some(T * s + 123_000_000));
        assert_eq!(epoch_integer_nanos(1_518_033_528), T * s);
        assert_eq!(epoch_integer_nanos(1_518_033_528_123), T * s + 123_000_000);
        assert_eq!(epoch_number_nanos(1_518_033_528.5), Some(T * s + 500_000_000));
        for bad in [
            "abc",
            "2018-02-30",
            "2018-02-07T25:00:00",
            "2018-02-07X19:58:48",
            "2018-02-07T19:58:48.Z",
            "2018-02-07T19:58:48 CET",
        ] {
            assert_eq!(parse_timestamp_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn units_truncate_towards_the_past() {
        use arrow_schema::TimeUnit;
        assert_eq!(nanos_to_unit(1_999_999, TimeUnit::Millisecond), Some(1));
        assert_eq!(nanos_to_unit(-1, TimeUnit::Millisecond), Some(-1));
        assert_eq!(nanos_to_unit(T * NANOS_PER_SECOND, TimeUnit::Second), Some(T as i64));
        assert_eq!(parse_date_days("1970-01-02"), Some(1));
        assert_eq!(parse_date_days("1969-12-31T23:00:00Z"), Some(-1));
    }
}
