//! The partition columns of a data prefix, for a table that reads it
//! (Athena's partition projection): which parts of the prefix vary, what
//! each is named, and how Athena can enumerate its values without a
//! crawler.
//!
//! The prefix is cut at `/` into segments. The leading segments without
//! an expression are the table's location. After them:
//! - a Hive-style segment, `name=...` with a timestamp in its value, is the
//!   partition column `name`;
//! - consecutive segments made of timestamp fields (and text) are one
//!   column, as Athena's Firehose example does with `datehour` for the
//!   default `yyyy/MM/dd/HH/`: named `date` and its finest unit
//!   (`dateyear`, `datemonth`, `dateday`, `datehour`, `dateminute`,
//!   `datesecond`);
//! - a segment without an expression is text in the location template.
//!
//! A column whose values hold a year is a `date` projection (its format
//! is the prefix's own pattern, which Athena's `SimpleDateFormat` reads);
//! a single field without a year (`month=!{timestamp:MM}`) is an
//! `integer` projection over the field's range. What follows the last `/`
//! is part of the object names, not a directory: not a column.
//!
//! Not expressible, and reported: `!{firehose:random-string}` in a
//! directory (its values cannot be enumerated: the table is then left
//! unpartitioned, which Athena reads recursively), and fields that neither
//! rule above covers.
//!
//! TODO(dynamic partitioning): `!{partitionKeyFromQuery:x}` and
//! `!{partitionKeyFromLambda:x}` ([`PrefixPart::PartitionKey`]) leave the
//! table unpartitioned for now; a segment holding one should become a `string`
//! column `x` with an `injected` projection (Athena then needs the value in
//! each query's WHERE clause).

use chrono::{DateTime, Utc};
use spillway_destinations::key::{PrefixPart, TimeField};
use spillway_destinations::KeyTemplate;

/// How Athena enumerates a partition column's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Projection {
    /// `type = date`: values from `range` by `interval` `unit`s, formatted
    /// by `format`.
    Date {
        format: String,
        range: String,
        unit: &'static str,
    },
    /// `type = integer`: `range` = `low,high`, zero-padded to `digits`.
    Integer { range: String, digits: Option<usize> },
}

/// One partition column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionColumn {
    pub name: String,
    pub projection: Projection,
}

/// The layout of a data prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The leading text without expressions, up to its last `/`: the
    /// table's location below the destination.
    pub base: String,
    pub columns: Vec<PartitionColumn>,
    /// The rest of the directories, with `${column}` for each column
    /// (`storage.location.template` less the location).
    pub template: String,
    /// What could not be expressed.
    pub problems: Vec<String>,
}

/// One character or field of the prefix.
#[derive(Clone, Debug)]
enum Atom {
    Char(char),
    Time(&'static str, TimeField),
    Random,
}

/// The layout of `prefix`; date ranges start at `since`.
pub fn layout(prefix: &KeyTemplate, since: DateTime<Utc>) -> Layout {
    let mut atoms = Vec::new();
    for part in prefix.parts() {
        match part {
            PrefixPart::Text(text) => atoms.extend(text.chars().map(Atom::Char)),
            PrefixPart::Time { letters, unit } => atoms.push(Atom::Time(letters, unit)),
            // Not in a data prefix (the parser refuses it there).
            PrefixPart::RandomString | PrefixPart::ErrorOutputType => atoms.push(Atom::Random),
            // Not projected yet (see the TODO above): the table is left
            // unpartitioned, with a note.
            PrefixPart::PartitionKey { .. } => atoms.push(Atom::Random),
        }
    }
    // Directories: every segment that a `/` ends; the rest is part of the
    // object names.
    let mut segments: Vec<Vec<Atom>> = vec![Vec::new()];
    for atom in atoms {
        match atom {
            Atom::Char('/') => segments.push(Vec::new()),
            other => segments.last_mut().expect("one segment at least").push(other),
        }
    }
    segments.pop();
    let is_static = |segment: &[Atom]| segment.iter().all(|a| matches!(a, Atom::Char(_)));
    let fixed = segments.iter().take_while(|s| is_static(s)).count();
    let text = |segment: &[Atom]| -> String {
        segment
            .iter()
            .filter_map(|a| match a {
                Atom::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    };
    let mut layout = Layout {
        base: segments[..fixed].iter().map(|s| text(s) + "/").collect(),
        ..Layout::default()
    };
    let rest = &segments[fixed..];
    if rest.iter().any(|s| s.iter().any(|a| matches!(a, Atom::Random))) {
        layout.problems.push(
            "the prefix has !{firehose:random-string} in a directory, whose values cannot be enumerated: \
             the table is not partitioned (Athena reads every object below its location)"
                .to_owned(),
        );
        return layout;
    }
    let mut run: Vec<&[Atom]> = Vec::new();
    for segment in rest {
        let hive = hive_name(segment);
        let timed = !is_static(segment);
        if timed && hive.is_none() {
            run.push(segment);
            continue;
        }
        flush_run(&mut run, since, &mut layout);
        match hive {
            Some((name, value)) if !is_static(value) => {
                add_column(&mut layout, &name, value, since);
                layout.template.push_str(&format!("{name}=${{{name}}}/"));
            }
            _ => layout.template.push_str(&(text(segment) + "/")),
        }
    }
    flush_run(&mut run, since, &mut layout);
    if !layout.problems.is_empty() {
        // A template naming a column that is not there would find
        // nothing: the table is left unpartitioned instead.
        layout.columns.clear();
        layout.template.clear();
        layout
            .problems
            .push("the table is not partitioned (Athena reads every object below its location)".to_owned());
    }
    layout
}

/// `name` and the value's atoms of a Hive-style segment (`name=value`).
fn hive_name(segment: &[Atom]) -> Option<(String, &[Atom])> {
    let mut name = String::new();
    for (i, atom) in segment.iter().enumerate() {
        match atom {
            Atom::Char('=') if !name.is_empty() => return Some((name, &segment[i + 1..])),
            Atom::Char(c) => name.push(*c),
            _ => return None,
        }
    }
    None
}

/// Consecutive timestamp directories become one column.
fn flush_run(run: &mut Vec<&[Atom]>, since: DateTime<Utc>, layout: &mut Layout) {
    if run.is_empty() {
        return;
    }
    let mut atoms = Vec::new();
    for (i, segment) in run.iter().enumerate() {
        if i > 0 {
            atoms.push(Atom::Char('/'));
        }
        atoms.extend(segment.iter().cloned());
    }
    run.clear();
    let finest = atoms
        .iter()
        .filter_map(|a| match a {
            Atom::Time(_, unit) => Some(*unit),
            _ => None,
        })
        .max()
        .expect("a timed run has a field");
    let base = match finest {
        TimeField::Year => "dateyear",
        TimeField::Month => "datemonth",
        TimeField::Day => "dateday",
        TimeField::Hour => "datehour",
        TimeField::Minute => "dateminute",
        TimeField::Second | TimeField::Millisecond => "datesecond",
    };
    let mut name = base.to_owned();
    let mut n = 2;
    while layout.columns.iter().any(|c| c.name == name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    add_column(layout, &name, &atoms, since);
    layout.template.push_str(&format!("${{{name}}}/"));
}

fn add_column(layout: &mut Layout, name: &str, atoms: &[Atom], since: DateTime<Utc>) {
    if layout.columns.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
        layout
            .problems
            .push(format!("partition column {name:?} appears twice in the prefix"));
        return;
    }
    match projection(atoms, since) {
        Ok(projection) => layout.columns.push(PartitionColumn {
            name: name.to_owned(),
            projection,
        }),
        Err(problem) => layout.problems.push(format!("partition column {name:?}: {problem}")),
    }
}

fn projection(atoms: &[Atom], since: DateTime<Utc>) -> Result<Projection, String> {
    let fields: Vec<(&'static str, TimeField)> = atoms
        .iter()
        .filter_map(|a| match a {
            Atom::Time(letters, unit) => Some((*letters, *unit)),
            _ => None,
        })
        .collect();
    if fields.iter().any(|(_, unit)| *unit == TimeField::Year) {
        let mut format = String::new();
        let mut quoted = String::new();
        let flush = |quoted: &mut String, format: &mut String| {
            if quoted.is_empty() {
                return;
            }
            if quoted.chars().any(|c| c.is_ascii_alphabetic() || c == '\'') {
                format.push('\'');
                format.push_str(&quoted.replace('\'', "''"));
                format.push('\'');
            } else {
                format.push_str(quoted);
            }
            quoted.clear();
        };
        for atom in atoms {
            match atom {
                Atom::Char(c) => quoted.push(*c),
                Atom::Time(letters, _) => {
                    flush(&mut quoted, &mut format);
                    format.push_str(letters);
                }
                Atom::Random => unreachable!("refused before"),
            }
        }
        flush(&mut quoted, &mut format);
        let finest = fields.iter().map(|(_, u)| *u).max().expect("a year field");
        let unit = match finest {
            TimeField::Year => "YEARS",
            TimeField::Month => "MONTHS",
            TimeField::Day => "DAYS",
            TimeField::Hour => "HOURS",
            TimeField::Minute => "MINUTES",
            TimeField::Second => "SECONDS",
            TimeField::Millisecond => "MILLISECONDS",
        };
        let start = render(atoms, since);
        return Ok(Projection::Date {
            format,
            range: format!("{start},NOW"),
            unit,
        });
    }
    match (atoms, fields.as_slice()) {
        ([Atom::Time(..)], [(letters, unit)]) => {
            let (low, high) = match (*letters, unit) {
                ("DDD", _) => (1, 366),
                (_, TimeField::Month) => (1, 12),
                (_, TimeField::Day) => (1, 31),
                (_, TimeField::Hour) => (0, 23),
                (_, TimeField::Minute | TimeField::Second) => (0, 59),
                _ => (0, 999),
            };
            let digits = (letters.len() > 1).then_some(letters.len());
            Ok(Projection::Integer {
                range: format!("{low},{high}"),
                digits,
            })
        }
        _ => Err(
            "its values hold no year and more than one field (or text beside it): Athena can project neither a date nor an integer from them"
                .to_owned(),
        ),
    }
}

/// The atoms rendered at `time` (UTC): the start of a date range.
fn render(atoms: &[Atom], time: DateTime<Utc>) -> String {
    let mut out = String::new();
    for atom in atoms {
        match atom {
            Atom::Char(c) => out.push(*c),
            Atom::Time(letters, _) => {
                let pattern = match *letters {
                    "yyyy" => "%Y",
                    "yy" => "%y",
                    "MM" => "%m",
                    "M" => "%-m",
                    "dd" => "%d",
                    "d" => "%-d",
                    "DDD" => "%j",
                    "HH" => "%H",
                    "H" => "%-H",
                    "mm" => "%M",
                    "ss" => "%S",
                    _ => "000",
                };
                out.push_str(&time.format(pattern).to_string());
            }
            Atom::Random => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use spillway_destinations::key::TemplateKind;

    fn of(prefix: &str) -> Layout {
        let template = KeyTemplate::parse(prefix, TemplateKind::Data, chrono_tz::Tz::UTC).unwrap();
        layout(&template, Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
    }

    #[test]
    fn the_firehose_default_is_one_datehour_column() {
        let layout = of("events/");
        assert_eq!(layout.base, "events/");
        assert_eq!(layout.template, "${datehour}/");
        assert_eq!(
            layout.columns,
            [PartitionColumn {
                name: "datehour".into(),
                projection: Projection::Date {
                    format: "yyyy/MM/dd/HH".into(),
                    range: "2026/11/01/00,NOW".into(),
                    unit: "HOURS"
                }
            }]
        );
        assert!(layout.problems.is_empty());
    }

    #[test]
    fn hive_style_segments_are_columns_of_their_own() {
        let layout = of("logs/year=!{timestamp:yyyy}/month=!{timestamp:MM}/src=web/day=!{timestamp:d}/");
        assert_eq!(layout.base, "logs/");
        assert_eq!(layout.template, "year=${year}/month=${month}/src=web/day=${day}/");
        assert_eq!(
            layout.columns,
            [
                PartitionColumn {
                    name: "year".into(),
                    projection: Projection::Date {
                        format: "yyyy".into(),
                        range: "2026,NOW".into(),
                        unit: "YEARS"
                    }
                },
                PartitionColumn {
                    name: "month".into(),
                    projection: Projection::Integer {
                        range: "1,12".into(),
                        digits: Some(2)
                    }
                },
                PartitionColumn {
                    name: "day".into(),
                    projection: Projection::Integer {
                        range: "1,31".into(),
                        digits: None
                    }
                },
            ]
        );
        // Quoted text of a pattern counts as text: `'year='yyyy`.
        let quoted = of("!{timestamp:'year='yyyy/'dt='yyyy-MM-dd}/");
        assert_eq!(quoted.template, "year=${year}/dt=${dt}/");
        assert_eq!(
            quoted.columns[1].projection,
            Projection::Date {
                format: "yyyy-MM-dd".into(),
                range: "2026-11-01,NOW".into(),
                unit: "DAYS"
            }
        );
    }

    #[test]
    fn text_inside_a_date_is_quoted_and_what_cannot_be_projected_is_said() {
        let layout = of("a/!{timestamp:yyyy}/v1/!{timestamp:'w'MM}/file-!{timestamp:HH}");
        // `'w'MM` alone holds no year: neither a date nor an integer, so
        // no column is projected.
        assert_eq!((layout.base.as_str(), layout.template.as_str()), ("a/", ""));
        assert!(layout.columns.is_empty());
        assert!(
            layout.problems[0].starts_with("partition column \"datemonth\": its values hold no year"),
            "{:?}",
            layout.problems
        );
        let layout = of("x/!{timestamp:yyyy}/t!{timestamp:MM}/");
        assert_eq!(
            layout.columns[0].projection,
            Projection::Date {
                format: "yyyy'/t'MM".into(),
                range: "2026/t11,NOW".into(),
                unit: "MONTHS"
            }
        );
        let random = of("r/!{firehose:random-string}/!{timestamp:yyyy}/");
        assert_eq!((random.base.as_str(), random.columns.len()), ("r/", 0));
        assert!(random.problems[0].contains("random-string"), "{:?}", random.problems);
    }
}
