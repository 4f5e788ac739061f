//! The new owner of a shard redoes the intents its last owner left in the
//! lease (`docs/leases.md`, issue #22 step 3), through the real router and
//! writer over the in-memory store.
//!
//! The last owner is a second harness: it writes the object it intended
//! (its key and bytes are what a real last owner's would be), and the
//! test decides whether that object reached the store before the new
//! owner's redo, after it (the last owner paused, then resumed), or never.
//! What is checked is what the user sees in the archive: the intent's key
//! holds exactly the intent's records, every record of the shard is in
//! exactly one object, and the checkpoint passes them all.

use std::collections::BTreeMap;

use super::shards::{all_lines, expected, invalid, lines_by_object, pipeline, send, shard_record, until, valid, A};
use super::*;
use crate::checkpoint::shard::ShardState;
use crate::checkpoint::state::{PendingObject, Run, SourceRun, SourceState, STATE_VERSION};
use crate::checkpoint::Admission;
use crate::processor::{Failure, Fate, PartitionKeys, Processed};
use crate::source::SourceEvent;
use spillway_transforms::Rejection;

/// What became of the last owner's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LastPut {
    /// Never landed (it died before, or its put failed).
    Never,
    /// Landed before the new owner's redo.
    Before,
    /// Landed after it: the last owner was paused, and resumed its put.
    After,
}

/// The last owner's intended object: its key and bytes, as its own writer
/// made them from `records` (a batch of `kind`).
async fn last_owners_object(kind: BufferKey, records: Vec<Record>) -> (String, Bytes) {
    let old = Harness::json_lines("").await;
    old.write(vec![old.batch(kind, records)]).await.unwrap();
    let keys = old.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let bytes = old.store().get(&key(&keys[0])).unwrap();
    (keys[0].clone(), bytes)
}

/// A's lease: its checkpoint, and one pending intent under `key` whose
/// records are `runs`.
fn lease(checkpoint: Offset, intent: &str, runs: &[(Offset, Offset)]) -> ShardState {
    ShardState {
        version: STATE_VERSION,
        source: SourceState {
            checkpoint: Some(checkpoint),
            ..SourceState::default()
        },
        pending: vec![PendingObject {
            key: intent.to_owned(),
            runs: runs
                .iter()
                .map(|(first, last)| SourceRun {
                    source: SourceId::new(A),
                    run: Run {
                        first: first.clone(),
                        last: last.clone(),
                    },
                })
                .collect(),
        }],
    }
}

/// Puts the last owner's object create-only, as its writer would.
async fn last_owner_puts(harness: &Harness, intent: &str, bytes: &Bytes) -> PutOutcome {
    let options = PutOptions {
        content_type: Some("application/json"),
        content_encoding: Some("gzip"),
    };
    harness
        .store()
        .put(&key(intent), bytes.clone(), &options)
        .await
        .unwrap()
}

/// The new owner: adopts `state` for shard A, then routes `events` (what
/// its reader yields, from the checkpoint on) through a per-shard router
/// and the writer; the last owner's put lands as `last` says.
async fn new_owner(state: ShardState, events: Vec<SourceEvent>, last: LastPut, last_object: (&str, &Bytes)) -> Harness {
    let harness = Harness::json_lines("").await;
    let (intent, bytes) = last_object;
    if last == LastPut::Before {
        assert_eq!(last_owner_puts(&harness, intent, bytes).await, PutOutcome::Created);
    }
    assert_eq!(harness.checkpoints.adopt_lease(&SourceId::new(A), state), 1);
    let (sender, done) = pipeline(&harness, true);
    for event in events {
        send(&sender, event).await;
    }
    drop(sender);
    done.await.unwrap();
    if last == LastPut::After {
        assert_eq!(
            last_owner_puts(&harness, intent, bytes).await,
            PutOutcome::AlreadyExisted,
            "the redo's object is there: the last owner's late put is refused"
        );
    }
    harness
}

fn lines(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
        .collect()
}

/// Records 3..=5 of A were the last owner's pending object; the shard is
/// read again from its checkpoint (2). Whether the last owner's put never
/// landed, landed before the redo or lands after it, the intent's key
/// holds exactly records 3..=5 (one copy), records 6..=8 are in an object
/// of their own, nothing is twice, and the checkpoint passes them all
/// with nothing left pending in the lease.
#[tokio::test]
async fn the_new_owner_puts_exactly_the_intents_records_under_its_key_once() {
    let intended: Vec<Record> = (3..=5).map(|n| valid(A, n)).collect();
    let (intent, bytes) = last_owners_object(BufferKey::Data, intended.clone()).await;
    let read: Vec<Record> = (2..=8).map(|n| valid(A, n)).collect();
    for last in [LastPut::Never, LastPut::Before, LastPut::After] {
        let state = lease(offset(2), &intent, &[(offset(3), offset(5))]);
        let harness = new_owner(state, vec![SourceEvent::Records(read.clone())], last, (&intent, &bytes)).await;
        let objects = lines_by_object(&harness);
        assert_eq!(objects[&intent], lines(&intended), "{last:?}: the intent's key");
        assert_eq!(
            harness.object(&intent),
            Compression::Gzip.decompress(&bytes).unwrap(),
            "{last:?}: the same bytes as the last owner's"
        );
        assert_eq!(all_lines(&harness), expected(&read[1..]), "{last:?}: every record once");
        assert_eq!(objects.len(), 2, "{last:?}: {:?}", objects.keys());
        let saved = harness.saved();
        assert_eq!(saved.sources[&SourceId::new(A)].checkpoint, Some(offset(8)), "{last:?}");
        assert!(saved.pending.is_empty(), "{last:?}: {:?}", saved.pending);
    }
}

/// Until the intent's records are all in, it stays pending in the lease
/// (a save meanwhile keeps it for a next owner), and a run ending before
/// then puts nothing under its key: a part of its records there would
/// refuse the last owner's whole object.
#[tokio::test]
async fn an_intent_not_all_read_again_stays_pending_and_nothing_is_put_under_its_key() {
    let intended: Vec<Record> = (3..=5).map(|n| valid(A, n)).collect();
    let (intent, _) = last_owners_object(BufferKey::Data, intended).await;
    let harness = Harness::json_lines("").await;
    let a = SourceId::new(A);
    harness
        .checkpoints
        .adopt_lease(&a, lease(offset(2), &intent, &[(offset(3), offset(5))]));
    let (sender, done) = pipeline(&harness, true);
    send(&sender, SourceEvent::Records((2..=4).map(|n| valid(A, n)).collect())).await;
    drop(sender);
    done.await.unwrap();
    assert!(harness.keys().is_empty(), "{:?}", harness.keys());
    harness.checkpoints.save().await.unwrap();
    let saved = harness.saved();
    assert_eq!(saved.pending.len(), 1);
    assert_eq!(saved.pending[0].key, intent);
    assert_eq!(saved.sources[&a].checkpoint, Some(offset(2)));
}

/// A KPL aggregate: the last owner's object held user records 1 and 2 of
/// aggregate 5. Read again, the aggregate's four user records and the
/// next record come: only those two go under the intent's key.
#[tokio::test]
async fn a_kpl_intent_is_redone_with_exactly_its_user_records() {
    let user = |sequence: u64, sub: u64| {
        let mut record = valid(A, sequence);
        record.data = Bytes::from(format!(r#"{{"shard":"{A}","n":{sequence},"sub":{sub}}}"#));
        record.position.offset = Offset::new(SequenceNumber::from_u64(sequence), sub);
        record
    };
    let intended = vec![user(5, 1), user(5, 2)];
    let (intent, bytes) = last_owners_object(BufferKey::Data, intended.clone()).await;
    assert!(intent.ends_with("-5-1.jsonl.gz"), "{intent}");
    let read = vec![user(5, 0), user(5, 1), user(5, 2), user(5, 3), user(6, 0)];
    for last in [LastPut::Never, LastPut::Before] {
        let state = lease(
            offset(4),
            &intent,
            &[(intended[0].position.offset.clone(), intended[1].position.offset.clone())],
        );
        let harness = new_owner(state, vec![SourceEvent::Records(read.clone())], last, (&intent, &bytes)).await;
        let objects = lines_by_object(&harness);
        assert_eq!(objects[&intent], lines(&intended), "{last:?}");
        assert_eq!(all_lines(&harness), expected(&read), "{last:?}: every record once");
        assert_eq!(
            harness.saved().sources[&SourceId::new(A)].checkpoint,
            Some(offset(6)),
            "{last:?}"
        );
    }
}

/// The processors' outputs of record `n` (two each, as a jq program
/// emitting two values gives), or one output when `fewer`.
fn outputs(n: u64, fewer: bool) -> Vec<Processed> {
    let count = if fewer { 1 } else { 2 };
    (0..count)
        .map(|o| {
            let mut record = shard_record(A, n, &format!(r#"{{"shard":"SHARD","n":{n},"o":{o}}}"#));
            record.position.offset = offset(n).with_output(o);
            Processed {
                record,
                admission: Admission {
                    ends_input: o + 1 == count,
                    done: false,
                },
                fate: Fate::Keep(PartitionKeys::default()),
            }
        })
        .collect()
}

/// Two outputs per record: the last owner's object held outputs 0 and 1
/// of records 3..=5. Read again, the intent's key holds exactly those six
/// outputs. When record 5 gives one output this time, the intent is
/// complete at it (a processor may give fewer outputs the second time):
/// its object is put without waiting for an output that will not come.
#[tokio::test]
async fn an_intent_of_processor_outputs_is_redone_with_exactly_its_outputs() {
    let intended: Vec<Record> = (3..=5).flat_map(|n| outputs(n, false)).map(|p| p.record).collect();
    let (intent, bytes) = last_owners_object(BufferKey::Data, intended.clone()).await;
    let runs = [(offset(3), offset(5).with_output(1))];
    let read =
        |fewer_at_5: bool| -> Vec<Processed> { (2..=8).flat_map(|n| outputs(n, fewer_at_5 && n == 5)).collect() };
    for last in [LastPut::Never, LastPut::Before] {
        let harness = new_owner(
            lease(offset(2).with_output(1), &intent, &runs),
            vec![SourceEvent::Processed(read(false))],
            last,
            (&intent, &bytes),
        )
        .await;
        let objects = lines_by_object(&harness);
        assert_eq!(objects[&intent], lines(&intended), "{last:?}");
        let all: Vec<Record> = read(false).into_iter().skip(2).map(|p| p.record).collect();
        assert_eq!(all_lines(&harness), expected(&all), "{last:?}: every output once");
        assert_eq!(
            harness.saved().sources[&SourceId::new(A)].checkpoint,
            Some(offset(8).with_output(1))
        );
    }
    // Record 5 gives one output this time; nothing follows it in the
    // shard yet (the event that ends the run is no record).
    let harness = new_owner(
        lease(offset(2).with_output(1), &intent, &runs),
        vec![SourceEvent::Processed(
            (2..=5).flat_map(|n| outputs(n, n == 5)).collect(),
        )],
        LastPut::Never,
        (&intent, &bytes),
    )
    .await;
    assert_eq!(lines_by_object(&harness)[&intent], lines(&intended[..5]));
}

/// What a jq processor emitting two values per record, `o` 0 and 1,
/// makes of `records` (the real processor stage).
async fn through_jq(records: Vec<Record>) -> Vec<Processed> {
    use crate::limits::Charged;
    let text = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"archive\"\n\
                [[processors]]\ntype = \"jq\"\nquery = \"(. + {o: 0}), (. + {o: 1})\"\n";
    let config = crate::config::parse(text, "test", &|_| None).unwrap();
    let context = crate::processor::BuildContext {
        stream: &config.name,
        source: &config.source,
    };
    let stage = crate::processor::stage::Stage {
        chain: crate::processor::build_chain(&config.processors, &context)
            .await
            .unwrap(),
        stop: tokio_util::sync::CancellationToken::new(),
        budget: crate::limits::MemoryBudget::unlimited(),
    };
    let (input, input_rx) = mpsc::channel(4);
    let (output_tx, mut output) = mpsc::channel(4);
    let task = tokio::spawn(stage.run(input_rx, output_tx));
    input.send(Charged::free(SourceEvent::Records(records))).await.unwrap();
    drop(input);
    let mut processed = Vec::new();
    while let Some(Charged { value, .. }) = output.recv().await {
        match value {
            SourceEvent::Processed(outputs) => processed.extend(outputs),
            other => panic!("unexpected {other:?}"),
        }
    }
    task.await.unwrap();
    processed
}

/// The same with a real jq processor: the last owner's object held the
/// two outputs of records 3..=5 each; the redo's key holds exactly those
/// six, the other outputs are in an object of their own, each once.
#[tokio::test]
async fn an_intent_of_a_jq_processors_outputs_is_redone_with_exactly_them() {
    let intended: Vec<Record> = through_jq((3..=5).map(|n| valid(A, n)).collect())
        .await
        .into_iter()
        .map(|p| p.record)
        .collect();
    assert_eq!(intended.len(), 6);
    let (intent, bytes) = last_owners_object(BufferKey::Data, intended.clone()).await;
    let read = through_jq((2..=8).map(|n| valid(A, n)).collect()).await;
    let all: Vec<Record> = read.iter().skip(2).map(|p| p.record.clone()).collect();
    for last in [LastPut::Never, LastPut::Before, LastPut::After] {
        let harness = new_owner(
            lease(
                offset(2).with_output(1),
                &intent,
                &[(offset(3), offset(5).with_output(1))],
            ),
            vec![SourceEvent::Processed(
                through_jq((2..=8).map(|n| valid(A, n)).collect()).await,
            )],
            last,
            (&intent, &bytes),
        )
        .await;
        let objects = lines_by_object(&harness);
        assert_eq!(objects[&intent], lines(&intended), "{last:?}");
        assert!(objects[&intent].iter().all(|l| l.contains(r#""o":"#)), "{last:?}");
        assert_eq!(objects.len(), 2, "{last:?}: {:?}", objects.keys());
        assert_eq!(all_lines(&harness), expected(&all), "{last:?}: every output once");
    }
}

/// The last owner's intent was an error object (records the check
/// refused): the redo writes their error records under its key. Their
/// text holds the time they were made, so its bytes differ from the last
/// owner's, not its records; whichever put lands first is the one copy.
#[tokio::test]
async fn an_error_objects_intent_is_redone_as_error_records_once() {
    let intended: Vec<Record> = (3..=5).map(|n| invalid(A, n)).collect();
    let (intent, bytes) = last_owners_object(
        BufferKey::Error(ErrorOutputType::InvalidRecord),
        error_records(&intended),
    )
    .await;
    assert!(intent.starts_with("errors/"), "{intent}");
    let read: Vec<Record> = (2..=8)
        .map(|n| if n <= 5 { invalid(A, n) } else { valid(A, n) })
        .collect();
    for last in [LastPut::Never, LastPut::Before, LastPut::After] {
        let state = lease(offset(2), &intent, &[(offset(3), offset(5))]);
        let harness = new_owner(state, vec![SourceEvent::Records(read.clone())], last, (&intent, &bytes)).await;
        let objects = lines_by_object(&harness);
        assert_eq!(objects[&intent], lines(&intended), "{last:?}: their rawData");
        assert_eq!(objects.len(), 2, "{last:?}: {:?}", objects.keys());
        assert_eq!(all_lines(&harness), expected(&read[1..]), "{last:?}: every record once");
        let kept = error_lines(&harness.object(&intent));
        let made_now = error_lines(&Compression::Gzip.decompress(&bytes).unwrap()) != kept;
        assert_eq!(made_now, last == LastPut::Never || last == LastPut::After, "{last:?}");
    }
}

/// The error records an error batch of the router holds.
fn error_records(records: &[Record]) -> Vec<Record> {
    let check = spillway_transforms::Check {
        parse_json: true,
        ..spillway_transforms::Check::new(true)
    };
    records
        .iter()
        .map(|r| {
            let rejection = check.check(r).unwrap_err();
            Record {
                data: Bytes::from(spillway_transforms::error_record::render(r, &rejection, 1, arrival())),
                ..r.clone()
            }
        })
        .collect()
}

/// The last owner could not put its data object past the retry duration
/// and pointed the intent at the `delivery-failed` error object of its
/// records (`retarget_object`), then died. The redo writes those records
/// as `delivery-failed` error records under that key, not as data.
#[tokio::test]
async fn a_retargeted_intent_is_redone_as_delivery_failed_records() {
    let intended: Vec<Record> = (3..=5).map(|n| valid(A, n)).collect();
    let old = Harness::json_lines("").await;
    let rejection = Rejection {
        output_type: ErrorOutputType::DeliveryFailed,
        code: "Delivery.Failed",
        message: "timed out".into(),
    };
    let fallback = old.planner.all_failed(&intended, &rejection, 3).unwrap();
    let intent = fallback.key.to_string();
    assert!(intent.starts_with("errors/delivery-failed/"), "{intent}");
    let read: Vec<Record> = (2..=8).map(|n| valid(A, n)).collect();
    let harness = new_owner(
        lease(offset(2), &intent, &[(offset(3), offset(5))]),
        vec![SourceEvent::Records(read.clone())],
        LastPut::Never,
        (&intent, &Bytes::new()),
    )
    .await;
    let objects = lines_by_object(&harness);
    assert_eq!(objects[&intent], lines(&intended));
    let codes: Vec<String> = error_lines(&harness.object(&intent))
        .iter()
        .map(|e| e["errorCode"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, ["Delivery.Failed"; 3]);
    assert_eq!(all_lines(&harness), expected(&read[1..]), "every record once");
}

/// Records 2 to 8 as the processor gives them this time: `failed` fails
/// (it went out as data the first time).
fn read_failing(failed: u64) -> Vec<Processed> {
    (2..=8)
        .flat_map(|n| outputs(n, true))
        .map(|mut p| {
            if p.record.position.offset.sequence_number == SequenceNumber::from_u64(failed) {
                p.fate = Fate::Failed(Failure::processing("Lambda.FunctionError", "out of memory"));
            }
            p
        })
        .collect()
}

/// How many times each record (`n`) is archived, data or error record.
fn copies_by_sequence(objects: &BTreeMap<String, Vec<String>>) -> BTreeMap<u64, usize> {
    let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
    for line in objects.values().flatten() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        *copies.entry(value["n"].as_u64().unwrap()).or_default() += 1;
    }
    copies
}

/// A record of the intent comes out otherwise this time: the processor
/// fails record 4, which went out as data then. If the last owner's
/// object landed, it holds record 4's data: the redo finds it there and
/// writes no error record for it. If not, the redo's object holds 3 and
/// 5, and 4's error record goes to an error object of its own. Either
/// way, record 4's outputs are archived once.
#[tokio::test]
async fn a_record_that_fails_the_second_time_is_archived_once_either_way() {
    let intended: Vec<Record> = (3..=5).flat_map(|n| outputs(n, true)).map(|p| p.record).collect();
    let (intent, bytes) = last_owners_object(BufferKey::Data, intended.clone()).await;
    let read = || read_failing(4);
    for last in [LastPut::Never, LastPut::Before, LastPut::After] {
        let harness = new_owner(
            lease(offset(2), &intent, &[(offset(3), offset(5))]),
            vec![SourceEvent::Processed(read())],
            last,
            (&intent, &bytes),
        )
        .await;
        let objects = lines_by_object(&harness);
        let errors: Vec<&String> = objects.keys().filter(|k| k.starts_with("errors/")).collect();
        if last == LastPut::Before {
            assert_eq!(objects[&intent], lines(&intended), "{last:?}");
            assert!(errors.is_empty(), "{last:?}: {errors:?}");
        } else {
            assert_eq!(
                objects[&intent],
                lines(&[intended[0].clone(), intended[2].clone()]),
                "{last:?}"
            );
            assert_eq!(errors.len(), 1, "{last:?}: {:?}", objects.keys());
        }
        let by_sequence = copies_by_sequence(&objects);
        // After the last owner's late put (refused), the redo's copy holds
        // 3 and 5 and the error object 4: each once.
        assert_eq!(by_sequence, (3..=8).map(|n| (n, 1)).collect(), "{last:?}");
        assert_eq!(harness.saved().sources[&SourceId::new(A)].checkpoint, Some(offset(8)));
    }
}

/// The new owner loses the lease with part of the intent's records in its
/// redo buffer, and wins it back (a new tenure, from the same lease
/// state): the part is dropped at the end of the lost tenure, and the
/// intent's key holds its records once each.
#[tokio::test]
async fn a_redo_cut_short_by_a_lost_lease_starts_afresh_in_the_next_tenure() {
    let intended: Vec<Record> = (3..=5).map(|n| valid(A, n)).collect();
    let (intent, _) = last_owners_object(BufferKey::Data, intended.clone()).await;
    let harness = Harness::json_lines("").await;
    let a = SourceId::new(A);
    let state = || lease(offset(2), &intent, &[(offset(3), offset(5))]);
    harness.checkpoints.adopt_lease(&a, state());
    let (sender, done) = pipeline(&harness, true);
    send(&sender, SourceEvent::Records((2..=4).map(|n| valid(A, n)).collect())).await;
    // Records 3 and 4 are in the redo's buffer: the router routes a batch
    // without yielding to this (current-thread) test once it has counted
    // it read.
    until(|| harness.summary().records_read >= 3, "records 3 and 4 buffered").await;
    harness.checkpoints.release(&a);
    send(&sender, SourceEvent::ShardReleased { source: a.clone() }).await;
    // Won back: the lease still holds the intent (nothing was saved of
    // the lost tenure), read again from its checkpoint.
    harness.checkpoints.adopt_lease(&a, state());
    let read: Vec<Record> = (2..=8).map(|n| valid(A, n)).collect();
    send(&sender, SourceEvent::Records(read.clone())).await;
    drop(sender);
    done.await.unwrap();
    assert_eq!(lines_by_object(&harness)[&intent], lines(&intended));
    assert_eq!(all_lines(&harness), expected(&read[1..]), "every record once");
}

/// The reverse: the last owner's object was the error object of records
/// 3..=5, all of which a processor failed then; this time it keeps
/// record 4. If the last owner's object landed, it holds 4's error
/// record: no data object is written for 4. If not, the redo's error
/// object holds 3 and 5, and 4 goes out as data. Either way once.
#[tokio::test]
async fn a_record_that_succeeds_the_second_time_is_archived_once_either_way() {
    let failing = |n: u64, fails: bool| -> Processed {
        let mut processed = outputs(n, true).remove(0);
        if fails {
            processed.fate = Fate::Failed(Failure::processing("Lambda.FunctionError", "throttled"));
        }
        processed
    };
    // The last owner's object, made by a router and writer of its own.
    let old = Harness::json_lines("").await;
    let (sender, done) = pipeline(&old, true);
    send(
        &sender,
        SourceEvent::Processed((3..=5).map(|n| failing(n, true)).collect()),
    )
    .await;
    drop(sender);
    done.await.unwrap();
    let intent = old.keys().remove(0);
    assert!(intent.starts_with("errors/processing-failed/"), "{intent}");
    let bytes = old.store().get(&key(&intent)).unwrap();
    let read = || -> Vec<Processed> { (2..=8).map(|n| failing(n, (3..=5).contains(&n) && n != 4)).collect() };
    for last in [LastPut::Never, LastPut::Before, LastPut::After] {
        let harness = new_owner(
            lease(offset(2), &intent, &[(offset(3), offset(5))]),
            vec![SourceEvent::Processed(read())],
            last,
            (&intent, &bytes),
        )
        .await;
        let objects = lines_by_object(&harness);
        let data_with_4 = objects
            .iter()
            .filter(|(k, lines)| !k.starts_with("errors/") && lines.iter().any(|l| l.contains(r#""n":4,"#)))
            .count();
        let held: Vec<u64> = objects[&intent]
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if last == LastPut::Before {
            assert_eq!(held, [3, 4, 5], "{last:?}");
            assert_eq!(data_with_4, 0, "{last:?}: {:?}", objects.keys());
        } else {
            assert_eq!(held, [3, 5], "{last:?}");
            assert_eq!(data_with_4, 1, "{last:?}: {:?}", objects.keys());
        }
        let by_sequence = copies_by_sequence(&objects);
        assert_eq!(by_sequence, (3..=8).map(|n| (n, 1)).collect(), "{last:?}");
        assert_eq!(harness.saved().sources[&SourceId::new(A)].checkpoint, Some(offset(8)));
    }
}

/// A full memory budget pauses the source (`crate::limits::gate`); a
/// redo's records are not charged to it, or the records that complete
/// the intent would never pass the gate while nothing could free what
/// its buffer holds. With a budget of two records, the source's records
/// pass one at a time through the gate: the intent of records 3..=5 is
/// redone and every record archived.
#[tokio::test]
async fn a_redo_waiting_for_its_records_does_not_hold_the_budget_the_source_needs() {
    let intended: Vec<Record> = (3..=5).map(|n| valid(A, n)).collect();
    let (intent, _) = last_owners_object(BufferKey::Data, intended.clone()).await;
    let harness = Harness::json_lines("").await;
    harness
        .checkpoints
        .adopt_lease(&SourceId::new(A), lease(offset(2), &intent, &[(offset(3), offset(5))]));
    let cost = crate::buffer::record_cost(valid(A, 3).data.len());
    let budget = crate::limits::MemoryBudget::new(2 * cost);
    let (sender, done) = super::shards::pipeline_in(&harness, true, budget.clone());
    let (source, from_source) = mpsc::channel(1);
    let gate = tokio::spawn(crate::limits::gate::run(
        budget,
        harness.telemetry.clone(),
        from_source,
        sender,
    ));
    let read: Vec<Record> = (2..=8).map(|n| valid(A, n)).collect();
    tokio::time::timeout(Duration::from_secs(10), async {
        for record in &read {
            source.send(SourceEvent::Records(vec![record.clone()])).await.unwrap();
        }
        drop(source);
        gate.await.unwrap();
        done.await.unwrap();
    })
    .await
    .expect("the source is not paused for good");
    assert_eq!(lines_by_object(&harness)[&intent], lines(&intended));
    assert_eq!(all_lines(&harness), expected(&read[1..]), "every record once");
}

/// The intent's first record comes out otherwise this time (the
/// processor fails record 3, kept then): no planned object bears the
/// intent's key, so the largest, the data of 4 and 5, is put under it,
/// and 3's error record after it only if that put landed. Once either way.
#[tokio::test]
async fn an_intent_whose_first_record_changed_kind_puts_its_largest_part_under_its_key() {
    let intended: Vec<Record> = (3..=5).flat_map(|n| outputs(n, true)).map(|p| p.record).collect();
    let (intent, bytes) = last_owners_object(BufferKey::Data, intended.clone()).await;
    let read = || read_failing(3);
    for last in [LastPut::Never, LastPut::Before] {
        let harness = new_owner(
            lease(offset(2), &intent, &[(offset(3), offset(5))]),
            vec![SourceEvent::Processed(read())],
            last,
            (&intent, &bytes),
        )
        .await;
        let objects = lines_by_object(&harness);
        let errors = objects.keys().filter(|k| k.starts_with("errors/")).count();
        if last == LastPut::Before {
            assert_eq!(objects[&intent], lines(&intended), "{last:?}");
            assert_eq!(errors, 0, "{last:?}: {:?}", objects.keys());
        } else {
            assert_eq!(objects[&intent], lines(&intended[1..]), "{last:?}");
            assert_eq!(errors, 1, "{last:?}: {:?}", objects.keys());
        }
        let by_sequence = copies_by_sequence(&objects);
        assert_eq!(by_sequence, (3..=8).map(|n| (n, 1)).collect(), "{last:?}");
    }
}
