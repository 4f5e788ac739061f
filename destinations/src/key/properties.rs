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
        "(yyyy|MM|dd|HH|mm|ss|/|-|'[./a]{0,3}'){1,5}".prop_map(|pattern| format!("!{{timestamp:{pattern}}}")),
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
