//! What a printing replay sent (or, in a dry run, would send): counted as
//! records are written, shown by the progress bar, reported by `--dry-run`.

use chrono::{DateTime, Utc};
use spillway_transforms::Record;

/// What was (or, in a dry run, would be) sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// The objects read (all of the time range's).
    pub objects: u64,
    pub records: u64,
    /// The records' bytes (without the newlines).
    pub bytes: u64,
    /// The earliest and latest arrival time among the records.
    pub first_arrival: Option<DateTime<Utc>>,
    pub last_arrival: Option<DateTime<Utc>>,
    /// Records the archive could not give back (error records).
    pub refused: u64,
}

impl Tally {
    pub(super) fn count(&mut self, record: &Record) {
        self.records += 1;
        self.bytes += record.data.len() as u64;
        self.first_arrival = Some(self.first_arrival.map_or(record.arrival, |t| t.min(record.arrival)));
        self.last_arrival = Some(self.last_arrival.map_or(record.arrival, |t| t.max(record.arrival)));
    }

    /// The dry run's report: one `name: value` line each.
    pub fn report(&self) -> Vec<String> {
        let time = |t: Option<DateTime<Utc>>| {
            t.map_or("-".to_owned(), |t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            })
        };
        vec![
            format!("objects: {}", self.objects),
            format!("records: {}", self.records),
            format!("bytes: {}", self.bytes),
            format!("first_arrival: {}", time(self.first_arrival)),
            format!("last_arrival: {}", time(self.last_arrival)),
            format!("refused: {}", self.refused),
        ]
    }
}
