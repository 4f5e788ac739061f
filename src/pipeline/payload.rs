//! Objects encoded while they are sent: a [`Payload`] that writes its
//! records (format, then compression) on the blocking pool into chunks of
//! [`CHUNK_BYTES`], a few at a time, so that sending starts before encoding
//! ends and the object's bytes are never all in memory.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use spillway_destinations::{Chunks, Compression, Payload};
use spillway_transforms::{Format, Record};
use tokio::sync::mpsc;

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
}

impl Payload for RecordsPayload {
    fn open(&self) -> Chunks {
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        let records = self.records.clone();
        let (format, compression, name) = (self.format.clone(), self.compression, self.entry_name.clone());
        let produced = self.produced.clone();
        tokio::task::spawn_blocking(move || {
            let mut sink = ChunkSink {
                tx: &tx,
                buffer: Vec::with_capacity(CHUNK_BYTES),
                total: 0,
            };
            let written = (|| {
                let mut encoder = compression.encoder(&mut sink, &name)?;
                format.write_records(&records, &mut encoder)?;
                encoder.finish()
            })();
            match written.and_then(|()| sink.send_buffer()) {
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
