//! A source's records in flight (admitted, not yet behind its checkpoint),
//! held as spans of consecutive records rather than one entry each: a
//! buffer's records are admitted one after another and delivered together,
//! so a span covers what an object covers (issue #17: the entry per record
//! was 40 bytes, 25 MB at the peak of a 64 MB Parquet buffer of products).
//!
//! A span is all delivered or none. Spans are split only where an object's
//! records begin or end, and a split's outer side does not know its offset
//! there: it is not needed until those records are delivered, and the
//! object that delivers them names it (a record is in one object, so the
//! object holding the record beside a split ends or begins right there).
//! So every delivered span knows its first and last offsets.
//!
//! An object's records are marked delivered in one pass over the spans
//! from its first record to its last: with dynamic partitioning an
//! object's records are scattered among other partitions', and a look-up
//! and a split per record cost more than the walk.

use std::collections::VecDeque;

use spillway_transforms::record::Offset;

use super::super::state::Run;

/// Which records of a span end their source record ([`super::Admission`]'s
/// `ends_input`): only after such a record may the checkpoint stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    /// Every one (records as the source read them).
    All,
    /// None (outputs of a source record before its last).
    None,
    /// The last one, and no other: the outputs of one source record. A
    /// delivered span joined from two (see [`Span::joins`]) may hold
    /// others; only its last record counts then, since it is never split.
    Last,
}

impl Ends {
    fn of(ends_input: bool) -> Self {
        if ends_input {
            Ends::All
        } else {
            Ends::None
        }
    }

    /// Whether its last record ends a source record.
    fn at_last(self) -> bool {
        self != Ends::None
    }
}

#[derive(Debug)]
struct Span {
    first_ordinal: u64,
    count: u64,
    delivered: bool,
    ends: Ends,
    /// Known from admission, or from the object that delivered the span;
    /// `None` only on an undelivered span's side of a split.
    first: Option<Offset>,
    last: Option<Offset>,
}

impl Span {
    fn end(&self) -> u64 {
        self.first_ordinal + self.count
    }

    /// Cuts the span before record `at`; returns the rest.
    fn split_off(&mut self, at: u64) -> Span {
        debug_assert!(
            self.first_ordinal < at && at < self.end() && !self.delivered,
            "split inside an undelivered span"
        );
        let (left, right) = match self.ends {
            Ends::All => (Ends::All, Ends::All),
            Ends::None => (Ends::None, Ends::None),
            Ends::Last => (Ends::None, Ends::Last),
        };
        let rest = Span {
            first_ordinal: at,
            count: self.end() - at,
            delivered: false,
            ends: right,
            first: None,
            last: self.last.take(),
        };
        self.count = at - self.first_ordinal;
        self.ends = left;
        rest
    }

    /// Whether `next`, the span after this one, may become part of it:
    /// both delivered, and no place where the checkpoint may stop lost
    /// (`next` ends with a record that ends its source record, or neither
    /// holds one).
    fn joins(&self, next: &Span) -> bool {
        self.delivered
            && next.delivered
            && (next.ends.at_last() || (self.ends == Ends::None && next.ends == Ends::None))
    }

    fn join(&mut self, next: Span) {
        self.ends = match (self.ends, next.ends) {
            (Ends::All, Ends::All) => Ends::All,
            (Ends::None, Ends::None) => Ends::None,
            _ => Ends::Last,
        };
        self.count += next.count;
        self.last = next.last;
    }
}

/// Records `first ..` (`count` of them) of one object, from `run.first` to
/// `run.last`.
pub(super) struct Delivered<'a> {
    pub first: u64,
    pub count: u64,
    pub run: &'a Run,
}

/// The records in flight of one source, by ordinal.
#[derive(Debug, Default)]
pub(super) struct Spans {
    /// In order, each starting where the one before ends.
    spans: VecDeque<Span>,
    /// The ordinal of the first record in flight (of the next one admitted
    /// when none is).
    front: u64,
    /// The spans after those [`Self::deliver`] walks, set aside meanwhile
    /// (the list is kept for the next object).
    after: Vec<Span>,
    /// What the spans must equal, record by record (the entry per record
    /// that they replaced), checked after every change in test builds.
    #[cfg(test)]
    model: model::Model,
}

impl Spans {
    pub fn starting_at(ordinal: u64) -> Self {
        Self {
            front: ordinal,
            #[cfg(test)]
            model: model::Model::starting_at(ordinal),
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The ordinal of the first record in flight.
    pub fn front(&self) -> u64 {
        self.front
    }

    /// Adds record `ordinal` (the one after the last added), at `offset`.
    pub fn push(&mut self, ordinal: u64, offset: &Offset, delivered: bool, ends_input: bool) {
        #[cfg(test)]
        self.model.push(ordinal, offset, delivered, ends_input);
        if let Some(span) = self.spans.back_mut() {
            debug_assert_eq!(span.end(), ordinal, "records are added in order");
            debug_assert!(
                span.last.as_ref().is_none_or(|last| last < offset),
                "records admitted out of order: {offset:?} after {:?}",
                span.last
            );
            let ends = match (span.ends, ends_input) {
                (Ends::All, true) => Some(Ends::All),
                (Ends::None, false) => Some(Ends::None),
                (Ends::None, true) => Some(Ends::Last),
                _ => None,
            };
            if let Some(ends) = ends.filter(|_| span.delivered == delivered) {
                span.count += 1;
                span.ends = ends;
                span.last = Some(offset.clone());
                return;
            }
        } else {
            debug_assert_eq!(self.front, ordinal, "records are added in order");
        }
        self.spans.push_back(Span {
            first_ordinal: ordinal,
            count: 1,
            delivered,
            ends: Ends::of(ends_input),
            first: Some(offset.clone()),
            last: Some(offset.clone()),
        });
    }

    /// Where the span holding record `ordinal` is (or would be).
    fn index_of(&self, ordinal: u64) -> usize {
        self.spans.partition_point(|span| span.end() <= ordinal)
    }

    /// Marks the records of one object delivered: `objects`, sorted by
    /// ordinal, all in flight and none delivered yet. Spans are cut where
    /// the object's records begin and end, and delivered neighbours joined,
    /// in one pass from the span before its first record to the one after
    /// its last.
    pub fn deliver(&mut self, object: &[Delivered]) {
        let (Some(head), Some(tail)) = (object.first(), object.last()) else {
            return;
        };
        #[cfg(test)]
        for part in object {
            self.model.deliver(part.first, part.count);
        }
        let from = self.index_of(head.first).saturating_sub(1);
        let to = (self.index_of(tail.first + tail.count - 1) + 2).min(self.spans.len());
        let mut after = std::mem::take(&mut self.after);
        after.extend(self.spans.drain(to..));
        // The walked spans go to the front, those before them to the back,
        // after which the walk puts what it makes of them: with dynamic
        // partitioning they are most of the spans, and a second list of
        // them doubled the tracker's memory.
        let walked = self.spans.len() - from;
        self.spans.rotate_left(from);
        let mut joins = from > 0;
        let mut parts = object.iter().peekable();
        for _ in 0..walked {
            let mut span = self.spans.pop_front().expect("the walked spans are at the front");
            loop {
                // Parts ending before this span were delivered in earlier ones.
                while parts
                    .peek()
                    .is_some_and(|part| part.first + part.count <= span.first_ordinal)
                {
                    parts.next();
                }
                let Some(part) = parts.peek().filter(|part| part.first < span.end()) else {
                    self.emit(span, &mut joins);
                    break;
                };
                if part.first > span.first_ordinal {
                    let rest = span.split_off(part.first);
                    self.emit(span, &mut joins);
                    span = rest;
                }
                let part_end = part.first + part.count;
                let rest = (part_end < span.end()).then(|| span.split_off(part_end));
                debug_assert!(!span.delivered, "a record is delivered once");
                span.delivered = true;
                if span.first_ordinal == part.first {
                    span.first = Some(part.run.first.clone());
                }
                if span.end() == part_end {
                    span.last = Some(part.run.last.clone());
                }
                self.emit(span, &mut joins);
                match rest {
                    Some(rest) => span = rest,
                    None => break,
                }
            }
        }
        self.spans.extend(after.drain(..));
        self.after = after;
        #[cfg(test)]
        self.check();
    }

    /// Puts `span` after the last span, joined to it where it can be
    /// (`joins`: the last span is one the walk may join to, not one it
    /// has yet to walk).
    fn emit(&mut self, span: Span, joins: &mut bool) {
        match self.spans.back_mut() {
            Some(last) if *joins && last.joins(&span) => last.join(span),
            _ => self.spans.push_back(span),
        }
        *joins = true;
    }

    /// Takes the delivered records at the front out of flight; returns
    /// the offset of the last of them that ends a source record, if one
    /// does: where the checkpoint may move.
    pub fn pop_delivered(&mut self) -> Option<Offset> {
        let mut checkpoint = None;
        while self.spans.front().is_some_and(|span| span.delivered) {
            let span = self.spans.pop_front().expect("a span is there");
            self.front = span.end();
            if span.ends.at_last() {
                checkpoint = Some(span.last.expect("a delivered span knows its last offset"));
            }
        }
        #[cfg(test)]
        {
            assert_eq!(self.model.pop_delivered(), checkpoint, "the checkpoint of the records");
            self.check();
        }
        checkpoint
    }

    /// The runs of delivered records in flight that hold a record of one
    /// of the ordinal ranges `[first, end)` (sorted by `first`): each run
    /// as long as the delivered records around it go.
    pub fn delivered_around(&self, ranges: &[(u64, u64)]) -> Vec<Run> {
        let mut runs = Vec::new();
        let mut walked_to = self.front;
        for &(first, end) in ranges {
            let first = first.max(walked_to);
            if first >= end {
                continue;
            }
            let mut at = self.index_of(first);
            while at < self.spans.len() && self.spans[at].first_ordinal < end {
                if !self.spans[at].delivered {
                    at += 1;
                    continue;
                }
                let mut a = at;
                while a > 0 && self.spans[a - 1].delivered {
                    a -= 1;
                }
                let mut b = at;
                while b + 1 < self.spans.len() && self.spans[b + 1].delivered {
                    b += 1;
                }
                runs.push(Run {
                    first: self.spans[a]
                        .first
                        .clone()
                        .expect("a delivered span knows its first offset"),
                    last: self.spans[b]
                        .last
                        .clone()
                        .expect("a delivered span knows its last offset"),
                });
                walked_to = self.spans[b].end();
                at = b + 1;
            }
        }
        runs
    }

    /// The runs of every delivered record in flight, found by a scan of
    /// the model (what `delivered_around` must agree with).
    #[cfg(test)]
    pub fn delivered_by_scan(&self) -> Vec<Run> {
        self.model.delivered_runs()
    }

    /// The spans, record by record, against the model.
    #[cfg(test)]
    fn check(&self) {
        let records = &self.model.records;
        assert_eq!(self.front, self.model.front, "the first ordinal in flight");
        let mut at = 0usize;
        for span in &self.spans {
            assert_eq!(
                span.first_ordinal,
                self.front + at as u64,
                "spans follow each other: {:?}",
                self.spans
            );
            let of: Vec<&model::Record> = records.range(at..at + span.count as usize).collect();
            assert!(
                of.iter().all(|r| r.delivered == span.delivered),
                "delivered as the span says"
            );
            match (span.ends, span.delivered) {
                (Ends::All, false) => assert!(of.iter().all(|r| r.ends_input)),
                (Ends::None, _) => assert!(of.iter().all(|r| !r.ends_input)),
                (Ends::Last, false) => {
                    assert!(of[..of.len() - 1].iter().all(|r| !r.ends_input) && of[of.len() - 1].ends_input)
                }
                (_, true) => assert!(of[of.len() - 1].ends_input),
            }
            if span.delivered {
                assert!(
                    span.first.is_some() && span.last.is_some(),
                    "a delivered span knows its offsets"
                );
            }
            if let Some(first) = &span.first {
                assert_eq!(first, &of[0].offset, "the span's first offset");
            }
            if let Some(last) = &span.last {
                assert_eq!(last, &of[of.len() - 1].offset, "the span's last offset");
            }
            at += span.count as usize;
        }
        assert_eq!(at, records.len(), "the spans hold every record in flight");
    }
}

#[cfg(test)]
mod tests {
    use spillway_transforms::record::{Offset, SequenceNumber};

    use super::{Delivered, Run, Spans};

    fn off(n: u64) -> Offset {
        Offset::new(SequenceNumber::from_u64(n), 0)
    }

    /// The ordinal ranges `[first, end)` of consecutive records of `object`.
    fn claims(objects: &[Option<usize>], object: usize) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (ordinal, _) in objects.iter().enumerate().filter(|(_, o)| **o == Some(object)) {
            let ordinal = ordinal as u64;
            match ranges.last_mut() {
                Some((_, end)) if *end == ordinal => *end += 1,
                _ => ranges.push((ordinal, ordinal + 1)),
            }
        }
        ranges
    }

    fn deliver(spans: &mut Spans, ranges: &[(u64, u64)]) {
        let runs: Vec<Run> = ranges
            .iter()
            .map(|&(first, end)| Run {
                first: off(first),
                last: off(end - 1),
            })
            .collect();
        let object: Vec<Delivered> = ranges
            .iter()
            .zip(&runs)
            .map(|(&(first, end), run)| Delivered {
                first,
                count: end - first,
                run,
            })
            .collect();
        spans.deliver(&object);
    }

    /// The most a record in flight costs: a span of its own. Its share is far less when an object's records come one after
    /// another; with dynamic partitioning, or error records among the
    /// data, objects interleave record by record, and until the objects
    /// around them are delivered too each record can be a span
    /// (`crate::buffer::TRACKER_SHARE` counts 40 bytes).
    #[test]
    fn a_span_takes_104_bytes() {
        assert_eq!(std::mem::size_of::<super::Span>(), 104);
    }

    #[test]
    fn a_buffers_records_are_one_span() {
        let mut spans = Spans::starting_at(0);
        for n in 0..30_000 {
            spans.push(n, &off(n), false, true);
        }
        assert_eq!(spans.spans.len(), 1);
        // Three buffers' objects, the last two written first.
        let objects: Vec<Option<usize>> = (0..30_000).map(|n| Some(n / 10_000)).collect();
        deliver(&mut spans, &claims(&objects, 2));
        deliver(&mut spans, &claims(&objects, 1));
        assert_eq!(
            spans.spans.len(),
            2,
            "the undelivered first buffer and the two delivered, joined"
        );
        assert_eq!(spans.pop_delivered(), None);
        deliver(&mut spans, &claims(&objects, 0));
        assert_eq!(spans.pop_delivered(), Some(off(29_999)));
        assert!(spans.is_empty());
        assert_eq!(spans.front(), 30_000);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Records of up to four interleaved objects (or delivered when
        /// admitted), some outputs that do not end their source record,
        /// objects written in any order: after every object the spans
        /// equal the record-by-record model (checked inside), the
        /// checkpoint is the model's, and the runs around the object are
        /// the model's runs that hold its records.
        #[test]
        fn spans_keep_what_one_entry_per_record_kept(
            records in proptest::collection::vec((0usize..5, proptest::bool::weighted(0.7)), 1..120),
            shuffle in proptest::collection::vec(0usize..4, 4),
        ) {
            let mut order = vec![0usize, 1, 2, 3];
            for (i, j) in shuffle.into_iter().enumerate() {
                order.swap(i, j);
            }
            let mut spans = Spans::starting_at(0);
            let objects: Vec<Option<usize>> =
                records.iter().map(|&(object, _)| (object < 4).then_some(object)).collect();
            for (ordinal, &(object, ends_input)) in records.iter().enumerate() {
                let ordinal = ordinal as u64;
                spans.push(ordinal, &off(ordinal), object == 4, ends_input);
            }
            spans.pop_delivered();
            for object in order {
                let ranges = claims(&objects, object);
                deliver(&mut spans, &ranges);
                let around = spans.delivered_around(&ranges);
                let expected: Vec<Run> = spans
                    .delivered_by_scan()
                    .into_iter()
                    .filter(|run| {
                        ranges.iter().any(|&(first, end)| {
                            first.max(spans.front()) < end && run.first <= off(end - 1) && off(first.max(spans.front())) <= run.last
                        })
                    })
                    .collect();
                proptest::prop_assert_eq!(around, expected);
                spans.pop_delivered();
            }
            // Every object is written: no record is left in flight.
            proptest::prop_assert!(spans.is_empty());
            proptest::prop_assert_eq!(spans.front(), records.len() as u64);
        }
    }
}

/// One entry per record in flight: what the tracker kept before spans.
#[cfg(test)]
mod model {
    use std::collections::VecDeque;

    use spillway_transforms::record::Offset;

    use super::Run;

    #[derive(Debug)]
    pub struct Record {
        pub offset: Offset,
        pub delivered: bool,
        pub ends_input: bool,
    }

    #[derive(Debug, Default)]
    pub struct Model {
        pub records: VecDeque<Record>,
        pub front: u64,
    }

    impl Model {
        pub fn starting_at(ordinal: u64) -> Self {
            Self {
                records: VecDeque::new(),
                front: ordinal,
            }
        }

        pub fn push(&mut self, ordinal: u64, offset: &Offset, delivered: bool, ends_input: bool) {
            assert_eq!(self.front + self.records.len() as u64, ordinal);
            self.records.push_back(Record {
                offset: offset.clone(),
                delivered,
                ends_input,
            });
        }

        pub fn deliver(&mut self, first: u64, count: u64) {
            let start = (first - self.front) as usize;
            for record in self.records.range_mut(start..start + count as usize) {
                assert!(!record.delivered);
                record.delivered = true;
            }
        }

        pub fn pop_delivered(&mut self) -> Option<Offset> {
            let mut checkpoint = None;
            while self.records.front().is_some_and(|r| r.delivered) {
                let record = self.records.pop_front().expect("exists");
                self.front += 1;
                if record.ends_input {
                    checkpoint = Some(record.offset);
                }
            }
            checkpoint
        }

        pub fn delivered_runs(&self) -> Vec<Run> {
            let mut runs = Vec::new();
            let mut start: Option<usize> = None;
            let close = |first: usize, last: usize| Run {
                first: self.records[first].offset.clone(),
                last: self.records[last].offset.clone(),
            };
            for (at, record) in self.records.iter().enumerate() {
                match (start, record.delivered) {
                    (None, true) => start = Some(at),
                    (Some(first), false) => {
                        runs.push(close(first, at - 1));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(first) = start {
                runs.push(close(first, self.records.len() - 1));
            }
            runs
        }
    }
}
