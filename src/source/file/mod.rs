//! The file source: NDJSON files, read in order, each resumed after its
//! checkpoint.
//!
//! A file's source id names it in checkpoints and in object names, so two
//! files must never share one: a second file under the id of the first
//! would be skipped as archived already, or its objects taken for the
//! first's. The id is therefore the readable file name beside a hash of
//! the file's full path (see [`file_source_id`]).

mod config;

pub use config::FileSettings;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use spillway_transforms::SourceId;

use super::lines::LineReader;
use super::{Source, SourceContext, SourceError, SourceEvent};
use crate::checkpoint::Checkpointer;

/// Hex digits of the path hash in a source id (64 bits).
const PATH_HASH_DIGITS: usize = 16;

pub struct FileSource {
    paths: Vec<PathBuf>,
}

impl FileSource {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self { paths }
    }
}

/// The source id of a file: `file-<name>-<hash>`. The name is the file
/// name with characters other than `A-Z a-z 0-9 . _ -` replaced by `_`, for
/// people; the hash, 16 hex digits of the SHA-256 of the file's canonical
/// path (symbolic links resolved), tells apart files whose names sanitise
/// alike (`a b` and `a_b`) or are alike in other directories. The same file
/// keeps its id whatever the working directory or the path it is given by.
pub fn file_source_id(path: &Path) -> SourceId {
    let full = full_path(path);
    let name = path
        .file_name()
        .or_else(|| full.file_name())
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let readable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest = Sha256::digest(full.as_os_str().as_encoded_bytes());
    let hash: String = digest[..PATH_HASH_DIGITS / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    SourceId::new(format!("file-{readable}-{hash}"))
}

/// The path that identifies a file: canonical if it exists, else absolute
/// (it is then refused when opened anyway).
fn full_path(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Whether `id` is a file source id of the scheme before path hashes
/// (`file-<name>`), which named two files of the same name alike.
fn is_name_only_file_id(id: &SourceId) -> bool {
    let Some(rest) = id.as_str().strip_prefix("file-") else {
        return false;
    };
    let hashed = rest.len() > PATH_HASH_DIGITS
        && rest.as_bytes()[rest.len() - PATH_HASH_DIGITS - 1] == b'-'
        && rest[rest.len() - PATH_HASH_DIGITS..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    !hashed
}

/// Why a file is not read, beyond I/O errors.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("its checkpoint (offset {offset}) is not the start of a line: was the file changed, or is the checkpoint another file's? Delete the checkpoint to read it again from the start")]
    CheckpointNotALineStart { offset: u64 },
    #[error("it has the same source id ({id}) as {other}, a different file: rename one of them")]
    SameSourceId { id: SourceId, other: String },
}

impl FileError {
    fn at(self, path: &str) -> SourceError {
        SourceError::Io {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, self),
        }
    }
}

#[async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, context: SourceContext) {
        forget_name_only_checkpoints(&context.checkpoints);
        // A dedicated thread: reads block, and a blocked read (a FIFO) must
        // not keep the process from exiting once the pipeline has stopped.
        std::thread::Builder::new()
            .name("file-source".into())
            .spawn(move || read_files(&self.paths, &context))
            .expect("spawning the file source thread");
    }

    fn describe(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        format!("files {}", paths.join(", "))
    }
}

/// Checkpoints of files named by their name alone (written before source
/// ids carried a path hash) cannot tell which file they belong to: they are
/// dropped, and their files are read again under their new ids.
fn forget_name_only_checkpoints(checkpoints: &Checkpointer) {
    checkpoints.forget_where(|id| {
        let old = is_name_only_file_id(id);
        if old {
            tracing::warn!(
                source = %id,
                "dropping a file checkpoint of an older spillway, which named files by their name alone: its file is read again from the start under its new source id"
            );
        }
        old
    });
}

fn read_files(paths: &[PathBuf], context: &SourceContext) {
    // Each id once per run: a file listed twice is read once.
    let mut seen: Vec<(SourceId, PathBuf, String)> = Vec::new();
    for path in paths {
        let source = file_source_id(path);
        let shown = path.display().to_string();
        if let Some((_, full, other)) = seen.iter().find(|(id, _, _)| *id == source) {
            if *full != full_path(path) {
                let err = FileError::SameSourceId {
                    id: source,
                    other: other.clone(),
                };
                let _ = context.events.blocking_send(SourceEvent::Failed(err.at(&shown)));
                return;
            }
            tracing::warn!(path = %shown, other = %other, "file is listed twice; it is read once");
            continue;
        }
        seen.push((source.clone(), full_path(path), shown));
        match read_file(path, &source, &context.checkpoints, context) {
            Ok(true) => {
                if context
                    .events
                    .blocking_send(SourceEvent::Ended { source, flush: false })
                    .is_err()
                {
                    return;
                }
            }
            Ok(false) => return,
            Err(err) => {
                let _ = context.events.blocking_send(SourceEvent::Failed(err));
                return;
            }
        }
    }
}

/// Reads one file; `Ok(false)` if the pipeline stopped listening.
fn read_file(
    path: &Path,
    source: &SourceId,
    checkpoints: &Arc<Checkpointer>,
    context: &SourceContext,
) -> Result<bool, SourceError> {
    let shown = path.display().to_string();
    let io_error = |source| SourceError::Io {
        path: shown.clone(),
        source,
    };
    if checkpoints.is_finished(source) {
        tracing::info!(path = %shown, source = %source, "file was archived whole by an earlier run; skipping it");
        return Ok(true);
    }
    let mut file = File::open(path).map_err(io_error)?;
    let resume = checkpoints.checkpoint(source).and_then(|o| o.sequence_number.to_u64());
    let start = match resume {
        Some(offset) => {
            let length = file.metadata().map_err(io_error)?.len();
            if length <= offset {
                return Err(SourceError::ShorterThanCheckpoint {
                    path: shown,
                    length,
                    offset,
                });
            }
            if !is_line_start(&mut file, offset).map_err(io_error)? {
                return Err(FileError::CheckpointNotALineStart { offset }.at(&shown));
            }
            file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
            tracing::info!(path = %shown, source = %source, offset, "resuming after the checkpoint");
            offset
        }
        None => 0,
    };
    let mut reader = LineReader::of_input(file, start);
    if resume.is_some() {
        reader.skip_line().map_err(io_error)?;
    }
    reader.send_all(source, &shown, &context.events).map_err(io_error)
}

/// Whether a line starts at `offset`: it is 0, or the byte before it is a
/// newline. A checkpoint is the offset of a line, so anything else means
/// the file is not the one checkpointed, and resuming there would archive
/// the tail of a line as a record and the rest again.
fn is_line_start(file: &mut File, offset: u64) -> io::Result<bool> {
    if offset == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(offset - 1))?;
    let mut before = [0u8];
    file.read_exact(&mut before)?;
    Ok(before[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_sanitise_alike_get_different_ids() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["日志", "记录", "a b", "a_b", "a\u{e9}", "a\u{e8}"];
        let mut ids: Vec<String> = names
            .iter()
            .map(|n| file_source_id(&dir.path().join(n)).as_str().to_owned())
            .collect();
        assert!(
            ids[0].starts_with("file-__-") && ids[2].starts_with("file-a_b-"),
            "{ids:?}"
        );
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), names.len(), "{ids:?}");
        // The same name in another directory is another file.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            file_source_id(&dir.path().join("x")),
            file_source_id(&other.path().join("x"))
        );
    }

    #[test]
    fn a_file_keeps_its_id_whatever_the_path_it_is_given_by() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.ndjson");
        std::fs::write(&file, "{}\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let roundabout = dir.path().join("sub/../events.ndjson");
        assert_eq!(file_source_id(&file), file_source_id(&roundabout));
        let id = file_source_id(&file);
        assert!(!is_name_only_file_id(&id), "{id}");
    }

    #[test]
    fn ids_of_the_name_only_scheme_are_recognised() {
        for old in [
            "file-events.ndjson",
            "file-a_b",
            "file-x-0123456789abcdeF",
            "file-x-0123",
        ] {
            assert!(is_name_only_file_id(&SourceId::new(old.to_owned())), "{old}");
        }
        for other in ["file-x-0123456789abcdef", "shardId-000000000000", "stdin-1795315074364"] {
            assert!(!is_name_only_file_id(&SourceId::new(other.to_owned())), "{other}");
        }
    }

    #[test]
    fn line_starts_are_offset_zero_or_after_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "ab\ncd\n").unwrap();
        let mut file = File::open(&path).unwrap();
        let starts: Vec<u64> = (0..6).filter(|&o| is_line_start(&mut file, o).unwrap()).collect();
        assert_eq!(starts, [0, 3]);
    }
}
