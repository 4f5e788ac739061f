//! Which records go into the next PutRecords call, so that per partition
//! key the records arrive in the target stream in the order they were read.
//!
//! PutRecords may write some entries of a call and fail others (throttled
//! shards, internal failures). If a call held two records of one key and
//! the first failed while the second was written, resending the first
//! would put it after the second: a write cannot be taken back. So a call
//! never holds two records of one key: a key's next record is sent only
//! once every earlier record of that key is settled (written, or given up
//! into the error output). Records of different keys have no order between
//! them and share calls freely.
//!
//! The cost is with few keys: a window of 500 records of 10 keys takes at
//! least 50 calls. (`SequenceNumberForOrdering` belongs to PutRecord, one
//! record per call, which is slower still.) With `partition_key =
//! "random"` every record has a key of its own and calls are full.
//!
//! This is a pure state machine (no I/O, no clock): the delivery asks for
//! a call, sends it, and settles each entry with its outcome.

use std::collections::HashSet;

/// The records of one window, by index, and which are still to be sent.
#[derive(Debug)]
pub struct Schedule {
    keys: Vec<String>,
    sizes: Vec<usize>,
    /// Indices not yet settled, in window order.
    pending: Vec<usize>,
}

impl Schedule {
    /// A schedule of records with these partition keys and request sizes
    /// (data plus key bytes), in order.
    pub fn new(records: impl IntoIterator<Item = (String, usize)>) -> Self {
        let (keys, sizes): (Vec<String>, Vec<usize>) = records.into_iter().unzip();
        let pending = (0..keys.len()).collect();
        Self { keys, sizes, pending }
    }

    pub fn key(&self, index: usize) -> &str {
        &self.keys[index]
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// The records of the next call, in window order: for each key, its
    /// first unsettled record, while they fit in `max_records` and
    /// `max_bytes` (the first always goes, whatever its size: a record over
    /// a call's limit is refused before it gets here).
    pub fn next_call(&self, max_records: usize, max_bytes: usize) -> Vec<usize> {
        let mut call = Vec::new();
        let mut bytes = 0;
        // Keys whose first unsettled record was seen (sent or not): their
        // later records wait.
        let mut seen: HashSet<&str> = HashSet::new();
        for &index in &self.pending {
            if call.len() == max_records {
                break;
            }
            if !seen.insert(&self.keys[index]) {
                continue;
            }
            let size = self.sizes[index];
            if !call.is_empty() && bytes + size > max_bytes {
                continue;
            }
            bytes += size;
            call.push(index);
        }
        call
    }

    /// Settles a record: written, or given up. Only a record that is the
    /// first unsettled one of its key may be settled.
    pub fn settle(&mut self, index: usize) {
        let at = self
            .pending
            .iter()
            .position(|&i| i == index)
            .expect("only pending records are settled");
        debug_assert!(
            self.pending[..at].iter().all(|&i| self.keys[i] != self.keys[index]),
            "a record settled before an earlier one of its key"
        );
        self.pending.remove(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schedule(keys: &[&str]) -> Schedule {
        Schedule::new(keys.iter().map(|k| (k.to_string(), 10)))
    }

    #[test]
    fn a_call_holds_one_record_per_key_and_keeps_the_rest_in_order() {
        let mut s = schedule(&["a", "b", "a", "c", "b", "a"]);
        assert_eq!(s.next_call(500, 1 << 20), [0, 1, 3]);
        // "a" failed, "b" and "c" were written: "a" goes again, then "b"'s
        // next record; "a"'s later ones still wait.
        s.settle(1);
        s.settle(3);
        assert_eq!(s.next_call(500, 1 << 20), [0, 4]);
        s.settle(0);
        s.settle(4);
        assert_eq!(s.next_call(500, 1 << 20), [2]);
        s.settle(2);
        assert_eq!(s.next_call(500, 1 << 20), [5]);
        s.settle(5);
        assert!(s.is_done());
    }

    #[test]
    fn calls_stay_within_their_limits() {
        let s = Schedule::new((0..10).map(|i| (format!("k{i}"), 300)));
        assert_eq!(s.next_call(3, 1 << 20), [0, 1, 2]);
        assert_eq!(s.next_call(500, 1000), [0, 1, 2]);
        // A record larger than the limit still goes, alone.
        let big = Schedule::new([("a".to_string(), 5000), ("b".to_string(), 10)]);
        assert_eq!(big.next_call(500, 1000), [0]);
    }

    proptest! {
        /// Whatever fails when, each record is written once or given up,
        /// and per key the written ones arrive in window order.
        #[test]
        fn per_key_order_holds_whatever_fails(
            keys in proptest::collection::vec(0u8..6, 1..120),
            outcomes in proptest::collection::vec(0u8..10, 1..400),
            max_records in 1usize..20,
        ) {
            let mut s = Schedule::new(keys.iter().map(|k| (k.to_string(), 1)));
            let mut stream: Vec<usize> = Vec::new();
            let mut given_up: Vec<usize> = Vec::new();
            let mut outcomes = outcomes.iter().cycle();
            let mut failures = vec![0; keys.len()];
            let mut calls = 0;
            while !s.is_done() {
                calls += 1;
                prop_assert!(calls < 10_000, "no progress");
                let call = s.next_call(max_records, usize::MAX);
                prop_assert!(!call.is_empty());
                for index in call {
                    match outcomes.next().unwrap() {
                        0..=5 => { stream.push(index); s.settle(index); }
                        6 => { given_up.push(index); s.settle(index); }
                        // Failed: sent again later, or given up past its
                        // retry duration.
                        _ if failures[index] == 3 => { given_up.push(index); s.settle(index); }
                        _ => failures[index] += 1,
                    }
                }
            }
            let mut all: Vec<usize> = stream.iter().chain(&given_up).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..keys.len()).collect::<Vec<_>>());
            for key in 0u8..6 {
                let written: Vec<usize> = stream.iter().copied().filter(|&i| keys[i] == key).collect();
                let mut sorted = written.clone();
                sorted.sort_unstable();
                prop_assert_eq!(written, sorted, "key {} out of order", key);
            }
        }
    }
}
