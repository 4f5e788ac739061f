//! `spillway replay`: the one-off command that sends an archive back into
//! a stream or an endpoint. It is not a pipeline of its own: it writes the
//! configuration an operator would (an `archive` source and the chosen
//! destination), validates it like any other, and runs it `--once`, so a
//! replay has the checkpoints, retries and error output of every run, and
//! `--state` resumes an interrupted one.
//!
//! Printing targets (`--to -`, `--to file:PATH`) and `--dry-run` need no
//! delivery: [`print`] reads the same `archive` source (its filters, its
//! order, its error records) and writes or counts the records itself,
//! which is also the fastest way out of an archive.

pub mod print;
mod progress;
mod tally;

use std::path::{Path, PathBuf};

/// The command line of `spillway replay`, before it becomes a
/// configuration.
#[derive(Clone, Debug)]
pub struct ReplayArgs {
    /// `s3://bucket/prefix/` or a local directory.
    pub from: String,
    /// The archive's key prefix template, when it has a time part
    /// (`events/!{timestamp:yyyy/MM/dd/HH}/`): lets a time slice skip whole
    /// objects. Default: the prefix in `--from`.
    pub prefix: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    /// `kinesis:STREAM`, `http:URL`, `file:PATH` or `-`.
    pub to: String,
    /// The checkpoint file (`<dir>/<name>.checkpoint.json`); `None`: a
    /// fresh replay whose state is not kept.
    pub state: Option<PathBuf>,
    /// Where records the destination does not take go (error output).
    pub errors: PathBuf,
    /// Path-style S3 URLs for the archive: set when the S3 endpoint comes
    /// from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (an S3-compatible
    /// store, which seldom resolves `bucket.host` names).
    pub path_style: bool,
}

/// Why the command line makes no configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("--to {0:?} is not a destination: expected kinesis:STREAM, http:URL, file:PATH or - (stdout)")]
    BadTarget(String),
    #[error("--state {0:?}: only kinesis: and http: replays keep state; a file is written whole or not at all, so run it again")]
    StateOfPrint(String),
    #[error("--from {0:?}: expected s3://bucket/prefix/ or a directory")]
    BadSource(String),
    #[error("--state {0:?}: expected a file path such as ./orders.checkpoint.json")]
    BadState(String),
}

/// Where a replay sends its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A destination of the pipeline (`kinesis:`, `http:`), run `--once`.
    Deliver,
    /// NDJSON on standard output.
    Stdout,
    /// NDJSON into a new file.
    File(PathBuf),
}

impl Target {
    pub fn of(to: &str) -> Result<Self, ReplayError> {
        if to == "-" {
            return Ok(Self::Stdout);
        }
        if let Some(path) = to.strip_prefix("file:") {
            if path.is_empty() {
                return Err(ReplayError::BadTarget(to.to_owned()));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        let deliver = to.strip_prefix("kinesis:").is_some_and(|s| !s.is_empty())
            || to.starts_with("http:")
            || to.starts_with("https://");
        match deliver {
            true => Ok(Self::Deliver),
            false => Err(ReplayError::BadTarget(to.to_owned())),
        }
    }
}

/// Where the checkpoint of a replay is: its directory and its delivery
/// stream name (the file is `<dir>/<name>.checkpoint.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatePlace {
    pub dir: PathBuf,
    pub name: String,
}

impl StatePlace {
    /// `--state FILE`: `dir/name.checkpoint.json` names the checkpoint file
    /// itself; any other file name is the name (`FILE.checkpoint.json`).
    pub fn of(file: &Path) -> Result<Self, ReplayError> {
        let bad = || ReplayError::BadState(file.display().to_string());
        let file_name = file.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
        let name = file_name.strip_suffix(".checkpoint.json").unwrap_or(file_name);
        if name.is_empty() {
            return Err(bad());
        }
        let dir = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            dir,
            name: name.to_owned(),
        })
    }
}

/// The configuration text of the replay, with its checkpoint at `state`.
/// A printing target or a dry run has no destination of the pipeline: the
/// text names the error directory as a `local` one, never written by the
/// pipeline, so that the source is validated as in any run.
pub fn config_text(args: &ReplayArgs, state: &StatePlace) -> Result<String, ReplayError> {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut text = format!("name = {}\n\n[source]\ntype = \"archive\"\n", quote(&state.name));
    let url_prefix = match args.from.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ReplayError::BadSource(args.from.clone()));
            }
            text += &format!("bucket = {}\n", quote(bucket));
            if args.path_style {
                text += "force_path_style = true\n";
            }
            prefix.to_owned()
        }
        None if args.from.contains("://") || args.from.is_empty() => {
            return Err(ReplayError::BadSource(args.from.clone()))
        }
        None => {
            text += &format!("path = {}\n", quote(&args.from));
            String::new()
        }
    };
    let prefix = args.prefix.clone().unwrap_or(url_prefix);
    text += &format!("prefix = {}\n", quote(&prefix));
    if let Some(start) = &args.start {
        text += &format!("start_time = {}\n", quote(start));
    }
    if let Some(end) = &args.end {
        text += &format!("end_time = {}\n", quote(end));
    }
    text += "\n[destination]\n";
    let errors = args.errors.display().to_string();
    if args.to == "-" || args.to.starts_with("file:") {
        Target::of(&args.to)?;
        text += &format!("type = \"local\"\npath = {}\n", quote(&errors));
    } else if let Some(stream) = args.to.strip_prefix("kinesis:") {
        text += &format!("type = \"kinesis\"\nstream = {}\n", quote(stream));
    } else if let Some(url) = args.to.strip_prefix("http:") {
        // `http:https://...`, or `http://...` written as is.
        let url = if url.starts_with("//") { args.to.as_str() } else { url };
        text += &format!("type = \"http\"\nurl = {}\n", quote(url));
    } else if args.to.starts_with("https://") {
        text += &format!("type = \"http\"\nurl = {}\n", quote(&args.to));
    } else {
        return Err(ReplayError::BadTarget(args.to.clone()));
    }
    if Target::of(&args.to)? == Target::Deliver {
        text += &format!("\n[destination.backup]\ntype = \"local\"\npath = {}\n", quote(&errors));
    }
    let dir = state.dir.display().to_string();
    text += &format!("\n[checkpoint]\npath = {}\n", quote(&dir));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(from: &str, to: &str) -> ReplayArgs {
        ReplayArgs {
            from: from.into(),
            prefix: None,
            start: Some("2026-11-01T00:00:00Z".into()),
            end: None,
            to: to.into(),
            state: None,
            errors: "replay-errors".into(),
            path_style: false,
        }
    }

    #[test]
    fn a_replay_is_an_archive_source_and_its_destination() {
        let state = StatePlace::of(Path::new("st/orders.checkpoint.json")).unwrap();
        assert_eq!(
            state,
            StatePlace {
                dir: "st".into(),
                name: "orders".into()
            }
        );
        let text = config_text(&args("s3://archive-bucket/events/", "kinesis:orders-restore"), &state).unwrap();
        let config = crate::config::parse(&text, "replay", &|_| None).unwrap();
        assert!(
            matches!(config.source, crate::config::SourceConfig::Archive(_)),
            "{text}"
        );
        assert!(
            matches!(config.destination, crate::config::DestinationConfig::Kinesis(_)),
            "{text}"
        );
        assert_eq!(config.name, "orders");

        let text = config_text(&args("/data/arch", "http:https://r.example/in"), &state).unwrap();
        let config = crate::config::parse(&text, "replay", &|_| None).unwrap();
        assert!(
            matches!(config.destination, crate::config::DestinationConfig::Http(_)),
            "{text}"
        );
    }

    #[test]
    fn what_is_not_a_replay_says_what_is_expected() {
        let state = StatePlace::of(Path::new("r")).unwrap();
        let err = config_text(&args("/a", "sqs:q"), &state).unwrap_err().to_string();
        assert_eq!(
            err,
            "--to \"sqs:q\" is not a destination: expected kinesis:STREAM, http:URL, file:PATH or - (stdout)"
        );
        let err = config_text(&args("/a", "file:"), &state).unwrap_err().to_string();
        assert!(err.starts_with("--to \"file:\" is not a destination"), "{err}");
        for to in ["-", "file:out.ndjson"] {
            let text = config_text(&args("/a", to), &state).unwrap();
            let config = crate::config::parse(&text, "replay", &|_| None).unwrap();
            assert!(matches!(config.source, crate::config::SourceConfig::Archive(_)));
        }
        let err = config_text(&args("gs://b/", "kinesis:s"), &state)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--from \"gs://b/\": expected s3://bucket/prefix/ or a directory");
    }
}
