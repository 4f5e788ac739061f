//! `--log-level` (or `SPILLWAY_LOG`) that names no level is a usage error
//! in one line, exit code 2, before anything runs: not a silent `info`, nor
//! a filter that silences every line.

mod support;

use std::process::Stdio;

use support::{spillway, write_config};

const EXPECTED: &str =
    "allowed off, error, warn, info, debug, trace, or comma-separated target=level directives such as spillway=debug";

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.ndjson"), "{\"a\":1}\n").unwrap();
    let config = write_config(
        dir.path(),
        "[source]\ntype = \"file\"\npath = \"in.ndjson\"\n[destination]\ntype = \"local\"\npath = \"archive\"\n",
    );
    (dir, config)
}

#[test]
fn a_log_level_that_is_no_level_is_refused_in_one_line_with_exit_code_2() {
    let (dir, config) = setup();
    for (value, command) in [
        ("verbose", "run"),
        ("warning", "validate"),
        ("spillway=loud", "run"),
        ("info,", "run"),
    ] {
        let output = spillway()
            .args(["--log-level", value, command, "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value} {command}: {stderr}");
        assert_eq!(
            stderr,
            format!("error: --log-level (or SPILLWAY_LOG): {value:?} is not a log level: {EXPECTED}\n")
        );
        assert!(!dir.path().join("archive").exists(), "{value}: nothing runs");
    }

    // From the environment, the same.
    let output = spillway()
        .env("SPILLWAY_LOG", "debugg")
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).starts_with("error: --log-level (or SPILLWAY_LOG): \"debugg\""),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!dir.path().join("archive").exists());
}

#[test]
fn levels_and_directives_are_taken() {
    let (dir, config) = setup();
    for value in ["warn", "DEBUG", "warn,spillway=info"] {
        let output = spillway()
            .args(["--log-level", value, "--log-format", "json", "run", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{value}: {stderr}");
        // `warn` hides the info lines; the others show them.
        assert_eq!(
            stderr.contains("\"run finished\""),
            value != "warn",
            "{value}: {stderr}"
        );
    }
}
