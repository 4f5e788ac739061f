//! Listing and reading an archive: a local directory (what a `local`
//! destination wrote) or an S3 bucket, whose client is built as the S3
//! destination builds its own (so `AWS_ENDPOINT_URL_S3` and
//! `AWS_ENDPOINT_URL` apply unless `endpoint` is set).

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use bytes::Bytes;
use spillway_destinations::redact::text_for_logs;
use spillway_destinations::S3Store;

use super::config::ArchiveLocation;
use crate::source::SourceError;

/// Why the archive cannot be listed or read (an unreadable object's bytes
/// are not this: they go to the error output).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot list {location}: {reason}")]
    List { location: String, reason: String },
    #[error("cannot read {key} from {location}: {reason}")]
    Read {
        location: String,
        key: String,
        reason: String,
    },
    #[error("cannot reach {location}: {reason}")]
    Open { location: String, reason: String },
    /// The pipeline stopped taking records (shutdown).
    #[error("the pipeline stopped reading")]
    Stopped,
    #[error("cannot sort a prefix time's records through files in {dir}: {source}")]
    Sort {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    /// Run files of the sort could not be written or read back.
    pub fn sort(source: std::io::Error) -> Self {
        Self::Sort {
            dir: std::env::temp_dir().display().to_string(),
            source,
        }
    }
}

impl From<ArchiveError> for SourceError {
    fn from(err: ArchiveError) -> Self {
        SourceError::Archive(err)
    }
}

pub enum ArchiveStore {
    Local(PathBuf),
    S3 { client: Client, bucket: String },
}

pub fn describe(location: &ArchiveLocation) -> String {
    match location {
        ArchiveLocation::Local(path) => path.display().to_string(),
        ArchiveLocation::S3(options) => format!("s3://{}", options.bucket),
    }
}

/// An SDK error as one line, without secrets.
fn reason(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text_for_logs(&text).into_owned()
}

impl ArchiveStore {
    pub async fn open(location: &ArchiveLocation) -> Result<Self, ArchiveError> {
        Ok(match location {
            ArchiveLocation::Local(path) => Self::Local(path.clone()),
            ArchiveLocation::S3(options) => {
                let store = S3Store::new(options.clone()).await.map_err(|err| ArchiveError::Open {
                    location: describe(location),
                    reason: reason(&err),
                })?;
                Self::S3 {
                    client: store.client().clone(),
                    bucket: options.bucket.clone(),
                }
            }
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Local(path) => path.display().to_string(),
            Self::S3 { bucket, .. } => format!("s3://{bucket}"),
        }
    }

    /// Checks that the archive can be listed.
    pub async fn check(&self) -> Result<(), SourceError> {
        match self {
            Self::Local(path) if !path.is_dir() => Err(ArchiveError::Open {
                location: self.describe(),
                reason: "not a directory".into(),
            }
            .into()),
            Self::Local(_) => Ok(()),
            Self::S3 { client, bucket } => client
                .list_objects_v2()
                .bucket(bucket)
                .max_keys(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|err| {
                    ArchiveError::Open {
                        location: self.describe(),
                        reason: reason(&err),
                    }
                    .into()
                }),
        }
    }

    /// Every key under any of `roots`, sorted, each once.
    pub async fn list(&self, roots: &[String]) -> Result<Vec<String>, ArchiveError> {
        let mut keys = Vec::new();
        match self {
            Self::Local(path) => {
                let path = path.clone();
                let location = self.describe();
                keys = tokio::task::spawn_blocking(move || {
                    let mut keys = Vec::new();
                    walk(&path, "", &mut keys).map(|()| keys)
                })
                .await
                .map_err(|err| ArchiveError::List {
                    location: location.clone(),
                    reason: err.to_string(),
                })?
                .map_err(|err| ArchiveError::List {
                    location,
                    reason: err.to_string(),
                })?;
                keys.retain(|key: &String| roots.iter().any(|root| key.starts_with(root.as_str())));
            }
            Self::S3 { client, bucket } => {
                for root in roots {
                    let mut pages = client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(root)
                        .into_paginator()
                        .send();
                    while let Some(page) = pages.next().await {
                        let page = page.map_err(|err| ArchiveError::List {
                            location: self.describe(),
                            reason: reason(&err),
                        })?;
                        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
                    }
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    pub async fn read(&self, key: &str) -> Result<Bytes, ArchiveError> {
        let failed = |reason: String| ArchiveError::Read {
            location: self.describe(),
            key: key.to_owned(),
            reason,
        };
        match self {
            Self::Local(path) => {
                let file = path.join(key);
                tokio::fs::read(&file)
                    .await
                    .map(Bytes::from)
                    .map_err(|err| failed(err.to_string()))
            }
            Self::S3 { client, bucket } => {
                let object = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|err| failed(reason(&err)))?;
                let body = object.body.collect().await.map_err(|err| failed(reason(&err)))?;
                Ok(body.into_bytes())
            }
        }
    }
}

/// The files under `dir`, as keys relative to the archive's root.
fn walk(dir: &Path, prefix: &str, keys: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = format!("{prefix}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &format!("{key}/"), keys)?;
        } else if kind.is_file() {
            keys.push(key);
        }
    }
    Ok(())
}
