//! moto's S3 for the tests: a path-style client, a new bucket named after
//! the test, and what a bucket holds.

use std::collections::BTreeMap;

use tokio::runtime::Runtime;

/// A client of moto's S3 at `endpoint` (path style, test credentials).
pub fn s3_client(rt: &Runtime, endpoint: &str) -> aws_sdk_s3::Client {
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

/// Every object of `bucket` under `prefix`: key → body as stored.
pub fn s3_objects(rt: &Runtime, s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    rt.block_on(async {
        let mut objects = BTreeMap::new();
        let mut token = None;
        loop {
            let listed = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
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

/// moto's S3 (`SPILLWAY_TEST_MOTO`), a client of it, and a new, empty
/// bucket named after the test.
pub struct Moto {
    pub endpoint: String,
    pub rt: Runtime,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

impl Moto {
    pub fn new(test: &str) -> Self {
        Self::with_bucket(format!("spillway-{test}-{}", std::process::id()))
    }

    pub fn with_bucket(bucket: String) -> Self {
        let endpoint = super::kinesis::peer("SPILLWAY_TEST_MOTO");
        let rt = super::kinesis::runtime();
        let s3 = s3_client(&rt, &endpoint);
        rt.block_on(s3.create_bucket().bucket(&bucket).send()).unwrap();
        Self {
            endpoint,
            rt,
            s3,
            bucket,
        }
    }

    /// Every object in the bucket: key → body.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        s3_objects(&self.rt, &self.s3, &self.bucket, "")
    }

    /// A `[destination]`'s lines for this bucket (after `[destination]`).
    pub fn destination(&self) -> String {
        format!(
            "type = \"s3\"\nbucket = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nforce_path_style = true\nchecksum = \"when_required\"",
            self.bucket, self.endpoint
        )
    }
}
