//! Logging through `tracing`: human-readable by default, JSON lines on
//! request, always to standard error. The level comes from `--log-level`
//! or `SPILLWAY_LOG` (an `EnvFilter` directive such as `info` or
//! `spillway=debug`).
//!
//! Every line spillway writes to standard error, log or not, goes through
//! here, because a line is also a way to hurt the run or its reader:
//! - a closed or failing standard error (`spillway run ... 2>&1 | head`)
//!   must not take the pipeline down: write errors are ignored;
//! - a value from outside (a file name, a key, a record's text) must not
//!   forge a line or drive the terminal: control characters in field
//!   values are escaped in text logs (JSON logs escape them already);
//! - a secret must not appear: each line passes through
//!   [`spillway_destinations::redact::text_for_logs`], which also catches
//!   what the AWS SDK logs itself;
//! - colour codes only go to a terminal.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write as _};

use spillway_destinations::redact;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A `--log-level` (or `SPILLWAY_LOG`) that is neither a level nor
/// `target=level` directives.
#[derive(Debug, thiserror::Error)]
#[error("--log-level (or SPILLWAY_LOG): {value:?} is not a log level: allowed off, error, warn, info, debug, trace, or comma-separated target=level directives such as spillway=debug")]
pub struct LogLevelError {
    pub value: String,
}

/// The filter `level` names: a level, or `target=level` directives
/// (`EnvFilter`'s syntax). A bare word that is not a level (`verbose`,
/// `warning`) is refused too, though `EnvFilter`'s syntax allows a bare
/// target: a mistyped level is far likelier than a target meant at every
/// level, which `target=trace` still says.
pub fn filter(level: &str) -> Result<EnvFilter, LogLevelError> {
    let refused = || LogLevelError {
        value: level.to_owned(),
    };
    let directives: Vec<&str> = level.split(',').map(str::trim).collect();
    let each_names_a_level = directives
        .iter()
        .all(|directive| directive.contains('=') || directive.parse::<tracing::level_filters::LevelFilter>().is_ok());
    if directives.iter().any(|d| d.is_empty()) || !each_names_a_level {
        return Err(refused());
    }
    EnvFilter::builder().parse(level).map_err(|_| refused())
}

/// Installs the global subscriber, logging at `level` (checked with
/// [`filter`] first; `info` if it is not one).
pub fn init(format: LogFormat, level: &str) {
    let filter = filter(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // Its own report of a failed write goes to stderr with
        // `eprintln!`, which panics when stderr is closed.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.fmt_fields(EscapedFields).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

/// Writes one line of ours (an error, a `validate` problem) to standard
/// error, as log lines are written: secrets blanked, control characters
/// escaped, write errors ignored.
pub fn eprint_line(text: &str) {
    let shown = redact::text_for_logs(text);
    let line = format!("{}\n", escape_controls(&shown));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Writes one line to standard output, ignoring write errors (a closed
/// pipe is the reader's choice, not a failure).
pub fn print_line(text: &str) {
    let shown = redact::text_for_logs(text);
    let line = format!("{}\n", escape_controls(&shown));
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// `text` with every control character escaped (`\n`, `\r`, `\t`,
/// `\u{1b}`...), so that it stays on its line and cannot drive a terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Standard error for the subscriber: one formatted event per write,
/// redacted, and never an error (the pipeline goes on without its logs).
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let shown = redact::text_for_logs(&text);
        let _ = std::io::stderr().lock().write_all(shown.as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Text logs' fields as the default formatter writes them (`message
/// name=value ...`), with control characters escaped in every value.
struct EscapedFields;

impl<'w> MakeVisitor<Writer<'w>> for EscapedFields {
    type Visitor = EscapedVisitor<'w>;

    fn make_visitor(&self, target: Writer<'w>) -> Self::Visitor {
        EscapedVisitor {
            writer: target,
            result: Ok(()),
            first: true,
        }
    }
}

struct EscapedVisitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl Visit for EscapedVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let text = format!("{value:?}");
        let escaped = escape_controls(&text);
        let pad = if self.first { "" } else { " " };
        self.first = false;
        self.result = match field.name() {
            "message" => write!(self.writer, "{pad}{escaped}"),
            name => write!(self.writer, "{pad}{}={escaped}", name.trim_start_matches("r#")),
        };
    }
}

impl VisitOutput<fmt::Result> for EscapedVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_taken_and_anything_else_refused() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "warn,spillway=debug",
            "spillway=trace",
            "aws_config=warn,info",
        ] {
            assert!(filter(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "verbose",
            "warning",
            "info,",
            "spillway=loud",
            "spillway=debug,chatty",
        ] {
            let err = filter(bad).unwrap_err();
            assert_eq!(err.value, bad);
        }
        assert_eq!(
            filter("verbose").unwrap_err().to_string(),
            "--log-level (or SPILLWAY_LOG): \"verbose\" is not a log level: allowed off, error, warn, info, \
             debug, trace, or comma-separated target=level directives such as spillway=debug"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("a\nb\r\tc\u{1b}[31m\u{9b}d"),
            "a\\nb\\r\\tc\\u{1b}[31m\\u{9b}d"
        );
        assert!(matches!(escape_controls("plain text é"), Cow::Borrowed(_)));
    }
}
