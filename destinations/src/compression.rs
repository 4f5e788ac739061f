//! Whole-object compression: each codec knows its file extension and the
//! `Content-Encoding` an object written with it carries.
//!
//! gzip and zstd use every core, so that compressing JSON lines keeps up
//! with the rest of the pipeline: gzip as independent members compressed in
//! parallel ([`gzip`]), zstd in its own multithreaded mode. Both stream:
//! compressed bytes reach the inner writer while the input is still coming,
//! so a large object is never whole in memory. An object of one gzip block
//! is compressed on the caller's thread (gzip starts its threads when a
//! second block comes), and so is a zstd object too small to give every
//! core a job ([`Compression::every_core_from`]): zstd must choose before
//! the first byte, so it goes by the size it is told to expect
//! ([`Compression::threads_for`]). Small objects overlap one another
//! instead (up to `max_concurrent_puts`); starting zstd's threads and job
//! buffers (about 19 MiB) for each cost more than compressing it (issue
//! #17). Snappy's framing and zip are single-threaded.

mod gzip;

use std::io::{BufWriter, Read, Write};

/// A compressing writer; `finish` completes the stream (trailers,
/// checksums, a zip's central directory) and flushes it into the inner
/// writer.
pub trait Encoder: Write + Send {
    fn finish(self: Box<Self>) -> std::io::Result<()>;
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> Encoder for Plain<W> {
    fn finish(mut self: Box<Self>) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> Encoder for snap::write::FrameEncoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        (*self).into_inner().map_err(|e| e.into_error())?.flush()
    }
}

/// Records arrive as many small writes (a line, then its newline); each
/// write into zstd's stream is a call into C and, in multithreaded mode, a
/// hand-over to its job buffers. Buffering them first costs one copy.
const ZSTD_BUFFER_BYTES: usize = 256 * 1024;

/// The input of one job of multithreaded zstd. zstd's own choice at level
/// 3 is 8 MiB (four windows), and it keeps buffers for a few jobs in and
/// out: about 76 MiB per object being compressed, more than the records of
/// a 16 MB buffer. 2 MiB jobs took 58 MiB less peak memory on 64 MB
/// buffers, as fast, with objects 0.7% larger (issue #17,
/// docs/benchmarks.md).
const ZSTD_JOB_BYTES: u32 = 2 * 1024 * 1024;

struct ZstdEncoder<W: Write>(BufWriter<zstd::stream::write::Encoder<'static, W>>);

impl<W: Write> Write for ZstdEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> Encoder for ZstdEncoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        let encoder = self.0.into_inner().map_err(|err| err.into_error())?;
        encoder.finish()?.flush()
    }
}

/// The threads a codec may use: the cores this process may run on.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Zip wants to seek back to write entry sizes: the archive is built in
/// memory and written out at `finish` (zip objects are not streamed).
struct ZipEncoder<W> {
    zip: zip::ZipWriter<std::io::Cursor<Vec<u8>>>,
    inner: W,
}

impl<W: Write> Write for ZipEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.zip.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send> Encoder for ZipEncoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        let ZipEncoder { zip, mut inner } = *self;
        let archive = zip.finish().map_err(std::io::Error::other)?.into_inner();
        inner.write_all(&archive)?;
        inner.flush()
    }
}

/// A whole-object codec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    /// gzip (RFC 1952), via flate2 on zlib-rs, level 6; a large object is
    /// several members compressed in parallel, read as one stream.
    Gzip,
    /// Snappy's framed format (`.sz` streams), via snap.
    Snappy,
    /// Zstandard, via zstd, level 3, multithreaded.
    Zstd,
    /// A zip archive holding one entry, named after the object without its
    /// `.zip` extension.
    Zip,
}

impl Compression {
    pub const NAMES: &'static [&'static str] = &["none", "gzip", "snappy", "zstd", "zip"];

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Self::None,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "zstd" => Self::Zstd,
            "zip" => Self::Zip,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Zstd => "zstd",
            Self::Zip => "zip",
        }
    }

    /// The extension appended to the object name.
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Snappy => ".snappy",
            Self::Zstd => ".zst",
            Self::Zip => ".zip",
        }
    }

    /// The `Content-Encoding` of a compressed object. Zip is a container,
    /// not an encoding: its objects carry the `application/zip` content
    /// type instead (see [`Compression::content_type`]).
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Self::None | Self::Zip => None,
            Self::Gzip => Some("gzip"),
            Self::Snappy => Some("x-snappy-framed"),
            Self::Zstd => Some("zstd"),
        }
    }

    /// The content type of the object, given the content type of its
    /// uncompressed body.
    pub fn content_type(self, body_type: &'static str) -> &'static str {
        match self {
            Self::Zip => "application/zip",
            _ => body_type,
        }
    }

    /// The size of an object from which this codec compresses it on every
    /// core: gzip's members and zstd's jobs are compressed side by side
    /// once there are enough of them for every worker. `None` for the
    /// codecs that run on one core.
    pub fn every_core_from(self) -> Option<usize> {
        match self {
            Self::Gzip => Some(workers() * gzip::BLOCK_BYTES),
            Self::Zstd => Some(workers() * ZSTD_JOB_BYTES as usize),
            Self::None | Self::Snappy | Self::Zip => None,
        }
    }

    /// The threads zstd compresses an object of about `expected_bytes` on:
    /// every core from [`Self::every_core_from`], otherwise the caller's
    /// thread alone (see the module). gzip starts its threads only when a
    /// second block comes, whatever the size expected; the other codecs
    /// run on the caller's thread.
    pub fn threads_for(self, expected_bytes: usize) -> usize {
        match self {
            Self::Zstd if self.every_core_from().is_some_and(|from| expected_bytes < from) => 1,
            Self::Zstd | Self::Gzip => workers(),
            Self::None | Self::Snappy | Self::Zip => 1,
        }
    }

    /// Compresses a whole object. `entry_name` names the single entry of a
    /// zip archive; the other codecs ignore it.
    pub fn compress(self, body: &[u8], entry_name: &str) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(body.len() / 3);
        let mut encoder = self.encoder(&mut out, entry_name, body.len())?;
        encoder.write_all(body)?;
        encoder.finish()?;
        Ok(out)
    }

    /// Compresses a whole object it is given; with no codec, the object
    /// itself, not a copy (a Parquet file of a 64 MB buffer is tens of MB).
    pub fn compress_owned(self, body: Vec<u8>, entry_name: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Self::None => Ok(body),
            codec => codec.compress(&body, entry_name),
        }
    }

    /// A writer that compresses what it is given into `inner`, for objects
    /// produced piece by piece, of about `expected_bytes` (which decides
    /// the threads, [`Self::threads_for`]; any size may come).
    /// [`Encoder::finish`] must be called to write the codec's trailer. A
    /// zip archive is built whole in memory and written out at the end.
    pub fn encoder<'a, W: Write + Send + 'a>(
        self,
        inner: W,
        entry_name: &str,
        expected_bytes: usize,
    ) -> std::io::Result<Box<dyn Encoder + 'a>> {
        let threads = self.threads_for(expected_bytes);
        Ok(match self {
            Self::None => Box::new(Plain(inner)),
            Self::Gzip => Box::new(gzip::ParallelGzip::new(
                inner,
                flate2::Compression::default(),
                gzip::BLOCK_BYTES,
                threads,
            )),
            Self::Snappy => Box::new(snap::write::FrameEncoder::new(inner)),
            Self::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, 3)?;
                if threads > 1 {
                    encoder.multithread(threads as u32)?;
                    encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_BYTES))?;
                }
                Box::new(ZstdEncoder(BufWriter::with_capacity(ZSTD_BUFFER_BYTES, encoder)))
            }
            Self::Zip => {
                let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .large_file(true);
                zip.start_file(entry_name, options).map_err(std::io::Error::other)?;
                Box::new(ZipEncoder { zip, inner })
            }
        })
    }

    /// Reverses [`Compression::compress`]. For zip, the first entry.
    pub fn decompress(self, object: &[u8]) -> std::io::Result<Vec<u8>> {
        self.decompress_at_most(object, u64::MAX)
    }

    /// Decompresses `object` as [`Self::decompress`] does, but stops with
    /// an error of kind `FileTooLarge` as soon as the output would pass
    /// `limit` bytes: a small object that inflates without end (a
    /// decompression bomb) costs `limit` bytes, never all memory.
    pub fn decompress_at_most(self, object: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let bounded = limit.saturating_add(1);
        match self {
            Self::None => out.extend_from_slice(object),
            Self::Gzip => {
                flate2::read::MultiGzDecoder::new(object)
                    .take(bounded)
                    .read_to_end(&mut out)?;
            }
            Self::Snappy => {
                snap::read::FrameDecoder::new(object)
                    .take(bounded)
                    .read_to_end(&mut out)?;
            }
            Self::Zstd => {
                zstd::stream::read::Decoder::new(object)?
                    .take(bounded)
                    .read_to_end(&mut out)?;
            }
            Self::Zip => {
                let mut archive = zip::ZipArchive::new(std::io::Cursor::new(object)).map_err(std::io::Error::other)?;
                archive
                    .by_index(0)
                    .map_err(std::io::Error::other)?
                    .take(bounded)
                    .read_to_end(&mut out)?;
            }
        }
        if out.len() as u64 > limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("it decompresses to more than {limit} bytes"),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;

    use super::*;

    fn sample() -> Vec<u8> {
        let mut body = Vec::new();
        for i in 0..5_000 {
            body.extend_from_slice(format!("{{\"id\":{i},\"payload\":\"{}\"}}\n", "x".repeat(i % 37)).as_bytes());
        }
        body.extend_from_slice(&[0, 255, 1, 254]);
        body
    }

    #[test]
    fn every_codec_round_trips() {
        let body = sample();
        for name in Compression::NAMES {
            let codec = Compression::from_name(name).unwrap();
            assert_eq!(codec.name(), *name);
            let compressed = codec.compress(&body, "object.jsonl").unwrap();
            if codec != Compression::None {
                assert!(compressed.len() < body.len(), "{name} did not compress");
                assert_ne!(compressed, body);
            }
            assert_eq!(codec.decompress(&compressed).unwrap(), body, "{name}");
        }
    }

    #[test]
    fn an_owned_body_without_a_codec_is_not_copied() {
        let body = sample();
        let at = body.as_ptr();
        let same = Compression::None.compress_owned(body.clone(), "x").unwrap();
        assert_eq!(same, body);
        let moved = Compression::None.compress_owned(body, "x").unwrap();
        assert_eq!(moved.as_ptr(), at, "the body is handed back, not copied");
        for codec in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Snappy,
            Compression::Zip,
        ] {
            let compressed = codec.compress_owned(moved.clone(), "object.jsonl").unwrap();
            assert_eq!(codec.decompress(&compressed).unwrap(), moved, "{codec:?}");
        }
    }

    #[test]
    fn every_codec_round_trips_an_empty_body() {
        for name in Compression::NAMES {
            let codec = Compression::from_name(name).unwrap();
            let compressed = codec.compress(b"", "empty").unwrap();
            assert_eq!(codec.decompress(&compressed).unwrap(), b"", "{name}");
        }
    }

    #[test]
    fn outputs_are_readable_by_standard_readers() {
        let body = sample();
        // gzip magic, zstd magic, snappy framed stream identifier, zip local header.
        assert_eq!(&Compression::Gzip.compress(&body, "x").unwrap()[..2], &[0x1f, 0x8b]);
        assert_eq!(
            &Compression::Zstd.compress(&body, "x").unwrap()[..4],
            &[0x28, 0xb5, 0x2f, 0xfd]
        );
        assert_eq!(
            &Compression::Snappy.compress(&body, "x").unwrap()[..10],
            b"\xff\x06\x00\x00sNaPpY"
        );
        let zipped = Compression::Zip.compress(&body, "inner.jsonl").unwrap();
        assert_eq!(&zipped[..4], b"PK\x03\x04");
        let archive = zip::ZipArchive::new(std::io::Cursor::new(zipped)).unwrap();
        assert_eq!(archive.file_names().collect::<Vec<_>>(), ["inner.jsonl"]);
    }

    /// NDJSON-like lines, `bytes` long, that do not repeat within a block
    /// (a repeated record would compress better than real input).
    fn lines(bytes: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(bytes + 100);
        let mut i = 0u64;
        while body.len() < bytes {
            let hash = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            body.extend_from_slice(
                format!(
                    "{{\"id\":{i},\"user\":\"u{}\",\"score\":{}}}\n",
                    hash % 9973,
                    hash >> 50
                )
                .as_bytes(),
            );
            i += 1;
        }
        body.truncate(bytes);
        body
    }

    /// The command-line tools users read objects with decode a
    /// multi-member gzip object and a multithreaded zstd one to the same
    /// bytes: `gzip` (or Python's `gzip` module where it is missing) and
    /// `zstd` (skipped, saying so, where it is missing).
    #[test]
    fn command_line_tools_read_parallel_objects() {
        let body = lines(3 * gzip::BLOCK_BYTES + 12_345);
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("object.jsonl.gz");
        let compressed = Compression::Gzip.compress(&body, "x").unwrap();
        assert_eq!(gzip::tests::members(&compressed).len(), 4, "not one member per block");
        std::fs::write(&gz, compressed).unwrap();
        let decoded = match std::process::Command::new("gzip").arg("-dc").arg(&gz).output() {
            Ok(output) => output,
            Err(_) => std::process::Command::new("python3")
                .args([
                    "-c",
                    "import gzip, sys; sys.stdout.buffer.write(gzip.open(sys.argv[1]).read())",
                ])
                .arg(&gz)
                .output()
                .expect("neither gzip nor python3 to read a gzip object with"),
        };
        assert!(decoded.status.success(), "{}", String::from_utf8_lossy(&decoded.stderr));
        assert!(decoded.stdout == body, "gzip -dc gave other bytes");

        let zst = dir.path().join("object.jsonl.zst");
        let body = lines(Compression::Zstd.every_core_from().unwrap() + 12_345);
        std::fs::write(&zst, Compression::Zstd.compress(&body, "x").unwrap()).unwrap();
        match std::process::Command::new("zstd").arg("-dc").arg(&zst).output() {
            Ok(decoded) => {
                assert!(decoded.status.success(), "{}", String::from_utf8_lossy(&decoded.stderr));
                assert!(decoded.stdout == body, "zstd -dc gave other bytes");
            }
            Err(err) => eprintln!("zstd is not installed ({err}): the zstd object was not read with it"),
        }
    }

    /// zstd compresses an object on every core only from the size that
    /// gives every core work, a smaller one on the caller's thread; the
    /// codecs without threads always on one. Either side of that size (and
    /// of gzip's), and when the object is larger than expected, written
    /// in pieces, the object reads back whole.
    #[test]
    fn objects_too_small_for_every_core_are_compressed_on_one_thread() {
        let from = Compression::Zstd.every_core_from().unwrap();
        assert_eq!(Compression::Zstd.threads_for(0), 1);
        assert_eq!(Compression::Zstd.threads_for(from - 1), 1);
        assert_eq!(Compression::Zstd.threads_for(from), workers());
        // gzip decides by what comes (one block: no thread).
        assert_eq!(Compression::Gzip.threads_for(0), workers());
        for codec in [Compression::Gzip, Compression::Zstd] {
            let from = codec.every_core_from().unwrap();
            for (len, expected) in [(from - 1, from - 1), (from, from), (from + 4_321, 10)] {
                let body = lines(len);
                let mut out = Vec::new();
                let mut encoder = codec.encoder(&mut out, "x", expected).unwrap();
                for piece in body.chunks(300_001) {
                    encoder.write_all(piece).unwrap();
                }
                encoder.finish().unwrap();
                assert!(
                    codec.decompress(&out).unwrap() == body,
                    "{codec:?}: {len} bytes, {expected} expected: other bytes back"
                );
            }
        }
        for codec in [Compression::None, Compression::Snappy, Compression::Zip] {
            assert_eq!(codec.threads_for(usize::MAX), 1, "{codec:?}");
        }
    }

    /// Parallel members and zstd's threads cost little size: the objects
    /// are within 10% of a single-threaded, single-member encoding.
    #[test]
    fn parallel_outputs_are_about_as_small_as_single_threaded_ones() {
        let body = lines(Compression::Zstd.every_core_from().unwrap().max(4 * gzip::BLOCK_BYTES));
        let parallel = Compression::Gzip.compress(&body, "x").unwrap().len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        single.write_all(&body).unwrap();
        let single = single.finish().unwrap().len();
        assert!(parallel * 10 <= single * 11, "gzip: {parallel} against {single}");
        let threaded = Compression::Zstd.compress(&body, "x").unwrap().len();
        let single = zstd::encode_all(&body[..], 3).unwrap().len();
        assert!(threaded * 10 <= single * 11, "zstd: {threaded} against {single}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 24, ..Default::default() })]

        /// Any body, empty to past zstd's size for every core, written in
        /// any pieces, told its size or another, round-trips through gzip and
        /// zstd (on one thread or on every core) with the standard
        /// decoders.
        #[test]
        fn any_body_round_trips_through_gzip_and_zstd(
            seed in proptest::collection::vec(proptest::num::u8::ANY, 1..3_000),
            len in proptest::prop_oneof![
                0usize..10_000,
                0usize..(3 * gzip::BLOCK_BYTES + 5_000),
                // Right on a block boundary, or a byte either side.
                (1usize..4, 0usize..3).prop_map(|(blocks, off)| blocks * gzip::BLOCK_BYTES + off - 1),
                // Either side of zstd's size for every core.
                (0usize..3).prop_map(|off| Compression::Zstd.every_core_from().unwrap() + off - 1),
            ],
            // What the encoder is told to expect: the size, or another.
            told in proptest::prop_oneof![proptest::strategy::Just(None), (0usize..5_000_000).prop_map(Some)],
            writes in proptest::collection::vec(1usize..300_000, 1..6),
        ) {
            // The seed, each repetition altered, so that the body does not
            // compress to nothing.
            let body: Vec<u8> = (0..len).map(|i| seed[i % seed.len()] ^ ((i / seed.len()) as u8)).collect();
            for codec in [Compression::Gzip, Compression::Zstd] {
                let mut out = Vec::new();
                let mut encoder = codec.encoder(&mut out, "x", told.unwrap_or(body.len())).unwrap();
                let mut rest = &body[..];
                for size in writes.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (now, later) = rest.split_at((*size).min(rest.len()));
                    encoder.write_all(now).unwrap();
                    rest = later;
                }
                encoder.finish().unwrap();
                let decoded = match codec {
                    Compression::Gzip => {
                        let mut decoded = Vec::new();
                        flate2::read::MultiGzDecoder::new(&out[..]).read_to_end(&mut decoded).unwrap();
                        decoded
                    }
                    _ => zstd::decode_all(&out[..]).unwrap(),
                };
                proptest::prop_assert!(decoded == body, "{codec:?}: {} bytes back for {}", decoded.len(), body.len());
            }
        }
    }

    #[test]
    fn extensions_and_encodings() {
        let table: Vec<_> = Compression::NAMES
            .iter()
            .map(|n| {
                let c = Compression::from_name(n).unwrap();
                (
                    c.extension(),
                    c.content_encoding(),
                    c.content_type("application/x-ndjson"),
                )
            })
            .collect();
        assert_eq!(
            table,
            [
                ("", None, "application/x-ndjson"),
                (".gz", Some("gzip"), "application/x-ndjson"),
                (".snappy", Some("x-snappy-framed"), "application/x-ndjson"),
                (".zst", Some("zstd"), "application/x-ndjson"),
                (".zip", None, "application/zip"),
            ]
        );
        assert_eq!(Compression::from_name("lz4"), None);
    }
}
