//! gzip on every core: a large object is cut into blocks of input, each
//! compressed into a complete gzip member on a worker thread, and the
//! members are written out in order as they are done.
//!
//! RFC 1952 lets a gzip file hold several members one after another, and
//! every gzip reader (`gzip -d`, `zcat`, Python's `gzip`, flate2's
//! `MultiGzDecoder`, Athena, Spark, DuckDB) reads them as one stream. Each
//! member starts with an empty dictionary, which costs a few hundred bytes
//! per block of a MiB: well under 1% of the output. An object that fits in
//! one block stays one member, compressed on the caller's thread, with no
//! thread started.
//!
//! Memory is bounded: at most [`IN_FLIGHT_PER_WORKER`] blocks per worker
//! are queued or being compressed; a write waits for the oldest to be done
//! (and writes it out) before it queues another.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::Encoder;

/// Input bytes per gzip member. Large enough that restarting the
/// dictionary costs nothing measurable, small enough that two cores get
/// work from objects of a few MiB.
pub(super) const BLOCK_BYTES: usize = 1024 * 1024;

/// Blocks queued or being compressed, per worker, before a write waits.
const IN_FLIGHT_PER_WORKER: usize = 2;

/// A gzip encoder that compresses blocks of its input in parallel, each
/// into its own gzip member, and writes the members to `inner` in order.
pub(super) struct ParallelGzip<W: Write> {
    inner: W,
    level: flate2::Compression,
    block_bytes: usize,
    workers: usize,
    /// Input not yet handed to a worker.
    block: Vec<u8>,
    /// Started when the first block is full: a small object needs none.
    pool: Option<Pool>,
}

impl<W: Write> ParallelGzip<W> {
    /// `workers` threads at most (1 compresses on the caller's thread),
    /// members of `block_bytes` of input.
    pub(super) fn new(inner: W, level: flate2::Compression, block_bytes: usize, workers: usize) -> Self {
        debug_assert!(block_bytes > 0 && workers > 0);
        Self {
            inner,
            level,
            block_bytes,
            workers,
            block: Vec::new(),
            pool: None,
        }
    }

    /// Hands the full block to a worker (or compresses it here if there is
    /// only one core), first writing out members while too many are in
    /// flight.
    fn dispatch_block(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(self.block_bytes));
        if self.workers == 1 {
            return self.inner.write_all(&member(&block, self.level)?);
        }
        let pool = self.pool.get_or_insert_with(|| Pool::start(self.workers, self.level));
        while pool.in_flight.len() >= self.workers * IN_FLIGHT_PER_WORKER {
            self.inner.write_all(&pool.oldest()?)?;
        }
        pool.submit(block)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A full block is handed on only once more input comes: an object
        // of exactly one block stays one member, with no thread started.
        if self.block.len() == self.block_bytes {
            self.dispatch_block()?;
        }
        if self.block.capacity() == 0 {
            // Not before the first write: an empty object allocates nothing.
            self.block.reserve_exact(self.block_bytes.min(buf.len().max(64 * 1024)));
        }
        let room = self.block_bytes - self.block.len();
        let taken = room.min(buf.len());
        self.block.extend_from_slice(&buf[..taken]);
        Ok(taken)
    }

    /// Members are written when they are complete; a flush cannot end one
    /// early without making the output larger, so it only flushes what was
    /// written already.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write + Send> Encoder for ParallelGzip<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        match self.pool.take() {
            // The last block here (on one core), or the whole object as
            // one member (also an empty one: a gzip file holds at least one
            // member, or `gzip -d` refuses it).
            None => {
                let whole = member(&self.block, self.level)?;
                self.inner.write_all(&whole)?;
            }
            Some(mut pool) => {
                // Never empty: a block is handed on only when more follows.
                pool.submit(std::mem::take(&mut self.block))?;
                while !pool.in_flight.is_empty() {
                    self.inner.write_all(&pool.oldest()?)?;
                }
            }
        }
        self.inner.flush()
    }
}

/// `block` as one complete gzip member.
fn member(block: &[u8], level: flate2::Compression) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(block.len() / 3 + 64), level);
    encoder.write_all(block)?;
    encoder.finish()
}

/// A block to compress, and where its member goes.
struct Job {
    block: Vec<u8>,
    done: SyncSender<io::Result<Vec<u8>>>,
}

/// Worker threads taking jobs from one queue; the members come back
/// through one channel per job, kept in input order.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    /// The workers' end of `jobs`, kept to drop queued jobs on drop.
    queue: Arc<Mutex<Receiver<Job>>>,
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(workers: usize, level: flate2::Compression) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<Job>(workers * IN_FLIGHT_PER_WORKER);
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..workers)
            .map(|_| {
                let queue = queue.clone();
                std::thread::spawn(move || loop {
                    // The lock is held only while waiting for a job, never
                    // while compressing.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(Job { block, done }) = job else {
                        return; // the encoder is gone
                    };
                    // Nobody waits for it if the encoder was dropped.
                    let _ = done.send(member(&block, level));
                })
            })
            .collect();
        Self {
            jobs: Some(jobs),
            queue,
            in_flight: VecDeque::new(),
            threads,
        }
    }

    fn submit(&mut self, block: Vec<u8>) -> io::Result<()> {
        let (done, member) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .expect("jobs are open until the pool is dropped")
            .send(Job { block, done })
            .map_err(|_| worker_gone())?;
        self.in_flight.push_back(member);
        Ok(())
    }

    /// Waits for the oldest member in flight.
    fn oldest(&mut self) -> io::Result<Vec<u8>> {
        let member = self.in_flight.pop_front().expect("a member is in flight");
        member.recv().map_err(|_| worker_gone())?
    }
}

impl Drop for Pool {
    /// Closes the queue, drops the blocks still queued and waits for the
    /// workers: each ends after the block it is compressing, so no thread
    /// outlives its encoder by more than one block.
    fn drop(&mut self) {
        self.jobs = None;
        self.in_flight.clear();
        if let Ok(queue) = self.queue.lock() {
            while queue.try_recv().is_ok() {}
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("a gzip compression thread stopped unexpectedly")
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Read;

    use super::*;

    /// The members of a gzip file, each decoded on its own.
    pub(crate) fn members(mut gzip: &[u8]) -> Vec<Vec<u8>> {
        let mut members = Vec::new();
        while !gzip.is_empty() {
            let mut decoder = flate2::bufread::GzDecoder::new(gzip);
            let mut member = Vec::new();
            decoder.read_to_end(&mut member).expect("a complete gzip member");
            gzip = decoder.into_inner();
            members.push(member);
        }
        members
    }

    fn encode(body: &[u8], writes: &[usize], block_bytes: usize, workers: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = Box::new(ParallelGzip::new(
            &mut out,
            flate2::Compression::default(),
            block_bytes,
            workers,
        ));
        let mut rest = body;
        for size in writes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*size).clamp(1, rest.len()));
            encoder.write_all(now).unwrap();
            rest = later;
        }
        encoder.finish().unwrap();
        out
    }

    #[test]
    fn a_large_object_is_members_of_one_block_each_in_order() {
        let body: Vec<u8> = (0..(5 * BLOCK_BYTES / 2) as u32)
            .flat_map(|i| format!("{{\"id\":{i}}}\n").into_bytes())
            .take(5 * BLOCK_BYTES / 2)
            .collect();
        let gzip = encode(&body, &[100_000, 3, 777_777], BLOCK_BYTES, 2);
        let members = members(&gzip);
        assert_eq!(
            members.iter().map(Vec::len).collect::<Vec<_>>(),
            [BLOCK_BYTES, BLOCK_BYTES, BLOCK_BYTES / 2]
        );
        assert_eq!(members.concat(), body);
    }

    #[test]
    fn a_small_object_is_one_member_and_an_empty_one_too() {
        for body in [&b""[..], b"{\"a\":1}\n", &[b'x'; BLOCK_BYTES]] {
            let gzip = encode(body, &[4096], BLOCK_BYTES, 4);
            assert_eq!(members(&gzip), [body], "{} bytes", body.len());
        }
    }

    #[test]
    fn a_dropped_encoder_stops_its_threads() {
        let mut out = Vec::new();
        let mut encoder = ParallelGzip::new(&mut out, flate2::Compression::fast(), 16, 3);
        encoder.write_all(&[7; 1000]).unwrap();
        let threads = encoder.pool.as_ref().unwrap().threads.len();
        assert_eq!(threads, 3);
        drop(encoder); // joins them: a hang here fails the test by timeout
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 128, ..Default::default() })]

        /// Any body, written in any pieces, ending anywhere in a block
        /// or right on a boundary, on one worker or several, decodes to
        /// itself as one stream, with one member per block.
        #[test]
        fn any_body_and_blocking_round_trips(
            seed in proptest::collection::vec(proptest::num::u8::ANY, 1..500),
            block_bytes in 1usize..3_000,
            blocks in 0usize..6,
            rest in proptest::prop_oneof![proptest::strategy::Just(0usize), 0usize..3_001],
            writes in proptest::collection::vec(1usize..5_000, 1..8),
            workers in 1usize..5,
        ) {
            let len = blocks * block_bytes + rest % (block_bytes + 1);
            // The seed, each repetition altered: not all one byte.
            let body: Vec<u8> = (0..len).map(|i| seed[i % seed.len()] ^ (i / seed.len()) as u8).collect();
            let gzip = encode(&body, &writes, block_bytes, workers);
            let mut decoded = Vec::new();
            flate2::read::MultiGzDecoder::new(&gzip[..]).read_to_end(&mut decoded).unwrap();
            proptest::prop_assert_eq!(&decoded, &body);
            let expected_members = body.len().div_ceil(block_bytes).max(1);
            proptest::prop_assert_eq!(members(&gzip).len(), expected_members);
        }
    }
}
