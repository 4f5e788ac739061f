//! End-to-end: what spillway prints, when the configuration, the
//! environment or the input is hostile (issue #16). No secret in any line,
//! a closed stderr that does not stop the run, lines that cannot be forged,
//! `validate` refusing first what `run` would refuse, and one line when no
//! AWS credentials exist.
//!
//! The AWS endpoints here are closed loopback ports: every failure these
//! tests look at happens before or at the first connection.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::*;

/// Secrets placed in configured URLs; none may appear in any output.
const SECRETS: [&str; 3] = ["hunter2pass", "tok3nsecret", "longusername"];

/// A loopback port nothing listens on: connections are refused at once.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `spillway` with an environment of test credentials only: nothing from
/// the caller's AWS setup can be found.
fn spillway_with_test_credentials() -> Command {
    let mut command = without_credentials();
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    command
}

/// `spillway` in an environment where the standard chain finds no
/// credentials (the reproduction of issue #16).
fn without_credentials() -> Command {
    let mut command = spillway();
    command
        .env_clear()
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::null());
    command
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_no_secret(output: &Output, what: &str) {
    let text = all_output(output);
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what}: {secret:?} in the output:\n{text}");
    }
}

fn run_in(dir: &Path, mut command: Command, args: &[&str]) -> Output {
    command.args(args).arg("--config").arg(dir.join("spillway.toml"));
    command.current_dir(dir).output().expect("running spillway")
}

fn s3_config(endpoint: &str) -> String {
    format!(
        r#"name = "clicks"
[source]
type = "file"
path = "events.ndjson"
[destination]
type = "s3"
bucket = "archive"
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
[checkpoint]
path = "state"
"#
    )
}

fn kinesis_config(endpoint: &str) -> String {
    format!(
        r#"name = "clicks"
[source]
type = "kinesis"
stream = "clicks"
region = "us-east-1"
endpoint = "{endpoint}"
[destination]
type = "local"
path = "archive"
[checkpoint]
path = "state"
"#
    )
}

fn local_config(input: &str) -> String {
    format!(
        r#"name = "clicks"
[source]
type = "file"
path = "{input}"
[buffer]
size_mb = 1
[destination]
type = "local"
path = "archive"
[checkpoint]
path = "state"
"#
    )
}

#[test]
fn an_s3_endpoint_with_user_information_never_shows_it_even_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.ndjson"), "{}\n").unwrap();
    let endpoint = format!("http://longusername:hunter2pass@127.0.0.1:{}", closed_port());
    write_config(dir.path(), &s3_config(&endpoint));
    for level in ["info", "debug"] {
        for format in ["text", "json"] {
            let output = run_in(
                dir.path(),
                spillway_with_test_credentials(),
                &["--log-level", level, "--log-format", format, "run"],
            );
            assert_eq!(output.status.code(), Some(1), "{}", all_output(&output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap();
            assert!(last.starts_with("error: destination check failed"), "{last}");
            assert_no_secret(&output, &format!("run at {level}, {format} logs"));
        }
    }
}

#[test]
fn an_s3_endpoint_with_a_query_is_refused_in_one_line_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!(
        "http://longusername:hunter2pass@127.0.0.1:{}/base?token=tok3nsecret",
        closed_port()
    );
    write_config(dir.path(), &s3_config(&endpoint));
    for command in ["validate", "run"] {
        let output = run_in(dir.path(), spillway_with_test_credentials(), &[command]);
        assert_eq!(output.status.code(), Some(2), "{command}: {}", all_output(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
        assert!(stderr.contains("destination.endpoint: \"http://127.0.0.1:"), "{stderr}");
        assert!(stderr.contains("must not have a query string"), "{stderr}");
        assert_no_secret(&output, command);
    }
}

#[test]
fn a_kinesis_endpoint_with_secrets_never_shows_them_at_the_default_level_or_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!(
        "http://longusername:hunter2pass@127.0.0.1:{}/?token=tok3nsecret",
        closed_port()
    );
    write_config(dir.path(), &kinesis_config(&endpoint));
    for level in ["info", "debug"] {
        for format in ["text", "json"] {
            let output = run_in(
                dir.path(),
                spillway_with_test_credentials(),
                &["--log-level", level, "--log-format", format, "run"],
            );
            assert_eq!(output.status.code(), Some(1), "{}", all_output(&output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            // The SDK warns that it ignores the query: the warning stays,
            // the query goes.
            assert!(
                stderr.contains("query specified in endpoint will be ignored"),
                "{level}, {format}: {stderr}"
            );
            assert!(
                stderr.lines().last().unwrap().starts_with("error: source failed"),
                "{stderr}"
            );
            assert_no_secret(&output, &format!("run at {level}, {format} logs"));
        }
    }
}

#[test]
fn validate_never_echoes_credentials_of_a_bad_url() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        r#"[source]
type = "kinesis"
stream = "clicks"
endpoint = "http://longusername:hunter2pass@:4567/?token=tok3nsecret"
[destination]
type = "http"
url = "https://longusername:hunter2pass@receiver.example:99999/in?token=tok3nsecret"
[destination.backup]
type = "s3"
bucket = "backup"
endpoint = "longusername:hunter2pass@minio:9000?token=tok3nsecret"
"#,
    );
    for command in ["validate", "run"] {
        let output = run_in(dir.path(), spillway(), &[command]);
        assert_eq!(output.status.code(), Some(2), "{}", all_output(&output));
        assert_no_secret(&output, command);
    }
    let output = run_in(dir.path(), spillway(), &["validate"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].ends_with(
            r#"source.endpoint: "http://:4567/" has no host: expected http://host[:port][/path] or https://..."#
        ),
        "{stderr}"
    );
    assert!(lines[1].ends_with(r#"destination.url: "https://receiver.example:99999/in" is not a valid URL (invalid port number): expected http://host[:port][/path] or https://..."#), "{stderr}");
    assert!(lines[2].ends_with(r#"destination.backup.endpoint: "minio:9000" is not a URL: expected http://host[:port][/path] or https://..."#), "{stderr}");
}

#[test]
fn validate_refuses_first_what_run_would_refuse_each_in_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.ndjson"), "{}\n").unwrap();
    std::fs::create_dir(dir.path().join("a-directory.ndjson")).unwrap();
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    let base = local_config("events.ndjson");
    let cases = [
        (
            base.replace("path = \"archive\"", "path = \"archive\"\nprefix = \"events/!{timestamp:'..'}/\""),
            "destination.prefix: \"events/!{timestamp:'..'}/\": makes keys such as \"events/../object\", which contains a '.' or '..' segment",
        ),
        (
            base.replace("path = \"archive\"", "path = \"archive\"\nprefix = \"!{timestamp:'/'yyyy}/\""),
            "destination.prefix: \"!{timestamp:'/'yyyy}/\": makes keys such as \"/2026/object\", which starts with '/'",
        ),
        (
            local_config("a-directory.ndjson"),
            "source.path: \"a-directory.ndjson\" is a directory: expected an NDJSON file (or a FIFO)",
        ),
        (
            base.replace("path = \"archive\"", "path = \"a-file\""),
            "destination.path: \"a-file\" exists and is not a directory: expected a directory (created if missing)",
        ),
        (
            base.replace("path = \"state\"", "path = \"a-file/state\""),
            "checkpoint.path: \"a-file/state\" cannot be created: \"a-file\" is not a directory",
        ),
        (
            base.replace(
                "type = \"local\"\npath = \"archive\"",
                "type = \"s3\"\nbucket = \"archive\"\nendpoint = \"http://127.0.0.1:99999\"",
            ),
            "destination.endpoint: \"http://127.0.0.1:99999\" is not a valid URL (invalid port number)",
        ),
        (
            base.replace(
                "type = \"local\"\npath = \"archive\"",
                "type = \"s3\"\nbucket = \"archive\"\nendpoint = \"http:///base\"",
            ),
            "destination.endpoint: \"http:///base\" has no host",
        ),
    ];
    for (text, expected) in cases {
        write_config(dir.path(), &text);
        for command in ["validate", "run"] {
            let output = run_in(dir.path(), spillway(), &[command]);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command} {expected}: {}",
                all_output(&output)
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
            assert!(
                stderr.contains(expected),
                "{command}: expected {expected:?} in {stderr}"
            );
        }
    }
    assert!(!dir.path().join("state").exists(), "a refused run did something");
}

#[test]
fn a_missing_source_file_is_a_note_for_validate_and_one_line_for_run() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &local_config("not-yet.ndjson"));
    let output = run_in(dir.path(), spillway(), &["validate"]);
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("note: source.path: \"not-yet.ndjson\" does not exist (yet)"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).ends_with(": ok\n"));
    let output = run_in(dir.path(), spillway(), &["run"]);
    assert_eq!(output.status.code(), Some(1), "{}", all_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("error: source failed: cannot read not-yet.ndjson: No such file or directory"),
        "{stderr}"
    );
}

#[test]
fn no_aws_credentials_is_one_line_that_says_where_they_are_looked_for() {
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.ndjson"), "{}\n").unwrap();
    for (text, prefix) in [
        (
            s3_config(&format!("http://127.0.0.1:{port}")),
            "error: destination check failed: destination s3://archive is not usable: ",
        ),
        (
            kinesis_config(&format!("http://127.0.0.1:{port}")),
            "error: kinesis source: ",
        ),
    ] {
        write_config(dir.path(), &text);
        let output = run_in(dir.path(), without_credentials(), &["run"]);
        assert_eq!(output.status.code(), Some(1), "{}", all_output(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap();
        assert!(last.starts_with(prefix), "{last}");
        assert!(
            last.contains(
                "no AWS credentials found: looked in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            ),
            "{last}"
        );
        assert!(!last.contains("transient"), "{last}");
        assert!(last.len() < 450, "{} characters: {last}", last.len());
    }
}

#[test]
fn a_run_whose_stderr_closes_early_finishes_its_work_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for id in 0..2_000 {
        input.push_str(&format!("{{\"id\":{id}}}\n"));
    }
    input.push_str("not json\n");
    std::fs::write(dir.path().join("events.ndjson"), &input).unwrap();
    write_config(dir.path(), &local_config("events.ndjson"));
    // `spillway run ... 2>&1 | head -1`: the reader goes away before the
    // first line is written.
    let mut child = spillway()
        .args(["run", "--config"])
        .arg(dir.path().join("spillway.toml"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let objects = objects(&dir.path().join("archive"));
    let records: Vec<Vec<u8>> = lines_under(&objects, "");
    let valid = records.iter().filter(|r| r.starts_with(b"{\"id\"")).count();
    assert_eq!(valid, 2_000, "every valid record archived");
    assert_eq!(
        lines_under(&objects, "errors/").len(),
        1,
        "the invalid one as an error record"
    );
    assert!(dir.path().join("state/clicks.checkpoint.json").exists());
}

#[test]
fn text_logs_to_a_pipe_have_no_colour_and_a_newline_in_a_file_name_cannot_forge_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let name = "in\n2026-01-01T00:00:00.000000Z ERROR forged line\u{1b}[31m.ndjson";
    std::fs::write(dir.path().join(name), "{\"id\":1}\n").unwrap();
    write_config(
        dir.path(),
        &local_config("in\\n2026-01-01T00:00:00.000000Z ERROR forged line\\u001b[31m.ndjson"),
    );
    let output = run_in(dir.path(), spillway(), &["--log-format", "text", "run"]);
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains('\u{1b}'), "an escape code reached a pipe: {stderr:?}");
    assert!(
        stderr.contains("in\\n2026-01-01T00:00:00.000000Z ERROR forged line"),
        "{stderr}"
    );
    for line in stderr.lines() {
        assert!(
            line.split_whitespace()
                .nth(1)
                .is_some_and(|level| ["INFO", "WARN"].contains(&level)),
            "a line that is not a log line of ours: {line:?}"
        );
    }
    assert_eq!(
        lines_under(&objects(&dir.path().join("archive")), ""),
        [b"{\"id\":1}".to_vec()]
    );
}
