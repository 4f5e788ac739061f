//! Scraping the real binary's `[telemetry] listen` endpoint: plain
//! HTTP/1.1 GETs, and the Prometheus text exposition read into samples.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback address nothing listens on now.
pub fn free_address() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// `GET path` over plain HTTP/1.1: the status and the body, or `None`
/// while nothing listens.
pub fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Polls `path` until `done` holds for its answer, for up to 30 s.
pub fn wait_for(address: SocketAddr, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get(address, path);
        if let Some((status, body)) = &answer {
            if done(*status, body) {
                return (*status, body.clone());
            }
        }
        assert!(Instant::now() < deadline, "{path}: last answer {answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every sample of the exposition: series (name and labels) → value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include every one of
/// `labels` (`key="value"`).
pub fn sum(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|label| series.contains(label))
        })
        .map(|(_, value)| value)
        .sum()
}

/// The samples of `name` whose labels include every one of `labels`:
/// series → value.
pub fn series<'a>(samples: &'a BTreeMap<String, f64>, name: &str, labels: &[&str]) -> BTreeMap<&'a str, f64> {
    samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|label| series.contains(label))
        })
        .map(|(series, value)| (series.as_str(), *value))
        .collect()
}
