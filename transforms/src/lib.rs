//! Records and what happens to them between a source and a destination.
//!
//! This crate holds spillway's record model ([`record`]), the checks a record
//! must pass before it is buffered ([`check`]), the Firehose-style error record
//! a rejected record becomes ([`error_record`]), where a JSON string's next
//! escape is ([`escape`]), what a JSON record may be
//! on every path ([`strict`]), and the output formats that
//! turn a batch of records into the bytes of one object ([`format`]).
//! It never talks to AWS or to a destination: it deals in records and bytes.

pub mod check;
pub mod error_record;
pub mod escape;
pub mod format;
pub mod memory;
pub mod record;
pub mod strict;
#[cfg(test)]
pub(crate) mod test_json;

pub use check::{Check, Rejection};
pub use error_record::ErrorOutputType;
pub use format::{Encoded, Format};
pub use record::{Offset, Position, Record, SequenceNumber, SourceId};
