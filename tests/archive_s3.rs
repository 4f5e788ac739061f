//! End-to-end: the real binary archiving a file into S3 (moto's server,
//! started by scripts/test.sh).

mod support;

use std::collections::BTreeMap;

use spillway_destinations::Compression;
use support::kinesis::peer;
use support::*;

/// An object's body, content type and content encoding.
type StoredObject = (Vec<u8>, Option<String>, Option<String>);

#[test]
fn a_file_archived_to_s3_reads_back_as_exactly_the_input() {
    let endpoint = peer("SPILLWAY_TEST_MOTO");
    let bucket = format!("spillway-e2e-{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s3 = rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        s3
    });

    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for id in 0..5_000 {
        let line = match id {
            100 | 2_000 => format!("{{\"id\":{id},broken"),
            _ => {
                let line = format!(r#"{{"id":{id},"pad":"{}"}}"#, "p".repeat(200 + id % 300));
                expected.push(line.clone());
                line
            }
        };
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    std::fs::write(dir.path().join("events.ndjson"), &input).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"name = "clicks"
[source]
type = "file"
path = "events.ndjson"
[buffer]
size_mb = 1
interval_seconds = 60
[destination]
type = "s3"
bucket = "{bucket}"
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
checksum = "when_required"
prefix = "events/!{{timestamp:yyyy/MM/dd}}/"
error_prefix = "errors/!{{firehose:error-output-type}}/"
compression = "gzip"
storage_class = "STANDARD_IA"
[destination.tags]
pipeline = "clicks"
[checkpoint]
path = "state"
"#
        ),
    );
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let flushes = flushes(&logs(&output.stderr));
    let data_flushes: Vec<&str> = flushes
        .iter()
        .filter(|(o, _)| o == "data")
        .map(|(_, r)| r.as_str())
        .collect();
    assert_eq!(
        data_flushes,
        ["size", "end_of_input"],
        "about 1.9 MB of records with 1 MB buffers"
    );

    let objects: BTreeMap<String, StoredObject> = rt.block_on(async {
        let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
        let mut objects = BTreeMap::new();
        for object in listed.contents() {
            let key = object.key().unwrap().to_owned();
            let got = s3.get_object().bucket(&bucket).key(&key).send().await.unwrap();
            let content_type = got.content_type().map(str::to_owned);
            let content_encoding = got.content_encoding().map(str::to_owned);
            let body = got.body.collect().await.unwrap().into_bytes().to_vec();
            objects.insert(key, (body, content_type, content_encoding));
        }
        objects
    });
    let mut archived = Vec::new();
    let mut errors = Vec::new();
    let today = chrono::Utc::now().format("%Y/%m/%d").to_string();
    for (key, (body, content_type, content_encoding)) in &objects {
        assert!(key.ends_with(".jsonl.gz"), "{key}");
        assert_eq!(content_type.as_deref(), Some("application/x-ndjson"), "{key}");
        assert_eq!(content_encoding.as_deref(), Some("gzip"), "{key}");
        let text = String::from_utf8(Compression::Gzip.decompress(body).unwrap()).unwrap();
        if key.starts_with(&format!("events/{today}/clicks-file-events.ndjson-")) {
            archived.extend(text.lines().map(str::to_owned));
        } else {
            assert!(key.starts_with("errors/format-conversion-failed/"), "{key}");
            errors.extend(text.lines().map(str::to_owned));
        }
    }
    assert_eq!(
        archived, expected,
        "the archive is not exactly the valid input, in order"
    );
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .all(|e| e.contains("\"errorCode\":\"Record.MalformedJson\"")));

    // Nothing left behind: no probe object, no open multipart upload.
    assert!(objects.keys().all(|k| !k.starts_with(".spillway-probe")));
    let uploads = rt.block_on(s3.list_multipart_uploads().bucket(&bucket).send()).unwrap();
    assert!(uploads.uploads().is_empty());
}

#[test]
fn a_missing_bucket_is_reported_at_start_in_one_line() {
    let endpoint = peer("SPILLWAY_TEST_MOTO");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.ndjson"), "{}\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[source]\ntype = \"file\"\npath = \"in.ndjson\"\n[destination]\ntype = \"s3\"\nbucket = \"no-such-bucket-here\"\n\
             region = \"us-east-1\"\nendpoint = \"{endpoint}\"\nforce_path_style = true\n[checkpoint]\npath = \"state\"\n"
        ),
    );
    let output = run(dir.path(), &config);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: destination check failed") && last.contains("NoSuchBucket"),
        "{stderr}"
    );
    assert!(!stderr.contains("testing"), "a credential reached the output: {stderr}");
}
