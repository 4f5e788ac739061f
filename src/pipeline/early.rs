//! A data buffer encoded as it fills (issue #17): each record pushed into
//! the data buffer is written at once into the buffer's object, format and
//! codec, and lets go of its data ([`crate::buffer::Filling`]).
//!
//! Why: a streamed object ([`super::payload`]) is encoded only once its
//! buffer is full, so the first buffer of a run filled on one core while
//! the other waited, and each buffer held its records' read blocks until
//! its object was written: two buffers of blocks, every one of them memory
//! the kernel had to fault in and zero. Encoded as it fills, the codec's
//! threads compress the buffer while the router fills it, and a read block
//! goes as soon as its records are written; the buffer holds its records'
//! places and tickets, and its object, compressed.
//!
//! Only where that loses nothing ([`fills_of`]): an object store's data
//! buffer (not an endpoint's, which sends records, nor partitions or
//! per-shard buffers, each of which would hold a codec), a streamable
//! format, a codec that compresses on every core (gzip, zstd; a buffer
//! too small for that, or no codec, is streamed as before), and no
//! `retry_duration`: a put that gives up turns its records into error
//! records, which needs their data.

use std::io::Write;
use std::sync::{Arc, Mutex};

use spillway_destinations::compression::Encoder;
use spillway_destinations::Compression;
use spillway_transforms::{Format, Record};

use crate::buffer::{Filling, Fills};
use crate::config::{Config, DestinationConfig};

/// What opens the data buffer's [`Filling`] for `config`, if its data
/// buffer is encoded as it fills (see the module).
pub(super) fn fills_of(config: &Config) -> Option<Arc<dyn Fills>> {
    let DestinationConfig::Objects(objects) = &config.destination else {
        return None;
    };
    let expected_bytes = config.buffer.max_bytes;
    let every_core = objects.compression.threads_for(expected_bytes) > 1;
    let takes = config.format.is_streamable()
        && every_core
        && objects.retry_duration.is_none()
        && !config.partitioning.enabled
        && config.glue.is_none();
    takes.then(|| {
        Arc::new(Early {
            format: config.format.clone(),
            compression: objects.compression,
            expected_bytes,
        }) as Arc<dyn Fills>
    })
}

/// Opens [`Object`]s of one format and codec.
#[derive(Debug)]
struct Early {
    format: Format,
    compression: Compression,
    /// About the size of a buffer's records: what the codec's threads are
    /// chosen by.
    expected_bytes: usize,
}

impl Fills for Early {
    fn open(&self) -> Box<dyn Filling> {
        let out = Output::default();
        let encoder = self.compression.encoder(out.clone(), "", self.expected_bytes);
        let (encoder, failed) = match encoder {
            Ok(encoder) => (Some(encoder), None),
            Err(err) => (None, Some(err)),
        };
        Box::new(Object {
            format: self.format.clone(),
            encoder: Mutex::new(encoder),
            out,
            failed,
        })
    }
}

/// One buffer's object, as its records arrive.
struct Object {
    format: Format,
    /// `None` once a write has failed. In a lock only so that buffers may
    /// be shared between threads (`Sync`); reached through `&mut self`
    /// (`get_mut`), never locked.
    encoder: Mutex<Option<Box<dyn Encoder>>>,
    out: Output,
    /// The first error, returned by [`Filling::finish`].
    failed: Option<std::io::Error>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("format", &self.format)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Filling for Object {
    fn write(&mut self, record: &Record) {
        let encoder = self.encoder.get_mut().expect("the encoder's lock is never poisoned");
        let Some(writer) = encoder else {
            return;
        };
        let writer: &mut dyn Write = &mut **writer;
        if let Err(err) = self.format.write_records(std::slice::from_ref(record), writer) {
            *encoder = None;
            self.failed = Some(err);
        }
    }

    fn finish(self: Box<Self>) -> std::io::Result<Vec<u8>> {
        let Object {
            encoder, out, failed, ..
        } = *self;
        if let Some(err) = failed {
            return Err(err);
        }
        let encoder = encoder.into_inner().expect("the encoder's lock is never poisoned");
        encoder.expect("an object without an error has its encoder").finish()?;
        let bytes = std::mem::take(&mut *out.0.lock().expect("the output's lock is never poisoned"));
        Ok(bytes)
    }
}

/// The compressed object, written by the codec (from its threads too).
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("the output's lock is never poisoned")
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use spillway_transforms::record::{Offset, Position};
    use spillway_transforms::{SequenceNumber, SourceId};

    use super::*;

    fn records(n: u64) -> Vec<Record> {
        (1..=n)
            .map(|i| Record {
                // Lines of every length, one pretty-printed, one with its
                // own newline.
                data: Bytes::from(match i % 50 {
                    7 => format!("{{\n  \"n\": {i}\n}}"),
                    8 => format!("{{\"n\":{i}}}\n"),
                    _ => format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat((i % 300) as usize)),
                }),
                position: Position {
                    source: SourceId::new("s"),
                    offset: Offset::new(SequenceNumber::from_u64(i), 0),
                },
                partition_key: Some(format!("k{}", i % 3).into()),
                arrival: chrono::Utc::now(),
            })
            .collect()
    }

    /// What is encoded as the records come is, decompressed, what the
    /// format makes of them all at once: every streamable format, both
    /// codecs, on every core and on one.
    #[test]
    fn an_object_filled_record_by_record_is_the_batch_encoded_whole() {
        let records = records(20_000);
        let formats = [
            Format::JsonLines,
            Format::JsonLinesEnvelope,
            Format::Raw {
                delimiter: Some(b"\r\n".to_vec()),
            },
            Format::Raw { delimiter: None },
        ];
        for format in formats {
            for compression in [Compression::Zstd, Compression::Gzip] {
                for expected_bytes in [1, 64 * 1024 * 1024] {
                    let early = Early {
                        format: format.clone(),
                        compression,
                        expected_bytes,
                    };
                    let mut object = early.open();
                    for record in &records {
                        object.write(record);
                    }
                    let body = object.finish().unwrap();
                    let whole = format.encode(&records).body;
                    assert!(
                        compression.decompress(&body).unwrap() == whole,
                        "{format:?} {compression:?} {expected_bytes}: other bytes"
                    );
                }
            }
        }
    }

    fn fills(destination: &str) -> bool {
        fills_with(64, destination)
    }

    fn fills_with(size_mb: u32, destination: &str) -> bool {
        let text = format!("name = \"t\"\n[source]\ntype = \"stdin\"\n[buffer]\nsize_mb = {size_mb}\n{destination}\n");
        let config = crate::config::parse(&text, "test", &|_| None).unwrap();
        fills_of(&config).is_some()
    }

    /// Encoded as it fills only where nothing will need the records'
    /// data and the codec compresses on every core.
    #[test]
    fn only_a_store_whose_records_are_not_needed_again_fills_early() {
        let local = "[destination]\ntype = \"local\"\npath = \"out\"\n";
        if std::thread::available_parallelism().map_or(1, usize::from) > 1 {
            assert!(fills(&format!("{local}compression = \"zstd\"")));
            assert!(fills(&format!("{local}compression = \"gzip\"")));
            assert!(fills(&format!(
                "[format]\ntype = \"raw\"\n{local}compression = \"zstd\""
            )));
        }
        // No codec, one that runs on one core, or a buffer too small for
        // every core: streamed as before.
        assert!(!fills(local));
        assert!(!fills(&format!("{local}compression = \"snappy\"")));
        assert!(!fills(&format!("{local}compression = \"zip\"")));
        assert!(!fills_with(1, &format!("{local}compression = \"zstd\"")));
        // A put that may give up turns its records into error records.
        assert!(!fills(&format!(
            "{local}compression = \"zstd\"\nretry_duration_seconds = 60"
        )));
        // Partitions: a codec each.
        let partitioned = format!(
            "[[processors]]\ntype = \"metadata_extraction\"\nquery = '{{k: .k}}'\n[dynamic_partitioning]\nenabled = true\n{local}compression = \"zstd\"\nprefix = \"k=!{{partitionKeyFromQuery:k}}/\"\n"
        );
        assert!(!fills(&partitioned));
    }

    /// A write that fails is kept and returned at the end, and nothing is
    /// written after it: the batch fails rather than an object missing
    /// records.
    #[test]
    fn a_failed_write_fails_the_object() {
        struct Broken(usize);
        impl Write for Broken {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += 1;
                match self.0 {
                    3 => Err(std::io::Error::other("the disk is full")),
                    _ => Ok(buf.len()),
                }
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl Encoder for Broken {
            fn finish(self: Box<Self>) -> std::io::Result<()> {
                panic!("a failed object is not finished")
            }
        }
        let mut object = Box::new(Object {
            format: Format::JsonLines,
            encoder: Mutex::new(Some(Box::new(Broken(0)))),
            out: Output::default(),
            failed: None,
        });
        for record in &records(3) {
            object.write(record);
        }
        assert!(
            object.encoder.get_mut().unwrap().is_none(),
            "no write after the failure"
        );
        let err = object.finish().unwrap_err();
        assert_eq!(err.to_string(), "the disk is full");
    }
}
