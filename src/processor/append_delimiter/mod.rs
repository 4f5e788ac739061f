//! `append_delimiter`: a newline after each record (Firehose's
//! AppendDelimiterToRecord), for formats that write records as they are.

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::config::Ready;
use super::{Input, Outcome, Output, ProcessError, Processor};

/// `[[processors]] type = "append_delimiter"`: no keys ("\n", as Firehose).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendDelimiterSettings {}

impl AppendDelimiterSettings {
    pub fn check(self) -> Ready<AppendDelimiter> {
        Ready::new("append_delimiter", AppendDelimiter)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AppendDelimiter;

#[async_trait::async_trait]
impl Processor for AppendDelimiter {
    fn describe(&self) -> String {
        "append_delimiter (\\n)".into()
    }

    async fn process(&self, inputs: &[Input<'_>], _: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        Ok(inputs
            .iter()
            .map(|input| {
                let mut data = BytesMut::with_capacity(input.data.len() + 1);
                data.put_slice(input.data);
                data.put_u8(b'\n');
                Outcome::Ok(vec![Output::data(data.freeze())])
            })
            .collect())
    }
}
