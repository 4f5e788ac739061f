//! Firehose's `!{timestamp:...}` patterns, which are Java
//! `DateTimeFormatter` patterns. The letters spillway supports: `yyyy`/`yy`
//! (year), `MM`/`M` (month), `dd`/`d` (day), `DDD` (day of year), `HH`/`H`
//! (hour), `mm` (minute), `ss` (second), `SSS` (millisecond); text in single
//! quotes and any character that is not a letter is copied as it is.

use chrono::{DateTime, Datelike, TimeZone, Timelike};

use super::template::{PrefixPart, TimeField};

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
        Ok(Self { parts })
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
    fn refuses_unknown_letters() {
        let err = TimestampPattern::parse("yyyy/QQ").unwrap_err();
        assert!(err.contains("\"QQ\""), "{err}");
        assert!(TimestampPattern::parse("'open").is_err());
        assert!(TimestampPattern::parse("yyy").is_err());
    }
}
