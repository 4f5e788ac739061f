//! Each shard's records of one prefix time in position order, within a
//! memory bound: an external merge sort.
//!
//! The objects of one prefix time may hold a shard's records in either key
//! order (see the module above), so they are sorted before they are sent.
//! Held in memory whole, an hour of a busy stream would not fit: past
//! [`SORT_MEMORY`] bytes of records, the records held are sorted and
//! written to a run file, and the runs are merged as they are read back.
//! A run file is unlinked as soon as it is opened, so nothing is left
//! behind by a crash or a `kill -9`.
//!
//! The sort is stable: records at the same position come out in the order
//! they were read (earlier runs first), as the in-memory sort gave them.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::DateTime;
use spillway_transforms::{Offset, Position, Record, SequenceNumber, SourceId};

/// Record bytes one prefix time may hold in memory before they go to run
/// files.
pub const SORT_MEMORY: usize = 256 << 20;

/// What a record costs in memory besides its bytes (its position, key and
/// the vector's slot), roughly.
const RECORD_OVERHEAD: usize = 160;

/// Sorts records by their shard and position.
pub struct ShardSort {
    limit: usize,
    dir: PathBuf,
    held: Vec<Record>,
    held_bytes: usize,
    runs: Vec<File>,
}

fn position_order(a: &Record, b: &Record) -> Ordering {
    (&a.position.source, &a.position.offset).cmp(&(&b.position.source, &b.position.offset))
}

impl ShardSort {
    /// Holds up to `limit` bytes of records; runs go to files in `dir`.
    pub fn new(limit: usize, dir: PathBuf) -> Self {
        Self {
            limit,
            dir,
            held: Vec::new(),
            held_bytes: 0,
            runs: Vec::new(),
        }
    }

    /// The bound for a pipeline: [`SORT_MEMORY`], or `SPILLWAY_TEST_SORT_BYTES`
    /// (a test hook); runs in the system's temporary directory.
    pub fn for_pipeline() -> Self {
        let limit = std::env::var("SPILLWAY_TEST_SORT_BYTES")
            .ok()
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(SORT_MEMORY);
        Self::new(limit, std::env::temp_dir())
    }

    pub fn push(&mut self, record: Record) -> io::Result<()> {
        self.held_bytes += record.data.len() + RECORD_OVERHEAD;
        self.held.push(record);
        if self.held_bytes > self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the records held, sorted, to a new run file.
    fn spill(&mut self) -> io::Result<()> {
        self.held.sort_by(position_order);
        let mut file = run_file(&self.dir)?;
        let mut out = BufWriter::with_capacity(1 << 20, &mut file);
        for record in self.held.drain(..) {
            write_record(&mut out, &record)?;
        }
        out.flush()?;
        drop(out);
        file.rewind()?;
        self.runs.push(file);
        self.held_bytes = 0;
        Ok(())
    }

    /// The records pushed, each shard's in position order.
    pub fn finish(mut self) -> io::Result<Sorted> {
        self.held.sort_by(position_order);
        let mut sources: Vec<RunReader> = self
            .runs
            .into_iter()
            .map(|file| RunReader::File(BufReader::with_capacity(1 << 16, file)))
            .collect();
        sources.push(RunReader::Memory(self.held.into_iter()));
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (run, source) in sources.iter_mut().enumerate() {
            if let Some(record) = source.next_record()? {
                heap.push(Reverse(Head { record, run }));
            }
        }
        Ok(Sorted { sources, heap })
    }
}

/// A new run file in `dir`, unlinked at once: it lives as long as it is
/// open.
fn run_file(dir: &std::path::Path) -> io::Result<File> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        ".spillway-sort-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, AtomicOrdering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

enum RunReader {
    File(BufReader<File>),
    Memory(std::vec::IntoIter<Record>),
}

impl RunReader {
    fn next_record(&mut self) -> io::Result<Option<Record>> {
        match self {
            RunReader::File(input) => read_record(input),
            RunReader::Memory(records) => Ok(records.next()),
        }
    }
}

/// The next record of a run, and which run.
struct Head {
    record: Record,
    run: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        position_order(&self.record, &other.record).then(self.run.cmp(&other.run))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

/// The sorted records, merged from the runs as they are read.
pub struct Sorted {
    sources: Vec<RunReader>,
    heap: BinaryHeap<Reverse<Head>>,
}

impl Iterator for Sorted {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse(Head { record, run }) = self.heap.pop()?;
        match self.sources[run].next_record() {
            Ok(Some(next)) => self.heap.push(Reverse(Head { record: next, run })),
            Ok(None) => {}
            Err(err) => return Some(Err(err)),
        }
        Some(Ok(record))
    }
}

// A run file's record: every field, length-prefixed, so that any bytes
// come back exactly.

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("a record field over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)
}

fn write_record(out: &mut impl Write, record: &Record) -> io::Result<()> {
    let offset = &record.position.offset;
    write_bytes(out, record.position.source.as_str().as_bytes())?;
    write_bytes(out, offset.sequence_number.as_str().as_bytes())?;
    out.write_all(&offset.subsequence_number.to_le_bytes())?;
    out.write_all(&offset.output.to_le_bytes())?;
    match &record.partition_key {
        Some(key) => {
            out.write_all(&[1])?;
            write_bytes(out, key.as_bytes())?;
        }
        None => out.write_all(&[0])?,
    }
    out.write_all(&record.arrival.timestamp().to_le_bytes())?;
    out.write_all(&record.arrival.timestamp_subsec_nanos().to_le_bytes())?;
    write_bytes(out, &record.data)
}

fn read_array<const N: usize>(input: &mut impl Read) -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read_bytes(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = u32::from_le_bytes(read_array(input)?) as usize;
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read_string(input: &mut impl Read) -> io::Result<String> {
    String::from_utf8(read_bytes(input)?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// The next record of a run file, or `None` at its end.
fn read_record(input: &mut BufReader<File>) -> io::Result<Option<Record>> {
    if std::io::BufRead::fill_buf(input)?.is_empty() {
        return Ok(None);
    }
    let source = read_string(input)?;
    let sequence = read_string(input)?;
    let sequence_number = SequenceNumber::parse(&sequence)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a run's sequence number"))?;
    let subsequence_number = u64::from_le_bytes(read_array(input)?);
    let output = u32::from_le_bytes(read_array(input)?);
    let partition_key = match read_array::<1>(input)? {
        [0] => None,
        _ => Some(Arc::from(read_string(input)?)),
    };
    let seconds = i64::from_le_bytes(read_array(input)?);
    let nanos = u32::from_le_bytes(read_array(input)?);
    let arrival = DateTime::from_timestamp(seconds, nanos)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a run's arrival time"))?;
    let data = Bytes::from(read_bytes(input)?);
    let mut offset = Offset::new(sequence_number, subsequence_number);
    offset.output = output;
    Ok(Some(Record {
        data,
        position: Position {
            source: SourceId::new(source),
            offset,
        },
        partition_key,
        arrival,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(shard: u8, sequence: u64, sub: u64, key: Option<&str>, data: Vec<u8>, millis: i64) -> Record {
        Record {
            data: Bytes::from(data),
            position: Position {
                source: SourceId::new(format!("shardId-{shard:012}")),
                offset: Offset::new(SequenceNumber::from_u64(sequence), sub),
            },
            partition_key: key.map(Arc::from),
            arrival: DateTime::from_timestamp_millis(millis).unwrap(),
        }
    }

    fn seen(record: &Record) -> (String, String, u64, u32, Option<String>, i64, Vec<u8>) {
        (
            record.position.source.to_string(),
            record.position.offset.sequence_number.to_string(),
            record.position.offset.subsequence_number,
            record.position.offset.output,
            record.partition_key.as_deref().map(str::to_owned),
            record.arrival.timestamp_nanos_opt().unwrap(),
            record.data.to_vec(),
        )
    }

    fn sorted(records: Vec<Record>, limit: usize) -> (Vec<Record>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut sort = ShardSort::new(limit, dir.path().to_path_buf());
        for record in records {
            sort.push(record).unwrap();
        }
        let runs = sort.runs.len();
        let out = sort.finish().unwrap().collect::<io::Result<Vec<_>>>().unwrap();
        // Unlinked: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        (out, runs)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Through run files or not, the records come out as a stable
        /// in-memory sort gives them, every field exactly.
        #[test]
        fn runs_merge_into_the_stable_in_memory_order(
            records in prop::collection::vec(
                (0u8..4, 0u64..50, 0u64..3, prop::option::of("[a-z\\x00é]{0,5}"), prop::collection::vec(any::<u8>(), 0..300), any::<i32>()),
                0..300,
            ),
            limit in 0usize..20_000,
        ) {
            let records: Vec<Record> = records
                .into_iter()
                .map(|(shard, seq, sub, key, data, millis)| record(shard, seq, sub, key.as_deref(), data, i64::from(millis) * 1000 + 7))
                .collect();
            let mut expected = records.clone();
            expected.sort_by(position_order);
            let (found, _) = sorted(records, limit);
            prop_assert_eq!(found.iter().map(seen).collect::<Vec<_>>(), expected.iter().map(seen).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_small_bound_spills_and_a_large_one_does_not() {
        let records: Vec<Record> = (0..1000u64)
            .map(|i| record((i % 3) as u8, 1000 - i, 0, Some("k"), vec![b'x'; 100], 0))
            .collect();
        let (found, runs) = sorted(records.clone(), 10_000);
        assert!(runs >= 20, "{runs} runs");
        assert!(found.windows(2).all(|w| position_order(&w[0], &w[1]).is_le()));
        assert_eq!(found.len(), 1000);
        let (_, runs) = sorted(records, usize::MAX);
        assert_eq!(runs, 0);
    }
}
