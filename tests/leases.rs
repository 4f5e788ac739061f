//! The lease table against moto's DynamoDB (issue #22, in progress): every
//! write is fenced by the lease counter, so two instances never both hold a
//! shard and a stale owner can neither renew nor move a checkpoint.

mod support;

use spillway::coordination::dynamodb::{LeaseTable, TableOptions};
use spillway::coordination::LeaseError;
use support::kinesis::peer;

/// The lease table `name` through `endpoint`, as `worker`, in the
/// namespace every test uses.
async fn open_table(endpoint: &str, name: &str, worker: &str) -> LeaseTable {
    LeaseTable::open(TableOptions {
        table: name.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        namespace: "orders#archive-stream".into(),
        worker: worker.into(),
    })
    .await
    .unwrap()
}

fn table(rt: &tokio::runtime::Runtime, name: &str, worker: &str) -> LeaseTable {
    rt.block_on(open_table(&peer("SPILLWAY_TEST_MOTO"), name, worker))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn two_instances_race_for_a_lease_and_the_loser_cannot_renew_or_checkpoint() {
    let _untimed = untimed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = unique("leases");
    // The table is created by the first to open it; the second finds it.
    let a = table(&rt, &name, "worker-a");
    let b = table(&rt, &name, "worker-b");
    assert!(rt.block_on(a.add("shardId-000000000000", &[])).unwrap());
    assert!(!rt.block_on(b.add("shardId-000000000000", &[])).unwrap(), "added once");

    let seen = rt.block_on(a.list()).unwrap();
    assert_eq!(seen.len(), 1);
    let free = seen[0].clone();
    assert_eq!(free.owner, None);

    // Both saw the free lease; both try to take it: exactly one wins.
    let won = rt.block_on(a.take(&free)).unwrap();
    assert!(won.held_by("worker-a"));
    assert!(matches!(rt.block_on(b.take(&free)), Err(LeaseError::Lost { .. })));

    // The owner renews and checkpoints; each write moves the counter.
    let renewed = rt.block_on(a.renew(&won)).unwrap();
    assert_eq!(renewed.counter, won.counter + 1);
    let saved = rt
        .block_on(a.checkpoint(&renewed, r#"{"checkpoint":"7"}"#, false))
        .unwrap();
    assert_eq!(saved.state.as_deref(), Some(r#"{"checkpoint":"7"}"#));

    // b waited a lease period without seeing the counter move, and takes
    // the lease over (here: from what it last read).
    let now = rt.block_on(b.list()).unwrap().remove(0);
    let taken = rt.block_on(b.take(&now)).unwrap();
    assert!(taken.held_by("worker-b"));

    // a, paused meanwhile, comes back with its old view: every write fails
    // and changes nothing.
    assert!(matches!(rt.block_on(a.renew(&saved)), Err(LeaseError::Lost { .. })));
    assert!(matches!(
        rt.block_on(a.checkpoint(&saved, r#"{"checkpoint":"3"}"#, false)),
        Err(LeaseError::Lost { .. })
    ));
    assert!(matches!(rt.block_on(a.release(&saved)), Err(LeaseError::Lost { .. })));
    let after = rt.block_on(b.list()).unwrap().remove(0);
    assert_eq!(after, taken, "the stale owner wrote nothing");
    assert_eq!(
        after.state.as_deref(),
        Some(r#"{"checkpoint":"7"}"#),
        "the checkpoint never moved back"
    );

    // Even a's writes with b's current counter fail: they are not a's.
    assert!(matches!(
        rt.block_on(a.checkpoint(&after, r#"{"checkpoint":"3"}"#, false)),
        Err(LeaseError::Lost { .. })
    ));

    // b releases at shutdown: the lease is free at once, checkpoint kept.
    let released = rt.block_on(b.release(&after)).unwrap();
    assert_eq!(released.owner, None);
    assert_eq!(released.state.as_deref(), Some(r#"{"checkpoint":"7"}"#));
    assert!(rt.block_on(a.take(&released)).unwrap().held_by("worker-a"));
}

#[test]
fn leases_keep_their_parents_and_namespaces_do_not_mix() {
    let _untimed = untimed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = unique("leases-ns");
    let a = table(&rt, &name, "worker-a");
    let parents = vec!["shardId-000000000000".to_owned(), "shardId-000000000001".to_owned()];
    rt.block_on(a.add("shardId-000000000002", &parents)).unwrap();
    let other_ns = rt
        .block_on(LeaseTable::open(TableOptions {
            table: name.clone(),
            region: Some("us-east-1".into()),
            endpoint: Some(peer("SPILLWAY_TEST_MOTO")),
            namespace: "clicks#other-stream".into(),
            worker: "worker-a".into(),
        }))
        .unwrap();
    assert_eq!(rt.block_on(other_ns.list()).unwrap(), vec![]);
    let listed = rt.block_on(a.list()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].parents, parents);
    assert!(!listed[0].ended);
    let taken = rt.block_on(a.take(&listed[0])).unwrap();
    let ended = rt.block_on(a.checkpoint(&taken, "{}", true)).unwrap();
    assert!(ended.ended);
}

#[test]
fn an_unreachable_table_is_unavailable_and_worth_a_retry() {
    let _untimed = untimed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = rt
        .block_on(LeaseTable::open(TableOptions {
            table: "leases".into(),
            region: Some("us-east-1".into()),
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            namespace: "orders#s".into(),
            worker: "w".into(),
        }))
        .unwrap_err();
    assert!(matches!(err, LeaseError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
    // One line naming where it looked, and why: the causes, not the
    // SDK's debug dump of them.
    let line = err.to_string();
    assert!(
        line.starts_with(&format!(
            "cannot reach lease table leases in us-east-1 at http://127.0.0.1:{port}: "
        )),
        "{line}"
    );
    assert!(line.ends_with("Connection refused (os error 111)"), "{line}");
    assert!(!line.contains('\n') && !line.contains("DispatchFailure"), "{line}");
}

// The lease loop of each instance (`Keeper`), several of them in this
// process against moto's DynamoDB: who holds what, and how fast it moves.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spillway::coordination::keeper::{Keeper, LeaseChange, LossReason};
use support::fault_proxy::{Fault, FaultProxy};

/// Short, as the issue asks of tests: failover in seconds.
const LEASE: Duration = Duration::from_secs(2);

/// The tests that bound how long something takes run alone: side by side
/// on two cores (with moto busy for all of them) a tokio timer was once a
/// second late, and a lease given up 1.3 s late once in a clean-clone run
/// of the whole suite: the machine's, not the lease loop's. The others
/// ([`untimed`]) run side by side with each other, never with a timed one.
static TIMED: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn timed() -> std::sync::RwLockWriteGuard<'static, ()> {
    TIMED.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn untimed() -> std::sync::RwLockReadGuard<'static, ()> {
    TIMED.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn keeper_at(endpoint: &str, name: &str, worker: &str) -> Keeper {
    Keeper::new(open_table(endpoint, name, worker).await, LEASE)
}

async fn keeper(name: &str, worker: &str) -> Keeper {
    keeper_at(&peer("SPILLWAY_TEST_MOTO"), name, worker).await
}

fn shard(n: usize) -> String {
    format!("shardId-{n:012}")
}

async fn add_shards(keeper: &Keeper, count: usize) {
    for n in 0..count {
        keeper.add(&shard(n), &[]).await.unwrap();
    }
}

/// Runs a round of each keeper side by side, every renewal interval, until
/// `done` holds (or `limit` passes: a failure); returns how long it took and
/// every change seen.
async fn rounds_until(
    keepers: &[&Keeper],
    limit: Duration,
    done: impl Fn() -> bool,
) -> (Duration, Vec<(String, LeaseChange)>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let mut set = tokio::task::JoinSet::new();
        for keeper in keepers {
            let keeper = (*keeper).clone();
            set.spawn(async move { (keeper.worker().to_owned(), keeper.round().await) });
        }
        while let Some(joined) = set.join_next().await {
            let (worker, (changes, error)) = joined.unwrap();
            if let Some(error) = error {
                assert!(error.is_retryable(), "{error}");
            }
            seen.extend(changes.into_iter().map(|c| (worker.clone(), c)));
        }
        if done() {
            return (started.elapsed(), seen);
        }
        assert!(started.elapsed() < limit, "not done within {limit:?}");
        tokio::time::sleep(keepers[0].renewal_interval()).await;
    }
}

/// Each shard's holders as the keepers see themselves.
fn holders(keepers: &[&Keeper], shards: usize) -> BTreeMap<String, Vec<String>> {
    (0..shards)
        .map(|n| {
            let id = shard(n);
            let owners = keepers
                .iter()
                .filter(|k| k.holds(&id))
                .map(|k| k.worker().to_owned())
                .collect();
            (id, owners)
        })
        .collect()
}

fn one_owner_each_and_even(keepers: &[&Keeper], shards: usize) -> bool {
    let loads: Vec<usize> = keepers.iter().map(|k| k.held().len()).collect();
    holders(keepers, shards).values().all(|o| o.len() == 1)
        && loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1
}

#[test]
fn three_instances_share_sixteen_shards_and_take_over_a_dead_ones_within_a_lease_and_a_renewal() {
    let _timed = timed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let name = unique("keepers");
        let (a, b, c) = (
            keeper(&name, "worker-a").await,
            keeper(&name, "worker-b").await,
            keeper(&name, "worker-c").await,
        );
        add_shards(&a, 16).await;
        let all = [&a, &b, &c];
        rounds_until(&all, Duration::from_secs(60), || one_owner_each_and_even(&all, 16)).await;
        // The table agrees with what each instance thinks it holds.
        let table = open_table(&peer("SPILLWAY_TEST_MOTO"), &name, "observer").await;
        for lease in table.list().await.unwrap() {
            let holder = all.iter().find(|k| k.holds(&lease.shard)).unwrap();
            assert_eq!(lease.owner.as_deref(), Some(holder.worker()), "{}", lease.shard);
        }

        // c dies (no release): a and b hold every shard within a lease
        // duration and one renewal period of c's last renewal, which was
        // at most this long ago.
        let c_shards = c.held();
        assert!(!c_shards.is_empty());
        drop(c);
        let survivors = [&a, &b];
        let (took, changes) = rounds_until(&survivors, Duration::from_secs(30), || {
            one_owner_each_and_even(&survivors, 16)
        })
        .await;
        assert!(
            took <= LEASE + 2 * a.renewal_interval() + Duration::from_millis(500),
            "took {took:?}"
        );
        let won: Vec<&str> = changes
            .iter()
            .filter_map(|(_, c)| match c {
                LeaseChange::Won { lease, .. } => Some(lease.shard.as_str()),
                LeaseChange::Lost { .. } => None,
            })
            .collect();
        for shard in &c_shards {
            assert!(won.contains(&shard.as_str()), "{shard} taken over");
        }
        assert!(
            changes.iter().all(|(_, c)| matches!(c, LeaseChange::Won { .. })),
            "a live instance lost nothing: {changes:?}"
        );
    });
}

#[test]
fn a_released_lease_moves_at_the_next_round_without_waiting_for_expiry() {
    let _untimed = untimed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let name = unique("release");
        let (a, b) = (keeper(&name, "worker-a").await, keeper(&name, "worker-b").await);
        add_shards(&a, 6).await;
        let both = [&a, &b];
        rounds_until(&both, Duration::from_secs(60), || one_owner_each_and_even(&both, 6)).await;
        let released = b.held();
        b.release_all().await;
        assert!(b.held().is_empty());
        let (took, _) = rounds_until(&[&a], Duration::from_secs(30), || a.held().len() == 6).await;
        assert!(took < LEASE, "released leases wait for no expiry: took {took:?}");
        for shard in released {
            assert!(a.holds(&shard));
        }
    });
}

#[test]
fn a_paused_instance_stops_at_its_first_conditional_write_and_writes_nothing() {
    let _untimed = untimed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let name = unique("paused");
        let (a, b) = (keeper(&name, "worker-a").await, keeper(&name, "worker-b").await);
        add_shards(&a, 4).await;
        let (_, changes) = rounds_until(&[&a], Duration::from_secs(10), || a.held().len() == 4).await;
        let tokens: Vec<_> = changes
            .into_iter()
            .filter_map(|(_, c)| match c {
                LeaseChange::Won { lease, lost } => Some((lease.shard, lost)),
                LeaseChange::Lost { .. } => None,
            })
            .collect();
        a.checkpoint(&shard(0), r#"{"checkpoint":"a-1"}"#, false).await.unwrap();

        // a is paused (runs no round) past the lease; b takes everything.
        let (took, _) = rounds_until(&[&b], Duration::from_secs(30), || b.held().len() == 4).await;
        assert!(took >= LEASE, "taken only once expired: {took:?}");

        // a resumes: its first conditional write fails and changes nothing.
        let err = a
            .checkpoint(&shard(0), r#"{"checkpoint":"a-2"}"#, false)
            .await
            .unwrap_err();
        assert!(matches!(err, LeaseError::Lost { .. }), "{err}");
        assert!(!a.holds(&shard(0)));
        assert!(tokens.iter().find(|(s, _)| s == &shard(0)).unwrap().1.is_cancelled());
        // Its round gives up the rest without writing them: the proof ran
        // out while it was paused. Then it is an instance like any other,
        // and may take a fresh lease of its share (from b, fenced).
        let (changes, error) = a.round().await;
        assert!(error.is_none());
        let (lost, won) = changes.split_at(3);
        assert!(lost.iter().all(|c| matches!(
            c,
            LeaseChange::Lost {
                why: LossReason::Unproven,
                ..
            }
        )));
        assert!(
            tokens.iter().all(|(_, lost)| lost.is_cancelled()),
            "the old readers stay stopped"
        );
        for change in won {
            let LeaseChange::Won { lease, lost } = change else {
                panic!("{change:?}")
            };
            assert!(!lost.is_cancelled());
            assert!(a.holds(&lease.shard));
        }
        assert_eq!(a.held().len(), won.len());
        let table_view = open_table(&peer("SPILLWAY_TEST_MOTO"), &name, "observer").await;
        let zero = table_view
            .list()
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.shard == shard(0))
            .unwrap();
        assert_eq!(zero.owner.as_deref(), Some("worker-b"));
        assert_eq!(
            zero.state.as_deref(),
            Some(r#"{"checkpoint":"a-1"}"#),
            "a's stale write never landed"
        );
    });
}

#[test]
fn with_the_table_unreachable_an_instance_keeps_its_leases_only_as_long_as_it_can_prove_them() {
    let _timed = timed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let proxy = FaultProxy::dynamodb_down_while(&peer("SPILLWAY_TEST_MOTO"), down.clone());
    rt.block_on(async {
        let name = unique("unreachable");
        let a = keeper_at(&proxy.url, &name, "worker-a").await;
        add_shards(&a, 3).await;
        rounds_until(&[&a], Duration::from_secs(10), || a.held().len() == 3).await;

        down.store(true, Ordering::SeqCst);
        let cut_at = Instant::now();
        let mut lost_after = None;
        while lost_after.is_none() {
            // The proof is judged as a round starts (a round may then wait
            // on DynamoDB for a renewal interval or two).
            let round_at = cut_at.elapsed();
            let (changes, error) = a.round().await;
            assert!(error.as_ref().is_none_or(|e| e.is_retryable()), "{error:?}");
            if changes.is_empty() {
                assert!(round_at < LEASE, "kept past the proof: {round_at:?}");
                assert_eq!(a.held().len(), 3, "kept while provable");
            } else {
                assert!(changes.iter().all(|c| matches!(
                    c,
                    LeaseChange::Lost {
                        why: LossReason::Unproven,
                        ..
                    }
                )));
                assert_eq!(changes.len(), 3);
                lost_after = Some(round_at);
            }
            tokio::time::sleep(a.renewal_interval()).await;
        }
        let lost_after = lost_after.unwrap();
        assert!(
            lost_after >= LEASE - a.renewal_interval(),
            "given up too early: {lost_after:?}"
        );
        assert!(a.held().is_empty());

        // Back: nobody took them meanwhile, so a takes them back.
        down.store(false, Ordering::SeqCst);
        rounds_until(&[&a], Duration::from_secs(10), || a.held().len() == 3).await;
    });
}

/// Each held shard's checkpoint goes to its lease, fenced: once another
/// instance took a shard, this one's saves write nothing of it (and say so
/// by no longer holding it), while its other shards are saved as before.
#[test]
fn checkpoints_are_saved_in_the_leases_and_a_lost_shards_save_writes_nothing() {
    let _untimed = untimed();
    use spillway::checkpoint::shard::ShardState;
    use spillway::checkpoint::{Checkpointer, Claims};
    use spillway::coordination::store::LeaseStore;
    use spillway_destinations::{LocalStore, ObjectKey};
    use spillway_transforms::record::Offset;
    use spillway_transforms::{SequenceNumber, SourceId};

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let name = unique("store");
        let a = keeper(&name, "worker-a").await;
        add_shards(&a, 2).await;
        rounds_until(&[&a], Duration::from_secs(10), || a.held().len() == 2).await;
        let dir = tempfile::tempdir().unwrap();
        let destination = LocalStore::new(dir.path());
        let checkpoints = Checkpointer::open("orders", Box::new(LeaseStore::new(a.clone())), &destination)
            .await
            .unwrap();
        let view = open_table(&peer("SPILLWAY_TEST_MOTO"), &name, "worker-b").await;
        let lease_of = |leases: &[spillway::coordination::Lease], n: usize| {
            leases.iter().find(|l| l.shard == shard(n)).unwrap().clone()
        };
        let state_of = |lease: &spillway::coordination::Lease, n: usize| {
            ShardState::from_json(&SourceId::new(shard(n)), lease.state.as_deref().unwrap()).unwrap()
        };

        // One object per shard, its intent saved, then written.
        let (s0, s1) = (SourceId::new(shard(0)), SourceId::new(shard(1)));
        let offsets: Vec<Offset> = (1..=3).map(|n| Offset::new(SequenceNumber::from_u64(n), 0)).collect();
        let mut objects = Vec::new();
        for source in [&s0, &s1] {
            let tickets = checkpoints.admit(offsets.iter().map(|o| (source, o)));
            let claims = Claims::of(offsets.iter().zip(tickets).map(|(o, t)| (source, o, t.unwrap())));
            let key = ObjectKey::new(format!("objects/{source}-1")).unwrap();
            objects.push(checkpoints.begin_object(&key, claims));
        }
        checkpoints.save().await.unwrap();
        let leases = view.list().await.unwrap();
        for n in 0..2 {
            let state = state_of(&lease_of(&leases, n), n);
            assert_eq!(state.pending.len(), 1, "the intent is in the lease before the put");
            assert_eq!(state.pending[0].key, format!("objects/{}-1", shard(n)));
        }
        // Shard 0's object is written; shard 1 did not change: its lease
        // is not written.
        let mut objects = objects.into_iter();
        let (object0, object1) = (objects.next().unwrap(), objects.next().unwrap());
        checkpoints.complete_object(object0);
        checkpoints.save().await.unwrap();
        let before = leases;
        let leases = view.list().await.unwrap();
        assert!(lease_of(&leases, 0).counter > lease_of(&before, 0).counter);
        assert_eq!(
            lease_of(&leases, 1).counter,
            lease_of(&before, 1).counter,
            "shard 1 did not change: its lease was not written"
        );

        // b takes shard 1 (as after a's pause); a completes its object.
        view.take(&lease_of(&leases, 1)).await.unwrap();
        checkpoints.complete_object(object1);
        checkpoints.save().await.unwrap();
        assert!(a.holds(&shard(0)));
        assert!(!a.holds(&shard(1)), "the lost shard is given up");
        let leases = view.list().await.unwrap();
        let zero = state_of(&lease_of(&leases, 0), 0);
        assert!(zero.pending.is_empty());
        assert_eq!(zero.source.checkpoint, Some(offsets[2].clone()));
        let one = state_of(&lease_of(&leases, 1), 1);
        assert_eq!(one.pending.len(), 1, "still the intent for the new owner to redo");
        assert_eq!(one.source.checkpoint, None, "the stale owner moved nothing");
        assert_eq!(lease_of(&leases, 1).owner.as_deref(), Some("worker-b"));
    });
}

/// A child shard is taken only once its parent's lease says it ended, and
/// the ended parent's lease is let go of: not renewed, not taken back.
#[test]
fn a_child_is_taken_once_its_parent_ended_and_the_parent_is_no_longer_renewed() {
    let _untimed = untimed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let name = unique("lineage");
        let (a, b) = (keeper(&name, "worker-a").await, keeper(&name, "worker-b").await);
        // shard 0 split into 1 and 2; 1 and 2 merged into 3.
        a.add(&shard(0), &[]).await.unwrap();
        a.add(&shard(1), &[shard(0)]).await.unwrap();
        a.add(&shard(2), &[shard(0)]).await.unwrap();
        a.add(&shard(3), &[shard(1), shard(2)]).await.unwrap();
        let both = [&a, &b];
        let holder = |n: usize| both.iter().find(|k| k.holds(&shard(n))).copied();
        rounds_until(&both, Duration::from_secs(10), || holder(0).is_some()).await;
        for _ in 0..3 {
            rounds_until(&both, Duration::from_secs(10), || true).await;
            assert!((1..4).all(|n| holder(n).is_none()), "no child before its parent ended");
        }

        holder(0).unwrap().checkpoint(&shard(0), "{}", true).await.unwrap();
        assert!(holder(0).is_none(), "an ended shard's lease is let go of");
        rounds_until(&both, Duration::from_secs(10), || {
            holder(1).is_some() && holder(2).is_some()
        })
        .await;
        assert!(holder(3).is_none(), "the merge child waits for both parents");
        let view = open_table(&peer("SPILLWAY_TEST_MOTO"), &name, "observer").await;
        let counter_of = |leases: &[spillway::coordination::Lease], n: usize| {
            leases.iter().find(|l| l.shard == shard(n)).unwrap().counter
        };
        let before = counter_of(&view.list().await.unwrap(), 0);

        holder(1).unwrap().checkpoint(&shard(1), "{}", true).await.unwrap();
        for _ in 0..3 {
            rounds_until(&both, Duration::from_secs(10), || true).await;
            assert!(holder(3).is_none(), "one parent of the merge is still open");
        }
        holder(2).unwrap().checkpoint(&shard(2), "{}", true).await.unwrap();
        rounds_until(&both, Duration::from_secs(10), || holder(3).is_some()).await;
        assert!((0..3).all(|n| holder(n).is_none()));
        let leases = view.list().await.unwrap();
        assert_eq!(counter_of(&leases, 0), before, "the ended parent is not renewed");
        assert!(leases.iter().filter(|l| l.shard != shard(3)).all(|l| l.ended));
    });
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<LeaseChange>) -> LeaseChange {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("a change within 15 s")
        .expect("the loop runs")
}

/// Two instances pick the same free leases: the one whose takes lose the
/// race lists the table again and takes the rest of its share in the same
/// round, rather than a renewal interval later (so a dead instance's
/// shards are all read again within a lease and a renewal interval).
/// Worker a's first take is held by the proxy until b, alone, has taken
/// all four; a's round must still end holding one (stolen from b, which
/// holds two more than a share).
#[test]
fn a_take_that_lost_a_race_lists_again_and_takes_its_share_in_the_same_round() {
    let _timed = timed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hold = Arc::new(AtomicBool::new(true));
    let proxy = FaultProxy::start(&peer("SPILLWAY_TEST_MOTO"), {
        let hold = hold.clone();
        Arc::new(move |target: &str, _| {
            (hold.load(Ordering::SeqCst) && target.ends_with(".UpdateItem"))
                .then(|| Fault::delay(Duration::from_millis(1500)))
        })
    });
    rt.block_on(async {
        let name = unique("race");
        let a = keeper_at(&proxy.url, &name, "worker-a").await;
        let b = keeper(&name, "worker-b").await;
        add_shards(&b, 4).await;
        let a_round = tokio::spawn({
            let a = a.clone();
            async move { a.round().await }
        });
        // a has listed four free leases and sent its first take, held.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (won, error) = b.round().await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(won.len(), 4, "b alone takes all four: {won:?}");
        hold.store(false, Ordering::SeqCst);
        let (changes, error) = a_round.await.unwrap();
        assert!(error.is_none(), "{error:?}");
        let won: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                LeaseChange::Won { lease, .. } => Some(lease.shard.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            won.len(),
            1,
            "a takes its share in the round whose takes lost: {changes:?}"
        );
        assert_eq!(a.held(), won);
    });
}

/// The lease loop (`keeper::run`): while DynamoDB hangs, each lease is
/// given up within a lease duration and a tenth of its last renewal, not
/// when a round waiting on DynamoDB comes back; once it answers, the leases
/// are taken back; at stop they are released for others at once.
///
/// DynamoDB hangs for three leases, so that a loop that gave up only when
/// a round came back would be seconds late, well past the second allowed
/// for scheduling on a busy machine.
#[test]
fn the_lease_loop_gives_up_in_time_while_dynamodb_hangs_and_releases_at_stop() {
    let _timed = timed();
    use spillway::coordination::keeper;
    use tokio_util::sync::CancellationToken;
    const HANG: Duration = Duration::from_secs(6);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let slow = Arc::new(AtomicBool::new(false));
    let proxy = FaultProxy::start(&peer("SPILLWAY_TEST_MOTO"), {
        let slow = slow.clone();
        Arc::new(move |target: &str, _| {
            (slow.load(Ordering::SeqCst) && target.starts_with("DynamoDB_")).then(|| Fault::delay(HANG))
        })
    });
    rt.block_on(async {
        let name = unique("loop");
        let a = keeper_at(&proxy.url, &name, "worker-a").await;
        add_shards(&a, 3).await;
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(keeper::run(a.clone(), tx, stop.clone()));
        for _ in 0..3 {
            assert!(matches!(next(&mut rx).await, LeaseChange::Won { .. }));
        }

        slow.store(true, Ordering::SeqCst);
        let cut_at = Instant::now();
        for _ in 0..3 {
            let change = next(&mut rx).await;
            assert!(
                matches!(
                    change,
                    LeaseChange::Lost {
                        why: LossReason::Unproven,
                        ..
                    }
                ),
                "{change:?}"
            );
            let after = cut_at.elapsed();
            assert!(
                after <= LEASE + LEASE / 10 + Duration::from_secs(1),
                "given up late: {after:?}"
            );
            assert!(after < HANG, "given up only when DynamoDB answered: {after:?}");
        }
        assert!(a.held().is_empty());

        slow.store(false, Ordering::SeqCst);
        let back = Instant::now();
        while a.held().len() < 3 {
            assert!(back.elapsed() < Duration::from_secs(20), "leases not taken back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        task.await.unwrap().unwrap();
        let view = open_table(&peer("SPILLWAY_TEST_MOTO"), &name, "observer").await;
        let leases = view.list().await.unwrap();
        assert!(leases.iter().all(|l| l.owner.is_none()), "released at stop: {leases:?}");
    });
}

/// A write that landed but whose answer was lost (a timeout, the SDK's
/// retry of it) is recognised when written again, not taken for a lease
/// lost to another instance; a write that did not land, or another
/// instance's take, still is a lost lease.
#[test]
fn a_write_whose_answer_was_lost_is_recognised_and_not_taken_for_a_lost_lease() {
    let _untimed = untimed();
    use support::fault_proxy::Exchange;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let garble = Arc::new(AtomicBool::new(false));
    let exchange: Exchange = {
        let garble = garble.clone();
        Arc::new(move |target: &str, _, body: &[u8]| {
            (target.ends_with(".UpdateItem") && garble.swap(false, Ordering::SeqCst)).then(|| {
                // Forwarded as it is; its answer replaced by one the SDK
                // cannot read.
                let rewrite: Box<dyn FnOnce(bytes::Bytes) -> bytes::Bytes + Send> =
                    Box::new(|_| bytes::Bytes::from_static(b"<not json"));
                (bytes::Bytes::copy_from_slice(body), rewrite)
            })
        })
    };
    let proxy = FaultProxy::start_exchange(&peer("SPILLWAY_TEST_MOTO"), exchange);
    rt.block_on(async {
        let name = unique("landed");
        let a = open_table(&proxy.url, &name, "worker-a").await;
        let b = open_table(&peer("SPILLWAY_TEST_MOTO"), &name, "worker-b").await;
        a.add(&shard(0), &[]).await.unwrap();
        let free = a.list().await.unwrap().remove(0);

        // Each kind of write: the answer of its first attempt is lost, and
        // the same write again finds it landed.
        let write_twice = |kind: &'static str, lease: spillway::coordination::Lease| {
            let (a, garble) = (a.clone(), garble.clone());
            async move {
                let attempt = || async {
                    match kind {
                        "take" => a.take(&lease).await,
                        "renew" => a.renew(&lease).await,
                        "checkpoint" => a.checkpoint(&lease, r#"{"at":1}"#, false).await,
                        _ => a.release(&lease).await,
                    }
                };
                garble.store(true, Ordering::SeqCst);
                let first = attempt().await;
                assert!(!matches!(first, Err(LeaseError::Lost { .. })), "{kind}: {first:?}");
                assert!(!garble.load(Ordering::SeqCst), "{kind}: the answer was garbled");
                let again = attempt().await.unwrap_or_else(|err| panic!("{kind} again: {err}"));
                // Found landed, then renewed so that the proof the caller
                // takes from now holds (a release needs none).
                let steps = if kind == "release" { 1 } else { 2 };
                assert_eq!(again.counter, lease.counter + steps, "{kind}");
                again
            }
        };
        let taken = write_twice("take", free).await;
        assert!(taken.held_by("worker-a"));
        let renewed = write_twice("renew", taken).await;
        let saved = write_twice("checkpoint", renewed).await;
        assert_eq!(saved.state.as_deref(), Some(r#"{"at":1}"#));

        // A checkpoint whose state is not the one that landed is not it.
        garble.store(true, Ordering::SeqCst);
        let _ = a.checkpoint(&saved, r#"{"at":2}"#, false).await;
        let other = a.checkpoint(&saved, r#"{"at":3}"#, false).await;
        assert!(matches!(other, Err(LeaseError::Lost { .. })), "{other:?}");
        let now = a.list().await.unwrap().remove(0);
        assert_eq!(now.state.as_deref(), Some(r#"{"at":2}"#));

        let released = write_twice("release", now).await;
        assert_eq!(released.owner, None);

        // Another instance's take is a lost lease, as before.
        let mine = a.take(&released).await.unwrap();
        b.take(&mine).await.unwrap();
        assert!(matches!(a.renew(&mine).await, Err(LeaseError::Lost { .. })));
    });
}

/// `start_position = "latest"` under coordination (docs/leases.md, step 4):
/// the pipeline's `started_at` is one item of the lease table, written
/// create-only by the first instance to ask. Two instances starting
/// together agree on one time, any later one reads it, and the item is no
/// shard's lease: rounds and listings go on as before.
#[test]
fn instances_agree_on_one_started_at_whoever_asks_first() {
    let _untimed = untimed();
    use chrono::{DateTime, TimeZone, Utc};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let name = unique("started");
        let a = keeper(&name, "worker-a").await;
        let b = keeper(&name, "worker-b").await;
        let at_a: DateTime<Utc> = Utc.timestamp_millis_opt(1_764_000_000_123).unwrap();
        let at_b: DateTime<Utc> = Utc.timestamp_millis_opt(1_764_000_005_456).unwrap();
        let (seen_a, seen_b) = tokio::join!(a.started_at(at_a), b.started_at(at_b));
        let (seen_a, seen_b) = (seen_a.unwrap(), seen_b.unwrap());
        assert_eq!(seen_a, seen_b, "one time for the pipeline");
        assert!(
            seen_a == at_a || seen_a == at_b,
            "{seen_a} is one of the instances' own"
        );

        // A later instance (or a restart) reads it, whatever its own time.
        let c = keeper(&name, "worker-c").await;
        assert_eq!(c.started_at(Utc::now()).await.unwrap(), seen_a);
        // Another pipeline in the same table has its own.
        let other = Keeper::new(
            LeaseTable::open(TableOptions {
                table: name.clone(),
                region: Some("us-east-1".into()),
                endpoint: Some(peer("SPILLWAY_TEST_MOTO")),
                namespace: "clicks#archive-stream".into(),
                worker: "worker-a".into(),
            })
            .await
            .unwrap(),
            LEASE,
        );
        let later: DateTime<Utc> = Utc.timestamp_millis_opt(1_764_000_009_000).unwrap();
        assert_eq!(other.started_at(later).await.unwrap(), later);

        // The item is no lease: the table lists and rounds take shards only.
        add_shards(&a, 2).await;
        let view = open_table(&peer("SPILLWAY_TEST_MOTO"), &name, "observer").await;
        let listed: Vec<String> = view.list().await.unwrap().into_iter().map(|l| l.shard).collect();
        assert_eq!(listed, [shard(0), shard(1)]);
        let (_, error) = a.round().await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(a.held(), [shard(0), shard(1)]);
    });
}

/// The first instance's write landed but its answer was lost: asked again,
/// it finds its own time there, and so does everyone else.
#[test]
fn a_started_at_whose_answer_was_lost_is_found_written() {
    let _untimed = untimed();
    use chrono::{TimeZone, Utc};
    use support::fault_proxy::Exchange;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let garble = Arc::new(AtomicBool::new(false));
    let exchange: Exchange = {
        let garble = garble.clone();
        Arc::new(move |target: &str, _, body: &[u8]| {
            (target.ends_with(".PutItem") && garble.swap(false, Ordering::SeqCst)).then(|| {
                let rewrite: Box<dyn FnOnce(bytes::Bytes) -> bytes::Bytes + Send> =
                    Box::new(|_| bytes::Bytes::from_static(b"<not json"));
                (bytes::Bytes::copy_from_slice(body), rewrite)
            })
        })
    };
    let proxy = FaultProxy::start_exchange(&peer("SPILLWAY_TEST_MOTO"), exchange);
    rt.block_on(async {
        let name = unique("started-lost");
        let a = keeper_at(&proxy.url, &name, "worker-a").await;
        let first = Utc.timestamp_millis_opt(1_764_000_000_001).unwrap();
        garble.store(true, Ordering::SeqCst);
        let answer = a.started_at(first).await;
        assert!(!garble.load(Ordering::SeqCst), "the answer was garbled");
        assert!(answer.is_err() || answer.as_ref().ok() == Some(&first), "{answer:?}");
        assert_eq!(a.started_at(Utc::now()).await.unwrap(), first);
        let b = keeper(&name, "worker-b").await;
        assert_eq!(b.started_at(Utc::now()).await.unwrap(), first);
    });
}
