//! The pipeline's side of the jq workers: child processes (`spillway
//! jq-worker`, see [`super::serve`]) that run the jq programs on records.
//!
//! Why processes: the program is the operator's, the records are hostile,
//! and jaq offers no budget. A record can make a program recurse without
//! end (`def f: 1 + f; f`), which overflows the stack and aborts the whole
//! process, again after every restart, on the same record: a stuck stream.
//! It can make a program loop without end (`last(range(1e18))`), which
//! stalls the pipeline, or allocate without end. A thread cannot be
//! stopped or survive a stack overflow; a process can be killed, and its
//! crash is its own. So each record gets [`MAX_RECORD_TIME`] in a worker;
//! a worker that crashes or runs out of time on a record is replaced, that
//! record fails (`Jq.Crashed`, `Jq.TimedOut`) and the next ones go on.
//!
//! Workers also run on all cores: a batch is split between them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

use super::wire::{self, Frames, Reply};

/// The longest one record may keep the jq programs busy.
pub const MAX_RECORD_TIME: Duration = Duration::from_secs(5);

/// The most records sent one at a time after a worker stopped, looking
/// for the one that stopped it.
const MAX_PROBES: usize = 4096;

/// Records below which a batch is not split between workers.
const MIN_SHARE: usize = 256;

static WORKER_BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Makes jq processors run in workers started from `binary` (the
/// `spillway` binary, which serves `spillway jq-worker`). Without it (unit
/// tests, whose binary is not spillway's) they run in the calling process.
pub fn use_worker_binary(binary: PathBuf) {
    let _ = WORKER_BINARY.set(binary);
}

pub(super) fn worker_binary() -> Option<&'static PathBuf> {
    WORKER_BINARY.get()
}

/// A record's time: [`MAX_RECORD_TIME`], or `SPILLWAY_TEST_JQ_MS` (a test
/// hook) milliseconds.
fn record_time() -> Duration {
    std::env::var("SPILLWAY_TEST_JQ_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(MAX_RECORD_TIME)
}

/// Workers for one chain of programs, started at the first batch.
pub struct Pool {
    binary: PathBuf,
    programs: Vec<u8>,
    record_time: Duration,
    slots: Vec<Mutex<Option<Running>>>,
}

struct Running {
    child: Child,
    /// Taken by the writer while a share is sent; back after it.
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// Why a worker stopped answering.
enum Broke {
    Crashed(std::io::Error),
    TimedOut,
}

impl Pool {
    /// `programs`: the first frame ([`super::serve::encode_steps`]).
    pub fn new(binary: PathBuf, programs: Vec<u8>) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        Self {
            binary,
            programs,
            record_time: record_time(),
            slots: (0..workers).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// One reply per record, in order.
    pub async fn run(self: &Arc<Self>, records: Vec<Bytes>) -> Vec<Reply> {
        self.run_frames(records)
            .await
            .iter()
            .map(|frame| {
                // Checked as it was read, or made here: it decodes.
                wire::decode_reply(frame).unwrap_or_else(|err| Reply::Failed {
                    code: "Jq.Crashed".into(),
                    message: format!("the jq worker's reply cannot be read: {err}"),
                })
            })
            .collect()
    }

    /// One reply per record, in order, each as its frame's bytes (checked:
    /// [`wire::view_reply`] reads them), for a caller that reads them in
    /// place.
    pub async fn run_frames(self: &Arc<Self>, records: Vec<Bytes>) -> Frames {
        let shares = self.slots.len().min(records.len().div_ceil(MIN_SHARE)).max(1);
        if shares == 1 {
            return self.run_share(0, records).await;
        }
        let per_share = records.len().div_ceil(shares);
        let mut records = records.into_iter();
        let mut tasks = Vec::with_capacity(shares);
        for slot in 0..shares {
            let share: Vec<Bytes> = records.by_ref().take(per_share).collect();
            let pool = self.clone();
            tasks.push(tokio::spawn(async move { pool.run_share(slot, share).await }));
        }
        let mut replies = Frames::default();
        for task in tasks {
            let share = task
                .await
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
            if replies.is_empty() {
                replies = share;
            } else {
                replies.append(share);
            }
        }
        replies
    }

    /// Runs `records` on worker `slot`: a record that crashes it or runs
    /// out of time fails, the worker is replaced and the rest go on.
    async fn run_share(&self, slot: usize, records: Vec<Bytes>) -> Frames {
        let mut worker = self.slots[slot].lock().await;
        // Outputs are about as large as their records, plus a few bytes of
        // lengths and keys each.
        let mut replies = Frames::with_capacity(records.len(), records.iter().map(|r| r.len() + 32).sum::<usize>());
        // After a worker stopped, records go one at a time until the one
        // that stops it again is found (see below), at most MAX_PROBES.
        let mut probing: Option<usize> = None;
        while replies.len() < records.len() {
            if worker.is_none() {
                match self.start().await {
                    Ok(running) => *worker = Some(running),
                    Err(err) => {
                        tracing::error!(error = %err, "the jq worker cannot start");
                        let failed = wire::encode_reply(&Reply::Failed {
                            code: "Jq.WorkerFailed".into(),
                            message: format!("the jq worker cannot start: {err}"),
                        });
                        while replies.len() < records.len() {
                            replies.push(&failed);
                        }
                        break;
                    }
                }
            }
            let running = worker.as_mut().expect("started above");
            let stdin = running.stdin.take().expect("each share gives the input back");
            let end = match probing {
                Some(_) => replies.len() + 1,
                None => records.len(),
            };
            let pending = records[replies.len()..end].to_vec();
            let writer = tokio::spawn(send(stdin, pending));
            let broke = read_replies(&mut running.stdout, &mut replies, end, self.record_time).await;
            let Some(broke) = broke else {
                match writer.await {
                    Ok(Ok(stdin)) => running.stdin = Some(stdin),
                    // Every reply came, yet the input broke: start afresh.
                    _ => stop(worker.take()).await,
                }
                probing = probing.map(|probed| probed + 1).filter(|probed| *probed < MAX_PROBES);
                continue;
            };
            writer.abort();
            let mut dead = worker.take().expect("running");
            let _ = dead.child.start_kill();
            let status = match tokio::time::timeout(Duration::from_secs(5), dead.child.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                _ => "not reaped".to_owned(),
            };
            if probing.is_none() {
                // A worker sends its replies when it has no record waiting:
                // those it made before it stopped may be lost with it, so
                // the record that stopped it is not known yet. Find it by
                // sending the records from the first unanswered one at a
                // time.
                probing = Some(0);
                continue;
            }
            probing = None;
            let failed = match broke {
                Broke::TimedOut => Reply::Failed {
                    code: "Jq.TimedOut".into(),
                    message: format!(
                        "the jq programs ran over {} ms on this record and were stopped",
                        self.record_time.as_millis()
                    ),
                },
                Broke::Crashed(err) => Reply::Failed {
                    code: "Jq.Crashed".into(),
                    message: format!(
                        "the jq programs crashed on this record ({status}; {err}): a recursion too deep or \
                         memory over {} MiB",
                        super::serve::MEMORY_LIMIT >> 20
                    ),
                },
            };
            if let Reply::Failed { code, .. } = &failed {
                tracing::warn!(error_code = %code, %status, "a record stopped the jq worker: it fails, a new worker goes on");
            }
            replies.push(&wire::encode_reply(&failed));
        }
        replies
    }

    async fn start(&self) -> std::io::Result<Running> {
        let mut child = Command::new(&self.binary)
            .arg("jq-worker")
            // The programs need nothing of the environment (and may not
            // read it: `env` is withheld).
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::with_capacity(1 << 20, child.stdout.take().expect("piped"));
        let mut first = Vec::with_capacity(self.programs.len() + 4);
        wire::write_frame(&mut first, &self.programs)?;
        stdin.write_all(&first).await?;
        stdin.flush().await?;
        Ok(Running {
            child,
            stdin: Some(stdin),
            stdout,
        })
    }
}

/// Sends each record as a frame; gives the input back.
async fn send(stdin: ChildStdin, records: Vec<Bytes>) -> std::io::Result<ChildStdin> {
    let mut out = BufWriter::with_capacity(1 << 20, stdin);
    for record in &records {
        let len = u32::try_from(record.len()).map_err(|_| std::io::Error::other("record over 4 GiB"))?;
        out.write_all(&len.to_le_bytes()).await?;
        out.write_all(record).await?;
    }
    out.flush().await?;
    Ok(out.into_inner())
}

/// Reads replies until `replies` holds `end`, each within `record_time`
/// of the one before (or of the start); `None` when all came.
///
/// One timer for the whole share, moved on only when it fires: a timeout
/// per reply registered and cancelled a timer per record, which showed
/// in the pipeline's profile (issue #18, speed).
async fn read_replies(
    stdout: &mut BufReader<ChildStdout>,
    replies: &mut Frames,
    end: usize,
    record_time: Duration,
) -> Option<Broke> {
    let start = Instant::now();
    // When the last reply came, in nanoseconds after `start`.
    let progress = AtomicU64::new(0);
    let reading = async {
        while replies.len() < end {
            match read_reply(stdout, replies).await {
                Ok(()) => {
                    progress.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                Err(err) => return Some(Broke::Crashed(err)),
            }
        }
        None
    };
    let watchdog = async {
        loop {
            let deadline = start + Duration::from_nanos(progress.load(Ordering::Relaxed)) + record_time;
            if Instant::now() >= deadline {
                return Broke::TimedOut;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    };
    tokio::select! {
        biased;
        broke = reading => broke,
        broke = watchdog => Some(broke),
    }
}

/// One reply's frame, checked, added to `replies`: a worker whose reply
/// cannot be read is treated as crashed.
async fn read_reply(stdout: &mut BufReader<ChildStdout>, replies: &mut Frames) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    stdout.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > wire::MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "reply frame too large",
        ));
    }
    let read = stdout.read_exact(replies.next_frame(len)).await;
    let checked = read.and_then(|_| wire::check_reply(replies.last_unkept()));
    match checked {
        Ok(()) => {
            replies.keep();
            Ok(())
        }
        Err(err) => {
            replies.discard();
            Err(err)
        }
    }
}

async fn stop(running: Option<Running>) {
    if let Some(mut running) = running {
        let _ = running.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), running.child.wait()).await;
    }
}
