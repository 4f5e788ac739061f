//! One instance's side of the lease table: which shards it holds now, and
//! the rounds that keep that true (renew what it holds, list, note expiry,
//! take its share, as [`super::balance::plan`] says).
//!
//! The caller (the Kinesis source under coordination) runs [`Keeper::round`]
//! every renewal interval, from one round's start to the next, and sooner
//! when a lease another instance holds runs out (its counter stood still
//! for a lease since it was read: [`Keeper::next_expiry`]), so that a dead
//! instance's shards are taken within a lease and a renewal interval of
//! its last renewal; a round whose take lost a race to another instance
//! lists again and takes the rest of its share. It starts or stops shard
//! readers on the
//! [`LeaseChange`]s it returns; its checkpoint writes go through
//! [`Keeper::checkpoint`], so that they, too, are fenced by the lease and
//! move its counter without the next renewal losing the lease for it.
//!
//! A lease is held only as long as this instance can prove it: its last
//! successful write (renewal or checkpoint) was *sent* less than a lease
//! duration ago. Another instance may take it only after seeing its counter
//! stand still for a lease duration from when it *read* it, which is after
//! that write landed, so an instance gives a lease up (as
//! [`LossReason::Unproven`]) before anyone else may take it, whether it was
//! paused, partitioned from DynamoDB or just slow.
//!
//! Writes of one lease are serialised (a renewal and a checkpoint both
//! conditional on the same counter would fence each other out); writes of
//! different leases run side by side, so that one slow lease does not hold
//! up the others' renewals.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::balance;
use super::dynamodb::LeaseTable;
use super::expiry::Observer;
use super::{Lease, LeaseError};

/// How often one round may list the table: once, and again after each
/// take that lost a race to another instance.
const LISTINGS_PER_ROUND: usize = 3;

/// A change in what this instance holds, for the caller to act on.
#[derive(Debug)]
pub enum LeaseChange {
    /// This instance holds the shard now: the lease as taken, with the
    /// last owner's checkpoint state. `lost` is cancelled the moment the
    /// lease is lost, so that a reader watching it stops at once.
    Won { lease: Lease, lost: CancellationToken },
    /// The shard is no longer this instance's, or no longer provably: stop
    /// reading it at once and drop what is buffered of it unwritten.
    Lost { shard: String, why: LossReason },
}

/// Why a lease was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// A conditional write failed: another instance wrote the lease.
    Taken,
    /// No write succeeded for a lease duration (DynamoDB unreachable, or
    /// this process paused): another instance may take it any moment.
    Unproven,
}

struct Held {
    /// The lease as last written; locked across a write.
    lease: tokio::sync::Mutex<Lease>,
    /// When the last successful write was sent.
    proven_at: Mutex<Instant>,
    lost: CancellationToken,
}

struct Inner {
    table: LeaseTable,
    duration: Duration,
    observer: Mutex<Observer>,
    /// When a lease another instance holds runs out if its counter stands
    /// still, as of the last listing ([`Observer::next_expiry`]).
    next_expiry: Mutex<Option<Instant>>,
    held: Mutex<BTreeMap<String, Arc<Held>>>,
    /// Cleared at a hand-over ([`Keeper::stop_taking`]).
    taking: std::sync::atomic::AtomicBool,
    /// Shards this instance gave up for good ([`Keeper::refuse`]).
    refused: Mutex<std::collections::BTreeSet<String>>,
}

/// The leases this instance holds, and the rounds that keep them.
#[derive(Clone)]
pub struct Keeper {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("worker", &self.worker())
            .field("held", &self.held())
            .finish()
    }
}

/// The delivery asks the keeper whether a shard's lease is still held
/// before it puts an object of the shard's records.
impl super::holds::Leases for Keeper {
    fn holds(&self, shard: &spillway_transforms::SourceId) -> bool {
        Keeper::holds(self, shard.as_str())
    }
}

impl Keeper {
    pub fn new(table: LeaseTable, duration: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                table,
                duration,
                observer: Mutex::new(Observer::default()),
                next_expiry: Mutex::new(None),
                held: Mutex::new(BTreeMap::new()),
                taking: std::sync::atomic::AtomicBool::new(true),
                refused: Mutex::new(Default::default()),
            }),
        }
    }

    pub fn worker(&self) -> &str {
        self.inner.table.worker()
    }

    /// How often [`Self::round`] should run: a third of the lease duration,
    /// so that two renewals may fail before a lease goes unproven.
    pub fn renewal_interval(&self) -> Duration {
        self.inner.duration / 3
    }

    /// Adds a discovered shard's lease (unowned) unless it exists.
    pub async fn add(&self, shard: &str, parents: &[String]) -> Result<bool, LeaseError> {
        self.inner.table.add(shard, parents).await
    }

    /// When the pipeline first started, the same for every instance: the
    /// table's, or `now` if this is the first to ask
    /// ([`LeaseTable::started_at`]). `start_position = "latest"` reads every
    /// shard without a checkpoint from then on.
    pub async fn started_at(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<chrono::DateTime<chrono::Utc>, LeaseError> {
        self.inner.table.started_at(now).await
    }

    /// The shards held now, in order.
    pub fn held(&self) -> Vec<String> {
        self.held_map().keys().cloned().collect()
    }

    pub fn holds(&self, shard: &str) -> bool {
        self.held_map().contains_key(shard)
    }

    /// From now on, rounds renew what is held and take nothing: the
    /// instance is handing its shards over (it stops, flushes, then
    /// releases), and a lease taken now would only be released unread.
    pub fn stop_taking(&self) {
        self.inner.taking.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn held_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Held>>> {
        self.inner.held.lock().expect("never poisoned")
    }

    /// One round: gives up what cannot be proven, renews the rest, lists
    /// the table and takes this instance's share. Returns what changed, and
    /// the error that cut the round short, if any (the caller logs a
    /// retryable one and stops on one that is not).
    pub async fn round(&self) -> (Vec<LeaseChange>, Option<LeaseError>) {
        let mut changes = self.expire();
        let (mut rest, error) = self.renew_and_take().await;
        changes.append(&mut rest);
        (changes, error)
    }

    /// A round after [`Self::expire`]: renews what is held, lists the
    /// table and takes this instance's share. [`run`] gives up what runs
    /// out itself, as it runs out, so that a lease expiring while a round
    /// waits on DynamoDB is not said only when the round comes back.
    async fn renew_and_take(&self) -> (Vec<LeaseChange>, Option<LeaseError>) {
        let (mut changes, error) = self.renew_all().await;
        if let Some(error) = error.filter(|e| !e.is_retryable()) {
            return (changes, Some(error));
        }
        // Bounded, so that a table that does not answer delays the next
        // round's look at the proofs by one renewal interval at most.
        let mut listed = match tokio::time::timeout(self.renewal_interval(), self.inner.table.list()).await {
            Ok(Ok(listed)) => listed,
            Ok(Err(error)) => return (changes, Some(error)),
            Err(_) => {
                let error = LeaseError::Unavailable {
                    table: self.inner.table.name().to_owned(),
                    place: self.inner.table.place().to_owned(),
                    detail: format!("listing the leases took over {:?}", self.renewal_interval()),
                };
                return (changes, Some(error));
            }
        };
        // Two instances may pick the same lease: the one that loses the
        // race lists again and takes the rest of its share in this round,
        // rather than a renewal interval later (a dead instance's shards
        // are then all read again within a lease and a renewal interval).
        for listing in 1..=LISTINGS_PER_ROUND {
            match self.take_share(&listed, &mut changes).await {
                Ok(true) if listing < LISTINGS_PER_ROUND => {}
                Ok(_) => break,
                Err(error) => return (changes, Some(error)),
            }
            listed = match tokio::time::timeout(self.renewal_interval(), self.inner.table.list()).await {
                Ok(Ok(listed)) => listed,
                Ok(Err(error)) => return (changes, Some(error)),
                Err(_) => break,
            };
        }
        (changes, None)
    }

    /// When [`run`] should look again before its next round: a lease
    /// another instance holds runs out then, should its counter stand
    /// still (`None`: no such lease, or not before the next round anyway).
    pub fn next_expiry(&self) -> Option<Instant> {
        *self.inner.next_expiry.lock().expect("never poisoned")
    }

    /// Notes `listed` (the counters, for expiry) and takes this instance's
    /// share of it, as [`balance::plan`] says. Returns whether a take lost
    /// a race (the table changed since `listed`: list it again).
    async fn take_share(&self, listed: &[Lease], changes: &mut Vec<LeaseChange>) -> Result<bool, LeaseError> {
        let now = Instant::now();
        {
            let mut observer = self.inner.observer.lock().expect("never poisoned");
            observer.observe(listed, now);
            *self.inner.next_expiry.lock().expect("never poisoned") =
                observer.next_expiry(listed, self.worker(), now, self.inner.duration);
        }
        if !self.inner.taking.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        // Refused leases are none of this instance's business.
        let listed: Vec<Lease> = {
            let refused = self.inner.refused.lock().expect("never poisoned");
            listed.iter().filter(|l| !refused.contains(&l.shard)).cloned().collect()
        };
        let listed = &listed[..];
        let mut takes: Vec<(Lease, bool)> = Vec::new();
        // The table says these are ours, but this instance let them go
        // (unproven, or a write whose answer it never saw): take them back
        // unless someone else wrote them since.
        let held = self.held();
        for lease in listed
            .iter()
            .filter(|l| l.held_by(self.worker()) && !l.ended && !held.contains(&l.shard))
        {
            takes.push((lease.clone(), false));
        }
        let plan = {
            let observer = self.inner.observer.lock().expect("never poisoned");
            balance::plan(listed, self.worker(), |l| observer.expired(l, now, self.inner.duration))
        };
        for take in plan {
            if let Some(lease) = listed
                .iter()
                .find(|l| l.shard == take.shard && l.counter == take.counter)
            {
                takes.push((lease.clone(), take.steal));
            }
        }
        let mut raced = false;
        for (lease, steal) in takes {
            let sent_at = Instant::now();
            match self.inner.table.take(&lease).await {
                Ok(taken) => {
                    tracing::info!(shard = %taken.shard, from = ?lease.owner, steal, "lease taken");
                    let lost = CancellationToken::new();
                    let held = Arc::new(Held {
                        lease: tokio::sync::Mutex::new(taken.clone()),
                        proven_at: Mutex::new(sent_at),
                        lost: lost.clone(),
                    });
                    self.held_map().insert(taken.shard.clone(), held);
                    changes.push(LeaseChange::Won { lease: taken, lost });
                }
                // Another instance was quicker: its lease now.
                Err(LeaseError::Lost { .. }) => {
                    tracing::debug!(shard = %lease.shard, "lease taken by another instance first");
                    raced = true;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(raced)
    }

    /// Gives up the leases whose last successful write was sent a lease
    /// duration ago or more, before another instance may take them. No
    /// I/O: [`Self::round`] does it first, and a lease loop may call it
    /// between rounds too, so that a round kept waiting by DynamoDB does
    /// not delay it.
    pub fn expire(&self) -> Vec<LeaseChange> {
        let now = Instant::now();
        let mut held = self.held_map();
        let unproven: Vec<String> = held
            .iter()
            .filter(|(_, h)| now.duration_since(*h.proven_at.lock().expect("never poisoned")) >= self.inner.duration)
            .map(|(shard, _)| shard.clone())
            .collect();
        unproven
            .into_iter()
            .map(|shard| {
                let gone = held.remove(&shard).expect("listed above");
                gone.lost.cancel();
                tracing::warn!(shard = %shard, "lease given up: not renewed for a lease duration, another instance may take it");
                LeaseChange::Lost {
                    shard,
                    why: LossReason::Unproven,
                }
            })
            .collect()
    }

    /// Renews every lease held, side by side, within a renewal interval
    /// (a renewal still waiting then is dropped: the next round tries
    /// again, and the lease's proof runs out meanwhile).
    async fn renew_all(&self) -> (Vec<LeaseChange>, Option<LeaseError>) {
        let mut renewals = JoinSet::new();
        for shard in self.held() {
            let keeper = self.clone();
            renewals.spawn(async move {
                let result = keeper
                    .write(&shard, |table, lease| async move { table.renew(&lease).await })
                    .await;
                (shard, result)
            });
        }
        let mut changes = Vec::new();
        let mut failure = None;
        let deadline = tokio::time::Instant::now() + self.renewal_interval();
        loop {
            let joined = tokio::select! {
                joined = renewals.join_next() => joined,
                () = tokio::time::sleep_until(deadline) => {
                    renewals.abort_all();
                    break;
                }
            };
            let Some(joined) = joined else { break };
            let Ok((shard, result)) = joined else { continue };
            match result {
                Ok(_) => {}
                Err(LeaseError::Lost { .. }) => changes.push(LeaseChange::Lost {
                    shard,
                    why: LossReason::Taken,
                }),
                Err(error) => {
                    tracing::warn!(shard = %shard, error = %error, "renewing a lease failed");
                    failure = Some(error);
                }
            }
        }
        (changes, failure)
    }

    /// Saves a held shard's checkpoint state in its lease, fenced by it.
    /// [`LeaseError::Lost`]: the lease is someone else's now (it is given
    /// up here; the caller stops the shard and writes nothing of it).
    ///
    /// `ended`: the shard is read to its end and all of it delivered. Its
    /// lease is then let go of: nobody reads it again, its children may be
    /// taken (by any instance), and it no longer counts in the balance.
    pub async fn checkpoint(&self, shard: &str, state: &str, ended: bool) -> Result<(), LeaseError> {
        let state = state.to_owned();
        self.write(shard, |table, lease| async move {
            table.checkpoint(&lease, &state, ended).await
        })
        .await?;
        if ended {
            if let Some(done) = self.held_map().remove(shard) {
                done.lost.cancel();
            }
            tracing::info!(shard = %shard, "shard ended: its lease is no longer renewed");
        }
        Ok(())
    }

    /// Gives `shard`'s lease up for good in this process: it is released
    /// (or, if that fails, left to expire) and never taken again by this
    /// instance. For a lease whose checkpoint state this build cannot read
    /// (another version's, or damaged): the instance reads its other shards,
    /// and one that can read it may take it.
    pub async fn refuse(&self, shard: &str) {
        self.inner
            .refused
            .lock()
            .expect("never poisoned")
            .insert(shard.to_owned());
        let released = self
            .write(shard, |table, lease| async move { table.release(&lease).await })
            .await;
        if let Some(held) = self.held_map().remove(shard) {
            held.lost.cancel();
        }
        if let Err(error) = released {
            tracing::warn!(shard = %shard, error = %error, "releasing a refused lease failed; it expires instead");
        }
    }

    /// Releases every lease held (at shutdown, after the last checkpoint),
    /// so that other instances take them at their next round.
    pub async fn release_all(&self) {
        for shard in self.held() {
            match self
                .write(&shard, |table, lease| async move { table.release(&lease).await })
                .await
            {
                Ok(_) => {
                    if let Some(held) = self.held_map().remove(&shard) {
                        held.lost.cancel();
                    }
                    tracing::info!(shard = %shard, "lease released");
                }
                Err(error) => {
                    tracing::warn!(shard = %shard, error = %error, "releasing a lease failed; it expires instead")
                }
            }
        }
    }

    /// A write of `shard`'s lease, one at a time per lease. On success the
    /// lease is proven from when the write was sent; when it is lost, it is
    /// given up.
    async fn write<F, Fut>(&self, shard: &str, write: F) -> Result<Lease, LeaseError>
    where
        F: FnOnce(LeaseTable, Lease) -> Fut,
        Fut: Future<Output = Result<Lease, LeaseError>>,
    {
        let lost = || LeaseError::Lost {
            shard: shard.to_owned(),
        };
        let Some(held) = self.held_map().get(shard).cloned() else {
            return Err(lost());
        };
        let mut lease = held.lease.lock().await;
        if held.lost.is_cancelled() {
            return Err(lost());
        }
        let sent_at = Instant::now();
        match write(self.inner.table.clone(), lease.clone()).await {
            Ok(written) => {
                *lease = written.clone();
                *held.proven_at.lock().expect("never poisoned") = sent_at;
                Ok(written)
            }
            Err(LeaseError::Lost { shard }) => {
                held.lost.cancel();
                let mut map = self.held_map();
                if map.get(&shard).is_some_and(|h| Arc::ptr_eq(h, &held)) {
                    map.remove(&shard);
                }
                tracing::warn!(shard = %shard, "lease lost: another instance wrote it");
                Err(LeaseError::Lost { shard })
            }
            Err(error) => Err(error),
        }
    }
}

/// How often [`run`] checks the proofs between rounds, as a share of the
/// lease duration: a lease is given up at most this late.
const PROOF_CHECKS_PER_LEASE: u32 = 10;

/// Keeps `keeper`'s leases until `stop` is cancelled: a round every renewal
/// interval (each in a task of its own, so that a round waiting on
/// DynamoDB delays nothing else) and the proofs checked every tenth of a
/// lease duration, each change sent to `changes` in order. At `stop`,
/// every lease held is released (the caller has flushed and checkpointed
/// first). Returns the error of a round that no retry can help (access
/// denied, an item that is not a lease), or when `changes` is closed.
pub async fn run(
    keeper: Keeper,
    changes: tokio::sync::mpsc::Sender<LeaseChange>,
    stop: CancellationToken,
) -> Result<(), LeaseError> {
    let mut check = tokio::time::interval(keeper.inner.duration / PROOF_CHECKS_PER_LEASE);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_round = tokio::time::Instant::now();
    let mut round_started = next_round;
    let mut round: Option<tokio::task::JoinHandle<(Vec<LeaseChange>, Option<LeaseError>)>> = None;
    loop {
        let idle = round.is_none();
        tokio::select! {
            () = stop.cancelled() => {
                // A round under way may be taking a lease: let it finish
                // (it is bounded), so that what it took is released too.
                if let Some(handle) = round.take() {
                    let _ = handle.await;
                }
                keeper.release_all().await;
                return Ok(());
            }
            done = async { round.as_mut().expect("running").await.ok() }, if !idle => {
                round = None;
                // A renewal interval from the last round's start, not its
                // end, so that the rounds' own length does not add up over
                // the rounds a dead instance's lease is watched; sooner
                // when a lease another instance holds runs out before then.
                next_round = round_started + keeper.renewal_interval();
                if let Some(expiry) = keeper.next_expiry() {
                    next_round = next_round.min(tokio::time::Instant::from_std(expiry));
                }
                let Some((found, error)) = done else { continue };
                for change in found {
                    if changes.send(change).await.is_err() {
                        return Ok(());
                    }
                }
                match error {
                    Some(error) if !error.is_retryable() => return Err(error),
                    Some(error) => tracing::warn!(error = %error, "lease round failed; trying again next round"),
                    None => {}
                }
            }
            () = tokio::time::sleep_until(next_round), if idle => {
                // What runs out now is said now, not when the round (which
                // gives up the same first) comes back from DynamoDB.
                for change in keeper.expire() {
                    if changes.send(change).await.is_err() {
                        return Ok(());
                    }
                }
                round_started = tokio::time::Instant::now();
                let keeper = keeper.clone();
                round = Some(tokio::spawn(async move { keeper.renew_and_take().await }));
            }
            _ = check.tick() => {
                for change in keeper.expire() {
                    if changes.send(change).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
