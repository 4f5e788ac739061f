//! `[limits]`: the memory budget of the process (`memory_mb`). Without it
//! the budget is derived from what the pipelines are configured to hold
//! ([`default_memory_mb`]), so a configuration written before it existed
//! keeps the memory it had, now as one bound.

use serde::Deserialize;
use spillway_settings::Problems;

use crate::config::Config;

/// The smallest and largest `memory_mb`.
pub const MEMORY_MB_RANGE: (i64, i64) = (16, 1_048_576);

/// What each pipeline reads ahead of its gate, in MiB, in the default
/// budget: the records in its channels (4 events of up to 4 MiB each).
pub const READ_AHEAD_MB: usize = 16;

/// In the default budget, what a pipeline with dynamic partitioning may
/// hold in its partition buffers, in MiB (`crate::buffer::PARTITIONS_MAX_BYTES`).
pub const PARTITIONS_MB: usize = crate::buffer::PARTITIONS_MAX_BYTES / (1024 * 1024);

/// `[limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// MiB that spillway may hold in all its pipelines: records read
    /// ahead, processor batches, open buffers of every partition, and
    /// objects being encoded or sent: 16 to 1,048,576. When it is reached,
    /// sources pause and the largest open buffer is flushed early
    /// (`memory_limit`). Default: derived from the buffers, see
    /// [`default_memory_mb`].
    pub memory_mb: Option<i64>,
}

/// `[limits]`, checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `None`: the default, derived from the pipelines.
    pub memory_mb: Option<usize>,
}

impl LimitsSettings {
    /// The checked settings, or `None` with the problems added under `key`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<LimitsConfig> {
        let Some(memory_mb) = self.memory_mb else {
            return Some(LimitsConfig::default());
        };
        let memory_mb = problems.in_range(&format!("{key}.memory_mb"), memory_mb, MEMORY_MB_RANGE)?;
        Some(LimitsConfig {
            memory_mb: Some(memory_mb as usize),
        })
    }
}

/// The budget when no configuration sets `memory_mb`, in MiB: for each
/// pipeline, `buffer.size_mb × (max_concurrent_puts + 2)` (the batches
/// being written, one waiting for the writer, one filling), plus 256 with
/// dynamic partitioning (what its partition buffers may hold together),
/// plus 16 read ahead; summed over the pipelines.
pub fn default_memory_mb<'a>(configs: impl IntoIterator<Item = &'a Config>) -> usize {
    configs
        .into_iter()
        .map(|config| {
            let size_mb = config.buffer.max_bytes / (1024 * 1024);
            let puts = config.destination.objects().max_concurrent_puts;
            let partitions = if config.partitioning.enabled { PARTITIONS_MB } else { 0 };
            size_mb * (puts + 2) + partitions + READ_AHEAD_MB
        })
        .sum()
}

/// The budget of these pipelines, in MiB, and where it comes from: the
/// `memory_mb` they set (they agree: `crate::config::set`), or the default.
pub fn memory_mb<'a>(configs: impl IntoIterator<Item = &'a Config> + Clone) -> (usize, &'static str) {
    match configs.clone().into_iter().find_map(|c| c.limits.memory_mb) {
        Some(memory_mb) => (memory_mb, "limits.memory_mb"),
        None => (
            default_memory_mb(configs),
            "default: per pipeline buffer.size_mb × (max_concurrent_puts + 2), + 256 with dynamic partitioning, + 16 read ahead",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"out\"\n";

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        crate::config::parse(text, "t", &|_| None).map_err(|err| err.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn memory_mb_is_checked_in_one_line_naming_key_value_and_range() {
        assert_eq!(parse(MINIMAL).unwrap().limits, LimitsConfig { memory_mb: None });
        let set = parse(&format!("{MINIMAL}[limits]\nmemory_mb = 64\n")).unwrap();
        assert_eq!(set.limits.memory_mb, Some(64));
        assert_eq!(
            parse(&format!("{MINIMAL}[limits]\nmemory_mb = 8\n")).unwrap_err(),
            ["limits.memory_mb: 8 is out of range: allowed 16 to 1048576"]
        );
        assert_eq!(
            parse(&format!("{MINIMAL}[limits]\nmemory_mb = \"64\"\n")).unwrap_err(),
            ["limits.memory_mb: invalid type: string \"64\", expected i64"]
        );
        assert_eq!(
            parse(&format!("{MINIMAL}[limits]\nmemory = 64\n")).unwrap_err(),
            ["limits.memory: unknown field `memory`, expected `memory_mb`"]
        );
        // Below two buffers: one filling, one being written.
        assert_eq!(
            parse(&format!("{MINIMAL}[buffer]\nsize_mb = 64\n[limits]\nmemory_mb = 100\n")).unwrap_err(),
            ["limits.memory_mb: 100 is below two buffers of buffer.size_mb = 64: allowed 128 to 1048576"]
        );
    }

    #[test]
    fn the_default_follows_buffers_puts_partitions_and_pipelines() {
        let plain = parse(MINIMAL).unwrap();
        // 5 MiB buffers, 4 puts: 5 × 6 + 16.
        assert_eq!(default_memory_mb([&plain]), 46);
        let tuned = parse(
            "[source]\ntype = \"stdin\"\n[buffer]\nsize_mb = 2\n[destination]\ntype = \"local\"\npath = \"out\"\n\
             max_concurrent_puts = 1\n",
        )
        .unwrap();
        assert_eq!(default_memory_mb([&tuned]), 2 * 3 + 16);
        assert_eq!(default_memory_mb([&plain, &tuned]), 46 + 22);
        assert_eq!(memory_mb([&plain, &tuned]).0, 68);
        let set = parse(&format!("{MINIMAL}[limits]\nmemory_mb = 32\n")).unwrap();
        assert_eq!(memory_mb([&plain, &set]), (32, "limits.memory_mb"));
    }
}
