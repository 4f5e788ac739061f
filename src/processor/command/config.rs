//! `[[processors]]` with `type = "command"`: its keys, and how they become a
//! [`CommandConfig`].

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use spillway_settings::Problems;

use crate::processor::contract::config::{
    self as batching, default_buffer_interval_seconds, default_buffer_size_mb, default_number_of_retries,
};
use crate::processor::contract::Batching;

/// A long-lived local process that speaks the Firehose Lambda contract on
/// its standard input and output, one JSON document per line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSettings {
    /// The program and its arguments, such as `["python3",
    /// "contrib/firehose_handler_runner.py", "handlers/enrich.py"]`; the
    /// program is looked up in `PATH` unless it holds a `/`. It runs in
    /// spillway's working directory.
    pub command: Vec<String>,
    /// Record data per call, in MiB: 0.2 to 3. Default 1.
    #[serde(default = "default_buffer_size_mb")]
    pub buffer_size_mb: f64,
    /// Seconds records may wait for a batch to fill: 0 to 900. Default 60.
    #[serde(default = "default_buffer_interval_seconds")]
    pub buffer_interval_seconds: i64,
    /// Calls after the first for a batch that failed: 0 to 300. Default 3.
    #[serde(default = "default_number_of_retries")]
    pub number_of_retries: i64,
    /// Seconds to wait for one answer before the process is restarted and
    /// the call counts as failed: 1 to 900. Default 300 (Firehose's limit
    /// on a Lambda call).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: i64,
}

fn default_timeout_seconds() -> i64 {
    300
}

/// A validated `command` processor.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandConfig {
    pub command: Vec<String>,
    pub batching: Batching,
    pub timeout: Duration,
}

impl CommandSettings {
    /// The processor these settings describe, with every problem (at `key`)
    /// added to `problems`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<CommandConfig> {
        let command = match self.command.first() {
            None => {
                problems.add(
                    &format!("{key}.command"),
                    "[] is empty: expected the program and its arguments, such as [\"python3\", \"handler.py\"]",
                );
                None
            }
            Some(program) => match program_problem(program) {
                Some(problem) => {
                    problems.add(&format!("{key}.command"), problem);
                    None
                }
                None => Some(self.command),
            },
        };
        let timeout = problems.in_range(&format!("{key}.timeout_seconds"), self.timeout_seconds, (1, 900));
        let batching = batching::check(
            key,
            self.buffer_size_mb,
            self.buffer_interval_seconds,
            self.number_of_retries,
            problems,
        );
        Some(CommandConfig {
            command: command?,
            batching: batching?,
            timeout: Duration::from_secs(timeout? as u64),
        })
    }
}

/// Why `program` cannot be started, if it cannot: what `run` would find
/// when it spawns it, found by `validate` first.
fn program_problem(program: &str) -> Option<String> {
    if program.is_empty() {
        return Some("the program (first element) is \"\": expected a program name or path".to_owned());
    }
    let found = if program.contains('/') {
        is_executable(Path::new(program))
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program))))
    };
    (!found).then(|| format!("program {program:?} is not an executable file (a name is looked up in PATH)"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(toml: &str) -> Vec<String> {
        let mut problems = Problems::default();
        toml::from_str::<CommandSettings>(toml)
            .unwrap()
            .check("processors[2]", &mut problems);
        problems
            .into_vec()
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn a_program_in_path_with_defaults_is_fine() {
        let mut problems = Problems::default();
        let config = toml::from_str::<CommandSettings>(r#"command = ["sh", "-c", "cat"]"#)
            .unwrap()
            .check("p", &mut problems)
            .unwrap();
        assert!(problems.is_empty());
        assert_eq!(config.timeout.as_secs(), 300);
        assert_eq!(config.batching.retries, 3);
    }

    #[test]
    fn what_run_cannot_start_is_refused_naming_the_key() {
        assert_eq!(
            problems_of("command = []"),
            ["processors[2].command: [] is empty: expected the program and its arguments, such as [\"python3\", \"handler.py\"]"]
        );
        assert_eq!(
            problems_of("command = [\"no-such-program-spillway\"]\ntimeout_seconds = 0"),
            [
                "processors[2].command: program \"no-such-program-spillway\" is not an executable file (a name is looked up in PATH)",
                "processors[2].timeout_seconds: 0 is out of range: allowed 1 to 900",
            ]
        );
        assert_eq!(
            problems_of("command = [\"./nowhere/x.py\"]"),
            ["processors[2].command: program \"./nowhere/x.py\" is not an executable file (a name is looked up in PATH)"]
        );
    }
}
