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
/// Ordered numerically (by length, then digits), never lexically. Up to
/// [`INLINE_DIGITS`](Self::INLINE_DIGITS) digits (every `u64`: file
/// offsets) are held inline, without an allocation; longer ones (Kinesis's
/// 56 digits) are shared.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SequenceNumber(Digits);

#[derive(Clone)]
enum Digits {
    /// `digits[..len]`, ASCII digits.
    Inline {
        len: u8,
        digits: [u8; SequenceNumber::INLINE_DIGITS],
    },
    Shared(Arc<str>),
}

/// A sequence number that is not an unsigned decimal integer.
#[derive(Debug, thiserror::Error)]
#[error("invalid sequence number {0:?}: expected decimal digits without leading zeros")]
pub struct InvalidSequenceNumber(String);

impl SequenceNumber {
    /// The longest sequence number held without an allocation.
    pub const INLINE_DIGITS: usize = 22;

    pub fn parse(digits: &str) -> Result<Self, InvalidSequenceNumber> {
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if canonical {
            Ok(Self::from_ascii_digits(digits.as_bytes()))
        } else {
            Err(InvalidSequenceNumber(digits.to_owned()))
        }
    }

    pub fn from_u64(n: u64) -> Self {
        // Formatted on the stack; u64::MAX has 20 digits, held inline.
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
        Self::from_ascii_digits(&digits[at..])
    }

    /// `digits` are canonical: checked by the callers. (`as_str` relies
    /// on their being ASCII.)
    fn from_ascii_digits(digits: &[u8]) -> Self {
        if digits.len() <= Self::INLINE_DIGITS {
            let mut inline = [0u8; Self::INLINE_DIGITS];
            inline[..digits.len()].copy_from_slice(digits);
            Self(Digits::Inline {
                len: digits.len() as u8,
                digits: inline,
            })
        } else {
            Self(Digits::Shared(
                std::str::from_utf8(digits).expect("ASCII digits").into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: only `from_ascii_digits` makes an `Inline`, from
            // digits its callers checked (or formatted): ASCII, so UTF-8.
            // Read per record (the Parquet position column): not checked
            // again here.
            Digits::Inline { len, digits } => unsafe { std::str::from_utf8_unchecked(&digits[..usize::from(*len)]) },
            Digits::Shared(digits) => digits,
        }
    }

    /// The value as a u64, when it fits (file offsets always do).
    pub fn to_u64(&self) -> Option<u64> {
        self.as_str().parse().ok()
    }
}

// By value, whatever the representation (which is one per value anyway).
impl PartialEq for SequenceNumber {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SequenceNumber {}

impl std::hash::Hash for SequenceNumber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
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
        s.as_str().to_owned()
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Canonical decimal strings: a longer one is larger.
        let (a, b) = (self.as_str(), other.as_str());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record sits in its source: ordered by sequence number, then by
/// subsequence number (the index of a user record inside a KPL aggregated
/// record; 0 for a record that was not aggregated), then by output (the
/// index of a record among the outputs processors made of one input).
///
/// `output` is what keeps exactly-once through processors that split a
/// record: a restart skips the outputs already delivered by their index,
/// even if a processor answers differently the second time. It is left out
/// of checkpoints while 0, so that states written before it read unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Offset {
    pub sequence_number: SequenceNumber,
    #[serde(default)]
    pub subsequence_number: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output: u32,
}

fn is_zero(output: &u32) -> bool {
    *output == 0
}

impl Offset {
    pub fn new(sequence_number: SequenceNumber, subsequence_number: u64) -> Self {
        Self {
            sequence_number,
            subsequence_number,
            output: 0,
        }
    }

    /// This offset, as the `output`th record made of its input.
    pub fn with_output(mut self, output: u32) -> Self {
        self.output = output;
        self
    }

    /// Whether `self` and `other` are outputs of one input record.
    pub fn same_input(&self, other: &Offset) -> bool {
        self.sequence_number == other.sequence_number && self.subsequence_number == other.subsequence_number
    }
}

impl Ord for Offset {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sequence_number
            .cmp(&other.sequence_number)
            .then(self.subsequence_number.cmp(&other.subsequence_number))
            .then(self.output.cmp(&other.output))
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
    fn sequence_numbers_either_side_of_the_inline_length_keep_their_value_order_and_identity() {
        use std::collections::HashSet;
        let inline = "9".repeat(SequenceNumber::INLINE_DIGITS);
        let shared = format!("1{}", "0".repeat(SequenceNumber::INLINE_DIGITS));
        let kinesis = "49590338271490256608559692538361571095921575989136588898";
        let mut seen = HashSet::new();
        let mut previous: Option<SequenceNumber> = None;
        for digits in ["0", "18446744073709551615", inline.as_str(), shared.as_str(), kinesis] {
            let n = SequenceNumber::parse(digits).unwrap();
            assert_eq!(n.as_str(), digits);
            assert_eq!(n.to_string(), digits);
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(json, format!("\"{digits}\""));
            let back: SequenceNumber = serde_json::from_str(&json).unwrap();
            assert_eq!(back, n);
            assert!(
                seen.insert(back.clone()) && !seen.insert(n.clone()),
                "{digits} hashed as one value"
            );
            if let Some(previous) = previous {
                assert!(previous < n, "{previous} < {n}");
            }
            previous = Some(n);
        }
        assert_eq!(
            SequenceNumber::from_u64(u64::MAX),
            SequenceNumber::parse("18446744073709551615").unwrap()
        );
        // The reason for the inline form: a record's position stays small.
        assert!(std::mem::size_of::<SequenceNumber>() <= 24);
    }

    #[test]
    fn offsets_order_by_subsequence_within_a_sequence_number() {
        let seq = SequenceNumber::from_u64(5);
        let a = Offset::new(seq.clone(), 0);
        let b = Offset::new(seq, 3);
        let c = Offset::new(SequenceNumber::from_u64(6), 0);
        assert!(a < b && b < c);
        let a1 = Offset::new(SequenceNumber::from_u64(5), 0).with_output(1);
        assert!(a < a1 && a1 < b, "outputs of one input order between it and the next");
    }

    #[test]
    fn offsets_without_an_output_serialise_as_before() {
        let old = r#"{"sequence_number":"7","subsequence_number":2}"#;
        let offset: Offset = serde_json::from_str(old).unwrap();
        assert_eq!(offset, Offset::new(SequenceNumber::from_u64(7), 2));
        assert_eq!(serde_json::to_string(&offset).unwrap(), old);
        let split = offset.with_output(3);
        let json = serde_json::to_string(&split).unwrap();
        assert_eq!(json, r#"{"sequence_number":"7","subsequence_number":2,"output":3}"#);
        assert_eq!(serde_json::from_str::<Offset>(&json).unwrap(), split);
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
