//! `deploy/`: the systemd unit is one systemd takes, word for word, and it
//! runs spillway as the README says (stop signal, stop timeout, restart
//! policy, hardening).

use std::path::Path;
use std::process::Command;

const UNIT: &str = "deploy/spillway.service";

fn unit_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(UNIT)).unwrap()
}

/// The values of `key` in the unit, in order.
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_without_a_warning() {
    // Never a silent pass: a machine without systemd-analyze fails here.
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "{} is missing: install systemd to run this test",
        analyze.display()
    );
    // verify checks that ExecStart's program exists: the copy verified
    // starts the binary these tests built instead of
    // /usr/local/bin/spillway, and differs in nothing else.
    let text = unit_text();
    let installed = "/usr/local/bin/spillway";
    let built = env!("CARGO_BIN_EXE_spillway");
    assert_eq!(
        values(&text, "ExecStart"),
        [format!("{installed} run --config /etc/spillway/spillway.toml")]
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("spillway.service");
    std::fs::write(&copy, text.replace(installed, built)).unwrap();

    let output = Command::new(analyze).arg("verify").arg(&copy).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // verify exits 0 on a key it ignores (a misspelt signal, a bad time
    // span), saying so on stderr: any line there is a failure.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn the_unit_stops_with_sigterm_waits_for_the_flush_and_restarts_on_failure() {
    let text = unit_text();
    let one = |key: &str| {
        let found = values(&text, key);
        assert_eq!(found.len(), 1, "{key}: {found:?}");
        found[0].clone()
    };
    assert_eq!(one("KillSignal"), "SIGTERM");
    // Not to the jq workers too: they serve the flush.
    assert_eq!(one("KillMode"), "mixed");
    let timeout: u64 = one("TimeoutStopSec").parse().unwrap();
    assert!(
        timeout >= 60,
        "TimeoutStopSec={timeout} leaves too little time to flush"
    );
    assert_eq!(one("Restart"), "on-failure");
    // An invalid configuration (exit 2) is not restarted in a loop.
    assert_eq!(one("RestartPreventExitStatus"), "2");
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert!(one("ReadWritePaths").contains("/var/lib/spillway"));
    assert_eq!(one("StateDirectory"), "spillway");
}
