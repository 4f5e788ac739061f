//! The stdin source: NDJSON on standard input.
//!
//! A pipe cannot be resumed, so each run reads its input whole under a
//! source id of its own (`stdin-<start time in ms>`): object names from one
//! run can never collide with another's.

use async_trait::async_trait;
use spillway_transforms::SourceId;

use super::lines::LineReader;
use super::{Source, SourceContext, SourceError, SourceEvent};
use crate::checkpoint::Checkpointer;

/// `[source]` with `type = "stdin"`: NDJSON on standard input, one record
/// per line, read until end of input. A pipe cannot be resumed: every run
/// reads its input whole. No other keys.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSettings {}

pub struct StdinSource {
    id: SourceId,
}

impl StdinSource {
    /// Also forgets the stdin sources of earlier runs, which cannot resume.
    pub fn new(checkpoints: &Checkpointer) -> Self {
        checkpoints.forget_where(|id| id.as_str().starts_with("stdin-"));
        Self {
            id: SourceId::new(format!("stdin-{}", chrono::Utc::now().timestamp_millis())),
        }
    }
}

#[async_trait]
impl Source for StdinSource {
    async fn run(self: Box<Self>, context: SourceContext) {
        std::thread::Builder::new()
            .name("stdin-source".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                let mut reader = LineReader::of_input(stdin.lock(), 0);
                let event = match reader.send_all(&self.id, "stdin", &context.events) {
                    Ok(true) => SourceEvent::Ended {
                        source: self.id.clone(),
                        flush: false,
                    },
                    Ok(false) => return,
                    Err(source) => SourceEvent::Failed(SourceError::Io {
                        path: "stdin".into(),
                        source,
                    }),
                };
                let _ = context.events.blocking_send(event);
            })
            .expect("spawning the stdin source thread");
    }

    fn describe(&self) -> String {
        format!("standard input (source id {})", self.id)
    }
}
