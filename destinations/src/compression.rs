//! Whole-object compression: each codec knows its file extension and the
//! `Content-Encoding` an object written with it carries.

use std::io::{Read, Write};

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

impl<W: Write + Send> Encoder for flate2::write::GzEncoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        (*self).finish()?.flush()
    }
}

impl<W: Write + Send> Encoder for snap::write::FrameEncoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        (*self).into_inner().map_err(|e| e.into_error())?.flush()
    }
}

impl<W: Write + Send> Encoder for zstd::stream::write::Encoder<'static, W> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        (*self).finish()?.flush()
    }
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
    /// gzip (RFC 1952), via flate2.
    Gzip,
    /// Snappy's framed format (`.sz` streams), via snap.
    Snappy,
    /// Zstandard, via zstd.
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

    /// Compresses a whole object. `entry_name` names the single entry of a
    /// zip archive; the other codecs ignore it.
    pub fn compress(self, body: &[u8], entry_name: &str) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(body.len() / 3);
        let mut encoder = self.encoder(&mut out, entry_name)?;
        encoder.write_all(body)?;
        encoder.finish()?;
        Ok(out)
    }

    /// A writer that compresses what it is given into `inner`, for objects
    /// produced piece by piece. [`Encoder::finish`] must be called to write
    /// the codec's trailer. A zip archive is built whole in memory and
    /// written out at the end.
    pub fn encoder<'a, W: Write + Send + 'a>(
        self,
        inner: W,
        entry_name: &str,
    ) -> std::io::Result<Box<dyn Encoder + 'a>> {
        Ok(match self {
            Self::None => Box::new(Plain(inner)),
            Self::Gzip => Box::new(flate2::write::GzEncoder::new(inner, flate2::Compression::default())),
            Self::Snappy => Box::new(snap::write::FrameEncoder::new(inner)),
            Self::Zstd => Box::new(zstd::stream::write::Encoder::new(inner, 3)?),
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
        let mut out = Vec::new();
        match self {
            Self::None => out.extend_from_slice(object),
            Self::Gzip => {
                flate2::read::MultiGzDecoder::new(object).read_to_end(&mut out)?;
            }
            Self::Snappy => {
                snap::read::FrameDecoder::new(object).read_to_end(&mut out)?;
            }
            Self::Zstd => out = zstd::decode_all(object)?,
            Self::Zip => {
                let mut archive = zip::ZipArchive::new(std::io::Cursor::new(object)).map_err(std::io::Error::other)?;
                archive
                    .by_index(0)
                    .map_err(std::io::Error::other)?
                    .read_to_end(&mut out)?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
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
