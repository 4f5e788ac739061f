//! The Lambda Invoke API test peer (`tests/peers/lambda_server.py`), started
//! on a free loopback port, running the handler files of
//! `tests/peers/handlers/`; and how a test asks it for faults and counts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The Python that runs the peers: `SPILLWAY_TEST_PYTHON` when
/// `scripts/peers.sh` set it, else `python3` (the server and the runner
/// need only the standard library).
pub fn python() -> String {
    std::env::var("SPILLWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

pub fn handler(name: &str) -> PathBuf {
    peers_dir().join("handlers").join(format!("{name}.py"))
}

pub fn runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/firehose_handler_runner.py")
}

/// A running server; killed when dropped.
pub struct LambdaServer {
    child: Child,
    pub port: u16,
}

impl LambdaServer {
    pub fn start() -> Self {
        let mut child = Command::new(python())
            .arg(peers_dir().join("lambda_server.py"))
            .arg(peers_dir().join("handlers"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tests/peers/lambda_server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("lambda_server.py said {line:?}"));
        Self { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `{"throttle": n, "function_error": n, "delay_seconds": s}` for the
    /// next calls of `function`.
    pub fn control(&self, function: &str, order: serde_json::Value) {
        self.request("POST", &format!("/control/{function}"), &order.to_string());
    }

    /// The calls `function` received so far, each as its recordIds.
    pub fn calls(&self, function: &str) -> Vec<Vec<String>> {
        let state: serde_json::Value =
            serde_json::from_str(&self.request("GET", &format!("/control/{function}"), "")).unwrap();
        serde_json::from_value(state["record_ids"].clone()).unwrap()
    }

    fn request(&self, method: &str, path: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "{head}"
        );
        body.to_owned()
    }
}

impl Drop for LambdaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
