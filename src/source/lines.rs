//! Reading newline-delimited records, for the file and stdin sources.
//!
//! Each line is a record; its sequence number is the byte offset where the
//! line starts. `\n` and `\r\n` end lines; a last line without a newline is
//! a record too. Lines over [`MAX_KEPT_LINE_BYTES`] are cut there (they are
//! refused as too large anyway), so one huge line cannot exhaust memory.

use std::io::{self, BufRead, BufReader, Read};

use bytes::Bytes;
use chrono::Utc;
use spillway_transforms::record::{Offset, Position};
use spillway_transforms::{Record, SequenceNumber, SourceId};
use tokio::sync::mpsc;

use super::SourceEvent;

/// How much of one line is kept.
pub const MAX_KEPT_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Records per message to the pipeline.
const CHUNK_RECORDS: usize = 1024;
/// Bytes per message to the pipeline.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// One line: where it starts and its length before any cut.
struct Line {
    start: u64,
    full_length: u64,
}

/// Reads lines from `reader`, which is positioned at byte `offset`.
pub(super) struct LineReader<R> {
    reader: BufReader<R>,
    offset: u64,
}

impl<R: Read> LineReader<R> {
    pub(super) fn new(reader: BufReader<R>, offset: u64) -> Self {
        Self { reader, offset }
    }

    /// Reads the next line into `buf` (without its line ending).
    fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
        buf.clear();
        let start = self.offset;
        let mut full_length = 0u64;
        let mut saw_anything = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if available.is_empty() {
                if !saw_anything {
                    return Ok(None);
                }
                break;
            }
            saw_anything = true;
            let (chunk, consumed, done) = match memchr::memchr(b'\n', available) {
                Some(at) => (&available[..at], at + 1, true),
                None => (available, available.len(), false),
            };
            let room = MAX_KEPT_LINE_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            full_length += chunk.len() as u64;
            self.reader.consume(consumed);
            self.offset += consumed as u64;
            if done {
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                    full_length -= 1;
                }
                break;
            }
        }
        Ok(Some(Line { start, full_length }))
    }

    /// Skips the line at the current offset (the checkpointed one).
    pub(super) fn skip_line(&mut self) -> io::Result<()> {
        let mut buf = Vec::new();
        self.next_line(&mut buf).map(|_| ())
    }

    /// Reads every line and sends it as a record of `source`. Returns
    /// `Ok(false)` if the pipeline stopped listening.
    pub(super) fn send_all(
        &mut self,
        source: &SourceId,
        path: &str,
        events: &mpsc::Sender<SourceEvent>,
    ) -> io::Result<bool> {
        let mut chunk = Vec::with_capacity(CHUNK_RECORDS);
        let mut chunk_bytes = 0;
        let mut buf = Vec::new();
        let mut arrival = Utc::now();
        while let Some(line) = self.next_line(&mut buf)? {
            if line.full_length > buf.len() as u64 {
                tracing::warn!(
                    path,
                    offset = line.start,
                    length = line.full_length,
                    kept = buf.len(),
                    "line is too long; its first bytes go to the error output"
                );
            }
            chunk_bytes += buf.len();
            chunk.push(Record {
                data: Bytes::copy_from_slice(&buf),
                position: Position {
                    source: source.clone(),
                    offset: Offset::new(SequenceNumber::from_u64(line.start), 0),
                },
                partition_key: None,
                arrival,
            });
            // Send when the chunk is full, and before a read that may block
            // (a pipe whose writer is slow): records never wait in here.
            let may_block = self.reader.buffer().is_empty();
            if chunk.len() >= CHUNK_RECORDS || chunk_bytes >= CHUNK_BYTES || may_block {
                if events
                    .blocking_send(SourceEvent::Records(std::mem::take(&mut chunk)))
                    .is_err()
                {
                    return Ok(false);
                }
                chunk_bytes = 0;
                arrival = Utc::now();
            }
        }
        if !chunk.is_empty() && events.blocking_send(SourceEvent::Records(chunk)).is_err() {
            return Ok(false);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(u64, Vec<u8>, u64)> {
        let mut reader = LineReader::new(BufReader::with_capacity(64, input), 0);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(line) = reader.next_line(&mut buf).unwrap() {
            out.push((line.start, buf.clone(), line.full_length));
        }
        out
    }

    #[test]
    fn splits_lines_and_records_their_offsets() {
        assert_eq!(
            lines(b"ab\r\n\ncd\nlast"),
            [
                (0, b"ab".to_vec(), 2),
                (4, b"".to_vec(), 0),
                (5, b"cd".to_vec(), 2),
                (8, b"last".to_vec(), 4)
            ]
        );
        assert_eq!(lines(b""), []);
        assert_eq!(lines(b"x\n"), [(0, b"x".to_vec(), 1)]);
    }

    #[test]
    fn cuts_lines_that_are_too_long() {
        let mut input = vec![b'a'; MAX_KEPT_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let found = lines(&input);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].1.len(), MAX_KEPT_LINE_BYTES);
        assert_eq!(found[0].2, MAX_KEPT_LINE_BYTES as u64 + 10);
        assert_eq!(
            (found[1].0, found[1].1.as_slice()),
            (MAX_KEPT_LINE_BYTES as u64 + 11, &b"next"[..])
        );
    }
}
