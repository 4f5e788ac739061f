//! Property tests: no template, however hostile, renders a key outside the
//! destination, and parsing never panics.

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::{KeyContext, KeyTemplate, ObjectKey, TemplateKind};

/// Pieces templates are made of: literals with the characters that matter
/// for paths, timestamp patterns with quoted text, the other expressions,
/// and broken expressions.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/._\\- ]{0,6}",
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        "[\\PC]{0,3}",
        "'[a-z/.]{0,3}'".prop_map(|quoted| format!("!{{timestamp:{quoted}}}")),
        "(yyyy|yy|MM|M|dd|d|DDD|HH|H|mm|ss|SSS|/|-|'[./a]{0,3}'){1,5}"
            .prop_map(|pattern| format!("!{{timestamp:{pattern}}}")),
        Just("!{firehose:random-string}".to_owned()),
        Just("!{firehose:error-output-type}".to_owned()),
        Just("!{partitionKeyFromQuery:k}".to_owned()),
        Just("!{partitionKeyFromLambda:k}".to_owned()),
        Just("!{".to_owned()),
        Just("}".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn a_template_that_parses_renders_a_key_inside_the_destination(
        pieces in prop::collection::vec(piece(), 0..8),
        error_prefix in any::<bool>(),
        value in prop_oneof![any::<String>(), "[./\\\\]{0,6}", Just(String::new())],
        seconds in 0i64..4_102_444_800,
    ) {
        let template: String = pieces.concat();
        let kind = if error_prefix { TemplateKind::Error } else { TemplateKind::Data };
        let Ok(parsed) = KeyTemplate::parse(&template, kind, chrono_tz::UTC) else {
            return Ok(());
        };
        let timestamp: DateTime<Utc> = DateTime::from_timestamp(seconds, 0).unwrap();
        let keys = std::collections::BTreeMap::from([("k".to_owned(), value)]);
        let prefix = parsed.render(&KeyContext {
            timestamp,
            error_output_type: Some("format-conversion-failed"),
            partition_keys: Some((&keys, &keys)),
        });
        let key = format!("{prefix}stream-file-x-0-0.jsonl");
        prop_assert!(
            ObjectKey::new(key.clone()).is_ok(),
            "template {:?} renders the key {:?}",
            template,
            key
        );
    }

    #[test]
    fn parsing_any_text_never_panics(template in "\\PC{0,40}", error_prefix in any::<bool>()) {
        let kind = if error_prefix { TemplateKind::Error } else { TemplateKind::Data };
        let _ = KeyTemplate::parse(&template, kind, chrono_tz::UTC);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// The archive source reads a key back with the template that made
    /// it: every key a template renders gives back the object's name and a
    /// span of time holding the object's timestamp. An object it could not
    /// read back would be skipped by a replay as not the archive's.
    #[test]
    fn every_key_a_template_renders_reads_back_to_its_time_and_name(
        pieces in prop::collection::vec(piece(), 0..8),
        error_prefix in any::<bool>(),
        value in prop_oneof![any::<String>(), "[./\\\\]{0,6}", Just(String::new()), "[a-z0-9]{1,8}"],
        millis in 0i64..4_102_444_800_000,
        zone in prop_oneof![Just(chrono_tz::UTC), Just(chrono_tz::America::New_York), Just(chrono_tz::Australia::Lord_Howe)],
    ) {
        let template: String = pieces.concat();
        let kind = if error_prefix { TemplateKind::Error } else { TemplateKind::Data };
        let Ok(parsed) = KeyTemplate::parse(&template, kind, zone) else {
            return Ok(());
        };
        let timestamp: DateTime<Utc> = DateTime::from_timestamp_millis(millis).unwrap();
        let keys = std::collections::BTreeMap::from([("k".to_owned(), value)]);
        let error_output_type = error_prefix.then_some("format-conversion-failed");
        let prefix = parsed.render(&KeyContext {
            timestamp,
            error_output_type,
            partition_keys: Some((&keys, &keys)),
        });
        let name = "stream-file-x-0-0.jsonl";
        let key = format!("{prefix}{name}");
        if ObjectKey::new(key.clone()).is_err() {
            return Ok(());
        }
        let read = parsed.time_of(&key, error_output_type);
        prop_assert!(read.is_some(), "template {:?}: key {:?} does not read back", template, key);
        let (span, rest) = read.unwrap();
        // After a `/` the name is told exactly; after a partition value
        // with no `/` behind it, where the value ends is a guess, and the
        // rest is only known to be the end of the key without a `/` (what
        // the archive source checks).
        if matches!(parsed.parts().last(), Some(super::PrefixPart::Text(text)) if text.ends_with('/')) {
            prop_assert_eq!(rest, name, "template {:?}: key {:?}", template, key);
        } else {
            prop_assert!(
                !rest.is_empty() && !rest.contains('/') && key.ends_with(rest),
                "template {:?}: key {:?} leaves {:?}", template, key, rest
            );
        }
        // Without a year, the time cannot be told; the key is still read.
        let Some(span) = span else {
            return Ok(());
        };
        prop_assert!(
            span.start <= timestamp && timestamp < span.end,
            "template {:?}: key {:?} reads back to {:?}, not holding {}",
            template, key, span, timestamp
        );
    }

    /// Whatever a key holds, reading it with any template never panics.
    #[test]
    fn reading_any_key_back_never_panics(
        pieces in prop::collection::vec(piece(), 0..8),
        key in prop_oneof!["\\PC{0,60}", "[0-9/]{0,30}", "(9999|0000|[0-9]{4})/(00|13|12|02)/(00|31|30|29)/(24|23|00)/[a-z]{0,4}"],
    ) {
        let template: String = pieces.concat();
        let Ok(parsed) = KeyTemplate::parse(&template, TemplateKind::Data, chrono_tz::America::New_York) else {
            return Ok(());
        };
        let _ = parsed.time_of(&key, None);
        let _ = parsed.time_of(&key, Some("processing-failed"));
    }
}
