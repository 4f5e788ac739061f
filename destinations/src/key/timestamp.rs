//! Firehose's `!{timestamp:...}` patterns, which are Java
//! `DateTimeFormatter` patterns. The letters spillway supports: `yyyy`/`yy`
//! (year), `MM`/`M` (month), `dd`/`d` (day), `DDD` (day of year), `HH`/`H`
//! (hour), `mm` (minute), `ss` (second), `SSS` (millisecond); text in single
//! quotes and any character that is not a letter is copied as it is.

use chrono::{DateTime, Datelike, TimeZone, Timelike};

use super::parts::{PrefixPart, TimeField};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Year4,
    Year2,
    Month { padded: bool },
    Day { padded: bool },
    DayOfYear,
    Hour { padded: bool },
    Minute,
    Second,
    Millis,
}

/// A parsed timestamp pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TimestampPattern {
    parts: Vec<Part>,
    /// Per part: whether a key tells its field for certain (see
    /// `KeyTemplate::parse`). A field a key does not tell for certain is
    /// still matched, but not read.
    told: Vec<bool>,
}

impl TimestampPattern {
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == '\'')
                    .ok_or_else(|| format!("unterminated quote in pattern {pattern:?}"))?;
                let text: String = chars[i + 1..i + 1 + end].iter().collect();
                // '' is a literal quote.
                parts.push(Part::Literal(if end == 0 { "'".into() } else { text }));
                i += end + 2;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                parts.push(Part::Literal(c.to_string()));
                i += 1;
                continue;
            }
            let run = chars[i..].iter().take_while(|&&d| d == c).count();
            let part = match (c, run) {
                ('y', 4) | ('u', 4) => Part::Year4,
                ('y', 2) | ('u', 2) => Part::Year2,
                ('M', 1 | 2) => Part::Month { padded: run == 2 },
                ('d', 1 | 2) => Part::Day { padded: run == 2 },
                ('D', 3) => Part::DayOfYear,
                ('H', 1 | 2) => Part::Hour { padded: run == 2 },
                ('m', 2) => Part::Minute,
                ('s', 2) => Part::Second,
                ('S', 3) => Part::Millis,
                _ => {
                    let letters: String = std::iter::repeat_n(c, run).collect();
                    return Err(format!(
                        "unsupported pattern letters {letters:?} in {pattern:?} (supported: yyyy, yy, MM, M, dd, d, DDD, HH, H, mm, ss, SSS, 'quoted text')"
                    ));
                }
            };
            parts.push(part);
            i += run;
        }
        let told = vec![true; parts.len()];
        Ok(Self { parts, told })
    }

    /// Marks which of the pattern's fields a key tells for certain, in the
    /// order [`Self::parts`] gives them; literals take no value.
    pub(crate) fn set_told(&mut self, told: &mut impl Iterator<Item = bool>) {
        for (part, slot) in self.parts.iter().zip(self.told.iter_mut()) {
            if !matches!(part, Part::Literal(_)) {
                *slot = told.next().unwrap_or(false);
            }
        }
    }

    /// The pattern's pieces, appended to `out`.
    pub(crate) fn parts(&self, out: &mut Vec<PrefixPart>) {
        for part in &self.parts {
            let (letters, unit) = match part {
                Part::Literal(text) => {
                    out.push(PrefixPart::Text(text.clone()));
                    continue;
                }
                Part::Year4 => ("yyyy", TimeField::Year),
                Part::Year2 => ("yy", TimeField::Year),
                Part::Month { padded: true } => ("MM", TimeField::Month),
                Part::Month { padded: false } => ("M", TimeField::Month),
                Part::Day { padded: true } => ("dd", TimeField::Day),
                Part::Day { padded: false } => ("d", TimeField::Day),
                Part::DayOfYear => ("DDD", TimeField::Day),
                Part::Hour { padded: true } => ("HH", TimeField::Hour),
                Part::Hour { padded: false } => ("H", TimeField::Hour),
                Part::Minute => ("mm", TimeField::Minute),
                Part::Second => ("ss", TimeField::Second),
                Part::Millis => ("SSS", TimeField::Millisecond),
            };
            out.push(PrefixPart::Time { letters, unit });
        }
    }

    pub(crate) fn render<Tz: TimeZone>(&self, time: &DateTime<Tz>, out: &mut String)
    where
        Tz::Offset: std::fmt::Display,
    {
        use std::fmt::Write as _;
        for part in &self.parts {
            let _ = match part {
                Part::Literal(text) => {
                    out.push_str(text);
                    Ok(())
                }
                Part::Year4 => write!(out, "{:04}", time.year()),
                Part::Year2 => write!(out, "{:02}", time.year().rem_euclid(100)),
                Part::Month { padded: true } => write!(out, "{:02}", time.month()),
                Part::Month { padded: false } => write!(out, "{}", time.month()),
                Part::Day { padded: true } => write!(out, "{:02}", time.day()),
                Part::Day { padded: false } => write!(out, "{}", time.day()),
                Part::DayOfYear => write!(out, "{:03}", time.ordinal()),
                Part::Hour { padded: true } => write!(out, "{:02}", time.hour()),
                Part::Hour { padded: false } => write!(out, "{}", time.hour()),
                Part::Minute => write!(out, "{:02}", time.minute()),
                Part::Second => write!(out, "{:02}", time.second()),
                Part::Millis => write!(out, "{:03}", time.timestamp_subsec_millis()),
            };
        }
    }
}

/// The fields a key's timestamp text gave, gathered over every
/// `!{timestamp:...}` of a template (see [`TimestampPattern::match_prefix`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct TimeFields {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    hour: Option<u32>,
    minute: Option<u32>,
    second: Option<u32>,
    millis: Option<u32>,
}

/// The finest unit a key's time names: the key stands for every instant
/// from the time it shows to one unit later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Unit {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl TimeFields {
    /// Whether a year was read: without one, a key's time cannot be told.
    pub(crate) fn has_year(&self) -> bool {
        self.year.is_some()
    }

    /// The local time the fields name, and the unit it is given to; `None`
    /// without a year, or for a date that does not exist.
    pub(crate) fn local(&self) -> Option<(chrono::NaiveDateTime, Unit)> {
        let year = self.year?;
        // The key places its time down to its first missing field: finer
        // fields after a gap (a day without its month, minutes without the
        // hour) cannot, and the span is the unit before the gap.
        let (date, mut unit) = match (self.month, self.day, self.day_of_year) {
            (_, _, Some(ordinal)) => (chrono::NaiveDate::from_yo_opt(year, ordinal)?, Unit::Day),
            (Some(month), Some(day), None) => (chrono::NaiveDate::from_ymd_opt(year, month, day)?, Unit::Day),
            (Some(month), None, None) => (chrono::NaiveDate::from_ymd_opt(year, month, 1)?, Unit::Month),
            (None, _, None) => (chrono::NaiveDate::from_ymd_opt(year, 1, 1)?, Unit::Year),
        };
        let mut clock = [0u32; 4];
        if unit == Unit::Day {
            let finer = [
                (self.hour, Unit::Hour),
                (self.minute, Unit::Minute),
                (self.second, Unit::Second),
                (self.millis, Unit::Millisecond),
            ];
            for (slot, (field, field_unit)) in clock.iter_mut().zip(finer) {
                let Some(value) = field else { break };
                *slot = value;
                unit = field_unit;
            }
        }
        let time = chrono::NaiveTime::from_hms_milli_opt(clock[0], clock[1], clock[2], clock[3])?;
        Some((date.and_time(time), unit))
    }
}

/// A field read twice must read the same both times.
fn set<T: PartialEq>(field: &mut Option<T>, value: T) -> Option<()> {
    match field {
        Some(old) if *old != value => None,
        _ => {
            *field = Some(value);
            Some(())
        }
    }
}

/// Reads `min..=max` ASCII digits from the start of `text`.
fn digits(text: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let count = text.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if count < min {
        return None;
    }
    Some((text[..count].parse().ok()?, &text[count..]))
}

impl TimestampPattern {
    /// Reads the text this pattern renders from the start of `text`, into
    /// `fields`; returns the rest of `text`, or `None` if it does not
    /// start with such text.
    pub(crate) fn match_prefix<'t>(&self, text: &'t str, fields: &mut TimeFields) -> Option<&'t str> {
        let mut rest = text;
        for (part, &told) in self.parts.iter().zip(&self.told) {
            let (value, after) = match part {
                Part::Literal(literal) => {
                    rest = rest.strip_prefix(literal.as_str())?;
                    continue;
                }
                Part::Year4 => digits(rest, 4, 4)?,
                Part::Year2 | Part::Minute | Part::Second => digits(rest, 2, 2)?,
                Part::Month { padded } | Part::Day { padded } | Part::Hour { padded } => {
                    digits(rest, if *padded { 2 } else { 1 }, 2)?
                }
                Part::DayOfYear | Part::Millis => digits(rest, 3, 3)?,
            };
            rest = after;
            if !told {
                continue;
            }
            match part {
                Part::Year4 => set(&mut fields.year, value as i32)?,
                // Two digits do not tell the century (70 is 1970 as much as
                // 2070): a key read to the wrong century would be skipped
                // by a replay's time range, so the year is not read.
                Part::Year2 => {}
                Part::Month { .. } => set(&mut fields.month, value)?,
                Part::Day { .. } => set(&mut fields.day, value)?,
                Part::DayOfYear => set(&mut fields.day_of_year, value)?,
                Part::Hour { .. } => set(&mut fields.hour, value)?,
                Part::Minute => set(&mut fields.minute, value)?,
                Part::Second => set(&mut fields.second, value)?,
                Part::Millis => set(&mut fields.millis, value)?,
                Part::Literal(_) => unreachable!("handled above"),
            }
        }
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn render(pattern: &str) -> String {
        let time = Utc.with_ymd_and_hms(2026, 3, 7, 5, 4, 9).unwrap() + chrono::Duration::milliseconds(42);
        let mut out = String::new();
        TimestampPattern::parse(pattern).unwrap().render(&time, &mut out);
        out
    }

    #[test]
    fn renders_java_patterns() {
        assert_eq!(render("yyyy/MM/dd/HH"), "2026/03/07/05");
        assert_eq!(render("yyyy-MM-dd'T'HH:mm:ss.SSS"), "2026-03-07T05:04:09.042");
        assert_eq!(render("'year='yyyy/'month='M/'day='d"), "year=2026/month=3/day=7");
        assert_eq!(render("yy DDD H"), "26 066 5");
        assert_eq!(render("''yyyy"), "'2026");
    }

    #[test]
    fn reads_back_what_it_renders() {
        for pattern in [
            "yyyy/MM/dd/HH/",
            "'year='yyyy/'month='M/'day='d/",
            "yyyy DDD H",
            "yyyy-MM-dd'T'HH:mm:ss.SSS",
        ] {
            let text = format!("{}rest", render(pattern));
            let mut fields = TimeFields::default();
            let rest = TimestampPattern::parse(pattern)
                .unwrap()
                .match_prefix(&text, &mut fields)
                .unwrap();
            assert_eq!(rest, "rest", "{pattern}");
            let (local, _) = fields.local().unwrap();
            let mut again = String::new();
            TimestampPattern::parse(pattern)
                .unwrap()
                .render(&Utc.from_utc_datetime(&local), &mut again);
            assert_eq!(format!("{again}rest"), text, "{pattern}");
        }
        let mut fields = TimeFields::default();
        assert_eq!(
            TimestampPattern::parse("yyyy/MM/")
                .unwrap()
                .match_prefix("2026/3/", &mut fields),
            None
        );
        // Two digits of a year do not tell its century: not read.
        let mut fields = TimeFields::default();
        let pattern = TimestampPattern::parse("yy/MM/").unwrap();
        assert_eq!(pattern.match_prefix("70/01/rest", &mut fields), Some("rest"));
        assert!(!fields.has_year());
    }

    #[test]
    fn refuses_unknown_letters() {
        let err = TimestampPattern::parse("yyyy/QQ").unwrap_err();
        assert!(err.contains("\"QQ\""), "{err}");
        assert!(TimestampPattern::parse("'open").is_err());
        assert!(TimestampPattern::parse("yyy").is_err());
    }
}
