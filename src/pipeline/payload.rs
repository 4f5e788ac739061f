//! Objects encoded while they are sent: a [`Payload`] that writes its
//! records (format, then compression) on the blocking pool into chunks of
//! [`CHUNK_BYTES`], a few at a time, so that sending starts before encoding
//! ends and the object's bytes are never all in memory.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use spillway_destinations::{Chunks, Compression, Payload};
use spillway_transforms::{Format, Record};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// Chunks are about this large.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks produced ahead of the sender.
const CHUNKS_AHEAD: usize = 4;

#[derive(Debug)]
pub(super) struct RecordsPayload {
    pub records: Arc<Vec<Record>>,
    pub format: Format,
    pub compression: Compression,
    /// The name of a zip archive's entry.
    pub entry_name: String,
    /// Bytes of the last complete production, for logs.
    pub produced: Arc<AtomicUsize>,
    /// The encoder's turn (`Delivery::encodes_in_turn`), given back as soon
    /// as the payload has been produced once, before the put ends (the
    /// file's sync, the checkpoint): the next batch's encoding need not
    /// wait for them. Dropped with the payload if it never is.
    pub turn: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl RecordsPayload {
    /// Holds the encoder's turn until the payload has been produced.
    pub fn hold_turn(&self, turn: OwnedSemaphorePermit) {
        *self.turn.lock().expect("the turn's lock is never poisoned") = Some(turn);
    }
}

impl Payload for RecordsPayload {
    fn open(&self) -> Chunks {
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        let records = self.records.clone();
        let (format, compression, name) = (self.format.clone(), self.compression, self.entry_name.clone());
        let produced = self.produced.clone();
        let turn = self.turn.clone();
        tokio::task::spawn_blocking(move || {
            let mut sink = ChunkSink {
                tx: &tx,
                buffer: Vec::with_capacity(CHUNK_BYTES),
                total: 0,
            };
            let written = (|| {
                let mut encoder = compression.encoder(&mut sink, &name, expected_bytes(&records))?;
                format.write_records(&records, &mut encoder)?;
                encoder.finish()
            })();
            let written = written.and_then(|()| sink.send_buffer());
            // Produced (or failed): the encoder is free for the next batch.
            drop(turn.lock().expect("the turn's lock is never poisoned").take());
            match written {
                Ok(()) => produced.store(sink.total, Ordering::Relaxed),
                // Nobody listens any more: the put gave up.
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(err) => {
                    let _ = tx.blocking_send(Err(err));
                }
            }
        });
        rx
    }
}

/// About the size of the records written one to a line: what decides
/// whether the codec compresses them on every core.
fn expected_bytes(records: &[Record]) -> usize {
    records.iter().map(|record| record.data.len() + 1).sum()
}

/// Cuts what it is given into chunks and sends them, waiting while the
/// sender is behind.
struct ChunkSink<'a> {
    tx: &'a mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
    total: usize,
}

impl ChunkSink<'_> {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.total += chunk.len();
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the put stopped reading"))
    }
}

impl Write for ChunkSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(buf.len())
    }

    /// Chunks are sent when full or at the end, not on every flush.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use spillway_destinations::Compression;
    use spillway_transforms::record::{Offset, Position};
    use spillway_transforms::{Format, Record, SequenceNumber, SourceId};
    use tokio::sync::Semaphore;

    use super::*;

    fn payload(lines: u64) -> RecordsPayload {
        let records = (1..=lines)
            .map(|n| Record {
                data: Bytes::from(format!(r#"{{"n":{n}}}"#)),
                position: Position {
                    source: SourceId::new("s"),
                    offset: Offset::new(SequenceNumber::from_u64(n), 0),
                },
                partition_key: None,
                arrival: chrono::Utc::now(),
            })
            .collect();
        RecordsPayload {
            records: Arc::new(records),
            format: Format::JsonLines,
            compression: Compression::Gzip,
            entry_name: "x".to_owned(),
            produced: Default::default(),
            turn: Default::default(),
        }
    }

    /// The encoder's turn comes back once the payload has been produced,
    /// not when the put ends; and with a payload that never is.
    #[tokio::test]
    async fn the_turn_is_given_back_once_the_payload_is_produced_or_dropped() {
        let encoder = Arc::new(Semaphore::new(1));
        let produced = payload(1_000);
        produced.hold_turn(encoder.clone().try_acquire_owned().unwrap());
        assert_eq!(encoder.available_permits(), 0, "held while not produced");
        let mut chunks = produced.open();
        let mut body = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            body.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(encoder.available_permits(), 1, "given back once produced");
        let lines = Compression::Gzip.decompress(&body).unwrap();
        assert_eq!(lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(), 1_000);
        // Opened again (a put tried again): produced without a turn.
        drop(produced.open());

        let never = payload(1);
        never.hold_turn(encoder.clone().try_acquire_owned().unwrap());
        assert_eq!(encoder.available_permits(), 0);
        drop(never);
        assert_eq!(encoder.available_permits(), 1, "given back with the payload");
    }
}
