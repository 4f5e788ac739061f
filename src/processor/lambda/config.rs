//! `[[processors]]` with `type = "lambda"`: its keys, and how they become a
//! [`LambdaConfig`].

use serde::Deserialize;
use spillway_destinations::endpoint::{self, EndpointUse};
use spillway_settings::Problems;

use crate::processor::contract::config::{
    self as batching, default_buffer_interval_seconds, default_buffer_size_mb, default_number_of_retries,
};
use crate::processor::contract::Batching;

/// A Lambda function called as Firehose calls a processing Lambda: records
/// in batches, through the Invoke API, retried on failure.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaSettings {
    /// The function: a name (`enrich`, `enrich:live`) or an ARN
    /// (`arn:aws:lambda:<region>:<account>:function:enrich`).
    pub function: String,
    /// Endpoint URL of any server of the Invoke API (tests, the Lambda
    /// runtime emulator). Default: the SDK's, which honours
    /// `AWS_ENDPOINT_URL_LAMBDA` and `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// AWS region; default: the function ARN's, else the standard chain.
    pub region: Option<String>,
    /// Record data per call, in MiB: 0.2 to 3. Default 1, as Firehose.
    #[serde(default = "default_buffer_size_mb")]
    pub buffer_size_mb: f64,
    /// Seconds records may wait for a batch to fill: 0 to 900. Default 60,
    /// as Firehose.
    #[serde(default = "default_buffer_interval_seconds")]
    pub buffer_interval_seconds: i64,
    /// Calls after the first for a batch that failed: 0 to 300. Default 3,
    /// as Firehose.
    #[serde(default = "default_number_of_retries")]
    pub number_of_retries: i64,
}

/// A validated `lambda` processor.
#[derive(Clone, Debug, PartialEq)]
pub struct LambdaConfig {
    pub function: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub batching: Batching,
}

impl LambdaSettings {
    /// The processor these settings describe, with every problem (at `key`,
    /// such as `processors[1]`) added to `problems`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<LambdaConfig> {
        let function = match function_problem(&self.function) {
            None => Some(self.function),
            Some(problem) => {
                problems.add(&format!("{key}.function"), problem);
                None
            }
        };
        let endpoint = self.endpoint.filter(|e| !e.is_empty());
        if let Some(Err(problem)) = endpoint.as_deref().map(|e| endpoint::check(e, EndpointUse::Kinesis)) {
            problems.add(&format!("{key}.endpoint"), problem);
        }
        let batching = batching::check(
            key,
            self.buffer_size_mb,
            self.buffer_interval_seconds,
            self.number_of_retries,
            problems,
        );
        let function = function?;
        let region = self
            .region
            .filter(|r| !r.is_empty())
            .or_else(|| arn_region(&function).map(str::to_owned));
        Some(LambdaConfig {
            function,
            endpoint,
            region,
            batching: batching?,
        })
    }
}

/// The region of a function ARN.
pub fn arn_region(function: &str) -> Option<&str> {
    let parts: Vec<&str> = function.split(':').collect();
    (parts.len() >= 7 && parts[0] == "arn").then(|| parts[3])
}

/// What is wrong with `function` as Lambda's `FunctionName`, if anything.
fn function_problem(function: &str) -> Option<String> {
    const EXPECTED: &str =
        "expected a function name (letters, digits, - and _, at most 64, optionally :qualifier) or arn:aws:lambda:<region>:<account>:function:<name>[:qualifier]";
    let name_and_qualifier = if function.starts_with("arn:") {
        let parts: Vec<&str> = function.splitn(7, ':').collect();
        let valid_prefix = parts.len() == 7
            && parts[1].starts_with("aws")
            && parts[2] == "lambda"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5] == "function";
        if !valid_prefix {
            return Some(format!("{function:?} is not a Lambda function ARN: {EXPECTED}"));
        }
        parts[6]
    } else {
        function
    };
    let (name, qualifier) = match name_and_qualifier.split_once(':') {
        Some((name, qualifier)) => (name, Some(qualifier)),
        None => (name_and_qualifier, None),
    };
    let name_ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let qualifier_ok = qualifier.is_none_or(|q| {
        (1..=128).contains(&q.len()) && q.bytes().all(|b| b.is_ascii_alphanumeric() || b"$-_".contains(&b))
    });
    (!name_ok || !qualifier_ok).then(|| format!("{function:?} is not a function name: {EXPECTED}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> LambdaSettings {
        toml::from_str(toml).unwrap()
    }

    fn problems_of(toml: &str) -> Vec<String> {
        let mut problems = Problems::default();
        settings(toml).check("processors[0]", &mut problems);
        problems
            .into_vec()
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn defaults_are_firehoses() {
        let mut problems = Problems::default();
        let config = settings(r#"function = "enrich""#)
            .check("processors[0]", &mut problems)
            .unwrap();
        assert!(problems.is_empty());
        assert_eq!(config.batching.limits.batch_data_bytes, 1024 * 1024);
        assert_eq!(config.batching.interval.as_secs(), 60);
        assert_eq!(config.batching.retries, 3);
        assert_eq!(config.region, None);
    }

    #[test]
    fn names_and_arns_are_functions_and_an_arn_gives_its_region() {
        for function in [
            "enrich",
            "enrich:live",
            "enrich:$LATEST",
            "arn:aws:lambda:eu-west-1:123456789012:function:enrich",
            "arn:aws:lambda:eu-west-1:123456789012:function:enrich:3",
        ] {
            assert_eq!(function_problem(function), None, "{function}");
        }
        let mut problems = Problems::default();
        let config = settings(r#"function = "arn:aws:lambda:eu-west-1:123456789012:function:enrich""#)
            .check("p", &mut problems)
            .unwrap();
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn each_bad_value_is_one_line_naming_key_value_and_what_is_allowed() {
        let found = problems_of(
            r#"
            function = "en rich"
            endpoint = "ftp://x"
            buffer_size_mb = 4.5
            buffer_interval_seconds = 901
            number_of_retries = -1
            "#,
        );
        assert_eq!(
            found,
            [
                "processors[0].function: \"en rich\" is not a function name: expected a function name (letters, digits, - and _, at most 64, optionally :qualifier) or arn:aws:lambda:<region>:<account>:function:<name>[:qualifier]",
                "processors[0].endpoint: \"ftp://x\" is not a URL: expected http://host[:port][/path] or https://...",
                "processors[0].buffer_size_mb: 4.5 is out of range: allowed 0.2 to 3",
                "processors[0].buffer_interval_seconds: 901 is out of range: allowed 0 to 900",
                "processors[0].number_of_retries: -1 is out of range: allowed 0 to 300",
            ]
        );
        assert_eq!(
            problems_of(r#"function = "arn:aws:s3:::bucket:x:y""#),
            ["processors[0].function: \"arn:aws:s3:::bucket:x:y\" is not a Lambda function ARN: expected a function name (letters, digits, - and _, at most 64, optionally :qualifier) or arn:aws:lambda:<region>:<account>:function:<name>[:qualifier]"]
        );
        assert!(toml::from_str::<LambdaSettings>("function = \"f\"\nbuffer_size = 1").is_err());
    }
}
