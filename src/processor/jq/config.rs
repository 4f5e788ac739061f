//! `[[processors]] type = "jq"` and `type = "metadata_extraction"`: a jq
//! program, compiled when the configuration is checked, so that `validate`
//! refuses one that does not compile.

use std::sync::Arc;

use serde::Deserialize;
use spillway_settings::Problems;

use super::{JqChain, Program, Step, StepKind};
use crate::processor::config::{BuildContext, KeysProduced, ProcessorSpec};
use crate::processor::Processor;

/// `type = "jq"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JqSettings {
    /// The jq program run on each record (jaq's dialect): no value drops
    /// the record, n values make n records.
    pub query: String,
}

/// `type = "metadata_extraction"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataExtractionSettings {
    /// A jq program giving one object of string or number values per
    /// record: its keys become `!{partitionKeyFromQuery:NAME}`.
    pub query: String,
}

impl JqSettings {
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<JqSpec> {
        JqSpec::compile(self.query, StepKind::Filter, key, problems)
    }
}

impl MetadataExtractionSettings {
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<JqSpec> {
        JqSpec::compile(self.query, StepKind::Metadata, key, problems)
    }
}

/// A checked jq-based processor.
pub struct JqSpec {
    pub query: String,
    pub step: Step,
}

impl std::fmt::Debug for JqSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JqSpec")
            .field("kind", &self.step.kind)
            .field("query", &self.query)
            .finish()
    }
}

impl JqSpec {
    fn compile(query: String, kind: StepKind, key: &str, problems: &mut Problems) -> Option<Self> {
        match Program::compile(&query) {
            Ok(program) => Some(Self {
                step: Step {
                    kind,
                    query: query.as_str().into(),
                    program: Arc::new(program),
                },
                query,
            }),
            Err(why) => {
                problems.add(&format!("{key}.query"), format!("{query:?} {why}"));
                None
            }
        }
    }

    /// A description for logs.
    pub fn describe(&self) -> String {
        let kind = match self.step.kind {
            StepKind::Filter => "jq",
            StepKind::Metadata => "metadata_extraction",
        };
        format!("{kind} {:?}", self.query)
    }
}

#[async_trait::async_trait]
impl ProcessorSpec for JqSpec {
    fn kind(&self) -> &'static str {
        match self.step.kind {
            StepKind::Filter => "jq",
            StepKind::Metadata => "metadata_extraction",
        }
    }

    fn keys_produced(&self) -> KeysProduced {
        match self.step.kind {
            StepKind::Filter => KeysProduced::None,
            StepKind::Metadata => KeysProduced::FromQuery(None),
        }
    }

    async fn build(&self, _context: &BuildContext<'_>) -> Result<Arc<dyn Processor>, String> {
        Ok(Arc::new(JqChain::new(vec![self.step.clone()], self.describe())))
    }

    fn as_jq(&self) -> Option<&JqSpec> {
        Some(self)
    }
}
