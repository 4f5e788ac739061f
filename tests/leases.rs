//! The lease table against moto's DynamoDB (issue #22, in progress): every
//! write is fenced by the lease counter, so two instances never both hold a
//! shard and a stale owner can neither renew nor move a checkpoint.

mod support;

use spillway::coordination::dynamodb::{LeaseTable, TableOptions};
use spillway::coordination::LeaseError;
use support::kinesis::peer;

fn table(rt: &tokio::runtime::Runtime, name: &str, worker: &str) -> LeaseTable {
    let options = TableOptions {
        table: name.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(peer("SPILLWAY_TEST_MOTO")),
        namespace: "orders#archive-stream".into(),
        worker: worker.into(),
    };
    rt.block_on(LeaseTable::open(options)).unwrap()
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
    assert!(err.to_string().starts_with("cannot reach lease table leases"), "{err}");
}
