//! The processor stage: a task between the source's channel and the
//! router that runs each batch of records through the chain.
//!
//! Events other than records (`Refused`, `Ended`, `ShardReleased`,
//! `Failed`) pass through
//! in order behind the records before them, so that a shard's end still
//! follows its last records. Each source record leaves as one or more
//! [`Processed`] records, numbered by their index among its outputs
//! ([`spillway_transforms::Offset::output`]): kept records with their
//! partition keys, failed ones with their failure, and, for a record that
//! left nothing, one `Dropped` entry, so that its checkpoint can advance
//! without an object.

use std::sync::Arc;

use bytes::Bytes;
use spillway_transforms::Record;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Chain, Failure, Fate, Input, Outcome, PartitionKeys, ProcessError, Processed};
use crate::checkpoint::Admission;
use crate::limits::gate::event_cost;
use crate::limits::{Charged, MemoryBudget};
use crate::source::SourceEvent;

/// The stage's task.
pub struct Stage {
    pub chain: Chain,
    pub stop: CancellationToken,
    /// Charged for each batch's outputs; its input's charge is released
    /// once they are.
    pub budget: MemoryBudget,
}

/// Batches processed at once. Two: while the outputs of one are read and
/// passed on, the next one's records are already with the processors, so
/// that jq workers do not wait for the pipeline between batches (issue
/// #18, speed). Each stays charged to the memory budget until it is passed
/// on.
const BATCHES_IN_FLIGHT: usize = 2;

impl Stage {
    /// Processes events until the input ends or the router hangs up; a
    /// processor stopped by shutdown ends the stage (its batch is read
    /// again at the next start). Events leave in the order they came.
    pub async fn run(
        self,
        mut input: mpsc::Receiver<Charged<SourceEvent>>,
        output: mpsc::Sender<Charged<SourceEvent>>,
    ) {
        let Stage { chain, stop, budget } = self;
        let chain = Arc::new(chain);
        // Batches in process, oldest first; the forwarder awaits each in
        // turn, so a batch may be taken only when a slot is free.
        let (in_process, mut done) = mpsc::channel::<InProcess>(BATCHES_IN_FLIGHT - 1);
        let take = async move {
            while let Ok(slot) = in_process.reserve().await {
                let Some(event) = input.recv().await else { return };
                let (chain, stop, budget) = (chain.clone(), stop.clone(), budget.clone());
                slot.send(InProcess(tokio::spawn(process(chain, stop, budget, event))));
            }
        };
        let forward = async move {
            while let Some(mut batch) = done.recv().await {
                let processed = match (&mut batch.0).await {
                    Ok(processed) => processed,
                    Err(err) => std::panic::resume_unwind(err.into_panic()),
                };
                let Some(event) = processed else { return };
                if output.send(event).await.is_err() {
                    return;
                }
            }
        };
        // The forwarder ending (shutdown, or the router gone) drops the
        // batches still in process: their records are read again at the
        // next start.
        tokio::select! {
            () = forward => {}
            () = async { take.await; std::future::pending::<()>().await } => {}
        }
    }
}

/// A batch being processed; aborted if dropped unfinished (the stage is
/// ending).
struct InProcess(tokio::task::JoinHandle<Option<Charged<SourceEvent>>>);

impl Drop for InProcess {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One event through the chain, charged for what it became; `None` when
/// shutdown stopped a processor.
async fn process(
    chain: Arc<Chain>,
    stop: CancellationToken,
    budget: MemoryBudget,
    Charged { value: event, charge }: Charged<SourceEvent>,
) -> Option<Charged<SourceEvent>> {
    let event = match event {
        SourceEvent::Records(records) => match run_chain(&chain, records, &stop).await {
            Ok(processed) => SourceEvent::Processed(processed),
            Err(err) => {
                tracing::info!(error = %err, "processors stopped: the records in process are read again at the next start");
                return None;
            }
        },
        other => other,
    };
    let event = Charged {
        charge: budget.charge(event_cost(&event)),
        value: event,
    };
    drop(charge);
    Some(event)
}

/// An output of the processors so far.
struct Item {
    /// Its source record's index in the batch.
    origin: usize,
    state: ItemState,
}

enum ItemState {
    Live { data: Bytes, keys: PartitionKeys },
    Failed(Failure),
}

/// Runs `records` through `chain`: one or more [`Processed`] per record,
/// in order.
pub async fn run_chain(
    chain: &Chain,
    records: Vec<Record>,
    stop: &CancellationToken,
) -> Result<Vec<Processed>, ProcessError> {
    let mut items: Vec<Item> = records
        .iter()
        .enumerate()
        .map(|(origin, record)| Item {
            origin,
            state: ItemState::Live {
                data: record.data.clone(),
                keys: PartitionKeys::default(),
            },
        })
        .collect();
    for processor in chain {
        let inputs: Vec<Input<'_>> = items
            .iter()
            .filter_map(|item| match &item.state {
                ItemState::Live { data, keys } => Some(Input {
                    data,
                    origin: &records[item.origin],
                    keys,
                }),
                ItemState::Failed(_) => None,
            })
            .collect();
        if inputs.is_empty() {
            break;
        }
        let count = inputs.len();
        let mut outcomes = processor.process(&inputs, stop).await?;
        drop(inputs);
        if outcomes.len() != count {
            // A processor's bug must not lose records: each goes to the
            // error output instead.
            tracing::error!(processor = %processor.describe(), inputs = count, outcomes = outcomes.len(), "a processor answered with the wrong number of outcomes");
            let failure = Failure::processing(
                "Processor.WrongAnswer",
                format!(
                    "{} answered {} outcomes for {count} records",
                    processor.describe(),
                    outcomes.len()
                ),
            );
            outcomes = vec![Outcome::Failed(failure); count];
        }
        let mut outcomes = outcomes.into_iter();
        let mut next = Vec::with_capacity(items.len());
        for item in items {
            let ItemState::Live { keys, .. } = item.state else {
                next.push(item);
                continue;
            };
            match outcomes.next().expect("one outcome per live item") {
                Outcome::Ok(outputs) => {
                    for output in outputs {
                        next.push(Item {
                            origin: item.origin,
                            state: ItemState::Live {
                                data: output.data,
                                keys: output.keys.unwrap_or_else(|| keys.clone()),
                            },
                        });
                    }
                }
                Outcome::Dropped => {}
                Outcome::Failed(failure) => next.push(Item {
                    origin: item.origin,
                    state: ItemState::Failed(failure),
                }),
            }
        }
        items = next;
    }
    Ok(number_outputs(records, items))
}

/// Numbers the outputs of each source record 0..n; a record with none
/// leaves one `Dropped` entry.
fn number_outputs(records: Vec<Record>, items: Vec<Item>) -> Vec<Processed> {
    let mut processed = Vec::with_capacity(items.len().max(records.len()));
    let mut items = items.into_iter().peekable();
    for (origin, record) in records.into_iter().enumerate() {
        let mut index: u32 = 0;
        while let Some(item) = items.next_if(|item| item.origin == origin) {
            let ends_input = items.peek().is_none_or(|next| next.origin != origin);
            let admission = Admission {
                ends_input,
                done: false,
            };
            let mut position = record.position.clone();
            position.offset.output = index;
            index = index.saturating_add(1);
            let (data, fate) = match item.state {
                ItemState::Live { data, keys } => (data, Fate::Keep(keys)),
                ItemState::Failed(failure) => (record.data.clone(), Fate::Failed(failure)),
            };
            processed.push(Processed {
                record: Record {
                    data,
                    position,
                    partition_key: record.partition_key.clone(),
                    arrival: record.arrival,
                },
                admission,
                fate,
            });
        }
        if index == 0 {
            processed.push(Processed {
                record,
                admission: Admission {
                    ends_input: true,
                    done: true,
                },
                fate: Fate::Dropped,
            });
        }
    }
    processed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use spillway_transforms::{Offset, Position, SequenceNumber, SourceId};

    use super::*;
    use crate::processor::{Output, Processor};

    /// Splits "a,b,c" into records; "drop" is dropped, "fail" fails.
    struct Split;

    #[async_trait::async_trait]
    impl Processor for Split {
        fn describe(&self) -> String {
            "split".into()
        }

        async fn process(&self, inputs: &[Input<'_>], _: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
            Ok(inputs
                .iter()
                .map(|input| match &input.data[..] {
                    b"drop" => Outcome::Dropped,
                    b"fail" => Outcome::Failed(Failure::processing("Test.Failed", "asked to")),
                    data => Outcome::Ok(
                        data.split(|b| *b == b',')
                            .map(|part| Output::data(Bytes::copy_from_slice(part)))
                            .collect(),
                    ),
                })
                .collect())
        }
    }

    fn record(n: u64, data: &'static str) -> Record {
        Record {
            data: Bytes::from_static(data.as_bytes()),
            position: Position {
                source: SourceId::new("s"),
                offset: Offset::new(SequenceNumber::from_u64(n), 0),
            },
            partition_key: None,
            arrival: chrono::Utc::now(),
        }
    }

    fn summary(processed: &[Processed]) -> Vec<(u64, u32, bool, bool, String)> {
        processed
            .iter()
            .map(|p| {
                let fate = match &p.fate {
                    Fate::Keep(_) => String::from_utf8(p.record.data.to_vec()).unwrap(),
                    Fate::Dropped => "dropped".into(),
                    Fate::Failed(f) => format!("failed {} raw {}", f.code, String::from_utf8_lossy(&p.record.data)),
                };
                (
                    p.record.position.offset.sequence_number.to_u64().unwrap(),
                    p.record.position.offset.output,
                    p.admission.ends_input,
                    p.admission.done,
                    fate,
                )
            })
            .collect()
    }

    /// Sleeps 500 ms on "slow", 400 ms on "medium"; passes records through.
    struct Sleepy;

    #[async_trait::async_trait]
    impl Processor for Sleepy {
        fn describe(&self) -> String {
            "sleepy".into()
        }

        async fn process(&self, inputs: &[Input<'_>], _: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
            for input in inputs {
                let ms = match &input.data[..] {
                    b"slow" => 500,
                    b"medium" => 400,
                    _ => 0,
                };
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            Ok(inputs
                .iter()
                .map(|input| Outcome::Ok(vec![Output::data(input.data.clone())]))
                .collect())
        }
    }

    /// Two batches are processed at once (0.5 s, not 0.9 s, for both); the
    /// second finishes first, yet events leave in the order they came, a
    /// source's end behind its records, and the budget holds nothing once
    /// they are consumed.
    #[tokio::test]
    async fn batches_processed_at_once_leave_in_order() {
        let budget = MemoryBudget::new(1 << 30);
        let stage = Stage {
            chain: vec![Arc::new(Sleepy)],
            stop: CancellationToken::new(),
            budget: budget.clone(),
        };
        let (input, input_rx) = mpsc::channel(8);
        let (output_tx, mut output) = mpsc::channel(8);
        let task = tokio::spawn(stage.run(input_rx, output_tx));
        let start = std::time::Instant::now();
        for batch in [vec![record(1, "slow")], vec![record(2, "medium")]] {
            input.send(Charged::free(SourceEvent::Records(batch))).await.unwrap();
        }
        let source = SourceId::new("s");
        input
            .send(Charged::free(SourceEvent::Ended {
                source: source.clone(),
                flush: false,
            }))
            .await
            .unwrap();
        drop(input);
        let mut seen = Vec::new();
        while let Some(Charged { value, .. }) = output.recv().await {
            seen.push(match value {
                SourceEvent::Processed(processed) => summary(&processed)[0].4.clone(),
                SourceEvent::Ended { .. } => "ended".to_owned(),
                SourceEvent::ShardReleased { .. } => "released".to_owned(),
                _ => "other".to_owned(),
            });
        }
        task.await.unwrap();
        assert_eq!(seen, ["slow", "medium", "ended"]);
        // One after the other: at least 0.9 s.
        assert!(
            start.elapsed() < std::time::Duration::from_millis(800),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(budget.used(), 0);
    }

    /// The end of a lost lease's tenure stays between the records read
    /// before it (the router drops them) and those read after (admitted),
    /// though the slow batch before it finishes last.
    #[tokio::test]
    async fn a_tenures_end_leaves_between_the_records_around_it() {
        let stage = Stage {
            chain: vec![Arc::new(Sleepy)],
            stop: CancellationToken::new(),
            budget: MemoryBudget::unlimited(),
        };
        let (input, input_rx) = mpsc::channel(8);
        let (output_tx, mut output) = mpsc::channel(8);
        let task = tokio::spawn(stage.run(input_rx, output_tx));
        let source = SourceId::new("s");
        for event in [
            SourceEvent::Records(vec![record(1, "slow")]),
            SourceEvent::ShardReleased { source: source.clone() },
            SourceEvent::Records(vec![record(2, "medium")]),
        ] {
            input.send(Charged::free(event)).await.unwrap();
        }
        drop(input);
        let mut seen = Vec::new();
        while let Some(Charged { value, .. }) = output.recv().await {
            seen.push(match value {
                SourceEvent::Processed(processed) => summary(&processed)[0].4.clone(),
                SourceEvent::ShardReleased { source } => format!("released {source}"),
                other => format!("{other:?}"),
            });
        }
        task.await.unwrap();
        assert_eq!(seen, ["slow", "released s", "medium"]);
    }

    #[tokio::test]
    async fn outputs_are_numbered_per_source_record_and_nothing_is_lost() {
        let chain: Chain = vec![Arc::new(Split)];
        let records = vec![record(1, "a,b,c"), record(2, "drop"), record(3, "fail"), record(4, "d")];
        let processed = run_chain(&chain, records, &CancellationToken::new()).await.unwrap();
        assert_eq!(
            summary(&processed),
            [
                (1, 0, false, false, "a".to_owned()),
                (1, 1, false, false, "b".to_owned()),
                (1, 2, true, false, "c".to_owned()),
                (2, 0, true, true, "dropped".to_owned()),
                (3, 0, true, false, "failed Test.Failed raw fail".to_owned()),
                (4, 0, true, false, "d".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_chain_numbers_the_final_outputs_and_fails_with_the_source_bytes() {
        // "x,fail" splits, then the second processor fails one part: the
        // failure keeps its place, its rawData is the source record's.
        let chain: Chain = vec![Arc::new(Split), Arc::new(Split)];
        let records = vec![record(7, "x,fail,drop")];
        let processed = run_chain(&chain, records, &CancellationToken::new()).await.unwrap();
        assert_eq!(
            summary(&processed),
            [
                (7, 0, false, false, "x".to_owned()),
                (7, 1, true, false, "failed Test.Failed raw x,fail,drop".to_owned()),
            ]
        );
    }
}
