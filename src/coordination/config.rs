//! `[coordination]` with `type = "dynamodb"`: its keys, and how they become
//! a [`CoordinationConfig`]. Without the table, one instance reads every
//! shard and keeps its checkpoint in a local file, as before.
//!
//! The checks here are the table's own; that it needs a Kinesis source is
//! a rule between components, in `crate::config::validate`.

use std::time::Duration;

use serde::Deserialize;
use spillway_destinations::endpoint::{self, EndpointUse};
use spillway_settings::Problems;

/// The lease duration's smallest and largest value, in seconds. Below one
/// second a renewal every third of it would be a request every 333 ms per
/// shard; past an hour a dead instance's shards would wait that long.
pub const LEASE_DURATION_RANGE: (i64, i64) = (1, 3_600);

/// The longest worker id: it is written in every lease item and log line.
pub const WORKER_ID_MAX: usize = 128;

fn default_lease_duration_seconds() -> i64 {
    10
}

/// `[coordination]` with `type = "dynamodb"`: several instances share the
/// stream's shards through leases in a DynamoDB table, as the Kinesis
/// Client Library does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoDbSettings {
    /// The lease table: 3 to 255 characters of `A-Z a-z 0-9 _ . -`.
    /// Created (on-demand billing) if missing. Several pipelines and
    /// streams may share it: leases are kept under `<name>#<stream>`.
    pub table: Option<String>,
    /// AWS region; default: the standard chain (`AWS_REGION`, profile, ...).
    pub region: Option<String>,
    /// Endpoint URL, for DynamoDB-compatible services and tests.
    pub endpoint: Option<String>,
    /// This instance's name in the lease table: 1 to 128 characters, no
    /// whitespace or control characters, unique among the instances.
    /// Default: the host name and the process id.
    pub worker_id: Option<String>,
    /// Seconds after which a lease its owner did not renew may be taken by
    /// another instance (the failover time): 1 to 3,600. Default 10.
    /// Leases are renewed every third of it.
    #[serde(default = "default_lease_duration_seconds")]
    pub lease_duration_seconds: i64,
}

/// A validated `[coordination]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinationConfig {
    pub table: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// `None`: the host name and the process id, resolved at start.
    pub worker_id: Option<String>,
    pub lease_duration: Duration,
}

impl CoordinationConfig {
    /// How often an owner renews its leases: a third of the lease
    /// duration, so that two renewals may fail before another instance
    /// can take the lease.
    pub fn renewal_interval(&self) -> Duration {
        self.lease_duration / 3
    }

    /// This instance's name in the lease table: `worker_id`, or the host
    /// name and the process id, so that two instances on one host (or a
    /// restart while the old process lingers) are two workers.
    pub fn worker(&self) -> String {
        match &self.worker_id {
            Some(id) => id.clone(),
            None => default_worker(host_name().as_deref(), std::process::id()),
        }
    }
}

/// `<host>-<pid>`, within the worker id's rules whatever the host name is.
fn default_worker(host: Option<&str>, pid: u32) -> String {
    let suffix = format!("-{pid}");
    let host: String = host
        .unwrap_or("spillway")
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take(WORKER_ID_MAX - suffix.len())
        .collect();
    let host = if host.is_empty() { "spillway".to_owned() } else { host };
    format!("{host}{suffix}")
}

fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, less its last
    // byte, which stays 0: the name is NUL-terminated even if truncated.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len() - 1) };
    if status != 0 {
        return None;
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len() - 1);
    String::from_utf8(buffer[..end].to_vec()).ok().filter(|h| !h.is_empty())
}

impl DynamoDbSettings {
    /// The coordination these settings describe, with every problem (at
    /// `key`, normally `coordination`) added to `problems`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<CoordinationConfig> {
        let table = match self.table {
            Some(table) if is_table_name(&table) => Some(table),
            Some(table) => {
                problems.add(
                    &format!("{key}.table"),
                    format!("{table:?} is not a DynamoDB table name: 3 to 255 characters of A-Z a-z 0-9 _ . -"),
                );
                None
            }
            None => {
                problems.add(
                    &format!("{key}.table"),
                    format!("is required with {key}.type = \"dynamodb\": the lease table, e.g. \"spillway-leases\""),
                );
                None
            }
        };
        let endpoint = self.endpoint.filter(|e| !e.is_empty());
        // The AWS SDK's DynamoDB client reads an endpoint as its Kinesis
        // client does.
        if let Some(Err(problem)) = endpoint.as_deref().map(|e| endpoint::check(e, EndpointUse::Kinesis)) {
            problems.add(&format!("{key}.endpoint"), problem);
        }
        let worker_id = match self.worker_id {
            Some(id) if is_worker_id(&id) => Some(Some(id)),
            Some(id) => {
                problems.add(
                    &format!("{key}.worker_id"),
                    format!(
                        "{id:?} is not allowed: 1 to {WORKER_ID_MAX} characters without whitespace or control characters"
                    ),
                );
                None
            }
            None => Some(None),
        };
        let duration = problems.in_range(
            &format!("{key}.lease_duration_seconds"),
            self.lease_duration_seconds,
            LEASE_DURATION_RANGE,
        );
        Some(CoordinationConfig {
            table: table?,
            region: self.region.filter(|r| !r.is_empty()),
            endpoint,
            worker_id: worker_id?,
            lease_duration: Duration::from_secs(duration? as u64),
        })
    }
}

/// DynamoDB's rule for table names.
fn is_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_worker_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= WORKER_ID_MAX && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DynamoDbSettings {
        DynamoDbSettings {
            table: Some("spillway-leases".into()),
            region: None,
            endpoint: None,
            worker_id: None,
            lease_duration_seconds: default_lease_duration_seconds(),
        }
    }

    #[test]
    fn renewals_come_three_times_per_lease_duration() {
        let config = settings().check("coordination", &mut Problems::default()).unwrap();
        assert_eq!(config.lease_duration, Duration::from_secs(10));
        assert_eq!(
            config.renewal_interval(),
            Duration::from_millis(3_333) + Duration::from_nanos(333_333)
        );
    }

    #[test]
    fn the_default_worker_is_the_host_and_the_process_within_the_rules() {
        assert_eq!(default_worker(Some("archiver.example"), 4242), "archiver.example-4242");
        assert_eq!(default_worker(None, 7), "spillway-7");
        assert_eq!(default_worker(Some(" \t"), 7), "spillway-7");
        let long = default_worker(Some(&"h".repeat(300)), u32::MAX);
        assert!(
            is_worker_id(&long) && long.ends_with(&format!("-{}", u32::MAX)),
            "{long}"
        );
        let odd = default_worker(Some("my host\u{7}"), 1);
        assert!(is_worker_id(&odd), "{odd}");
        let config = settings().check("coordination", &mut Problems::default()).unwrap();
        let here = config.worker();
        assert!(
            is_worker_id(&here) && here.ends_with(&format!("-{}", std::process::id())),
            "{here}"
        );
        let named = DynamoDbSettings {
            worker_id: Some("archiver-a".into()),
            ..settings()
        };
        assert_eq!(
            named.check("coordination", &mut Problems::default()).unwrap().worker(),
            "archiver-a"
        );
    }

    #[test]
    fn table_names_follow_dynamodb() {
        assert!(is_table_name("abc"));
        assert!(is_table_name("spillway_leases.v1-a"));
        assert!(!is_table_name("ab"));
        assert!(!is_table_name(&"a".repeat(256)));
        assert!(!is_table_name("leases table"));
        assert!(!is_table_name("läses"));
    }

    #[test]
    fn worker_ids_are_one_word_of_at_most_128_characters() {
        assert!(is_worker_id("archiver-a"));
        assert!(is_worker_id("host.example:4242"));
        assert!(is_worker_id(&"é".repeat(128)));
        assert!(!is_worker_id(""));
        assert!(!is_worker_id(&"a".repeat(129)));
        assert!(!is_worker_id("two words"));
        assert!(!is_worker_id("tab\there"));
        assert!(!is_worker_id("bell\u{7}"));
    }
}
