//! Helpers for tests against moto's S3 (started by `scripts/peers.sh`):
//! a client, a fresh bucket per test, and what a bucket holds.
#![allow(dead_code)]

use std::collections::BTreeMap;

use super::kinesis::{peer, runtime};

/// A client of moto's S3 (path style).
pub fn client(rt: &tokio::runtime::Runtime, endpoint: &str) -> aws_sdk_s3::Client {
    rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load()
            .await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        )
    })
}

/// moto's S3, a client of it, and a new, empty bucket named after the test.
pub struct Moto {
    pub endpoint: String,
    pub rt: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

impl Moto {
    pub fn new(test: &str) -> Self {
        let endpoint = peer("SPILLWAY_TEST_MOTO");
        let rt = runtime();
        let s3 = client(&rt, &endpoint);
        let bucket = format!("spillway-{test}-{}", std::process::id());
        rt.block_on(s3.create_bucket().bucket(&bucket).send()).unwrap();
        Self {
            endpoint,
            rt,
            s3,
            bucket,
        }
    }

    /// Every object in the bucket: key → body as stored.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        bucket_objects(&self.rt, &self.s3, &self.bucket)
    }
}

/// Every object in `bucket`: key → body as stored.
pub fn bucket_objects(
    rt: &tokio::runtime::Runtime,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> BTreeMap<String, Vec<u8>> {
    rt.block_on(async {
        let mut objects = BTreeMap::new();
        let mut token = None;
        loop {
            let listed = s3
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            for object in listed.contents() {
                let key = object.key().unwrap().to_owned();
                let got = s3.get_object().bucket(bucket).key(&key).send().await.unwrap();
                objects.insert(key, got.body.collect().await.unwrap().into_bytes().to_vec());
            }
            token = listed.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return objects;
            }
        }
    })
}
