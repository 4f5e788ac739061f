//! How a batch is cut before it is encoded. A large batch is cut into
//! parts of about equal bytes, one per core, so that it is encoded on all
//! cores; a large first batch of an inferred schema is converted under the
//! columns of its first records ([`sample`]), so that it is parsed once.

use crate::record::Record;

/// A first batch of at least this many bytes is converted under the columns
/// of its first records while it is inferred (one parse per record, as for
/// later batches); a smaller one is inferred, then converted.
pub const MIN_SAMPLED_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The first records of a batch, 1/16 of its bytes, whose columns a first
/// batch is converted under (see [`super::Speculation::Sample`]).
const SAMPLE_DIVISOR: usize = 16;

/// The first records of a large batch, about 1/[`SAMPLE_DIVISOR`] of its
/// bytes; `None` for a small batch.
pub(super) fn sample(records: &[Record]) -> Option<&[Record]> {
    let total: usize = records.iter().map(|r| r.data.len()).sum();
    if total < MIN_SAMPLED_BATCH_BYTES {
        return None;
    }
    let mut bytes = 0;
    let end = records
        .iter()
        .position(|r| {
            bytes += r.data.len();
            bytes >= total / SAMPLE_DIVISOR
        })
        .map_or(records.len(), |at| at + 1);
    Some(&records[..end])
}

/// Parts of a batch encoded in parallel, at most this many.
pub const MAX_PARTS: usize = 8;
/// A part holds at least this many bytes of records: small batches stay
/// one part, one row group.
pub const MIN_PART_BYTES: usize = 4 * 1024 * 1024;

/// A run of the batch's records.
pub(super) struct Part<'a> {
    /// Index of `records[0]` in the batch.
    pub(super) first: usize,
    pub(super) records: &'a [Record],
}

/// Cuts the batch into parts of about equal bytes, one per core.
pub(super) fn split(records: &[Record], cores: usize) -> Vec<Part<'_>> {
    let total: usize = records.iter().map(|r| r.data.len()).sum();
    let count = cores.min(MAX_PARTS).min(total / MIN_PART_BYTES).max(1);
    let per_part = total.div_ceil(count);
    let mut parts = Vec::with_capacity(count);
    let (mut first, mut bytes) = (0, 0);
    for (index, record) in records.iter().enumerate() {
        bytes += record.data.len();
        if bytes >= per_part && parts.len() + 1 < count {
            parts.push(Part {
                first,
                records: &records[first..=index],
            });
            first = index + 1;
            bytes = 0;
        }
    }
    parts.push(Part {
        first,
        records: &records[first..],
    });
    parts
}
