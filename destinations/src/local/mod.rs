//! The local destination: objects are files under a directory.
//!
//! A put writes a temporary file in the target directory, fsyncs it, links
//! it into place (a hard link fails if the target exists, which makes the
//! write create-only and atomic), removes the temporary name and fsyncs the
//! directory. Blocking file I/O runs on tokio's blocking pool.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use rand::distr::{Alphanumeric, SampleString};

use crate::error::Error;
use crate::key::ObjectKey;
use crate::store::{ObjectStore, PutOptions, PutOutcome};

/// Objects as files below `root`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

/// The marker in the names of temporary files, which are hidden (they
/// start with `.`) and never end in an object's extension.
const TEMP_MARKER: &str = ".spillway-tmp-";

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees a relative path without `.`/`..` segments.
        self.root.join(key.as_str())
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &ObjectKey, payload: Bytes, _options: &PutOptions) -> Result<PutOutcome, Error> {
        let path = self.path_of(key);
        let key = key.clone();
        run_blocking(move || put_file(&path, &payload))
            .await
            .map_err(|err| io_error(err, key.as_str()))
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, Error> {
        let path = self.path_of(key);
        let location = key.as_str().to_owned();
        run_blocking(move || match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        })
        .await
        .map_err(|err| io_error(err, &location))
    }

    async fn check(&self) -> Result<(), Error> {
        let root = self.root.clone();
        let location = root.display().to_string();
        run_blocking(move || {
            // `create_dir_all` on a file fails with "File exists", which
            // reads as a passing failure: say what is wrong instead.
            if fs::metadata(&root).is_ok_and(|meta| !meta.is_dir()) {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "exists and is not a directory",
                ));
            }
            fs::create_dir_all(&root)?;
            let probe = root.join(format!(
                ".spillway-probe-{}",
                Alphanumeric.sample_string(&mut rand::rng(), 8)
            ));
            File::create(&probe)?.write_all(b"probe")?;
            fs::remove_file(&probe)
        })
        .await
        .map_err(|err| io_error(err, &location))
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }
}

fn put_file(path: &Path, payload: &[u8]) -> io::Result<PutOutcome> {
    let dir = path.parent().expect("an object path has a parent");
    let name = path.file_name().expect("an object path has a name").to_string_lossy();
    fs::create_dir_all(dir)?;
    if fs::symlink_metadata(path).is_ok() {
        return Ok(PutOutcome::AlreadyExisted);
    }
    let temp = dir.join(format!(
        ".{name}{TEMP_MARKER}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 8)
    ));
    let written = (|| {
        let mut file = File::create_new(&temp)?;
        file.write_all(payload)?;
        file.sync_all()
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(err);
    }
    let linked = fs::hard_link(&temp, path);
    fs::remove_file(&temp)?;
    let outcome = match linked {
        Ok(()) => PutOutcome::Created,
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => PutOutcome::AlreadyExisted,
        Err(err) => return Err(err),
    };
    File::open(dir)?.sync_all()?;
    Ok(outcome)
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)))
}

fn io_error(err: io::Error, location: &str) -> Error {
    let location = location.to_owned();
    match err.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => Error::PermissionDenied {
            location,
            source: Box::new(err),
        },
        io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory | io::ErrorKind::InvalidFilename => {
            Error::Misconfigured {
                location,
                reason: err.to_string(),
            }
        }
        // A full disk, or anything else that may pass: retried.
        _ => Error::Transient {
            location,
            source: Box::new(err),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    #[tokio::test]
    async fn puts_are_create_only_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("archive"));
        store.check().await.unwrap();
        let k = key("events/2026/11/22/00/object.jsonl");
        assert!(!store.exists(&k).await.unwrap());
        let outcome = store
            .put(&k, Bytes::from_static(b"first"), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Created);
        assert!(store.exists(&k).await.unwrap());
        let again = store
            .put(&k, Bytes::from_static(b"second"), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(again, PutOutcome::AlreadyExisted);
        let path = dir.path().join("archive/events/2026/11/22/00/object.jsonl");
        assert_eq!(fs::read(&path).unwrap(), b"first");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["object.jsonl"]);
        let root_names: Vec<_> = fs::read_dir(dir.path().join("archive"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(root_names, ["events"], "the probe was not removed");
    }

    #[tokio::test]
    async fn a_read_only_root_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        let store = LocalStore::new(file.join("archive"));
        let err = store.check().await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }

    #[tokio::test]
    async fn a_root_that_is_a_file_is_a_permanent_error_that_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("archive");
        fs::write(&file, b"").unwrap();
        let err = LocalStore::new(&file).check().await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "destination {} is not usable: exists and is not a directory",
                file.display()
            )
        );
    }
}
