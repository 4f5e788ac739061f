//! Reading newline-delimited records, for the file and stdin sources.
//!
//! Each line is a record; its sequence number is the byte offset where the
//! line starts. `\n` and `\r\n` end lines; a last line without a newline is
//! a record too. Lines over [`MAX_KEPT_LINE_BYTES`] are cut there (they are
//! refused as too large anyway), so one huge line cannot exhaust memory.
//!
//! The input is read in blocks of [`BLOCK_BYTES`], and each record's bytes
//! are a slice of its block (`Bytes` shares it): no allocation or copy per
//! record. A block lives as long as one of its records does; a line that
//! crosses the end of a block is copied into the next.

use std::io::{self, Read};
use std::os::fd::AsFd;

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use spillway_transforms::record::{Offset, Position};
use spillway_transforms::{Record, SequenceNumber, SourceId};
use tokio::sync::mpsc;

use super::SourceEvent;

/// How much of one line is kept.
pub const MAX_KEPT_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes read at a time, and the size of the blocks records are cut from.
const BLOCK_BYTES: usize = 1024 * 1024;
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
    reader: R,
    /// `block[..filled]` is read and not yet returned; the rest is room
    /// for the next read.
    block: BytesMut,
    filled: usize,
    /// Where the next `\n` in `block[..filled]` is, once found.
    newline: Option<usize>,
    /// `block[..scanned]` has no `\n`.
    scanned: usize,
    /// The input offset of `block[0]`.
    offset: u64,
    eof: bool,
    /// [`BLOCK_BYTES`] and [`MAX_KEPT_LINE_BYTES`], smaller in tests.
    block_bytes: usize,
    max_kept: usize,
    /// Each block read whole ([`Self::reading_whole_blocks`]).
    whole_blocks: bool,
}

impl<R: Read + AsFd> LineReader<R> {
    /// A reader of a source's input (a file, standard input), positioned
    /// at byte `offset`: a regular file's blocks are read whole
    /// ([`Self::reading_whole_blocks`]); a pipe's, a terminal's or a
    /// device's as they arrive, so that their lines never wait for a
    /// whole block.
    pub(super) fn of_input(input: R, offset: u64) -> Self {
        let regular = is_regular_file(&input);
        let reader = Self::new(input, offset);
        if regular {
            reader.reading_whole_blocks()
        } else {
            reader
        }
    }
}

/// Whether `input` is a regular file, whose reads never wait. Anything
/// that cannot be told is not.
fn is_regular_file(input: &impl AsFd) -> bool {
    input
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|file| file.metadata())
        .is_ok_and(|metadata| metadata.is_file())
}

impl<R: Read> LineReader<R> {
    pub(super) fn new(reader: R, offset: u64) -> Self {
        Self::with_sizes(reader, offset, BLOCK_BYTES, MAX_KEPT_LINE_BYTES)
    }

    /// A reader with other block and line sizes, so that tests can cross
    /// block boundaries and cut lines with small inputs.
    fn with_sizes(reader: R, offset: u64, block_bytes: usize, max_kept: usize) -> Self {
        debug_assert!(block_bytes > 0 && max_kept > 0);
        Self {
            reader,
            block: BytesMut::new(),
            filled: 0,
            newline: None,
            scanned: 0,
            offset,
            eof: false,
            block_bytes,
            max_kept,
            whole_blocks: false,
        }
    }

    /// A reader of a regular file, whose reads never wait for input: each
    /// block is read whole, into memory that is not zeroed first
    /// (`read_to_end` reads into a list's spare room; a slice handed to
    /// `read` must be zeroed, which was 1.6% of a zstd run's CPU: issue
    /// #17). Not for a pipe or a terminal: a block read whole would keep
    /// the lines already there waiting for the rest of it.
    fn reading_whole_blocks(self) -> Self {
        Self {
            whole_blocks: true,
            ..self
        }
    }

    /// Whether the next line is already read: [`Self::next_line`] will not
    /// wait for the input.
    fn line_ready(&self) -> bool {
        self.newline.is_some()
    }

    /// Finds the next `\n` in what is read, scanning each byte once.
    fn find_newline(&mut self) -> Option<usize> {
        if self.newline.is_none() {
            self.newline = memchr::memchr(b'\n', &self.block[self.scanned..self.filled]).map(|at| self.scanned + at);
            self.scanned = self.newline.unwrap_or(self.filled);
        }
        self.newline
    }

    /// Takes the first `length` bytes read, and `skip` more after them.
    fn take(&mut self, length: usize, skip: usize) -> Bytes {
        let taken = self.block.split_to(length + skip).freeze().slice(..length);
        self.filled -= length + skip;
        self.offset += (length + skip) as u64;
        self.newline = None;
        self.scanned = 0;
        self.find_newline();
        taken
    }

    /// Reads more input after what is read; `Ok(false)` at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.filled == self.block.len() && self.whole_blocks {
            // A new block read whole, the unfinished line copied to its
            // start; at the end of the input it holds that line only.
            let size = self.block_bytes.max(2 * self.filled);
            let mut next = Vec::with_capacity(size);
            next.extend_from_slice(&self.block[..self.filled]);
            // (`read_to_end` retries an interrupted read itself.)
            let read = (&mut self.reader)
                .take((size - self.filled) as u64)
                .read_to_end(&mut next)?;
            self.block = BytesMut::from(Bytes::from(next));
            self.filled += read;
            self.eof = read == 0;
            return Ok(!self.eof);
        }
        if self.filled == self.block.len() {
            // Full (or shared with records): a new block, the unfinished
            // line copied to its start.
            let mut next = BytesMut::zeroed(self.block_bytes.max(2 * self.filled));
            next[..self.filled].copy_from_slice(&self.block[..self.filled]);
            self.block = next;
        }
        let read = loop {
            match self.reader.read(&mut self.block[self.filled..]) {
                Ok(read) => break read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        };
        self.filled += read;
        self.eof = read == 0;
        Ok(!self.eof)
    }

    /// Reads the next line (without its line ending).
    fn next_line(&mut self) -> io::Result<Option<(Line, Bytes)>> {
        loop {
            if let Some(at) = self.find_newline() {
                let length = if at > 0 && self.block[at - 1] == b'\r' {
                    at - 1
                } else {
                    at
                };
                return Ok(Some(self.take_line(length, at + 1 - length)));
            }
            if self.filled > self.max_kept {
                // No newline yet, and already too long: keep the first
                // bytes and skip the rest, without holding it in memory.
                return self.cut_line().map(Some);
            }
            if !self.fill()? {
                if self.filled == 0 {
                    return Ok(None);
                }
                // A last line without a newline.
                let length = self.filled;
                return Ok(Some(self.take_line(length, 0)));
            }
        }
    }

    /// Takes the line of `length` bytes at the start of what is read, and
    /// its `ending`. A line over the limit is cut wherever it starts in the
    /// block: one read can bring in the whole of a long line, newline
    /// included, so the limit is applied here as well as in [`Self::cut_line`].
    fn take_line(&mut self, length: usize, ending: usize) -> (Line, Bytes) {
        let start = self.offset;
        let full_length = length as u64;
        if length <= self.max_kept {
            return (Line { start, full_length }, self.take(length, ending));
        }
        let kept = self.take(self.max_kept, 0);
        self.take(0, length - self.max_kept + ending);
        (Line { start, full_length }, kept)
    }

    /// A line longer than the limit whose end is not read yet: its first
    /// bytes, and the rest of it read and skipped.
    fn cut_line(&mut self) -> io::Result<(Line, Bytes)> {
        let start = self.offset;
        let kept = self.take(self.max_kept, 0);
        let mut full_length = kept.len() as u64;
        let mut last = kept.last().copied();
        loop {
            if let Some(at) = self.find_newline() {
                full_length += at as u64;
                if at > 0 {
                    last = Some(self.block[at - 1]);
                }
                if last == Some(b'\r') {
                    full_length -= 1;
                }
                self.take(0, at + 1);
                break;
            }
            full_length += self.filled as u64;
            last = self.block[..self.filled].last().copied().or(last);
            let filled = self.filled;
            self.take(0, filled);
            if !self.fill()? {
                break;
            }
        }
        Ok((Line { start, full_length }, kept))
    }

    /// Skips the line at the current offset (the checkpointed one).
    pub(super) fn skip_line(&mut self) -> io::Result<()> {
        self.next_line().map(|_| ())
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
        let mut arrival = Utc::now();
        while let Some((line, data)) = self.next_line()? {
            if line.full_length > data.len() as u64 {
                tracing::warn!(
                    path,
                    offset = line.start,
                    length = line.full_length,
                    kept = data.len(),
                    "line is too long; its first bytes go to the error output"
                );
            }
            chunk_bytes += data.len();
            chunk.push(Record {
                data,
                position: Position {
                    source: source.clone(),
                    offset: Offset::new(SequenceNumber::from_u64(line.start), 0),
                },
                partition_key: None,
                arrival,
            });
            // Send when the chunk is full, and before a read that may block
            // (a pipe whose writer is slow): records never wait in here.
            let may_block = !self.line_ready();
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

    /// A reader that hands out its input in the given pieces, one per read
    /// (a pipe whose writer writes them one by one).
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some(piece) = self.0.front_mut() else { return Ok(0) };
            let n = piece.len().min(out.len());
            out[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.0.pop_front();
            }
            Ok(n)
        }
    }

    fn read_all<R: Read>(reader: R) -> Vec<(u64, Vec<u8>, u64)> {
        read_all_as(LineReader::new(reader, 0))
    }

    fn read_all_as<R: Read>(mut reader: LineReader<R>) -> Vec<(u64, Vec<u8>, u64)> {
        let mut out = Vec::new();
        while let Some((line, data)) = reader.next_line().unwrap() {
            out.push((line.start, data.to_vec(), line.full_length));
        }
        out
    }

    /// The lines of `input`, read whole and read a few bytes at a time
    /// (3, or 4093 for a large input): both must agree.
    fn lines(input: &[u8]) -> Vec<(u64, Vec<u8>, u64)> {
        let whole = read_all(input);
        let piece = if input.len() < BLOCK_BYTES { 3 } else { 4093 };
        let trickled = read_all(Pieces(input.chunks(piece).map(<[u8]>::to_vec).collect()));
        assert_eq!(whole, trickled, "read whole and read a few bytes at a time");
        let blocks = read_all_as(
            LineReader::new(Pieces(input.chunks(piece).map(<[u8]>::to_vec).collect()), 0).reading_whole_blocks(),
        );
        assert_eq!(whole, blocks, "read as from a file, a block at a time");
        whole
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
        assert_eq!(lines(b"\r\n"), [(0, b"".to_vec(), 0)]);
    }

    #[test]
    fn lines_across_blocks_keep_their_bytes_and_offsets() {
        // Lines of many lengths, some longer than a block, over several
        // blocks: every line comes back whole, at its offset.
        let mut input = Vec::new();
        let mut expected = Vec::new();
        let mut length = 0usize;
        while input.len() < 5 * BLOCK_BYTES {
            length = (length * 7 + 13) % 5000 + if expected.len() % 97 == 0 { BLOCK_BYTES + 11 } else { 0 };
            let line: Vec<u8> = (0..length).map(|i| b'a' + ((i + expected.len()) % 26) as u8).collect();
            expected.push((input.len() as u64, line.clone(), length as u64));
            input.extend_from_slice(&line);
            input.extend_from_slice(if expected.len() % 2 == 0 { b"\r\n" } else { b"\n" });
        }
        assert_eq!(read_all(input.as_slice()), expected);
        assert_eq!(
            read_all(Pieces(input.chunks(65_537).map(<[u8]>::to_vec).collect())),
            expected
        );
        assert_eq!(
            read_all_as(LineReader::new(input.as_slice(), 0).reading_whole_blocks()),
            expected
        );
    }

    #[test]
    fn cuts_lines_that_are_too_long() {
        let mut input = vec![b'a'; MAX_KEPT_LINE_BYTES + 10];
        input.extend_from_slice(b"\r\nnext\n");
        let found = lines(&input);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].1, vec![b'a'; MAX_KEPT_LINE_BYTES]);
        assert_eq!(found[0].2, MAX_KEPT_LINE_BYTES as u64 + 10);
        assert_eq!(
            (found[1].0, found[1].1.as_slice()),
            (MAX_KEPT_LINE_BYTES as u64 + 12, &b"next"[..])
        );
        // Cut, and no newline before the end.
        let found = lines(&vec![b'b'; MAX_KEPT_LINE_BYTES + 5]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].1.len(), found[0].2),
            (MAX_KEPT_LINE_BYTES, MAX_KEPT_LINE_BYTES as u64 + 5)
        );
    }

    #[test]
    fn cuts_long_lines_wherever_they_start_in_the_block() {
        // Regression: the cut happened only when the long line started a
        // block. Here it starts 2 bytes in, and the first read brings in the
        // whole line with its newline: it was kept whole (17 MiB).
        let mut input = b"x\n".to_vec();
        input.extend(std::iter::repeat_n(
            b'a',
            MAX_KEPT_LINE_BYTES + MAX_KEPT_LINE_BYTES / 16,
        ));
        input.extend_from_slice(b"\nnext\n");
        let mut reader = LineReader::new(input.as_slice(), 0);
        let mut found = Vec::new();
        while let Some((line, data)) = reader.next_line().unwrap() {
            found.push((line.start, data.len(), line.full_length));
        }
        let long = (MAX_KEPT_LINE_BYTES + MAX_KEPT_LINE_BYTES / 16) as u64;
        assert_eq!(found, [(0, 1, 1), (2, MAX_KEPT_LINE_BYTES, long), (2 + long + 1, 4, 4)]);
    }

    /// The lines of `input` as a simple split computes them: `(start,
    /// kept bytes, full length)`, `\n` or `\r\n` ending a line, a last line
    /// without a newline kept as it is, each line's bytes cut to `max_kept`.
    fn reference_split(input: &[u8], max_kept: usize) -> Vec<(u64, Vec<u8>, u64)> {
        let mut lines = Vec::new();
        let mut start = 0;
        while start < input.len() {
            let (content, next) = match input[start..].iter().position(|&b| b == b'\n') {
                Some(at) => {
                    let line = &input[start..start + at];
                    (line.strip_suffix(b"\r").unwrap_or(line), start + at + 1)
                }
                None => (&input[start..], input.len()),
            };
            let kept = content[..content.len().min(max_kept)].to_vec();
            lines.push((start as u64, kept, content.len() as u64));
            start = next;
        }
        lines
    }

    /// Bytes rich in line endings, so that lines are short and long, empty
    /// and cut, and `\r` lands everywhere.
    fn input_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![3 => Just(b'\n'), 2 => Just(b'\r'), 10 => Just(b'a'), 2 => any::<u8>()],
            0..400,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever the bytes, the block size, the line limit and the sizes
        /// the input arrives in, the reader finds the reference's lines, at
        /// the reference's offsets, and never panics.
        #[test]
        fn lines_match_a_simple_split(
            input in input_bytes(),
            block_bytes in 1usize..64,
            max_kept in 1usize..80,
            pieces in proptest::collection::vec(1usize..50, 1..20),
            start in 0u64..1_000_000,
            whole_blocks in proptest::prelude::any::<bool>(),
        ) {
            let mut cut = Vec::new();
            let mut rest = input.as_slice();
            for size in pieces.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at((*size).min(rest.len()));
                cut.push(piece.to_vec());
                rest = tail;
            }
            let mut reader = LineReader::with_sizes(Pieces(cut.into_iter().collect()), start, block_bytes, max_kept);
            if whole_blocks {
                reader = reader.reading_whole_blocks();
            }
            let mut found = Vec::new();
            while let Some((line, data)) = reader.next_line().unwrap() {
                found.push((line.start, data.to_vec(), line.full_length));
            }
            let expected: Vec<_> = reference_split(&input, max_kept)
                .into_iter()
                .map(|(offset, kept, length)| (start + offset, kept, length))
                .collect();
            proptest::prop_assert_eq!(found, expected);
        }
    }

    /// A named pipe's lines come out as they arrive: with the writer still
    /// holding it open, the first line is read without waiting for a
    /// block's worth (which a regular file's whole-block reads would).
    #[test]
    fn a_named_pipes_lines_do_not_wait_for_a_whole_block() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe");
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new().write(true).open(writer_path).unwrap();
            pipe.write_all(b"{\"a\":1}\n{\"b\":2}\n").unwrap();
            pipe.flush().unwrap();
            // Held open until the reader has its lines (or gave up).
            let _ = wait.recv_timeout(std::time::Duration::from_secs(30));
        });
        let (lines, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = LineReader::of_input(std::fs::File::open(path).unwrap(), 0);
            let mut next = || reader.next_line().unwrap().map(|(_, data)| data);
            let (first, second) = (next(), next());
            let _ = lines.send((first, second));
        });
        let read = got.recv_timeout(std::time::Duration::from_secs(10));
        done.send(()).unwrap();
        writer.join().unwrap();
        let (first, second) = read.expect("the lines waited for the writer to close the pipe");
        assert_eq!(first.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(second.as_deref(), Some(&b"{\"b\":2}"[..]));
    }

    #[test]
    fn says_when_the_next_line_would_wait_for_the_input() {
        let pieces = [b"a\nb\n".to_vec(), b"c".to_vec(), b"\n".to_vec()];
        let mut reader = LineReader::new(Pieces(pieces.into_iter().collect()), 0);
        let mut next = || {
            let (_, data) = reader.next_line().unwrap().unwrap();
            (data, reader.line_ready())
        };
        assert_eq!(next(), (Bytes::from_static(b"a"), true));
        // "c" is not whole yet: reading it may wait.
        assert_eq!(next(), (Bytes::from_static(b"b"), false));
        assert_eq!(next(), (Bytes::from_static(b"c"), false));
    }
}
