//! The keys the `lambda` and `command` processors share (how records are
//! batched and how often a failed call is retried), with Firehose's ranges
//! and defaults, checked in one place.

use std::time::Duration;

use spillway_settings::Problems;

use super::Limits;

/// Firehose's `BufferSizeInMBs` for Lambda processing: 0.2 to 3, default 1.
pub const BUFFER_SIZE_MB: (f64, f64) = (0.2, 3.0);
pub fn default_buffer_size_mb() -> f64 {
    1.0
}

/// Firehose's `BufferIntervalInSeconds` for Lambda processing: 0 to 900,
/// default 60.
pub const BUFFER_INTERVAL_SECONDS: (i64, i64) = (0, 900);
pub fn default_buffer_interval_seconds() -> i64 {
    60
}

/// Firehose's `NumberOfRetries`: 0 to 300, default 3.
pub const NUMBER_OF_RETRIES: (i64, i64) = (0, 300);
pub fn default_number_of_retries() -> i64 {
    3
}

/// Batching and retries, validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Batching {
    pub limits: Limits,
    /// How long the stage may hold records before it calls the processor.
    pub interval: Duration,
    /// Calls after the first, for a batch whose call fails.
    pub retries: u32,
}

/// `buffer_size_mb`, `buffer_interval_seconds` and `number_of_retries` of
/// the processor at `key`, with every problem added to `problems`.
pub fn check(
    key: &str,
    size_mb: f64,
    interval_seconds: i64,
    retries: i64,
    problems: &mut Problems,
) -> Option<Batching> {
    let (low, high) = BUFFER_SIZE_MB;
    let size = if (low..=high).contains(&size_mb) {
        Some((size_mb * 1024.0 * 1024.0).round() as usize)
    } else {
        problems.add(
            &format!("{key}.buffer_size_mb"),
            format!("{size_mb} is out of range: allowed {low} to {high}"),
        );
        None
    };
    let interval = problems.in_range(
        &format!("{key}.buffer_interval_seconds"),
        interval_seconds,
        BUFFER_INTERVAL_SECONDS,
    );
    let retries = problems.in_range(&format!("{key}.number_of_retries"), retries, NUMBER_OF_RETRIES);
    Some(Batching {
        limits: Limits::new(size?),
        interval: Duration::from_secs(interval? as u64),
        retries: retries? as u32,
    })
}
