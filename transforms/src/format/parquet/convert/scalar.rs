//! The OpenX rules for one scalar JSON value (integers from whole numbers
//! and numeric strings, numbers from strings, decimals rounded half up),
//! and the error a column gives when a value does not fit: the rules the
//! user reads in the [`super`] doc, in one place.

use super::ConvertError;
use crate::format::parquet::json::Json;

/// A scalar column refusing a value: a nesting mismatch if the value is
/// an object or an array.
pub(super) fn mismatch(path: &str, value: &Json, what: &str) -> ConvertError {
    mismatch_in(path, value, what, false)
}

/// A list, struct or map column refusing a value: always a nesting mismatch.
pub(super) fn nesting(path: &str, value: &Json, what: &str) -> ConvertError {
    mismatch_in(path, value, what, true)
}

pub(super) fn mismatch_in(path: &str, value: &Json, what: &str, nested_column: bool) -> ConvertError {
    let nested_value = matches!(value, Json::Array(_) | Json::Object(_));
    let nested = nested_value || nested_column;
    ConvertError {
        code: if nested {
            "Parquet.NestingMismatch"
        } else {
            "Parquet.TypeMismatch"
        },
        message: if nested_value {
            format!("column \"{path}\": {} is not {what}: {}", value.kind(), value.preview())
        } else {
            format!("column \"{path}\": {} is not {what}", value.preview())
        },
    }
}

pub(super) fn integer(value: &Json) -> Option<i64> {
    match value {
        Json::Int(n) => Some(*n),
        Json::Float(f) if f.fract() == 0.0 && *f >= -9.2e18 && *f <= 9.2e18 => Some(*f as i64),
        Json::Str(t) => t.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn float(value: &Json) -> Option<f64> {
    match value {
        Json::Int(n) => Some(*n as f64),
        Json::UInt(n) => Some(*n as f64),
        Json::Float(f) => Some(*f),
        Json::Str(t) => t.trim().parse().ok(),
        _ => None,
    }
}

/// Decimal text (`-12.345`, `1e3` is refused) to an unscaled i128, rounded
/// half up to `scale` digits; `None` past `precision` digits.
pub(super) fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let text = text.trim();
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = scale as usize;
    let mut unscaled: i128 = 0;
    for b in whole
        .bytes()
        .chain(fraction.bytes().chain(std::iter::repeat(b'0')).take(scale))
    {
        unscaled = unscaled.checked_mul(10)?.checked_add((b - b'0') as i128)?;
    }
    if fraction.len() > scale && fraction.as_bytes()[scale] >= b'5' {
        unscaled += 1;
    }
    if unscaled >= 10i128.pow(precision as u32) {
        return None;
    }
    Some(if negative { -unscaled } else { unscaled })
}
