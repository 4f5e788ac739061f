//! The record model: a record's bytes and where it came from.
//!
//! A record's [`Position`] (source, sequence number, subsequence number) is its
//! identity: it orders the records of one source, it is what checkpoints
//! store, and it travels with the record to the destination so that an
//! archive can be replayed faithfully.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Identifies one ordered partition of the input: a Kinesis shard id, or a
/// file. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceId(Arc<str>);

impl SourceId {
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A sequence number: an unsigned decimal integer of any length, as Kinesis
/// uses (up to 128 digits). For files it is the byte offset of the line.
///
/// Ordered numerically (by length, then digits), never lexically.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SequenceNumber(Arc<str>);

/// A sequence number that is not an unsigned decimal integer.
#[derive(Debug, thiserror::Error)]
#[error("invalid sequence number {0:?}: expected decimal digits without leading zeros")]
pub struct InvalidSequenceNumber(String);

impl SequenceNumber {
    pub fn parse(digits: &str) -> Result<Self, InvalidSequenceNumber> {
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if canonical {
            Ok(Self(digits.into()))
        } else {
            Err(InvalidSequenceNumber(digits.to_owned()))
        }
    }

    pub fn from_u64(n: u64) -> Self {
        // Formatted on the stack: one allocation (the `Arc`) per record.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        Self(std::str::from_utf8(&digits[at..]).expect("ASCII digits").into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as a u64, when it fits (file offsets always do).
    pub fn to_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

impl TryFrom<String> for SequenceNumber {
    type Error = InvalidSequenceNumber;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SequenceNumber> for String {
    fn from(s: SequenceNumber) -> String {
        s.0.to_string()
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Canonical decimal strings: a longer one is larger.
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a record sits in its source: ordered by sequence number, then by
/// subsequence number (the index of a user record inside a KPL aggregated
/// record; 0 for a record that was not aggregated).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Offset {
    pub sequence_number: SequenceNumber,
    #[serde(default)]
    pub subsequence_number: u64,
}

impl Offset {
    pub fn new(sequence_number: SequenceNumber, subsequence_number: u64) -> Self {
        Self {
            sequence_number,
            subsequence_number,
        }
    }
}

impl Ord for Offset {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sequence_number
            .cmp(&other.sequence_number)
            .then(self.subsequence_number.cmp(&other.subsequence_number))
    }
}

impl PartialOrd for Offset {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A record's source and offset: its identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    pub source: SourceId,
    pub offset: Offset,
}

/// One record: its bytes and its provenance.
#[derive(Clone, Debug)]
pub struct Record {
    pub data: Bytes,
    pub position: Position,
    /// The Kinesis partition key; `None` for sources that have none (files).
    pub partition_key: Option<Arc<str>>,
    /// Approximate arrival time: when Kinesis accepted the record, or when a
    /// file source read it.
    pub arrival: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_from_integers_are_their_decimal_digits() {
        for n in [0, 7, 9, 10, 99, 100, 1_234_567_890, u64::MAX - 1, u64::MAX] {
            assert_eq!(SequenceNumber::from_u64(n).as_str(), n.to_string());
            assert_eq!(SequenceNumber::from_u64(n).to_u64(), Some(n));
        }
    }

    #[test]
    fn sequence_numbers_order_numerically() {
        let small = SequenceNumber::parse("9").unwrap();
        let large = SequenceNumber::parse("10").unwrap();
        assert!(small < large);
        let kinesis_a = SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap();
        let kinesis_b = SequenceNumber::parse("49590338271490256608559692540925702759324208523137515618").unwrap();
        assert!(kinesis_a < kinesis_b);
        assert!(SequenceNumber::parse("007").is_err());
        assert!(SequenceNumber::parse("").is_err());
        assert!(SequenceNumber::parse("12a").is_err());
        assert!(SequenceNumber::parse("0").is_ok());
    }

    #[test]
    fn offsets_order_by_subsequence_within_a_sequence_number() {
        let seq = SequenceNumber::from_u64(5);
        let a = Offset::new(seq.clone(), 0);
        let b = Offset::new(seq, 3);
        let c = Offset::new(SequenceNumber::from_u64(6), 0);
        assert!(a < b && b < c);
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn record(data: &'static [u8]) -> Record {
        Record {
            data: Bytes::from_static(data),
            position: Position {
                source: SourceId::new("test"),
                offset: Offset::new(SequenceNumber::from_u64(0), 0),
            },
            partition_key: None,
            arrival: Utc::now(),
        }
    }
}
