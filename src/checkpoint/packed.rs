//! Runs of records as one short string in the checkpoint file.
//!
//! Why: with dynamic partitioning an object's records interleave with the
//! other partitions' records, so its intent names a run per record, and
//! the delivered runs beyond the checkpoint are as many until every
//! partition is written. Saved as JSON objects (`{"source": ..., "first":
//! {...}, "last": {...}}`), a run took about 150 bytes, and every intent
//! and delivery saved all of them again: a flush of 20 partitions of 200 MB
//! of records wrote gigabytes of checkpoints (issue #18, speed). Packed, a
//! run of file records takes a few bytes.
//!
//! The text: runs separated by `,`; a run is `FIRST` (one record) or
//! `FIRST~LAST`; an offset is its sequence number, then `.SUB` when its
//! subsequence number is not 0, then `/OUT` when its output index is not
//! 0. A sequence number is written `+DELTA` after the one before it in the
//! string when both fit in a `u128` and it is not smaller (file offsets
//! always; Kinesis's 56 digits are written whole). Files written before
//! this (a list of runs as JSON objects) are read as they are.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serializer};
use spillway_transforms::record::{Offset, SequenceNumber};

use super::state::Run;

/// Packs `runs` (in any order; sorted packs smallest).
pub fn pack<'a>(runs: impl IntoIterator<Item = &'a Run>) -> String {
    let mut out = String::new();
    let mut previous: Option<u128> = None;
    for run in runs {
        if !out.is_empty() {
            out.push(',');
        }
        put_offset(&mut out, &run.first, &mut previous);
        if run.last != run.first {
            out.push('~');
            put_offset(&mut out, &run.last, &mut previous);
        }
    }
    out
}

/// The runs of a packed string.
pub fn unpack(text: &str) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    if text.is_empty() {
        return Ok(runs);
    }
    let mut previous: Option<u128> = None;
    for part in text.split(',') {
        let (first, last) = match part.split_once('~') {
            Some((first, last)) => (first, Some(last)),
            None => (part, None),
        };
        let first = take_offset(first, &mut previous)?;
        let last = match last {
            Some(last) => take_offset(last, &mut previous)?,
            None => first.clone(),
        };
        if last < first {
            return Err(format!("run {part:?} ends before it starts"));
        }
        runs.push(Run { first, last });
    }
    Ok(runs)
}

fn put_offset(out: &mut String, offset: &Offset, previous: &mut Option<u128>) {
    let digits = offset.sequence_number.as_str();
    let value: Option<u128> = digits.parse().ok();
    match (value, *previous) {
        (Some(value), Some(before)) if value >= before => {
            let _ = write!(out, "+{}", value - before);
        }
        _ => out.push_str(digits),
    }
    *previous = value;
    if offset.subsequence_number != 0 {
        let _ = write!(out, ".{}", offset.subsequence_number);
    }
    if offset.output != 0 {
        let _ = write!(out, "/{}", offset.output);
    }
}

fn take_offset(text: &str, previous: &mut Option<u128>) -> Result<Offset, String> {
    let bad = || format!("{text:?} is not a packed offset");
    let (rest, output) = match text.split_once('/') {
        Some((rest, output)) => (rest, output.parse::<u32>().map_err(|_| bad())?),
        None => (text, 0),
    };
    let (sequence, sub) = match rest.split_once('.') {
        Some((sequence, sub)) => (sequence, sub.parse::<u64>().map_err(|_| bad())?),
        None => (rest, 0),
    };
    let sequence_number = match sequence.strip_prefix('+') {
        Some(delta) => {
            let delta: u128 = delta.parse().map_err(|_| bad())?;
            let before = previous.ok_or_else(bad)?;
            SequenceNumber::parse(&before.checked_add(delta).ok_or_else(bad)?.to_string()).map_err(|_| bad())?
        }
        None => SequenceNumber::parse(sequence).map_err(|_| bad())?,
    };
    *previous = sequence_number.as_str().parse().ok();
    Ok(Offset::new(sequence_number, sub).with_output(output))
}

/// Serde: runs as a packed string.
pub fn serialize<S: Serializer>(runs: &[Run], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&pack(runs))
}

/// Serde: a packed string, or the list of runs older files hold.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Run>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Packed(String),
        Listed(Vec<Run>),
    }
    match Either::deserialize(deserializer)? {
        Either::Packed(text) => unpack(&text).map_err(serde::de::Error::custom),
        Either::Listed(runs) => Ok(runs),
    }
}

/// Serde for the runs of an intent: a packed string per source
/// (`{"shardId-1": "7~+2,+9"}`), or the list of runs with their sources
/// older files hold.
pub mod by_source {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};
    use spillway_transforms::SourceId;

    use super::super::state::{Run, SourceRun};

    pub fn serialize<S: Serializer>(runs: &[SourceRun], serializer: S) -> Result<S::Ok, S::Error> {
        let mut grouped: BTreeMap<&SourceId, Vec<&Run>> = BTreeMap::new();
        for SourceRun { source, run } in runs {
            grouped.entry(source).or_default().push(run);
        }
        serializer.collect_map(grouped.into_iter().map(|(source, runs)| (source, super::pack(runs))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SourceRun>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Packed(BTreeMap<SourceId, String>),
            Listed(Vec<SourceRun>),
        }
        match Either::deserialize(deserializer)? {
            Either::Packed(grouped) => {
                let mut runs = Vec::new();
                for (source, text) in grouped {
                    let unpacked = super::unpack(&text).map_err(serde::de::Error::custom)?;
                    runs.extend(unpacked.into_iter().map(|run| SourceRun {
                        source: source.clone(),
                        run,
                    }));
                }
                Ok(runs)
            }
            Either::Listed(runs) => Ok(runs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offset() -> impl Strategy<Value = Offset> {
        let sequence = prop_oneof![
            (0u64..1_000_000).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            // Kinesis's 56 digits, and more than a u128 holds.
            "[1-9][0-9]{55}",
            "[1-9][0-9]{38,60}",
        ];
        (
            sequence,
            prop_oneof![Just(0u64), any::<u64>()],
            prop_oneof![Just(0u32), any::<u32>()],
        )
            .prop_map(|(sequence, sub, output)| {
                Offset::new(SequenceNumber::parse(&sequence).unwrap(), sub).with_output(output)
            })
    }

    proptest! {
        /// Whatever the offsets and their order, a packed list reads back
        /// as the same runs.
        #[test]
        fn runs_round_trip(pairs in prop::collection::vec((offset(), offset()), 0..20)) {
            let runs: Vec<Run> = pairs
                .into_iter()
                .map(|(a, b)| if a <= b { Run { first: a, last: b } } else { Run { first: b, last: a } })
                .collect();
            prop_assert_eq!(unpack(&pack(&runs)).unwrap(), runs);
        }

        #[test]
        fn any_text_unpacks_or_fails_without_panicking(text in "[0-9+.,~/]{0,40}") {
            let _ = unpack(&text);
        }
    }

    #[test]
    fn file_records_take_a_few_bytes_each() {
        let runs: Vec<Run> = (0..1000u64)
            .map(|n| {
                let at = Offset::new(SequenceNumber::from_u64(1_000_000 + n * 437), 0);
                Run {
                    first: at.clone(),
                    last: at,
                }
            })
            .collect();
        let text = pack(&runs);
        assert!(text.len() < 6 * runs.len(), "{} bytes", text.len());
        assert!(text.starts_with("1000000,+437,+437"), "{text}");
    }

    #[test]
    fn a_list_of_runs_as_older_files_hold_it_still_reads() {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(with = "super")]
            runs: Vec<Run>,
        }
        let old: Holder = serde_json::from_str(
            r#"{"runs": [{"first": {"sequence_number": "7", "subsequence_number": 0},
                          "last": {"sequence_number": "9", "subsequence_number": 2}}]}"#,
        )
        .unwrap();
        assert_eq!(old.runs, unpack("7~9.2").unwrap());
        let packed: Holder = serde_json::from_str(r#"{"runs": "7~+2.2,20/3"}"#).unwrap();
        assert_eq!(packed.runs.len(), 2);
        assert_eq!(packed.runs[1].first.output, 3);
        assert!(unpack("9~7").is_err(), "a run that ends before it starts");
        assert!(unpack("+3").is_err(), "a delta with nothing before it");
    }
}
