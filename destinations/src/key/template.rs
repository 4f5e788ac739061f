//! Prefix templates with Firehose's expressions:
//! `!{timestamp:<pattern>}`, `!{firehose:random-string}`, in the data
//! prefix only `!{partitionKeyFromQuery:NAME}` and
//! `!{partitionKeyFromLambda:NAME}` (dynamic partitioning: their values are
//! sanitised, see [`super::partition_value`]) and, in the error prefix
//! only, `!{firehose:error-output-type}`. A prefix with no timestamp
//! expression gets Firehose's default `yyyy/MM/dd/HH/` appended.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike as _, Utc};
use chrono_tz::Tz;
use rand::distr::{Alphanumeric, SampleString};

use super::object_key::ObjectKey;
use super::parts::PrefixPart;
use super::timestamp::{TimeFields, TimestampPattern, Unit};

/// Which prefix a template is: the expressions allowed differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateKind {
    Data,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Timestamp(TimestampPattern),
    RandomString,
    ErrorOutputType,
    FromQuery(String),
    FromLambda(String),
}

/// A parsed, checked prefix template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    segments: Vec<Segment>,
    time_zone: Tz,
}

/// What a template needs to render a prefix.
#[derive(Clone, Copy, Debug)]
pub struct KeyContext<'a> {
    /// The arrival time of the oldest record in the object.
    pub timestamp: DateTime<Utc>,
    /// The error output type, for the error prefix.
    pub error_output_type: Option<&'a str>,
    /// The object's partition keys (dynamic partitioning), by namespace:
    /// `partitionKeyFromQuery` and `partitionKeyFromLambda`.
    pub partition_keys: Option<(&'a PartitionValues, &'a PartitionValues)>,
}

/// Partition keys of one namespace: name → value.
pub type PartitionValues = BTreeMap<String, String>;

/// The span of time an object's prefix stands for: `start` inclusive,
/// `end` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSpan {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Why a template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// The length of `!{firehose:random-string}`, as Firehose.
const RANDOM_STRING_LEN: usize = 11;

impl KeyTemplate {
    pub fn parse(template: &str, kind: TemplateKind, time_zone: Tz) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                segments.push(Segment::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| TemplateError(format!("unterminated expression in {template:?}")))?;
            let expression = &after[..end];
            segments.push(parse_expression(expression, kind)?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        for segment in &segments {
            if let Segment::Literal(text) = segment {
                check_literal(text, template)?;
            }
        }
        if template.split('/').next() == Some(super::STAGING_DIR) {
            return Err(TemplateError(format!(
                "{template:?} starts with '{}/', which is reserved for temporary files",
                super::STAGING_DIR
            )));
        }
        if !segments.iter().any(|s| matches!(s, Segment::Timestamp(_))) {
            let default = TimestampPattern::parse("yyyy/MM/dd/HH/").expect("the default pattern parses");
            segments.push(Segment::Timestamp(default));
        }
        mark_told_fields(&mut segments, template)?;
        let parsed = Self {
            source: template.to_owned(),
            segments,
            time_zone,
        };
        parsed.check_rendered()?;
        Ok(parsed)
    }

    /// Refuses a template whose keys the stores would refuse. The literals
    /// are checked above, but quoted text in a timestamp pattern (`'/'`,
    /// `'..'`) and a literal next to an expression can make what no literal
    /// holds alone. Digits and alphanumerics never make a `/`, a `.` or a
    /// control character, so one rendering shows the shape of them all.
    fn check_rendered(&self) -> Result<(), TemplateError> {
        let sample = self.render(&KeyContext {
            timestamp: DateTime::<Utc>::from_timestamp(1_795_315_074, 0).expect("a valid time"),
            error_output_type: Some("processing-failed"),
            partition_keys: None,
        });
        match ObjectKey::new(format!("{sample}object")) {
            Ok(_) => Ok(()),
            Err(invalid) => Err(TemplateError(format!(
                "makes keys such as {:?}, which {}: a prefix must make a relative key without '.' or '..' segments, '\\' or control characters",
                invalid.key, invalid.reason
            ))),
        }
    }

    /// The text every key of this template starts with: its literal text
    /// up to the first timestamp or random string, with
    /// `!{firehose:error-output-type}` as `error_output_type`.
    pub fn root(&self, error_output_type: Option<&str>) -> String {
        let mut root = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => root.push_str(text),
                Segment::ErrorOutputType => root.push_str(error_output_type.unwrap_or("unknown")),
                Segment::Timestamp(_) | Segment::RandomString | Segment::FromQuery(_) | Segment::FromLambda(_) => break,
            }
        }
        root
    }

    /// Reads a key this template made back: the span of time its prefix
    /// stands for (records whose oldest arrival lies in it: from the time
    /// the key shows to one unit of its finest field later, in UTC), and
    /// the rest of the key after the prefix. The span is `None` when the
    /// template names no year (`!{timestamp:HH}`): the key is the
    /// template's, but its time cannot be told. `None` if `key` is not of
    /// this template, or names a time that does not exist.
    pub fn time_of<'k>(&self, key: &'k str, error_output_type: Option<&str>) -> Option<(Option<TimeSpan>, &'k str)> {
        use chrono::TimeZone as _;
        let (fields, rest) = Matcher {
            segments: &self.segments,
            key,
            error_output_type,
            failed: std::collections::HashSet::new(),
        }
        .from(0, 0, TimeFields::default())?;
        if !fields.has_year() {
            return Some((None, rest));
        }
        let (local, unit) = fields.local()?;
        let end_local = match unit {
            Unit::Year => local.with_year(local.year() + 1)?,
            Unit::Month => local.checked_add_months(chrono::Months::new(1))?,
            Unit::Day => local + chrono::Duration::days(1),
            Unit::Hour => local + chrono::Duration::hours(1),
            Unit::Minute => local + chrono::Duration::minutes(1),
            Unit::Second => local + chrono::Duration::seconds(1),
            Unit::Millisecond => local + chrono::Duration::milliseconds(1),
        };
        // Around a change of clocks a local time may be ambiguous or
        // missing: the widest span it can stand for. A key whose start is
        // missing (Lord Howe's 02:00 on the day its clocks go forward half
        // an hour, a midnight where clocks went forward at midnight) still
        // stands for the time from the end of the gap.
        let start = self.first_instant_from(local)?;
        let end = match self.time_zone.from_local_datetime(&end_local).latest() {
            Some(end) => end.with_timezone(&Utc),
            None => self.first_instant_from(end_local)?,
        };
        Some((Some(TimeSpan { start, end }), rest))
    }

    /// The earliest instant whose local time is `local` or, where clocks
    /// skipped `local`, the first after it (gaps are at most a day long:
    /// Samoa skipped 30 December 2011). Quarter hours first, then the
    /// minutes of the last one: a key in a gap costs at most about 115
    /// look-ups, whatever a bucket holds.
    fn first_instant_from(&self, local: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
        use chrono::TimeZone as _;
        let at = |minutes: i64| {
            self.time_zone
                .from_local_datetime(&(local + chrono::Duration::minutes(minutes)))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        };
        if let Some(found) = at(0) {
            return Some(found);
        }
        let quarter = (1..=25 * 4).find(|quarter| at(quarter * 15).is_some())?;
        ((quarter - 1) * 15 + 1..=quarter * 15).find_map(at)
    }

    /// The template as configured.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The time zone of its timestamp expressions.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// What the template is made of, in order (the default `yyyy/MM/dd/HH/`
    /// included where it applies), for tools that describe the layout of
    /// the keys, such as the Athena DDL of `spillway schema`.
    pub fn parts(&self) -> Vec<PrefixPart> {
        flatten(&self.segments)
    }

    /// Renders the prefix for one object.
    pub fn render(&self, context: &KeyContext<'_>) -> String {
        let mut out = String::new();
        let local_time = context.timestamp.with_timezone(&self.time_zone);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Timestamp(pattern) => pattern.render(&local_time, &mut out),
                Segment::RandomString => out.push_str(&Alphanumeric.sample_string(&mut rand::rng(), RANDOM_STRING_LEN)),
                Segment::ErrorOutputType => out.push_str(context.error_output_type.unwrap_or("unknown")),
                Segment::FromQuery(name) => out.push_str(&partition_value(context.partition_keys.map(|k| k.0), name)),
                Segment::FromLambda(name) => out.push_str(&partition_value(context.partition_keys.map(|k| k.1), name)),
            }
        }
        out
    }

    /// The partition keys the template names: (`partitionKeyFromQuery`
    /// names, `partitionKeyFromLambda` names).
    pub fn partition_keys(&self) -> (Vec<&str>, Vec<&str>) {
        let mut query = Vec::new();
        let mut lambda = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::FromQuery(name) => query.push(name.as_str()),
                Segment::FromLambda(name) => lambda.push(name.as_str()),
                _ => {}
            }
        }
        (query, lambda)
    }
}

/// Matches the template's segments from `index` on against `key` from
/// `at` on: the time fields read and the rest of the key, or `None`. A
/// partition value is any text without a `/` (sanitised values never hold
/// one); where the template puts something other than a `/` right after it
/// (the default `yyyy/MM/dd/HH/` after
/// `customer=!{partitionKeyFromQuery:customer}`), each shorter length is
/// tried, longest first, until the rest of the template matches and leaves
/// a name. A value that ends the template runs into the object's name: the
/// rest is both.
///
/// A key made to fail every split must not hold a replay up: values side
/// by side are read as one (together they are any text without a `/`), and
/// a state that failed once (segment, place in the key, time fields so
/// far) is never tried again, so the work stays within the key's length
/// times the template's.
struct Matcher<'t, 'k> {
    segments: &'t [Segment],
    key: &'k str,
    error_output_type: Option<&'t str>,
    failed: std::collections::HashSet<(usize, usize, TimeFields)>,
}

impl<'k> Matcher<'_, 'k> {
    fn from(&mut self, index: usize, at: usize, mut fields: TimeFields) -> Option<(TimeFields, &'k str)> {
        let key = self.key;
        let mut rest = &key[at..];
        for (index, segment) in self.segments.iter().enumerate().skip(index) {
            rest = match segment {
                Segment::Literal(text) => rest.strip_prefix(text.as_str())?,
                Segment::ErrorOutputType => rest.strip_prefix(self.error_output_type.unwrap_or("unknown"))?,
                Segment::RandomString => {
                    let random = rest.get(..RANDOM_STRING_LEN)?;
                    if !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return None;
                    }
                    &rest[RANDOM_STRING_LEN..]
                }
                Segment::Timestamp(pattern) => pattern.match_prefix(rest, &mut fields)?,
                Segment::FromQuery(_) | Segment::FromLambda(_) => {
                    // Values side by side read as one: together they are
                    // any text without a `/`, however it is split.
                    let mut index = index;
                    while matches!(
                        self.segments.get(index + 1),
                        Some(Segment::FromQuery(_) | Segment::FromLambda(_))
                    ) {
                        index += 1;
                    }
                    if index + 1 == self.segments.len() {
                        // The value runs into the object's name: the rest
                        // is both, inseparable.
                        return (!rest.is_empty()).then_some((fields, rest));
                    }
                    let start = key.len() - rest.len();
                    let longest = rest.find('/').unwrap_or(rest.len());
                    for end in (0..=longest).rev().filter(|&end| rest.is_char_boundary(end)) {
                        let state = (index + 1, start + end, fields.clone());
                        if self.failed.contains(&state) {
                            continue;
                        }
                        if let Some(found) = self.from(index + 1, start + end, fields.clone()) {
                            return Some(found);
                        }
                        self.failed.insert(state);
                    }
                    return None;
                }
            };
        }
        // Every object has a name after its prefix.
        (!rest.is_empty()).then_some((fields, rest))
    }
}

/// The template's pieces in order, its timestamp patterns' fields and
/// text included.
fn flatten(segments: &[Segment]) -> Vec<PrefixPart> {
    let mut parts = Vec::new();
    for segment in segments {
        match segment {
            Segment::Literal(text) => parts.push(PrefixPart::Text(text.clone())),
            Segment::Timestamp(pattern) => pattern.parts(&mut parts),
            Segment::RandomString => parts.push(PrefixPart::RandomString),
            Segment::ErrorOutputType => parts.push(PrefixPart::ErrorOutputType),
            Segment::FromQuery(name) => parts.push(PrefixPart::PartitionKey {
                name: name.clone(),
                from_lambda: false,
            }),
            Segment::FromLambda(name) => parts.push(PrefixPart::PartitionKey {
                name: name.clone(),
                from_lambda: true,
            }),
        }
    }
    parts
}

/// Decides which time fields a key tells for certain, so that the archive
/// source never reads a key to a wrong time (a replay with `--from` and
/// `--to` would skip the object). A partition value may hold digits and
/// any text but `/`, so where one ends is certain only from the `/` after
/// it. A field is told for certain when it is placed from the left (only
/// text and fixed-width pieces since the last `/`) or from the right
/// (only text and fixed-width pieces up to the next `/`). In
/// `!{partitionKeyFromQuery:k}!{timestamp:yyyy}!{partitionKeyFromQuery:k}`
/// it is neither: `0`, 1970, `0` and `01`, 9700, `` make the same key, so
/// the year is not read and the key's time is not told. A field without
/// padding (`M`, `d`, `H`) has one or two digits: it must be followed by
/// text that is not a digit, or its keys could not be read back at all.
fn mark_told_fields(segments: &mut [Segment], template: &str) -> Result<(), TemplateError> {
    let parts = flatten(segments);
    let unpadded = |letters: &str| letters.len() == 1;
    for (index, part) in parts.iter().enumerate() {
        let PrefixPart::Time { letters, .. } = part else {
            continue;
        };
        if unpadded(letters)
            && !matches!(parts.get(index + 1), Some(PrefixPart::Text(text)) if !text.starts_with(|c: char| c.is_ascii_digit()))
        {
            return Err(TemplateError(format!(
                "{template:?}: the timestamp field {letters:?} has one or two digits and is not followed by text that is not a digit, so a key could not be read back to its time; use {letters}{letters}, or put a separator such as '/' after it"
            )));
        }
    }
    let fixed_width = |part: &PrefixPart| match part {
        PrefixPart::Text(text) => !text.contains('/'),
        PrefixPart::Time { letters, .. } => !unpadded(letters),
        PrefixPart::RandomString | PrefixPart::ErrorOutputType => true,
        PrefixPart::PartitionKey { .. } => false,
    };
    let mut told = Vec::new();
    let mut placed_from_left = true;
    for (index, part) in parts.iter().enumerate() {
        match part {
            PrefixPart::Text(text) if text.contains('/') => placed_from_left = true,
            PrefixPart::PartitionKey { .. } => placed_from_left = false,
            PrefixPart::Time { letters, .. } => {
                let placed_from_right = !unpadded(letters)
                    && parts[index + 1..]
                        .iter()
                        .find(|next| !fixed_width(next))
                        .is_some_and(|next| matches!(next, PrefixPart::Text(_)));
                told.push(placed_from_left || placed_from_right);
            }
            _ => {}
        }
    }
    let mut told = told.into_iter();
    for segment in segments {
        if let Segment::Timestamp(pattern) = segment {
            pattern.set_told(&mut told);
        }
    }
    Ok(())
}

fn parse_expression(expression: &str, kind: TemplateKind) -> Result<Segment, TemplateError> {
    let (namespace, value) = expression.split_once(':').ok_or_else(|| {
        TemplateError(format!(
            "expression !{{{expression}}} has no namespace: expected !{{namespace:value}}"
        ))
    })?;
    match (namespace, value) {
        ("timestamp", pattern) => TimestampPattern::parse(pattern)
            .map(Segment::Timestamp)
            .map_err(TemplateError),
        ("firehose", "random-string") => Ok(Segment::RandomString),
        ("firehose", "error-output-type") if kind == TemplateKind::Error => Ok(Segment::ErrorOutputType),
        ("firehose", "error-output-type") => Err(TemplateError(
            "!{firehose:error-output-type} is only allowed in error_prefix".into(),
        )),
        ("partitionKeyFromQuery" | "partitionKeyFromLambda", _) if kind == TemplateKind::Error => Err(TemplateError(
            format!("!{{{expression}}} is only allowed in prefix: error records are not partitioned"),
        )),
        ("partitionKeyFromQuery" | "partitionKeyFromLambda", name) if !is_key_name(name) => Err(TemplateError(format!(
            "!{{{expression}}}: {name:?} is not a partition key name: expected 1 to 64 characters of A-Z a-z 0-9 _ -"
        ))),
        ("partitionKeyFromQuery", name) => Ok(Segment::FromQuery(name.to_owned())),
        ("partitionKeyFromLambda", name) => Ok(Segment::FromLambda(name.to_owned())),
        _ => Err(TemplateError(format!(
            "unknown expression !{{{expression}}} (allowed: !{{timestamp:<pattern>}}, !{{firehose:random-string}}, !{{firehose:error-output-type}} in error_prefix)"
        ))),
    }
}

fn is_key_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The sanitised value of `name` (empty when absent: the router sends a
/// record without its keys to the error output, so this is not reached).
fn partition_value(keys: Option<&BTreeMap<String, String>>, name: &str) -> String {
    let value = keys.and_then(|k| k.get(name)).map_or("", String::as_str);
    super::partition_value::sanitize_partition_value(value)
}

fn check_literal(text: &str, template: &str) -> Result<(), TemplateError> {
    if text.chars().any(char::is_control) {
        return Err(TemplateError(format!("{template:?} contains a control character")));
    }
    if text.contains('\\') {
        return Err(TemplateError(format!("{template:?} contains '\\'")));
    }
    if text.split('/').any(|s| s == "..") {
        return Err(TemplateError(format!("{template:?} contains a '..' segment")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partition values side by side before a timestamp make the ways to
    /// split a key multiply: a key made to fail every split is given up
    /// after a bounded number of tries, quickly, instead of holding a
    /// replay up.
    #[test]
    fn a_key_made_to_be_slow_is_given_up_after_bounded_tries() {
        let template = KeyTemplate::parse(
            "!{partitionKeyFromQuery:a}!{partitionKeyFromQuery:b}!{partitionKeyFromQuery:c}!{timestamp:yyyy}/",
            TemplateKind::Data,
            chrono_tz::UTC,
        )
        .unwrap();
        let key = format!("{}/name", "x".repeat(1000));
        let started = std::time::Instant::now();
        assert!(template.time_of(&key, None).is_none());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // A key it made still reads back.
        let good = "ab12026/name";
        assert!(template.time_of(good, None).is_some());
    }
    use crate::key::TimeField;
    use chrono::TimeZone;

    #[test]
    fn keys_are_read_back_to_the_span_of_time_their_prefix_stands_for() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap();
        let cases = [
            (
                "events/",
                chrono_tz::UTC,
                Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).unwrap(),
                3600,
            ),
            (
                "d=!{timestamp:yyyy-MM-dd}/!{firehose:random-string}/",
                chrono_tz::UTC,
                Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap(),
                86400,
            ),
            (
                "!{timestamp:yyyy/MM/dd/HH}/",
                chrono_tz::Asia::Kolkata,
                Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap(),
                3600,
            ),
        ];
        for (text, zone, start, seconds) in cases {
            let template = KeyTemplate::parse(text, TemplateKind::Data, zone).unwrap();
            let key = format!(
                "{}name.jsonl",
                template.render(&KeyContext {
                    timestamp: at,
                    error_output_type: None,
                    partition_keys: None,
                })
            );
            let (span, rest) = template.time_of(&key, None).unwrap_or_else(|| panic!("{key}"));
            let span = span.unwrap();
            assert_eq!(rest, "name.jsonl", "{key}");
            assert_eq!(span.start, start, "{key}");
            assert_eq!((span.end - span.start).num_seconds(), seconds, "{key}");
        }
        let errors = KeyTemplate::parse(
            crate::objects::DEFAULT_ERROR_PREFIX,
            TemplateKind::Error,
            chrono_tz::UTC,
        )
        .unwrap();
        assert_eq!(errors.root(Some("processing-failed")), "errors/processing-failed/");
        let (span, rest) = errors
            .time_of("errors/processing-failed/2026/11/22/23/x", Some("processing-failed"))
            .unwrap();
        assert_eq!(
            (span.unwrap().start, rest),
            (Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).unwrap(), "x")
        );
        assert!(errors
            .time_of("errors/delivery-failed/2026/11/22/23/x", Some("processing-failed"))
            .is_none());
        let data = KeyTemplate::parse("events/", TemplateKind::Data, chrono_tz::UTC).unwrap();
        assert!(data.time_of("events/2026/13/22/23/x", None).is_none());
        assert!(data.time_of("other/2026/11/22/23/x", None).is_none());
        let yearless = KeyTemplate::parse("hour=!{timestamp:HH}/", TemplateKind::Data, chrono_tz::UTC).unwrap();
        assert_eq!(yearless.time_of("hour=07/x", None), Some((None, "x")));
        assert!(yearless.time_of("hour=7/x", None).is_none());
    }

    fn context(error_output_type: Option<&str>) -> KeyContext<'_> {
        KeyContext {
            timestamp: Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap(),
            error_output_type,
            partition_keys: None,
        }
    }

    fn render(template: &str, kind: TemplateKind) -> String {
        KeyTemplate::parse(template, kind, Tz::UTC)
            .unwrap()
            .render(&context(Some("processing-failed")))
    }

    #[test]
    fn parts_show_the_fields_of_each_expression_and_the_default() {
        let template = KeyTemplate::parse(
            "logs/h=!{timestamp:'x'H}/!{firehose:random-string}",
            TemplateKind::Data,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(
            template.parts(),
            [
                PrefixPart::Text("logs/h=".into()),
                PrefixPart::Text("x".into()),
                PrefixPart::Time {
                    letters: "H",
                    unit: TimeField::Hour
                },
                PrefixPart::Text("/".into()),
                PrefixPart::RandomString,
            ]
        );
        let default = KeyTemplate::parse("events/", TemplateKind::Data, Tz::UTC).unwrap();
        let letters: Vec<&str> = default
            .parts()
            .iter()
            .filter_map(|p| match p {
                PrefixPart::Time { letters, .. } => Some(*letters),
                _ => None,
            })
            .collect();
        assert_eq!(letters, ["yyyy", "MM", "dd", "HH"]);
    }

    #[test]
    fn timestamp_expressions() {
        assert_eq!(
            render("events/!{timestamp:yyyy/MM/dd/HH}/", TemplateKind::Data),
            "events/2026/11/22/23/"
        );
        assert_eq!(
            render("y=!{timestamp:yyyy}/m=!{timestamp:MM}/", TemplateKind::Data),
            "y=2026/m=11/"
        );
    }

    #[test]
    fn default_timestamp_is_appended_when_absent() {
        assert_eq!(render("events/", TemplateKind::Data), "events/2026/11/22/23/");
        assert_eq!(render("", TemplateKind::Data), "2026/11/22/23/");
    }

    #[test]
    fn error_output_type_only_in_error_prefix() {
        assert_eq!(
            render(
                "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/",
                TemplateKind::Error
            ),
            "errors/processing-failed/2026/11/22/"
        );
        let err = KeyTemplate::parse("e/!{firehose:error-output-type}/", TemplateKind::Data, Tz::UTC).unwrap_err();
        assert!(err.0.contains("only allowed in error_prefix"), "{err}");
    }

    #[test]
    fn random_string_is_eleven_alphanumerics_and_changes() {
        let template = KeyTemplate::parse("r/!{firehose:random-string}/", TemplateKind::Data, Tz::UTC).unwrap();
        let a = template.render(&context(None));
        let b = template.render(&context(None));
        let random = a.strip_prefix("r/").unwrap().split('/').next().unwrap();
        assert_eq!(random.len(), 11);
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn time_zone_applies_to_timestamps() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let template = KeyTemplate::parse("!{timestamp:yyyy/MM/dd/HH}/", TemplateKind::Data, tokyo).unwrap();
        assert_eq!(template.render(&context(None)), "2026/11/23/08/");
    }

    #[test]
    fn refuses_what_a_timestamp_pattern_makes_of_a_key() {
        let err = KeyTemplate::parse("a/!{timestamp:'..'}/", TemplateKind::Data, Tz::UTC).unwrap_err();
        assert!(
            err.0
                .starts_with("makes keys such as \"a/../object\", which contains a '.' or '..' segment"),
            "{err}"
        );
        let err = KeyTemplate::parse("!{timestamp:'/'yyyy}/", TemplateKind::Data, Tz::UTC).unwrap_err();
        assert!(
            err.0
                .starts_with("makes keys such as \"/2026/object\", which starts with '/'"),
            "{err}"
        );
        assert!(KeyTemplate::parse("a/!{timestamp:'..x'}/", TemplateKind::Data, Tz::UTC).is_ok());
    }

    #[test]
    fn partition_keys_render_sanitised() {
        let template = KeyTemplate::parse(
            "c=!{partitionKeyFromQuery:customer}/l=!{partitionKeyFromLambda:day}/",
            TemplateKind::Data,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(template.partition_keys(), (vec!["customer"], vec!["day"]));
        let query = BTreeMap::from([("customer".to_owned(), "../etc".to_owned())]);
        let lambda = BTreeMap::from([("day".to_owned(), "2026/11".to_owned())]);
        let rendered = template.render(&KeyContext {
            partition_keys: Some((&query, &lambda)),
            ..context(None)
        });
        assert_eq!(rendered, "c=..%2Fetc/l=2026%2F11/2026/11/22/23/");
    }

    /// Where a partition value's end is a guess, the time fields after it
    /// are not read: `0`, 1970, `0` and `01`, 9700, `` make the same key.
    /// Where a `/` places them, they are.
    #[test]
    fn time_fields_a_key_does_not_tell_for_certain_are_not_read() {
        let ambiguous = KeyTemplate::parse(
            "!{partitionKeyFromQuery:k}!{timestamp:yyyy}!{partitionKeyFromQuery:k}",
            TemplateKind::Data,
            Tz::UTC,
        )
        .unwrap();
        let (span, _) = ambiguous.time_of("019700stream-file-x-0-0.jsonl", None).unwrap();
        assert_eq!(span, None);
        for (template, key, year) in [
            (
                "k=!{partitionKeyFromQuery:k}!{timestamp:yyyy}/",
                "k=0120261970/name",
                1970,
            ),
            ("!{timestamp:yyyy}!{partitionKeyFromQuery:k}", "19702026name", 1970),
            (
                "!{partitionKeyFromQuery:k}/!{timestamp:yyyy}!{partitionKeyFromQuery:j}/",
                "2025/19702026/name",
                1970,
            ),
            ("!{timestamp:yyyy'-'M'-'d}/", "1970-1-12/name", 1970),
        ] {
            let parsed = KeyTemplate::parse(template, TemplateKind::Data, Tz::UTC).unwrap();
            let (span, rest) = parsed.time_of(key, None).unwrap();
            assert_eq!(span.unwrap().start.year(), year, "{template}");
            assert!(rest.ends_with("name"), "{template}");
        }
        for template in [
            "!{partitionKeyFromQuery:k}!{timestamp:yyyy}-!{partitionKeyFromQuery:j}/",
            "!{partitionKeyFromQuery:k}!{timestamp:yyyy}",
        ] {
            let parsed = KeyTemplate::parse(template, TemplateKind::Data, Tz::UTC).unwrap();
            assert!(parsed.parts().iter().any(|p| matches!(p, PrefixPart::Time { .. })));
            let key = "ab2026-c/name";
            if let Some((span, _)) = parsed.time_of(key, None) {
                assert_eq!(span, None, "{template}");
            }
        }
    }

    /// A local time the clocks skipped still reads back: the key stands
    /// for the time from the end of the gap.
    #[test]
    fn a_key_whose_local_start_was_skipped_by_the_clocks_reads_back() {
        for (zone, key, instant) in [
            // Lord Howe went from 02:00 to 02:30 on 26 October 1997.
            (
                chrono_tz::Australia::Lord_Howe,
                "1997/10/26/02/name",
                Utc.with_ymd_and_hms(1997, 10, 25, 15, 30, 0).unwrap(),
            ),
            // Sao Paulo went from midnight to 01:00 on 4 November 2018.
            (
                chrono_tz::America::Sao_Paulo,
                "2018/11/04/01/name",
                Utc.with_ymd_and_hms(2018, 11, 4, 3, 0, 0).unwrap(),
            ),
        ] {
            let template = KeyTemplate::parse("", TemplateKind::Data, zone).unwrap();
            let (span, rest) = template.time_of(key, None).unwrap();
            let span = span.unwrap();
            assert_eq!(rest, "name");
            assert!(span.start <= instant && instant < span.end, "{key}: {span:?}");
        }
        let day = KeyTemplate::parse(
            "!{timestamp:yyyy/MM/dd}/",
            TemplateKind::Data,
            chrono_tz::America::Sao_Paulo,
        )
        .unwrap();
        let (span, _) = day.time_of("2018/11/04/name", None).unwrap();
        let span = span.unwrap();
        assert_eq!(span.start, Utc.with_ymd_and_hms(2018, 11, 4, 3, 0, 0).unwrap());
        assert_eq!(span.end, Utc.with_ymd_and_hms(2018, 11, 5, 2, 0, 0).unwrap());
    }

    #[test]
    fn refuses_a_field_without_padding_that_runs_into_digits() {
        for bad in [
            "!{timestamp:Md}/",
            "!{timestamp:yyyy/M}!{timestamp:dd}/",
            "!{timestamp:H}!{partitionKeyFromQuery:k}/",
            "!{timestamp:yyyy/MM/dd/H}",
            "!{timestamp:H'1'}/",
        ] {
            let err = KeyTemplate::parse(bad, TemplateKind::Data, Tz::UTC).unwrap_err();
            assert!(err.0.contains("use "), "{bad}: {err}");
        }
        assert!(KeyTemplate::parse("!{timestamp:M/d/H}/", TemplateKind::Data, Tz::UTC).is_ok());
    }

    #[test]
    fn refuses_bad_templates() {
        for bad in [
            "!{timestamp:yyyy",
            "!{nonsense}",
            "!{firehose:other}",
            "!{timestamp:QQ}",
            "../x/",
            "a\nb/",
            "!{partitionKeyFromQuery:customer}/",
            "!{partitionKeyFromQuery:a/b}/",
            ".spillway-tmp/x/",
            "/abs/",
            "a/!{timestamp:'..'}/",
            "a/.!{timestamp:'.'}/",
            "!{timestamp:'/'yyyy}/",
            "!{timestamp:yyyy'\\'MM}/",
        ] {
            assert!(
                KeyTemplate::parse(bad, TemplateKind::Error, Tz::UTC).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
