//! The file source: NDJSON files, read in order, each resumed after its
//! checkpoint. A file's source id is its (sanitised) file name.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use spillway_transforms::SourceId;

use super::lines::LineReader;
use super::{Source, SourceContext, SourceError, SourceEvent};
use crate::checkpoint::Checkpointer;

pub struct FileSource {
    paths: Vec<PathBuf>,
}

impl FileSource {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self { paths }
    }
}

/// The source id of a file: its name, with characters other than
/// `A-Z a-z 0-9 . _ -` replaced by `_`.
pub fn file_source_id(path: &std::path::Path) -> SourceId {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    SourceId::new(format!("file-{id}"))
}

#[async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, context: SourceContext) {
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

fn read_files(paths: &[PathBuf], context: &SourceContext) {
    for path in paths {
        let source = file_source_id(path);
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
    path: &std::path::Path,
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
            file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
            tracing::info!(path = %shown, source = %source, offset, "resuming after the checkpoint");
            offset
        }
        None => 0,
    };
    let mut reader = LineReader::new(file, start);
    if resume.is_some() {
        reader.skip_line().map_err(io_error)?;
    }
    reader.send_all(source, &shown, &context.events).map_err(io_error)
}
