//! In-memory checkpoint bookkeeping: which records are buffered, which are
//! in written objects, and how far each source's checkpoint may move.
//!
//! Every record admitted from a source gets the next ordinal of that source.
//! An object's records are described by runs of consecutive ordinals, which
//! are recorded as offset ranges ([`Run`]): "every record of this source
//! from `first` to `last`". A checkpoint moves past a record only once
//! every earlier record of its source is delivered too. No I/O and no
//! clock here: [`super::Checkpointer`] persists what this computes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use spillway_transforms::format::parquet::TableSchema;
use spillway_transforms::record::Offset;
use spillway_transforms::SourceId;

use super::state::{CheckpointState, PendingObject, Run, SourceRun, SourceState, STATE_VERSION};

mod redo;
mod spans;
mod tenure;

pub use redo::RedoRouting;

/// A buffered record's claim on its source's checkpoint: its ordinal among
/// the records admitted from its source. The source and the offset are the
/// record's own (its position), so a ticket is a number: nothing is cloned
/// per record between the router, the buffer and the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub ordinal: u64,
}

/// The records of one object, as runs of consecutive records of each
/// source: what its intent names, and what its delivery marks delivered.
/// Built once per object, not per record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    runs: Vec<Claim>,
}

/// Records `first_ordinal ..` (`count` of them) of `source`, whose offsets
/// are `run.first` to `run.last`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    source: SourceId,
    first_ordinal: u64,
    count: u64,
    run: Run,
}

impl Claims {
    /// The claims of records given as (source, offset, ticket), in source
    /// order within each source (sources may interleave).
    pub fn of<'a>(records: impl IntoIterator<Item = (&'a SourceId, &'a Offset, Ticket)>) -> Self {
        let mut runs: Vec<Claim> = Vec::new();
        let mut last_offsets: Vec<&'a Offset> = Vec::new();
        // The run each source extends, and the run extended last (records
        // of one source mostly come together).
        let mut open: HashMap<&'a SourceId, usize> = HashMap::new();
        let mut last: Option<usize> = None;
        for (source, offset, ticket) in records {
            let index = match last {
                Some(i) if runs[i].source == *source => Some(i),
                _ => open.get(source).copied(),
            };
            match index {
                Some(i) if runs[i].first_ordinal + runs[i].count == ticket.ordinal => {
                    runs[i].count += 1;
                    last_offsets[i] = offset;
                    last = Some(i);
                }
                _ => {
                    runs.push(Claim {
                        source: source.clone(),
                        first_ordinal: ticket.ordinal,
                        count: 1,
                        run: Run {
                            first: offset.clone(),
                            last: offset.clone(),
                        },
                    });
                    last_offsets.push(offset);
                    open.insert(source, runs.len() - 1);
                    last = Some(runs.len() - 1);
                }
            }
        }
        for (claim, last) in runs.iter_mut().zip(last_offsets) {
            claim.run.last = last.clone();
        }
        Self { runs }
    }

    /// The sources whose records are claimed, each once.
    pub fn sources(&self) -> Vec<&SourceId> {
        let mut sources: Vec<&SourceId> = Vec::new();
        for claim in &self.runs {
            if !sources.contains(&&claim.source) {
                sources.push(&claim.source);
            }
        }
        sources
    }

    /// How many records are claimed.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|c| c.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// Identifies an object between [`Tracker::begin_object`] and
/// [`Tracker::complete_object`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId(u64);

#[derive(Debug, Default)]
struct Source {
    checkpoint: Option<Offset>,
    finished: bool,
    input_ended: bool,
    delivered: Vec<Run>,
    next_ordinal: u64,
    /// Admitted records not yet behind the checkpoint.
    in_flight: spans::Spans,
    /// Ordinal ranges `[first, end)` of records admitted as delivered
    /// already (dropped, or delivered by an earlier run) since the last
    /// [`Source::merge_delivered`], which makes the runs around them.
    admitted_done: Vec<(u64, u64)>,
}

/// How a record is admitted (see [`Tracker::admit_all_as`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The last output processors made of its source record (always, for
    /// a record that went through no processor).
    pub ends_input: bool,
    /// Delivered already, by having nowhere to go (a record a processor
    /// dropped): it needs no object, and no ticket is given.
    pub done: bool,
}

impl Admission {
    /// A record as the source read it.
    pub const WHOLE: Admission = Admission {
        ends_input: true,
        done: false,
    };
}

impl Source {
    /// A source whose first record gets `ordinal`.
    fn starting_at(ordinal: u64) -> Self {
        Self {
            next_ordinal: ordinal,
            in_flight: spans::Spans::starting_at(ordinal),
            ..Self::default()
        }
    }

    /// The ordinal of the first record in flight.
    fn front_ordinal(&self) -> u64 {
        self.in_flight.front()
    }

    /// Admits the next record of this source; see [`Tracker::admit`].
    fn admit(&mut self, offset: &Offset, admission: Admission) -> Option<Ticket> {
        let state = self;
        if state.checkpoint.as_ref().is_some_and(|c| offset <= c) {
            return None;
        }
        let already_delivered = admission.done || is_delivered(&state.delivered, offset);
        let ordinal = state.next_ordinal;
        state.next_ordinal += 1;
        state
            .in_flight
            .push(ordinal, offset, already_delivered, admission.ends_input);
        if already_delivered {
            match state.admitted_done.last_mut() {
                Some((_, end)) if *end == ordinal => *end += 1,
                _ => state.admitted_done.push((ordinal, ordinal + 1)),
            }
            state.advance();
            return None;
        }
        Some(Ticket { ordinal })
    }

    /// Makes `delivered` as few runs as it can be: consecutive delivered
    /// records in flight become one run, whichever objects they were in
    /// (or none: dropped and skipped records). With dynamic partitioning
    /// each record of an object is a run of its own; once the partitions
    /// around it are written too, they are one run again, and a save
    /// writes that one.
    ///
    /// `claimed`: the ordinal ranges `[first, end)` of the records just
    /// delivered; `fresh`: their objects' runs. Only the records around
    /// those (and those admitted as delivered since the last call) are
    /// looked at, and the runs are merged into the sorted ones in one
    /// pass: a run of delivered records none of which is new was made
    /// whole by an earlier call. Looking at every record in flight after
    /// every object made the objects of 20 partitions at the end of the
    /// input cost a scan of all their records each, one after another
    /// (issue #18, speed).
    fn merge_delivered(&mut self, mut claimed: Vec<(u64, u64)>, mut fresh: Vec<Run>) {
        #[cfg(test)]
        let oracle = self.merged_by_scan(fresh.clone());
        claimed.append(&mut self.admitted_done);
        claimed.sort_unstable_by_key(|range| range.0);
        fresh.extend(self.in_flight.delivered_around(&claimed));
        fresh.sort_by(|a, b| a.first.cmp(&b.first));
        let mut old = std::mem::take(&mut self.delivered);
        if !old.is_sorted_by(|a, b| a.first <= b.first) {
            old.sort_by(|a, b| a.first.cmp(&b.first));
        }
        let mut merged: Vec<Run> = Vec::with_capacity(old.len() + fresh.len());
        let (mut old, mut fresh) = (old.into_iter().peekable(), fresh.into_iter().peekable());
        loop {
            let next = match (old.peek(), fresh.peek()) {
                (Some(a), Some(b)) if b.first < a.first => fresh.next(),
                (Some(_), _) => old.next(),
                (None, _) => fresh.next(),
            };
            let Some(run) = next else { break };
            match merged.last_mut() {
                // Overlapping runs: every record of both is delivered.
                Some(last) if run.first <= last.last => {
                    if run.last > last.last {
                        last.last = run.last;
                    }
                }
                _ => merged.push(run),
            }
        }
        if let Some(checkpoint) = &self.checkpoint {
            merged.retain(|run| &run.last > checkpoint);
        }
        self.delivered = merged;
        #[cfg(test)]
        assert_eq!(
            self.delivered, oracle,
            "the runs merged around the new records are those of a whole scan"
        );
    }

    /// What [`Self::merge_delivered`] made before it looked only around
    /// the new records: every record in flight scanned, every run sorted.
    /// The test builds check each merge against it.
    #[cfg(test)]
    fn merged_by_scan(&self, fresh: Vec<Run>) -> Vec<Run> {
        let mut runs = self.delivered.clone();
        runs.extend(fresh);
        runs.extend(self.in_flight.delivered_by_scan());
        runs.sort_by(|a, b| a.first.cmp(&b.first));
        let mut merged: Vec<Run> = Vec::with_capacity(runs.len());
        for run in runs {
            match merged.last_mut() {
                Some(last) if run.first <= last.last => {
                    if run.last > last.last {
                        last.last = run.last;
                    }
                }
                _ => merged.push(run),
            }
        }
        if let Some(checkpoint) = &self.checkpoint {
            merged.retain(|run| &run.last > checkpoint);
        }
        merged
    }

    fn advance(&mut self) {
        if let Some(checkpoint) = self.in_flight.pop_delivered() {
            self.checkpoint = Some(checkpoint);
        }
        if let Some(checkpoint) = &self.checkpoint {
            self.delivered.retain(|run| &run.last > checkpoint);
        }
        if self.input_ended && self.in_flight.is_empty() {
            self.finished = true;
        }
    }
}

/// Whether a delivered run holds `offset`. The runs are sorted by their
/// first offset and disjoint (each covers records admitted one after
/// another, and a record is in one object), so one binary search finds the
/// only candidate: with dynamic partitioning an object's records
/// interleave with other partitions', a run per record, and a scan per
/// admitted record would grow with all of them.
fn is_delivered(delivered: &[Run], offset: &Offset) -> bool {
    let after = delivered.partition_point(|run| run.first <= *offset);
    after > 0 && delivered[after - 1].contains(offset)
}

/// The bookkeeping of one delivery stream.
#[derive(Debug)]
pub struct Tracker {
    stream: String,
    sources: BTreeMap<SourceId, Source>,
    pending: BTreeMap<ObjectId, (PendingObject, Claims)>,
    /// Intents given up with their shard's lease ([`Tracker::abandon`]),
    /// or begun for records of an earlier tenure ([`Tracker::begin_object`]):
    /// completing one changes nothing.
    abandoned: std::collections::BTreeSet<ObjectId>,
    /// Per abandoned source, the first ordinal its next tenure gives: an
    /// earlier tenure's tickets never name a record of a later one, so an
    /// object of them is told apart ([`Tracker::begin_object`]).
    ordinal_floors: HashMap<SourceId, u64>,
    /// Shards whose lease was lost while their records may still be on
    /// their way from the source: none of them is admitted until the
    /// router passes the end of that tenure in the event stream
    /// ([`Tracker::tenure_passed`]). Counted: a shard lost, won back and
    /// lost again before the first tenure's end passed has two ends to
    /// pass.
    released: HashMap<SourceId, u32>,
    /// Per shard, the last owner's intents this instance redoes
    /// (`redo.rs`): pending until the redo's own intent replaces them.
    inherited: BTreeMap<SourceId, Vec<redo::Inherited>>,
    next_object: u64,
    started_at: Option<DateTime<Utc>>,
    table_schema: Option<TableSchema>,
}

impl Tracker {
    /// Starts from a saved state whose pending objects are already settled
    /// (see [`Tracker::settle`]).
    pub fn new(stream: &str, state: Option<CheckpointState>) -> Self {
        let mut sources = BTreeMap::new();
        let started_at = state.as_ref().and_then(|s| s.started_at);
        let table_schema = state.as_ref().and_then(|s| s.table_schema.clone());
        if let Some(state) = state {
            debug_assert!(state.pending.is_empty(), "settle pending objects first");
            for (id, saved) in state.sources {
                sources.insert(
                    id,
                    Source {
                        checkpoint: saved.checkpoint,
                        finished: saved.finished,
                        delivered: saved.delivered,
                        ..Source::default()
                    },
                );
            }
        }
        Self {
            stream: stream.to_owned(),
            sources,
            pending: BTreeMap::new(),
            abandoned: Default::default(),
            ordinal_floors: HashMap::new(),
            released: HashMap::new(),
            inherited: BTreeMap::new(),
            next_object: 0,
            started_at,
            table_schema,
        }
    }

    /// The table schema in force, if the format keeps one.
    pub fn table_schema(&self) -> Option<&TableSchema> {
        self.table_schema.as_ref()
    }

    /// Puts a new version of the table schema in force; it is saved with
    /// the next snapshot.
    pub fn set_table_schema(&mut self, schema: TableSchema) {
        debug_assert!(
            self.table_schema.as_ref().is_none_or(|t| t.version < schema.version),
            "table schema versions only grow"
        );
        self.table_schema = Some(schema);
    }

    /// Sets when reading first started, unless it already is; returns the
    /// value in force and whether this call set it.
    pub fn start_reading_at(&mut self, now: DateTime<Utc>) -> (DateTime<Utc>, bool) {
        match self.started_at {
            Some(at) => (at, false),
            None => {
                self.started_at = Some(now);
                (now, true)
            }
        }
    }

    /// Folds the pending objects of a saved state into it: those that
    /// `exists` says were written become delivered runs; the others are
    /// forgotten, and their records will be read again.
    pub fn settle(mut state: CheckpointState, exists: &HashMap<String, bool>) -> CheckpointState {
        for pending in std::mem::take(&mut state.pending) {
            if !exists.get(&pending.key).copied().unwrap_or(false) {
                continue;
            }
            for SourceRun { source, run } in pending.runs {
                let saved = state.sources.entry(source).or_default();
                if saved.checkpoint.as_ref().is_none_or(|c| &run.last > c) {
                    saved.delivered.push(run);
                }
            }
        }
        for saved in state.sources.values_mut() {
            saved.delivered.sort_by(|a, b| a.first.cmp(&b.first));
        }
        state
    }

    /// Where `source` resumes: after this offset (`None`: from the start).
    pub fn checkpoint(&self, source: &SourceId) -> Option<&Offset> {
        self.sources.get(source).and_then(|s| s.checkpoint.as_ref())
    }

    /// Whether `source` was read to its end and delivered whole.
    pub fn is_finished(&self, source: &SourceId) -> bool {
        self.sources.get(source).is_some_and(|s| s.finished)
    }

    /// Forgets the sources `matches` picks, so that they start afresh.
    pub fn forget_where(&mut self, matches: impl Fn(&SourceId) -> bool) {
        self.sources.retain(|id, _| !matches(id));
    }

    /// Whether the checkpoint holds anything of `source` (it was read, or
    /// marked as having nothing to read).
    pub fn knows(&self, source: &SourceId) -> bool {
        self.sources.contains_key(source)
    }

    /// Every source the checkpoint holds, and whether it is finished.
    pub fn entries(&self) -> BTreeMap<SourceId, bool> {
        self.sources.iter().map(|(id, s)| (id.clone(), s.finished)).collect()
    }

    /// Forgets `sources`, except those with records admitted and not yet
    /// delivered (an object being written names them): returns the ones
    /// forgotten. For entries that no longer say anything (a Kinesis shard
    /// finished and superseded by its children, or past retention), so
    /// that the checkpoint file does not grow forever.
    pub fn forget_idle<'a>(&mut self, sources: impl IntoIterator<Item = &'a SourceId>) -> Vec<SourceId> {
        let mut forgotten = Vec::new();
        for source in sources {
            if self.sources.get(source).is_some_and(|s| s.in_flight.is_empty()) {
                self.sources.remove(source);
                forgotten.push(source.clone());
            }
        }
        forgotten
    }

    /// Admits the next record of `source`, in source order. Returns `None`
    /// when the record is already delivered (at or before the checkpoint, or
    /// in a delivered run): it must be skipped.
    pub fn admit(&mut self, source: &SourceId, offset: &Offset) -> Option<Ticket> {
        self.admit_all([(source, offset)]).pop().flatten()
    }

    /// Admits records in order, looking each source up once per run of
    /// records from it.
    pub fn admit_all<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a SourceId, &'a Offset)>,
    ) -> Vec<Option<Ticket>> {
        self.admit_all_as(
            records
                .into_iter()
                .map(|(source, offset)| (source, offset, Admission::WHOLE)),
        )
    }

    /// Admits records in order, each as its [`Admission`] says: the
    /// outputs of processors (several per source record, or none).
    pub fn admit_all_as<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a SourceId, &'a Offset, Admission)>,
    ) -> Vec<Option<Ticket>> {
        let mut tickets = Vec::new();
        let mut records = records.into_iter().peekable();
        while let Some((source, offset, admission)) = records.next() {
            if self.released.contains_key(source) {
                // Read under a lost lease (see `released`): the new owner
                // reads it again from the lease's checkpoint.
                tickets.push(None);
                while records.next_if(|(next, _, _)| *next == source).is_some() {
                    tickets.push(None);
                }
                continue;
            }
            if !self.sources.contains_key(source) {
                let floor = self.ordinal_floors.get(source).copied().unwrap_or(0);
                self.sources.insert(source.clone(), Source::starting_at(floor));
            }
            let state = self.sources.get_mut(source).expect("inserted");
            tickets.push(state.admit(offset, admission));
            while let Some((_, offset, admission)) = records.next_if(|(next, _, _)| *next == source) {
                tickets.push(state.admit(offset, admission));
            }
        }
        tickets
    }

    /// Notes that `source` has no more records; it becomes finished once
    /// they are all delivered.
    pub fn end_of_input(&mut self, source: &SourceId) {
        if self.released.contains_key(source) {
            // The end of a tenure given up: the new owner reads to it.
            return;
        }
        let state = self.sources.entry(source.clone()).or_default();
        state.input_ended = true;
        state.advance();
    }

    /// Records the intent to write object `key` holding the records
    /// `claims` names. Records of a tenure given up since they were
    /// admitted (their source abandoned, perhaps adopted again) make an
    /// intent abandoned from the start: see [`Self::is_abandoned`].
    pub fn begin_object(&mut self, key: &str, claims: Claims) -> ObjectId {
        let stale = claims.runs.iter().any(|claim| {
            self.sources
                .get(&claim.source)
                .is_none_or(|state| claim.first_ordinal < state.front_ordinal())
        });
        if stale {
            let id = ObjectId(self.next_object);
            self.next_object += 1;
            self.abandoned.insert(id);
            return id;
        }
        let runs = claims
            .runs
            .iter()
            .map(|claim| SourceRun {
                source: claim.source.clone(),
                run: claim.run.clone(),
            })
            .collect();
        if !self.inherited.is_empty() {
            for source in claims.sources() {
                // A redo: its intent replaces the inherited one of its key.
                self.forget_inherited(source, key);
            }
        }
        let id = ObjectId(self.next_object);
        self.next_object += 1;
        let pending = PendingObject {
            key: key.to_owned(),
            runs,
        };
        self.pending.insert(id, (pending, claims));
        id
    }

    /// Points the intent `id` at another key: its records will be written
    /// there instead (as error output, after the first key failed).
    pub fn retarget_object(&mut self, id: ObjectId, key: &str) {
        let (pending, _) = self.pending.get_mut(&id).expect("retargeting an object that was begun");
        pending.key = key.to_owned();
    }

    /// Records that object `id` is written: its records are delivered.
    /// An abandoned object changes nothing: its shard is another
    /// instance's, which redoes the intent under the same key.
    pub fn complete_object(&mut self, id: ObjectId) {
        if self.abandoned.remove(&id) {
            return;
        }
        let (pending, claims) = self.pending.remove(&id).expect("completing an object that was begun");
        // Per source: the object's records, delivered in one pass, and the
        // runs it delivered.
        struct Touched<'a> {
            source: SourceId,
            parts: Vec<spans::Delivered<'a>>,
            runs: Vec<Run>,
        }
        fn of<'t, 'a>(touched: &'t mut Vec<Touched<'a>>, source: &SourceId) -> &'t mut Touched<'a> {
            match touched.iter().position(|t| &t.source == source) {
                Some(at) => &mut touched[at],
                None => {
                    touched.push(Touched {
                        source: source.clone(),
                        parts: Vec::new(),
                        runs: Vec::new(),
                    });
                    touched.last_mut().expect("just pushed")
                }
            }
        }
        let mut touched: Vec<Touched> = Vec::new();
        for claim in &claims.runs {
            of(&mut touched, &claim.source).parts.push(spans::Delivered {
                first: claim.first_ordinal,
                count: claim.count,
                run: &claim.run,
            });
        }
        for SourceRun { source, run } in pending.runs {
            of(&mut touched, &source).runs.push(run);
        }
        for Touched {
            source,
            mut parts,
            runs,
        } in touched
        {
            let state = self.sources.get_mut(&source).expect("admitted source");
            debug_assert!(
                parts.iter().all(|part| part.first >= state.front_ordinal()),
                "a delivered record is not behind the checkpoint"
            );
            parts.sort_unstable_by_key(|part| part.first);
            state.in_flight.deliver(&parts);
            let claimed = parts.iter().map(|part| (part.first, part.first + part.count)).collect();
            state.advance();
            state.merge_delivered(claimed, runs);
        }
    }

    /// The state to persist.
    pub fn snapshot(&self) -> CheckpointState {
        CheckpointState {
            version: STATE_VERSION,
            stream: self.stream.clone(),
            sources: self
                .sources
                .iter()
                .map(|(id, s)| {
                    (
                        id.clone(),
                        SourceState {
                            checkpoint: s.checkpoint.clone(),
                            finished: s.finished,
                            delivered: s.delivered.clone(),
                        },
                    )
                })
                .collect(),
            pending: self
                .pending
                .values()
                .map(|(p, _)| p.clone())
                .chain(self.inherited_pending())
                .collect(),
            started_at: self.started_at,
            table_schema: self.table_schema.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_transforms::SequenceNumber;

    fn off(n: u64) -> Offset {
        Offset::new(SequenceNumber::from_u64(n), 0)
    }

    /// A record admitted: its source, its offset and its ticket.
    type Admitted = (SourceId, Offset, Ticket);

    fn admit_all(tracker: &mut Tracker, source: &SourceId, offsets: &[u64]) -> Vec<Admitted> {
        offsets
            .iter()
            .map(|&n| (source.clone(), off(n), tracker.admit(source, &off(n)).unwrap()))
            .collect()
    }

    /// The claims of these admitted records, in this order.
    fn claims(records: &[Admitted]) -> Claims {
        Claims::of(records.iter().map(|(s, o, t)| (s, o, *t)))
    }

    #[test]
    fn the_first_start_is_set_once_and_kept_across_restarts() {
        let first = chrono::DateTime::from_timestamp_millis(1_790_000_000_000).unwrap();
        let mut tracker = Tracker::new("s", None);
        assert_eq!(tracker.start_reading_at(first), (first, true));
        let later = first + chrono::Duration::seconds(60);
        assert_eq!(tracker.start_reading_at(later), (first, false));
        let saved = tracker.snapshot();
        assert_eq!(saved.started_at, Some(first));
        let json = serde_json::to_string(&saved).unwrap();
        let restarted = Tracker::new("s", Some(serde_json::from_str(&json).unwrap()));
        let mut restarted = restarted;
        assert_eq!(restarted.start_reading_at(later), (first, false));
    }

    #[test]
    fn only_sources_with_nothing_in_flight_are_forgotten() {
        let mut tracker = Tracker::new("s", None);
        let (idle, busy) = (SourceId::new("idle"), SourceId::new("busy"));
        let done = admit_all(&mut tracker, &idle, &[1, 2]);
        let id = tracker.begin_object("k1", claims(&done));
        tracker.complete_object(id);
        tracker.end_of_input(&idle);
        let waiting = admit_all(&mut tracker, &busy, &[1, 2]);
        let open = tracker.begin_object("k2", claims(&waiting));
        assert_eq!(
            tracker.entries(),
            BTreeMap::from([(busy.clone(), false), (idle.clone(), true)])
        );

        assert_eq!(tracker.forget_idle([&idle, &busy]), vec![idle.clone()]);
        assert!(!tracker.knows(&idle));
        assert!(tracker.knows(&busy));
        // The object naming the busy source completes as it would have.
        tracker.complete_object(open);
        assert_eq!(tracker.checkpoint(&busy), Some(&off(2)));
        assert!(!tracker.snapshot().sources.contains_key(&idle));
    }

    #[test]
    fn checkpoint_waits_for_every_earlier_record() {
        let a = SourceId::new("a");
        let mut tracker = Tracker::new("s", None);
        let tickets = admit_all(&mut tracker, &a, &[10, 20, 30, 40]);
        // Records 10 and 30 went to one buffer, 20 and 40 to another.
        let odd = tracker.begin_object("k1", claims(&[tickets[0].clone(), tickets[2].clone()]));
        let even = tracker.begin_object("k2", claims(&[tickets[1].clone(), tickets[3].clone()]));
        assert_eq!(tracker.snapshot().pending.len(), 2);
        tracker.complete_object(even);
        assert_eq!(tracker.checkpoint(&a), None, "record 10 is not delivered yet");
        tracker.complete_object(odd);
        assert_eq!(tracker.checkpoint(&a), Some(&off(40)));
        let snapshot = tracker.snapshot();
        assert!(snapshot.pending.is_empty());
        assert!(
            snapshot.sources[&a].delivered.is_empty(),
            "runs behind the checkpoint are pruned"
        );
    }

    #[test]
    fn runs_follow_consecutive_records_of_each_source() {
        let (a, b) = (SourceId::new("a"), SourceId::new("b"));
        let mut tracker = Tracker::new("s", None);
        let ta = admit_all(&mut tracker, &a, &[1, 2, 3, 4]);
        let tb = admit_all(&mut tracker, &b, &[7, 8]);
        let tickets = vec![
            ta[0].clone(),
            tb[0].clone(),
            ta[1].clone(),
            tb[1].clone(),
            ta[3].clone(),
        ];
        tracker.begin_object("k", claims(&tickets));
        let runs = &tracker.snapshot().pending[0].runs;
        let described: Vec<(String, String, String)> = runs
            .iter()
            .map(|r| {
                (
                    r.source.to_string(),
                    r.run.first.sequence_number.to_string(),
                    r.run.last.sequence_number.to_string(),
                )
            })
            .collect();
        let expected = [("a", "1", "2"), ("b", "7", "8"), ("a", "4", "4")];
        assert_eq!(
            described,
            expected.map(|(s, f, l)| (s.to_string(), f.to_string(), l.to_string()))
        );
    }

    #[test]
    fn after_a_crash_written_objects_are_skipped_and_the_rest_reread() {
        let a = SourceId::new("a");
        let mut first_run = Tracker::new("s", None);
        let tickets = admit_all(&mut first_run, &a, &[1, 2, 3, 4, 5, 6]);
        let written = first_run.begin_object("written", claims(&tickets[2..4]));
        let _lost = first_run.begin_object("never-written", claims(&tickets[0..2]));
        let _ = written;
        // Crash: both intents are saved, one object exists.
        let saved = first_run.snapshot();
        let exists = HashMap::from([("written".to_string(), true), ("never-written".to_string(), false)]);
        let settled = Tracker::settle(saved, &exists);
        assert!(settled.pending.is_empty());
        let mut second_run = Tracker::new("s", Some(settled));
        assert_eq!(second_run.checkpoint(&a), None);
        // Everything is read again; 3 and 4 are skipped.
        let admitted: Vec<u64> = (1..=6).filter(|&n| second_run.admit(&a, &off(n)).is_some()).collect();
        assert_eq!(admitted, [1, 2, 5, 6]);
    }

    #[test]
    fn skipped_records_let_the_checkpoint_move() {
        let a = SourceId::new("a");
        let mut state = CheckpointState {
            version: STATE_VERSION,
            stream: "s".into(),
            ..Default::default()
        };
        state.sources.insert(
            a.clone(),
            SourceState {
                checkpoint: Some(off(1)),
                finished: false,
                delivered: vec![Run {
                    first: off(3),
                    last: off(4),
                }],
            },
        );
        let mut tracker = Tracker::new("s", Some(state));
        assert!(tracker.admit(&a, &off(1)).is_none(), "at the checkpoint");
        let two = tracker.admit(&a, &off(2)).unwrap();
        assert!(tracker.admit(&a, &off(3)).is_none());
        assert!(tracker.admit(&a, &off(4)).is_none());
        let five = tracker.admit(&a, &off(5)).unwrap();
        let id = tracker.begin_object("k", claims(&[(a.clone(), off(2), two)]));
        tracker.complete_object(id);
        assert_eq!(tracker.checkpoint(&a), Some(&off(4)));
        tracker.end_of_input(&a);
        assert!(!tracker.is_finished(&a));
        let id = tracker.begin_object("k2", claims(&[(a.clone(), off(5), five)]));
        tracker.complete_object(id);
        assert!(tracker.is_finished(&a));
        assert!(tracker.snapshot().sources[&a].delivered.is_empty());
    }

    #[test]
    fn delivered_runs_of_interleaved_objects_merge_once_their_neighbours_are_written() {
        // Dynamic partitioning: record 0 in one object, the others dealt
        // between two more. Each record is a run of its own in its
        // object's intent; once both are written, their records are one
        // delivered run (what a save writes), not one per record.
        let a = SourceId::new("a");
        let mut tracker = Tracker::new("s", None);
        let offsets: Vec<u64> = (0..30).collect();
        let tickets = admit_all(&mut tracker, &a, &offsets);
        let first = tracker.begin_object("first", claims(&tickets[..1]));
        let odd: Vec<Admitted> = tickets[1..].iter().step_by(2).cloned().collect();
        let even: Vec<Admitted> = tickets[2..].iter().step_by(2).cloned().collect();
        let odd = tracker.begin_object("odd", claims(&odd));
        let even = tracker.begin_object("even", claims(&even));
        tracker.complete_object(odd);
        assert_eq!(
            tracker.snapshot().sources[&a].delivered.len(),
            15,
            "one run per record so far"
        );
        tracker.complete_object(even);
        assert_eq!(
            tracker.snapshot().sources[&a].delivered,
            [Run {
                first: off(1),
                last: off(29)
            }]
        );
        assert_eq!(tracker.checkpoint(&a), None, "record 0 is not written yet");
        tracker.complete_object(first);
        assert_eq!(tracker.checkpoint(&a), Some(&off(29)));
        assert!(tracker.snapshot().sources[&a].delivered.is_empty());
    }

    proptest::proptest! {
        /// Records of up to three interleaved sources, dealt into objects
        /// (each object's records in source order), objects completed in
        /// any order: an intent's runs hold exactly its records of each
        /// source, and once every object is complete each source's
        /// checkpoint is its last record, with nothing pending.
        #[test]
        fn claims_name_exactly_their_records_and_completion_in_any_order_checkpoints_all(
            sources in proptest::collection::vec(0usize..3, 1..60),
            objects in proptest::collection::vec(0usize..4, 60),
            order in proptest::collection::vec(0usize..4, 4),
        ) {
            let ids = [SourceId::new("a"), SourceId::new("b"), SourceId::new("c")];
            let mut tracker = Tracker::new("s", None);
            let mut next = [1u64; 3];
            let mut dealt: Vec<Vec<Admitted>> = vec![Vec::new(); 4];
            for (i, &source) in sources.iter().enumerate() {
                let offset = off(next[source]);
                next[source] += 1;
                let ticket = tracker.admit(&ids[source], &offset).unwrap();
                dealt[objects[i]].push((ids[source].clone(), offset, ticket));
            }
            let mut begun = Vec::new();
            for (n, records) in dealt.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
                let id = tracker.begin_object(&format!("k{n}"), claims(records));
                let pending = tracker.snapshot().pending.into_iter().find(|p| p.key == format!("k{n}")).unwrap();
                for (source, offset, _) in records {
                    let holding = pending.runs.iter().filter(|r| &r.source == source && r.run.contains(offset)).count();
                    proptest::prop_assert_eq!(holding, 1);
                }
                let named: u64 = pending.runs.iter().map(|r| {
                    records.iter().filter(|(s, o, _)| s == &r.source && r.run.contains(o)).count() as u64
                }).sum();
                proptest::prop_assert_eq!(named, records.len() as u64);
                begun.push(id);
            }
            let mut rest = begun;
            for pick in order {
                if !rest.is_empty() {
                    let id = rest.remove(pick % rest.len());
                    tracker.complete_object(id);
                }
            }
            for id in rest {
                tracker.complete_object(id);
            }
            for (source, next) in ids.iter().zip(next) {
                if next > 1 {
                    proptest::prop_assert_eq!(tracker.checkpoint(source), Some(&off(next - 1)));
                }
            }
            proptest::prop_assert!(tracker.snapshot().pending.is_empty());
        }
    }

    proptest::proptest! {
        /// Records dropped (delivered as they are admitted) among records
        /// dealt into objects completed in any order: each merge of the
        /// delivered runs equals a whole scan's (checked inside
        /// `merge_delivered` in test builds), the runs stay sorted and
        /// apart, and every source ends checkpointed at its last record.
        #[test]
        fn runs_merged_around_new_records_are_a_whole_scans(
            records in proptest::collection::vec((0usize..2, proptest::bool::weighted(0.3), 0usize..5), 1..80),
            order in proptest::collection::vec(0usize..5, 5),
        ) {
            use super::Admission;
            let ids = [SourceId::new("a"), SourceId::new("b")];
            let mut tracker = Tracker::new("s", None);
            let mut next = [1u64; 2];
            let mut dealt: Vec<Vec<Admitted>> = vec![Vec::new(); 5];
            for &(source, done, object) in &records {
                let offset = off(next[source]);
                next[source] += 1;
                let admission = Admission { ends_input: true, done };
                let ticket = tracker.admit_all_as([(&ids[source], &offset, admission)]).pop().flatten();
                match ticket {
                    Some(ticket) => dealt[object].push((ids[source].clone(), offset, ticket)),
                    None => proptest::prop_assert!(done),
                }
            }
            let mut begun: Vec<ObjectId> = dealt
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.is_empty())
                .map(|(n, r)| tracker.begin_object(&format!("k{n}"), claims(r)))
                .collect();
            for pick in order {
                if !begun.is_empty() {
                    let id = begun.remove(pick % begun.len());
                    tracker.complete_object(id);
                    for source in &ids {
                        let runs = &tracker.snapshot().sources.get(source).map(|s| s.delivered.clone()).unwrap_or_default();
                        proptest::prop_assert!(runs.windows(2).all(|w| w[0].last < w[1].first), "sorted and apart: {runs:?}");
                    }
                }
            }
            for id in begun {
                tracker.complete_object(id);
            }
            for (source, next) in ids.iter().zip(next) {
                if next > 1 {
                    proptest::prop_assert_eq!(tracker.checkpoint(source), Some(&off(next - 1)));
                }
            }
        }
    }

    #[test]
    fn the_checkpoint_stops_only_after_the_last_output_of_a_source_record() {
        use super::Admission;
        let mut tracker = Tracker::new("s", None);
        let source = SourceId::new("a");
        let outputs: Vec<Offset> = (0..3).map(|n| off(5).with_output(n)).collect();
        let admissions = [
            Admission {
                ends_input: false,
                done: false,
            },
            Admission {
                ends_input: false,
                done: false,
            },
            Admission::WHOLE,
        ];
        let tickets = tracker.admit_all_as(outputs.iter().zip(admissions).map(|(o, a)| (&source, o, a)));
        // Outputs 0 and 1 delivered, 2 not: the source record is not done.
        let claims = Claims::of([
            (&source, &outputs[0], tickets[0].unwrap()),
            (&source, &outputs[1], tickets[1].unwrap()),
        ]);
        let id = tracker.begin_object("k", claims);
        tracker.complete_object(id);
        assert_eq!(tracker.checkpoint(&source), None);
        // A dropped record after it waits too, then both pass at once.
        let dropped = off(6);
        assert_eq!(
            tracker.admit_all_as([(
                &source,
                &dropped,
                Admission {
                    ends_input: true,
                    done: true
                }
            )]),
            [None]
        );
        assert_eq!(tracker.checkpoint(&source), None);
        let id = tracker.begin_object("k2", Claims::of([(&source, &outputs[2], tickets[2].unwrap())]));
        tracker.complete_object(id);
        assert_eq!(tracker.checkpoint(&source), Some(&dropped));
    }
}
