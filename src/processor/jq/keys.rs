//! `metadata_extraction`: a jq program giving one object per record, whose
//! string and number values become the record's `partitionKeyFromQuery`
//! keys (Firehose's MetadataExtraction). The record itself is unchanged.
//! It runs inside a [`super::JqChain`], on the value the chain parsed
//! once: that is why it lives beside `jq` (its settings are in
//! `jq/config.rs`).

use jaq_json::Val;

use super::{Program, RunError};
use crate::processor::PartitionKeys;

/// Firehose's error code for keys that cannot be extracted.
pub const CODE: &str = "DynamicPartitioning.MetadataExtractionFailed";

/// The most keys one record may have.
const MAX_KEYS: usize = 50;

/// Adds the keys `program` makes of `value` to `keys`.
pub fn extract(program: &Program, value: &Val, mut keys: PartitionKeys) -> Result<PartitionKeys, RunError> {
    let fail = |message: String| RunError { code: CODE, message };
    let outputs = program.run(value.clone())?;
    let [Val::Obj(object)] = outputs.as_slice() else {
        return Err(fail(format!(
            "the query must give one object of partition keys, it gave {} value(s)",
            outputs.len()
        )));
    };
    if object.len() > MAX_KEYS {
        return Err(fail(format!(
            "the query gave {} keys: at most {MAX_KEYS}",
            object.len()
        )));
    }
    for (name, value) in object.iter() {
        let Val::TStr(name) = name else {
            return Err(fail("a partition key name is not a string".to_owned()));
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let text = match value {
            Val::TStr(text) => String::from_utf8_lossy(text).into_owned(),
            Val::Num(_) | Val::Bool(_) => value.to_string(),
            // Absent: a prefix naming it sends the record to the error
            // output (the router's check), one that does not is unaffected.
            Val::Null => continue,
            _ => {
                return Err(fail(format!(
                    "partition key {name:?} is not a string, number or boolean"
                )))
            }
        };
        std::sync::Arc::make_mut(&mut keys.from_query).insert(name, text);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(query: &str, input: &str) -> Result<Vec<(String, String)>, RunError> {
        let program = Program::compile(query).unwrap();
        let value = Program::parse(input.as_bytes()).unwrap();
        Ok(extract(&program, &value, PartitionKeys::default())?
            .from_query
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect())
    }

    #[test]
    fn strings_numbers_and_booleans_become_keys() {
        assert_eq!(
            keys(
                "{venue: .v, day: .ts[0:10], n: .n, ok: .ok, none: .missing}",
                r#"{"v":"LSE","ts":"2026-11-22T10:00:00Z","n":42,"ok":true}"#
            )
            .unwrap(),
            [
                ("day".to_owned(), "2026-11-22".to_owned()),
                ("n".to_owned(), "42".to_owned()),
                ("ok".to_owned(), "true".to_owned()),
                ("venue".to_owned(), "LSE".to_owned()),
            ]
        );
    }

    #[test]
    fn anything_but_one_object_of_scalars_fails() {
        for (query, input) in [
            (".[]", "[{},{}]"),
            ("1", "null"),
            ("{a: [1]}", "null"),
            ("{a: {}}", "null"),
        ] {
            assert_eq!(keys(query, input).unwrap_err().code, CODE, "{query}");
        }
    }
}
