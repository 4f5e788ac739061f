//! The local destination: objects are files under a directory.
//!
//! A put writes a temporary file, fsyncs it, links it into place (a hard
//! link fails if the target exists, which makes the write create-only and
//! atomic), removes the temporary name and fsyncs the directory. Blocking
//! file I/O runs on tokio's blocking pool. A streamed put writes each chunk
//! to its temporary file as it comes, so an object is never whole in
//! memory, whatever its size.
//!
//! Temporary files live in [`STAGING_DIR`] at the root, never beside the
//! objects: a run killed mid-put must not leave a partial file where a
//! reader globbing a prefix would take it for an object, and no object key
//! can name that directory ([`ObjectKey`] refuses it). Each store stages in
//! a directory of its own there, locked for the life of the process, so
//! that [`ObjectStore::check`] at start can delete what dead runs left
//! without touching the files of a live one (two streams may share a root).

mod config;

pub use config::LocalSettings;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rand::distr::{Alphanumeric, SampleString};

use crate::error::Error;
use crate::key::ObjectKey;
use crate::store::{encoding_failed, Chunks, ObjectStore, Payload, PutOptions, PutOutcome};

pub use crate::key::STAGING_DIR;

/// Objects as files below `root`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    /// This store's staging directory, made on first use.
    staging: Arc<Mutex<Option<Staging>>>,
}

/// A directory for temporary files, and the open, locked handle that tells
/// other processes it is in use.
#[derive(Debug)]
struct Staging {
    dir: PathBuf,
    _lock: File,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            staging: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees a relative path without `.`/`..` segments.
        self.root.join(key.as_str())
    }

    /// This store's staging directory, made (and locked) on first use.
    fn staging_dir(&self) -> io::Result<PathBuf> {
        let mut staging = self.staging.lock().expect("the staging lock is never poisoned");
        if staging.is_none() {
            *staging = Some(Staging::create(&self.root.join(STAGING_DIR))?);
        }
        Ok(staging.as_ref().expect("made above").dir.clone())
    }
}

impl Staging {
    /// Makes and locks a new directory under `parent`. Another process's
    /// clean-up may delete it between the two steps: then another name is
    /// tried.
    fn create(parent: &Path) -> io::Result<Self> {
        fs::create_dir_all(parent)?;
        loop {
            let dir = parent.join(Alphanumeric.sample_string(&mut rand::rng(), 12));
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
            let lock = match File::open(&dir) {
                Ok(lock) => lock,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            if lock.try_lock().is_err() || !dir.exists() {
                // Locked by a clean-up deleting it, or deleted already.
                continue;
            }
            return Ok(Self { dir, _lock: lock });
        }
    }
}

impl Drop for Staging {
    /// The last clone of a store is gone, and with it every put: nothing
    /// is left to stage.
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Deletes what dead runs left in `staging`: every directory no live
/// process holds locked, and any loose file. Returns how many were removed.
fn clean_staging(staging: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(staging) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        let gone = if path.is_dir() {
            let Ok(dir) = File::open(&path) else { continue };
            if dir.try_lock().is_err() {
                continue; // a live run's
            }
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match gone {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &ObjectKey, payload: Bytes, _options: &PutOptions) -> Result<PutOutcome, Error> {
        let path = self.path_of(key);
        let store = self.clone();
        let key = key.clone();
        run_blocking(move || put_file(&store.staging_dir()?, &path, |file| write_in_pieces(&payload, file)))
            .await
            .map_err(|err| io_error(err, key.as_str()))
    }

    /// Writes the chunks to the temporary file as they are produced. An
    /// object that exists already is not produced at all.
    async fn put_stream(
        &self,
        key: &ObjectKey,
        payload: &dyn Payload,
        _options: &PutOptions,
    ) -> Result<PutOutcome, Error> {
        let path = self.path_of(key);
        let checked = path.clone();
        if let Some(outcome) = run_blocking(move || already_there(&checked))
            .await
            .map_err(|err| io_error(err, key.as_str()))?
        {
            return Ok(outcome);
        }
        let chunks = payload.open();
        let store = self.clone();
        let stored = run_blocking(move || {
            let mut chunks = chunks;
            put_file(&store.staging_dir()?, &path, |file| write_chunks(&mut chunks, file))
        })
        .await;
        match stored {
            Ok(outcome) => Ok(outcome),
            Err(err) => Err(match PayloadFailed::take(err) {
                Ok(PayloadFailed(err)) => encoding_failed(key, err),
                Err(err) => io_error(err, key.as_str()),
            }),
        }
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, Error> {
        let path = self.path_of(key);
        let location = key.as_str().to_owned();
        run_blocking(move || match fs::symlink_metadata(&path) {
            // A directory holds objects whose keys start with this one: it
            // is not an object (a put there is refused, see `put_file`).
            Ok(metadata) => Ok(!metadata.is_dir()),
            // A missing file, or a path through a file (the key continues
            // an object's key): no object either way.
            Err(err) if matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(false),
            Err(err) => Err(err),
        })
        .await
        .map_err(|err| io_error(err, &location))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, Error> {
        let path = self.path_of(key);
        let location = key.as_str().to_owned();
        run_blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            // No object: nothing there, a directory of other objects, or a
            // path through a file (as `exists` reads them).
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        })
        .await
        .map_err(|err| io_error(err, &location))
    }

    /// Deletes the temporary files of dead runs, then writes and deletes a
    /// probe in this store's staging directory.
    async fn check(&self) -> Result<(), Error> {
        let store = self.clone();
        let location = self.root.display().to_string();
        run_blocking(move || {
            // `create_dir_all` on a file fails with "File exists", which
            // reads as a passing failure: say what is wrong instead.
            if fs::metadata(&store.root).is_ok_and(|meta| !meta.is_dir()) {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "exists and is not a directory",
                ));
            }
            fs::create_dir_all(&store.root)?;
            let removed = clean_staging(&store.root.join(STAGING_DIR))?;
            if removed > 0 {
                tracing::info!(root = %store.root.display(), removed, "removed temporary files left by an earlier run");
            }
            let probe = store.staging_dir()?.join("probe");
            File::create(&probe)?.write_all(b"probe")?;
            fs::remove_file(&probe)
        })
        .await
        .map_err(|err| io_error(err, &location))
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    fn is_local(&self) -> bool {
        true
    }
}

/// Makes the directory of `path`; if an object is there already, what it
/// is (see [`existing`]).
fn already_there(path: &Path) -> io::Result<Option<PutOutcome>> {
    let dir = path.parent().expect("an object path has a parent");
    fs::create_dir_all(dir).map_err(|err| match err.kind() {
        // A file stands where the key needs a directory: the key continues
        // an object's key. That never passes: not an error to retry.
        io::ErrorKind::AlreadyExists => io::Error::new(
            io::ErrorKind::NotADirectory,
            "an object's file stands where this key needs a directory",
        ),
        _ => err,
    })?;
    if fs::symlink_metadata(path).is_ok() {
        return existing(path).map(Some);
    }
    Ok(None)
}

/// Creates the object at `path` from what `fill` writes into a temporary
/// file in `staging`: fsynced, then linked into place.
fn put_file(staging: &Path, path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<PutOutcome> {
    if let Some(outcome) = already_there(path)? {
        return Ok(outcome);
    }
    let dir = path.parent().expect("an object path has a parent");
    // No object's extension: a glob for objects never matches it.
    let temp = staging.join(format!("put-{}", Alphanumeric.sample_string(&mut rand::rng(), 12)));
    let written = (|| {
        let mut file = File::create_new(&temp)?;
        fill(&mut file)?;
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
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return existing(path),
        Err(err) => return Err(err),
    };
    File::open(dir)?.sync_all()?;
    Ok(outcome)
}

/// Writes `bytes` into `file` a MiB at a time. One write of a whole
/// object (tens of MB) took the kernel 10 to 20 times as long to copy into
/// the page cache on the machines measured (issue #17).
fn write_in_pieces(bytes: &[u8], file: &mut File) -> io::Result<()> {
    bytes.chunks(WRITE_BYTES).try_for_each(|piece| file.write_all(piece))
}

/// The most written to a file at once ([`write_in_pieces`]).
const WRITE_BYTES: usize = 1024 * 1024;

/// Writes a payload's chunks into `file` as they come (waiting for each on
/// this blocking thread). A chunk the payload failed to produce comes back
/// as a [`PayloadFailed`] error, told apart from the file's own errors.
fn write_chunks(chunks: &mut Chunks, file: &mut File) -> io::Result<()> {
    while let Some(chunk) = chunks.blocking_recv() {
        let chunk = chunk.map_err(|err| io::Error::new(err.kind(), PayloadFailed(err)))?;
        file.write_all(&chunk)?;
    }
    Ok(())
}

/// The payload could not be produced: the encoder's error, not the file's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PayloadFailed(io::Error);

impl PayloadFailed {
    /// The payload's own error, if `err` is one; else `err`.
    fn take(err: io::Error) -> Result<Self, io::Error> {
        if !err.get_ref().is_some_and(|inner| inner.is::<Self>()) {
            return Err(err);
        }
        let inner = err.into_inner().expect("checked above");
        Ok(*inner.downcast::<Self>().expect("checked above"))
    }
}

/// What is already at an object's path: an object written earlier, or a
/// directory of objects whose keys continue this one. A file cannot take
/// that directory's name, and saying the object existed would count its
/// records as delivered: a permanent error instead.
fn existing(path: &Path) -> io::Result<PutOutcome> {
    if fs::symlink_metadata(path)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "a directory of other objects has this key's name, so no file can",
        ));
    }
    Ok(PutOutcome::AlreadyExisted)
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
    use crate::conformance::{self, ReadBack};

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    /// Reads objects as a user would: the files under the root.
    struct Files(PathBuf);

    #[async_trait]
    impl ReadBack for Files {
        async fn read(&self, key: &ObjectKey) -> Option<Bytes> {
            let path = self.0.join(key.as_str());
            fs::metadata(&path).ok().filter(|m| m.is_file())?;
            Some(fs::read(path).expect("read an object's file").into())
        }
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let store = LocalStore::new(&root);
        conformance::run_all(&store, &Files(root.clone()), "conformance").await;
        // Nothing staged is left: every put cleaned up after itself.
        let staged: Vec<_> = fs::read_dir(root.join(STAGING_DIR))
            .unwrap()
            .flat_map(|dir| fs::read_dir(dir.unwrap().path()).unwrap())
            .collect();
        assert!(staged.is_empty(), "{staged:?}");
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
        let mut root_names: Vec<_> = fs::read_dir(dir.path().join("archive"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        root_names.sort();
        assert_eq!(root_names, [STAGING_DIR, "events"]);
        // The staging directory holds this store's own directory, empty:
        // no temporary file, no probe.
        let staged: Vec<_> = fs::read_dir(dir.path().join("archive").join(STAGING_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(staged.len(), 1);
        assert_eq!(fs::read_dir(&staged[0]).unwrap().count(), 0);
    }

    /// A payload the test produces by hand, chunk by chunk; it can be
    /// opened once.
    #[derive(Debug)]
    struct ByHand(Mutex<Option<Chunks>>);

    impl Payload for ByHand {
        fn open(&self) -> Chunks {
            self.0.lock().unwrap().take().expect("the payload is opened once")
        }
    }

    /// Bytes in this store's staging directory.
    fn staged_bytes(store: &LocalStore) -> u64 {
        fs::read_dir(store.staging_dir().unwrap())
            .unwrap()
            .filter_map(|entry| entry.ok()?.metadata().ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_streamed_put_writes_chunks_to_its_staged_file_as_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("archive"));
        store.check().await.unwrap();
        let k = key("events/large.jsonl.gz");
        let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let put = {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                let payload = ByHand(Mutex::new(Some(rx)));
                store.put_stream(&k, &payload, &PutOptions::default()).await
            })
        };
        for _ in 0..2 {
            tx.send(Ok(chunk.clone())).await.unwrap();
        }
        // The payload is not finished, yet its first chunk is on disk.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while staged_bytes(&store) < chunk.len() as u64 {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing was written while the payload was produced: the object is collected first"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!store.exists(&k).await.unwrap(), "a partial object is visible");
        tx.send(Ok(chunk.clone())).await.unwrap();
        drop(tx);
        assert_eq!(put.await.unwrap().unwrap(), PutOutcome::Created);
        let file = fs::read(dir.path().join("archive").join(k.as_str())).unwrap();
        assert!(file.len() == 3 * chunk.len() && file.iter().all(|b| *b == b'x'));
        assert_eq!(staged_bytes(&store), 0);

        // Onto an existing object, the payload is not even produced.
        let untouched = ByHand(Mutex::new(None));
        let again = store.put_stream(&k, &untouched, &PutOptions::default()).await;
        assert_eq!(again.unwrap(), PutOutcome::AlreadyExisted);
    }

    #[tokio::test]
    async fn a_streamed_payload_that_fails_is_a_retryable_error_naming_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("archive"));
        let k = key("events/failed.jsonl");
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.send(Ok(Bytes::from_static(b"half"))).await.unwrap();
        tx.send(Err(io::Error::other("the encoder ran out of memory")))
            .await
            .unwrap();
        let err = store
            .put_stream(&k, &ByHand(Mutex::new(Some(rx))), &PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Transient { .. }), "{err:?}");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("the encoder ran out of memory"));
        assert!(!store.exists(&k).await.unwrap());
        assert_eq!(staged_bytes(&store), 0);
    }

    #[tokio::test]
    async fn the_start_up_check_removes_what_dead_runs_left_and_spares_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let staging = root.join(STAGING_DIR);
        // A run killed mid-put: its directory, unlocked, with a partial file.
        fs::create_dir_all(staging.join("deadrun")).unwrap();
        fs::write(staging.join("deadrun/put-partial"), b"half an obj").unwrap();
        fs::write(staging.join("loose"), b"").unwrap();
        // A live run (another stream sharing the root): locked, mid-put.
        let live = LocalStore::new(&root);
        let live_dir = live.staging_dir().unwrap();
        fs::write(live_dir.join("put-in-flight"), b"being written").unwrap();

        let store = LocalStore::new(&root);
        store.check().await.unwrap();
        assert!(!staging.join("deadrun").exists(), "a dead run's files were kept");
        assert!(!staging.join("loose").exists());
        assert!(live_dir.join("put-in-flight").exists(), "a live run's file was removed");
        let mut left: Vec<_> = fs::read_dir(&staging).unwrap().map(|e| e.unwrap().path()).collect();
        left.sort();
        let mut expected = vec![live_dir.clone(), store.staging_dir().unwrap()];
        expected.sort();
        assert_eq!(left, expected);

        // Once the live run is gone, the next start removes its directory.
        drop(live);
        LocalStore::new(&root).check().await.unwrap();
        assert!(!live_dir.exists());
        assert!(
            store.staging_dir().unwrap().exists(),
            "a live store's own directory was removed"
        );
    }

    #[tokio::test]
    async fn a_read_only_directory_is_a_permanent_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let read_only = dir.path().join("archive");
        fs::create_dir(&read_only).unwrap();
        fs::set_permissions(&read_only, fs::Permissions::from_mode(0o555)).unwrap();
        // The superuser writes whatever the mode; sysfs refuses a new
        // directory to everyone (EPERM, or EROFS where it is mounted
        // read-only).
        let enforced = File::create(read_only.join("probe")).is_err();
        let root = if enforced {
            read_only.clone()
        } else {
            PathBuf::from("/sys/spillway-test-archive")
        };
        let store = LocalStore::new(&root);
        let checked = store.check().await.unwrap_err();
        let put = store
            .put(
                &key("events/object.jsonl"),
                Bytes::from_static(b"x"),
                &PutOptions::default(),
            )
            .await
            .unwrap_err();
        for err in [checked, put] {
            assert!(
                matches!(err, Error::PermissionDenied { .. }),
                "{}: {err:?}",
                root.display()
            );
            assert!(!err.is_retryable());
        }
        fs::set_permissions(&read_only, fs::Permissions::from_mode(0o755)).unwrap();
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

    /// Keys of 1 to 4 segments of every class of character, some of them
    /// longer than a file name may be.
    fn key_chars() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let class = prop_oneof![
            2 => Just('.'),
            4 => proptest::char::range('a', 'z'),
            2 => proptest::char::range(' ', '~').prop_filter("no separator", |c| *c != '/'),
            2 => proptest::char::range('\u{a0}', '\u{2fff}'),
            1 => proptest::char::range('\u{1f300}', '\u{1f64f}'),
        ];
        let segment = proptest::collection::vec(class, 1..200).prop_map(String::from_iter);
        proptest::collection::vec(segment, 1..4).prop_map(|segments| segments.join("/"))
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 64, ..Default::default() })]

        /// Whatever the key and the chunks: a put creates the object and
        /// reads back exactly, streamed or whole, or fails for good (a
        /// segment longer than the file system takes); never a transient
        /// error retried without end, never "already existed" on a fresh
        /// key.
        #[test]
        fn any_valid_key_and_chunking_stores_exactly_or_fails_for_good(
            name in key_chars(),
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..6),
        ) {
            let k = ObjectKey::new(name);
            proptest::prop_assume!(k.is_ok());
            let k = k.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let store = LocalStore::new(dir.path().join("streamed"));
            let whole_store = LocalStore::new(dir.path().join("whole"));
            let payload = conformance::Chunked::new(chunks.into_iter().map(Bytes::from));
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (streamed, whole) = runtime.block_on(async {
                let streamed = store.put_stream(&k, &payload, &PutOptions::default()).await;
                let whole = whole_store.put(&k, payload.whole(), &PutOptions::default()).await;
                (streamed, whole)
            });
            for (outcome, root) in [(streamed, "streamed"), (whole, "whole")] {
                match outcome {
                    Ok(PutOutcome::Created) => {
                        let files = Files(dir.path().join(root));
                        proptest::prop_assert_eq!(runtime.block_on(files.read(&k)), Some(payload.whole()));
                    }
                    Err(err) => proptest::prop_assert!(!err.is_retryable(), "{k:?}: {err:?}"),
                    Ok(outcome) => proptest::prop_assert!(false, "{k:?}: {outcome:?} on a fresh key"),
                }
            }
        }
    }
}
