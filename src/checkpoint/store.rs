//! Where checkpoint state is kept: the [`CheckpointStore`] trait and the
//! embedded default, a local file written atomically (temporary file,
//! fsync, rename, fsync of the directory).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::state::{CheckpointState, STATE_VERSION};

/// Errors of a checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} checkpoint file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint file {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("checkpoint file {path} is in use by another spillway process")]
    Locked { path: PathBuf },
    /// With coordination: a shard's checkpoint in its lease item.
    #[error("cannot save the checkpoint in the lease table: {0}")]
    Lease(#[from] crate::coordination::LeaseError),
    /// With coordination: an object of several shards, which no single
    /// new owner could redo (a defect: buffers are kept per shard).
    #[error(transparent)]
    Shard(#[from] super::shard::ShardStateError),
}

impl StoreError {
    /// Whether writing again may succeed (a full disk may be freed).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => {
                source.kind() != io::ErrorKind::PermissionDenied && source.kind() != io::ErrorKind::ReadOnlyFilesystem
            }
            StoreError::Lease(error) => error.is_retryable(),
            StoreError::Corrupt { .. } | StoreError::Locked { .. } | StoreError::Shard(_) => false,
        }
    }
}

/// Keeps the checkpoint state of one delivery stream.
#[async_trait]
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// The saved state, or `None` on a first run.
    async fn load(&self) -> Result<Option<CheckpointState>, StoreError>;
    /// Replaces the saved state, atomically.
    async fn save(&self, state: &CheckpointState) -> Result<(), StoreError>;
}

/// A JSON file `<dir>/<stream>.checkpoint.json`, locked for the life of the
/// process so that two runs cannot share it.
#[derive(Debug)]
pub struct LocalFileStore {
    path: PathBuf,
    _lock: File,
}

impl LocalFileStore {
    pub fn open(dir: &Path, stream: &str) -> Result<Self, StoreError> {
        let io_err = |action, path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { action, path, source }
        };
        fs::create_dir_all(dir).map_err(io_err("create the directory of", dir))?;
        let path = dir.join(format!("{stream}.checkpoint.json"));
        let lock_path = dir.join(format!("{stream}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open the lock of", &path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
            Err(fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    action: "lock",
                    path,
                    source,
                })
            }
        }
        Ok(Self { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads the state saved at `<dir>/<stream>.checkpoint.json` without
/// taking its lock, for a reader beside a running pipeline (`spillway
/// schema`): the file is replaced atomically, so it is always whole.
pub fn read_state(dir: &Path, stream: &str) -> Result<Option<CheckpointState>, StoreError> {
    read_file(dir.join(format!("{stream}.checkpoint.json")))
}

fn read_file(path: PathBuf) -> Result<Option<CheckpointState>, StoreError> {
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                action: "read",
                path,
                source,
            })
        }
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.clone(),
        reason,
    };
    // The version first: a file of another version may lack what this one
    // needs, and should be refused for its version, not a missing field.
    #[derive(serde::Deserialize)]
    struct Version {
        version: u32,
    }
    let version = serde_json::from_slice::<Version>(&bytes).map_err(|err| corrupt(err.to_string()))?;
    if version.version != STATE_VERSION {
        return Err(corrupt(format!(
            "format version {} is not {STATE_VERSION}, the one this build reads",
            version.version
        )));
    }
    let state: CheckpointState = serde_json::from_slice(&bytes).map_err(|err| corrupt(err.to_string()))?;
    Ok(Some(state))
}

#[async_trait]
impl CheckpointStore for LocalFileStore {
    async fn load(&self) -> Result<Option<CheckpointState>, StoreError> {
        let path = self.path.clone();
        blocking(move || read_file(path)).await
    }

    async fn save(&self, state: &CheckpointState) -> Result<(), StoreError> {
        let path = self.path.clone();
        let bytes = serde_json::to_vec_pretty(state).expect("checkpoint state always serialises");
        blocking(move || {
            write_atomically(&path, &bytes).map_err(|source| StoreError::Io {
                action: "write",
                path,
                source,
            })
        })
        .await
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("the checkpoint file has a directory");
    let temp = path.with_extension("json.tmp");
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    File::open(dir)?.sync_all()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("checkpoint I/O does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_and_loads_and_refuses_a_second_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::open(dir.path(), "s").unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        let state = CheckpointState {
            version: STATE_VERSION,
            stream: "s".into(),
            ..Default::default()
        };
        store.save(&state).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(state));
        assert!(matches!(
            LocalFileStore::open(dir.path(), "s"),
            Err(StoreError::Locked { .. })
        ));
        drop(store);
        assert!(LocalFileStore::open(dir.path(), "s").is_ok());
    }

    #[tokio::test]
    async fn refuses_another_version() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("s.checkpoint.json"),
            br#"{"version":99,"stream":"s","sources":{}}"#,
        )
        .unwrap();
        let store = LocalFileStore::open(dir.path(), "s").unwrap();
        let err = store.load().await.unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
        // Refused for its version even when it lacks what this one needs.
        fs::write(dir.path().join("s.checkpoint.json"), br#"{"version":99,"stream":"s"}"#).unwrap();
        let err = store.load().await.unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
    }
}
