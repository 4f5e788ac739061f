//! `spillway replay --to -`, `--to file:PATH` and `--dry-run`: the archive
//! source read without a pipeline behind it. Records are written as they
//! come, each one's bytes followed by a newline, in the order the source
//! sends them (each original shard in order); a dry run only counts them.
//!
//! Why not a destination of the pipeline: there is nothing to batch,
//! compress, acknowledge or checkpoint in a stream of lines, and the
//! pipeline's stages would only slow the fastest way out of an archive.
//! The source runs on the runtime, the writing on the calling thread, so
//! decoding and writing overlap.
//!
//! A file is written beside its path under a temporary name and linked to
//! it only when complete (create-only: an existing file is refused), so a
//! failed or killed replay leaves no half file under the name. What the
//! source cannot read (a truncated object, a foreign file) is logged with
//! its key and written as error records under `--errors`, as in any run;
//! a dry run counts it and writes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use spillway_transforms::{Record, Rejection};
use tokio::sync::mpsc;

use super::progress::Progress;
pub use super::tally::Tally;
use crate::source::archive::{self, ArchiveConfig, ReadProgress};
use crate::source::{SourceError, SourceEvent};

/// Why a record is not printed: it holds a line break and is not JSON.
fn multi_line_rejection() -> Rejection {
    Rejection {
        output_type: spillway_transforms::ErrorOutputType::FormatConversionFailed,
        code: "Record.MultiLine",
        message: "the record holds a line break and is not JSON: it cannot be one line of NDJSON".to_owned(),
    }
}

/// Where the records go.
#[derive(Clone, Debug)]
pub enum Output {
    Stdout,
    File(PathBuf),
    /// `--dry-run`: counted, not written.
    Count,
}

/// Why a printing replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("{0} exists: a replay writes a new file (remove it, or choose another path)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Reads the archive `config` names and writes (or counts) its records;
/// error records go under `errors`.
pub fn run(config: ArchiveConfig, output: Output, errors: &Path) -> Result<Tally, PrintError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let mut sink = Sink::open(&output, errors)?;
    let progress = Arc::new(ReadProgress::default());
    let (events, mut received) = mpsc::channel(8);
    let reader = {
        let progress = progress.clone();
        runtime.spawn(async move { archive::read(&config, &events, &progress).await })
    };
    let mut shown = Progress::new(matches!(output, Output::Count));
    let mut tally = Tally::default();
    let mut outcome = Ok(());
    while let Some(event) = received.blocking_recv() {
        let written = match event {
            SourceEvent::Records(records) => sink.records(&records, &mut tally),
            SourceEvent::Refused(refused) => sink.refused(&refused, &mut tally),
            SourceEvent::Failed(err) => Err(err.into()),
            // An archive has no leases: never sent here.
            SourceEvent::Processed(_) | SourceEvent::Ended { .. } | SourceEvent::ShardReleased { .. } => Ok(()),
        };
        if let Err(err) = written {
            outcome = Err(err);
            break;
        }
        shown.update(&tally, &progress);
    }
    // Dropping the receiver stops the reader at its next send.
    drop(received);
    let read = runtime.block_on(reader).expect("the archive reader does not panic");
    tally.objects = progress.objects_read.load(std::sync::atomic::Ordering::Relaxed);
    shown.finish(&tally, &progress);
    match (outcome, read) {
        (Err(PrintError::Write { source, .. }), _) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            // `spillway replay --to - | head`: the reader went away.
            sink.abandon();
            Ok(tally)
        }
        (Err(err), _) => {
            sink.abandon();
            Err(err)
        }
        (Ok(()), Err(err)) if !matches!(err, SourceError::Archive(archive::ArchiveError::Stopped)) => {
            sink.abandon();
            Err(err.into())
        }
        (Ok(()), _) => {
            sink.finish()?;
            Ok(tally)
        }
    }
}

/// Where records and error records are written.
struct Sink {
    out: Option<Box<dyn Write>>,
    /// The name shown in errors (`stdout`, or the file's path).
    name: String,
    /// The file's temporary name and its final one.
    file: Option<(PathBuf, PathBuf)>,
    errors_dir: PathBuf,
    /// Opened at the first error record.
    errors: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    dry_run: bool,
}

impl Sink {
    fn open(output: &Output, errors_dir: &Path) -> Result<Self, PrintError> {
        let mut sink = Self {
            out: None,
            name: "stdout".to_owned(),
            file: None,
            errors_dir: errors_dir.to_path_buf(),
            errors: None,
            dry_run: false,
        };
        match output {
            Output::Count => sink.dry_run = true,
            Output::Stdout => sink.out = Some(Box::new(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout()))),
            Output::File(path) => {
                if path.exists() {
                    return Err(PrintError::Exists(path.clone()));
                }
                let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
                let staged = path.with_file_name(format!(".{name}.spillway-{}.partial", std::process::id()));
                let write_error = |source| PrintError::Write {
                    path: staged.display().to_string(),
                    source,
                };
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&staged)
                    .map_err(write_error)?;
                sink.out = Some(Box::new(std::io::BufWriter::with_capacity(1 << 20, file)));
                sink.name = path.display().to_string();
                sink.file = Some((staged, path.clone()));
            }
        }
        Ok(sink)
    }

    fn write_error(&self, source: std::io::Error) -> PrintError {
        PrintError::Write {
            path: self.name.clone(),
            source,
        }
    }

    /// Each record on one line: a JSON record holding line breaks (kept
    /// byte for byte by envelope lines and Parquet) with its line breaks
    /// made spaces, as a `json_lines` destination writes it; any other
    /// record holding a `\n` cannot be one line, and goes to the error
    /// output (`Record.MultiLine`) rather than being read back as several.
    fn records(&mut self, records: &[Record], tally: &mut Tally) -> Result<(), PrintError> {
        let Some(out) = self.out.as_mut() else {
            records.iter().for_each(|r| tally.count(r));
            return Ok(());
        };
        let mut scratch = Vec::new();
        let mut multi_line = Vec::new();
        for record in records {
            let data = &record.data[..];
            let line = if memchr::memchr2(b'\n', b'\r', data).is_none() {
                data
            } else if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok() {
                spillway_transforms::format::as_one_line(data, &mut scratch)
            } else if memchr::memchr(b'\n', data).is_some() {
                multi_line.push((record.clone(), multi_line_rejection()));
                continue;
            } else {
                data
            };
            let written = out.write_all(line).and_then(|()| out.write_all(b"\n"));
            if let Err(err) = written {
                return Err(self.write_error(err));
            }
            tally.count(record);
        }
        if multi_line.is_empty() {
            return Ok(());
        }
        self.refused(&multi_line, tally)
    }

    fn refused(&mut self, refused: &[(Record, Rejection)], tally: &mut Tally) -> Result<(), PrintError> {
        tally.refused += refused.len() as u64;
        for (_, why) in refused {
            tracing::warn!(error_code = why.code, reason = %why.message, "a record the archive could not give back goes to the error output");
        }
        if self.dry_run {
            return Ok(());
        }
        if self.errors.is_none() {
            let output_type = refused.first().map_or("errors", |(_, why)| why.output_type.as_str());
            let dir = self.errors_dir.join(output_type);
            let now = Utc::now().format("%Y%m%dT%H%M%SZ");
            let path = dir.join(format!("replay-{now}-{}.json", std::process::id()));
            let opened = std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::OpenOptions::new().write(true).create_new(true).open(&path));
            let file = opened.map_err(|source| PrintError::Write {
                path: path.display().to_string(),
                source,
            })?;
            self.errors = Some((path, std::io::BufWriter::new(file)));
        }
        let (path, errors) = self.errors.as_mut().expect("opened above");
        for (record, why) in refused {
            let line = spillway_transforms::error_record::render(record, why, 1, Utc::now());
            errors.write_all(&line).map_err(|source| PrintError::Write {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Flushes everything; a file gets its name.
    fn finish(mut self) -> Result<(), PrintError> {
        if let Some((path, mut errors)) = self.errors.take() {
            errors.flush().map_err(|source| PrintError::Write {
                path: path.display().to_string(),
                source,
            })?;
            tracing::warn!(path = %path.display(), "error records written");
        }
        if let Some(mut out) = self.out.take() {
            match out.flush() {
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(err) => {
                    drop(out);
                    self.abandon();
                    return Err(self.write_error(err));
                }
                Ok(()) => {}
            }
        }
        if let Some((staged, path)) = self.file.take() {
            let linked = std::fs::File::open(&staged)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::hard_link(&staged, &path));
            let _ = std::fs::remove_file(&staged);
            return match linked {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Err(PrintError::Exists(path)),
                Err(source) => Err(PrintError::Write {
                    path: path.display().to_string(),
                    source,
                }),
            };
        }
        Ok(())
    }

    /// A failed replay leaves no file under the name.
    fn abandon(&mut self) {
        self.out = None;
        if let Some((staged, _)) = self.file.take() {
            let _ = std::fs::remove_file(staged);
        }
        if let Some((_, mut errors)) = self.errors.take() {
            let _ = errors.flush();
        }
    }
}
