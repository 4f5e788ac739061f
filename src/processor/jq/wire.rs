//! The jq worker's frames, both ways: length-prefixed, so that records of
//! any bytes (not JSON, not UTF-8, with newlines) pass unchanged.
//!
//! - The first frame to the worker is its programs: JSON, `[[kind, query],
//!   ...]`, kind `"filter"` or `"metadata"`.
//! - Then one frame per record, its bytes; the worker answers each, in
//!   order, with one reply: a tag byte, `0` and the outputs (each its bytes
//!   and its `partitionKeyFromQuery` keys), or `1` and a failure (code,
//!   message). No outputs is a dropped record.
//!
//! Every length is a little-endian `u32`.

use std::io::{self, Read, Write};

/// One output of a record: its bytes and the keys the programs extracted.
pub type WireOutput = (Vec<u8>, Vec<(String, String)>);

/// What the programs made of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Outputs(Vec<WireOutput>),
    Failed { code: String, message: String },
}

/// The largest frame either side accepts: a record is at most the
/// source's largest (16 MiB), an answer at most `MAX_OUTPUTS` values.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Replies, one frame per record, in one allocation: reading a share of
/// records allocated, zeroed and freed a frame per record, which showed in
/// the pipeline's profile (issue #18, speed). Each output is copied out of
/// it (`Bytes::copy_from_slice`), so no record keeps the share's replies
/// alive after it is delivered.
#[derive(Debug, Default)]
pub struct Frames {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Frames {
    pub fn with_capacity(frames: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(frames),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Adds a frame (after dropping what a read cut short left).
    pub fn push(&mut self, frame: &[u8]) {
        self.discard();
        self.bytes.extend_from_slice(frame);
        self.ends.push(self.bytes.len());
    }

    /// Room for a next frame of `len` bytes, zeroed, to be read into and
    /// then kept with [`Self::keep`] or dropped with [`Self::discard`].
    pub fn next_frame(&mut self, len: usize) -> &mut [u8] {
        self.discard();
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        &mut self.bytes[start..]
    }

    /// The frame [`Self::next_frame`] made room for, as it was read.
    pub fn last_unkept(&self) -> &[u8] {
        &self.bytes[self.ends.last().copied().unwrap_or(0)..]
    }

    pub fn keep(&mut self) {
        self.ends.push(self.bytes.len());
    }

    /// Drops the bytes after the last kept frame: a read cut short (a
    /// worker that timed out mid-reply) leaves them.
    pub fn discard(&mut self) {
        self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
    }

    pub fn append(&mut self, mut other: Frames) {
        self.discard();
        other.discard();
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|end| base + end));
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| &self.bytes[start..end])
    }
}

pub fn write_frame(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len =
        u32::try_from(bytes.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)
}

/// One frame, or `None` at a clean end (no byte of a next frame).
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too large"));
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// A reply as the bytes of one frame.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    match reply {
        Reply::Outputs(outputs) => {
            out.push(0);
            put_len(&mut out, outputs.len());
            for (data, keys) in outputs {
                put_bytes(&mut out, data);
                put_len(&mut out, keys.len());
                for (name, value) in keys {
                    put_bytes(&mut out, name.as_bytes());
                    put_bytes(&mut out, value.as_bytes());
                }
            }
        }
        Reply::Failed { code, message } => {
            out.push(1);
            put_bytes(&mut out, code.as_bytes());
            put_bytes(&mut out, message.as_bytes());
        }
    }
    out
}

/// The reply in a frame's bytes.
pub fn decode_reply(frame: &[u8]) -> io::Result<Reply> {
    Ok(match view_reply(frame)? {
        ReplyView::Outputs(mut view) => {
            let mut outputs = Vec::with_capacity(view.left().min(1024));
            while let Some((data, keys)) = view.next_output()? {
                let keys = keys.pairs().map(|(name, value)| (name.to_owned(), value.to_owned()));
                outputs.push((data.to_vec(), keys.collect()));
            }
            Reply::Outputs(outputs)
        }
        ReplyView::Failed { code, message } => Reply::Failed {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    })
}

/// Whether a frame is a whole reply, read without copying anything.
pub fn check_reply(frame: &[u8]) -> io::Result<()> {
    if let ReplyView::Outputs(mut view) = view_reply(frame)? {
        while view.next_output()?.is_some() {}
    }
    Ok(())
}

/// A reply read in place, borrowing the frame: what [`decode_reply`]
/// gives without a copy of each output and a string per key (the
/// pipeline reads one reply per record: issue #18, speed).
pub enum ReplyView<'a> {
    Outputs(OutputsView<'a>),
    Failed { code: &'a str, message: &'a str },
}

/// A reply's outputs, read one at a time.
pub struct OutputsView<'a> {
    left: usize,
    at: Cursor<'a>,
}

impl<'a> OutputsView<'a> {
    /// Outputs not read yet.
    pub fn left(&self) -> usize {
        self.left
    }

    /// The next output's bytes and keys; `None` after the last.
    pub fn next_output(&mut self) -> io::Result<Option<(&'a [u8], KeysView<'a>)>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let data = self.at.bytes()?;
        let start = self.at.at;
        let count = self.at.len()?;
        for _ in 0..count {
            self.at.text()?;
            self.at.text()?;
        }
        let raw = &self.at.bytes[start..self.at.at];
        Ok(Some((data, KeysView { raw, count })))
    }
}

/// One output's keys, as the frame holds them (checked: UTF-8 names and
/// values).
pub struct KeysView<'a> {
    /// The keys' bytes in the frame, count included: equal bytes, equal
    /// keys.
    pub raw: &'a [u8],
    count: usize,
}

impl<'a> KeysView<'a> {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The keys, names and values, in the frame's order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut at = Cursor { bytes: self.raw, at: 4 };
        // Checked when the view was made: nothing here fails.
        (0..self.count).map_while(move |_| Some((at.text().ok()?, at.text().ok()?)))
    }
}

/// Reads a reply's header in place; its outputs are read by
/// [`OutputsView::next_output`].
pub fn view_reply(frame: &[u8]) -> io::Result<ReplyView<'_>> {
    let mut at = Cursor { bytes: frame, at: 0 };
    match at.byte()? {
        0 => Ok(ReplyView::Outputs(OutputsView { left: at.len()?, at })),
        1 => Ok(ReplyView::Failed {
            code: at.text()?,
            message: at.text()?,
        }),
        _ => Err(bad()),
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn bad() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed jq worker reply")
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(bad)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn len(&mut self) -> io::Result<usize> {
        let bytes: [u8; 4] = self.take(4)?.try_into().expect("four bytes");
        Ok(u32::from_le_bytes(bytes) as usize)
    }

    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    fn text(&mut self) -> io::Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn replies_round_trip(
            outputs in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..40), prop::collection::vec((".*", ".*"), 0..3)), 0..5),
            code in ".*", message in ".*", failed in any::<bool>(),
        ) {
            let reply = if failed { Reply::Failed { code, message } } else { Reply::Outputs(outputs) };
            prop_assert_eq!(decode_reply(&encode_reply(&reply)).unwrap(), reply);
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(frame in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_reply(&frame);
        }
    }

    /// A read cut short (a worker timed out mid-reply) leaves bytes that
    /// no frame may take in.
    #[test]
    fn frames_keep_only_whole_frames() {
        let mut frames = Frames::default();
        frames.push(b"one");
        frames.next_frame(4).copy_from_slice(b"half");
        frames.push(b"two");
        frames.next_frame(3).copy_from_slice(b"six");
        frames.keep();
        let mut other = Frames::default();
        other.push(b"seven");
        other.next_frame(2);
        frames.next_frame(5);
        frames.append(other);
        frames.push(b"");
        let all: Vec<&[u8]> = frames.iter().collect();
        assert_eq!(all, [&b"one"[..], b"two", b"six", b"seven", b""]);
        assert_eq!(frames.len(), 5);
    }

    #[test]
    fn frames_round_trip_and_a_clean_end_is_none() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, b"a\nb").unwrap();
        write_frame(&mut pipe, b"").unwrap();
        let mut input = &pipe[..];
        assert_eq!(read_frame(&mut input).unwrap().unwrap(), b"a\nb");
        assert_eq!(read_frame(&mut input).unwrap().unwrap(), b"");
        assert!(read_frame(&mut input).unwrap().is_none());
        let mut cut = &pipe[..5];
        assert!(read_frame(&mut cut).is_err(), "a frame cut short is an error");
    }
}
