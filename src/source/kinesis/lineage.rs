//! Which shards the checkpoint file may forget, and how a shard it forgot
//! is told from one never read.
//!
//! Every reshard adds shards, and each shard read leaves an entry in the
//! checkpoint file: kept forever, the file (saved after every object)
//! would grow with every split and merge. Two kinds of entry can go:
//!
//! - a shard the stream no longer lists: past retention, it can never be
//!   read again, and a child whose parent is not listed does not wait for
//!   it;
//! - a finished shard with a descendant that was read. A shard is read
//!   only once each of its parents is finished, and that is saved first,
//!   so a child that left an entry proves its parents finished (and so on
//!   up its ancestry) without their own entries.
//!
//! At the next start, a listed shard without an entry is finished (and not
//! read again) when one of its descendants has an entry; otherwise it was
//! never read. The rule needs no record of what was forgotten, so the file
//! holds about one entry per open shard, whatever the history of the
//! stream.

use std::collections::{BTreeMap, BTreeSet};

/// The listed shards' children.
pub struct Lineage {
    children: BTreeMap<String, Vec<String>>,
}

impl Lineage {
    /// The lineage of the shards as listed: `(shard, its parents)`.
    pub fn of<'a>(shards: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (shard, parents) in shards {
            for parent in parents {
                children.entry(parent.clone()).or_default().push(shard.to_owned());
            }
        }
        Self { children }
    }

    /// Whether `shard` is known to be finished from its descendants: one of
    /// them was read (`has_entry`), which only happens after `shard` was
    /// finished. True of a finished shard whose entry may go, and of a shard
    /// whose entry went.
    pub fn finished_by_descendants(&self, shard: &str, has_entry: &dyn Fn(&str) -> bool) -> bool {
        let mut seen = BTreeSet::new();
        let mut below: Vec<&str> = self.children_of(shard).collect();
        while let Some(next) = below.pop() {
            if !seen.insert(next) {
                continue;
            }
            if has_entry(next) {
                return true;
            }
            below.extend(self.children_of(next));
        }
        false
    }

    fn children_of(&self, shard: &str) -> impl Iterator<Item = &str> {
        self.children.get(shard).into_iter().flatten().map(String::as_str)
    }
}

/// The entries to forget: of the shards in the checkpoint (`entries`:
/// shard → finished), those the stream no longer lists, and the finished
/// ones with a descendant that has an entry which stays. `listed` is a
/// complete listing of the stream's shards.
pub fn to_forget(entries: &BTreeMap<String, bool>, listed: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    // An empty listing is not a stream whose shards all expired (a stream
    // always has an open shard): forget nothing on it.
    if listed.is_empty() {
        return BTreeSet::new();
    }
    let lineage = Lineage::of(listed.iter().map(|(id, parents)| (id.as_str(), parents.as_slice())));
    let has_entry = |shard: &str| entries.contains_key(shard);
    entries
        .iter()
        .filter(|(shard, finished)| {
            !listed.contains_key(shard.as_str()) || (**finished && lineage.finished_by_descendants(shard, &has_entry))
        })
        .map(|(shard, _)| shard.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(shards: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        shards
            .iter()
            .map(|(id, parents)| (id.to_string(), parents.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    fn entries(of: &[(&str, bool)]) -> BTreeMap<String, bool> {
        of.iter().map(|(id, finished)| (id.to_string(), *finished)).collect()
    }

    #[test]
    fn a_finished_parent_goes_once_a_child_is_read_and_counts_as_finished_after() {
        // s0 split into s1 and s2; s1 and s2 merged into s3.
        let listed = listing(&[("s0", &[]), ("s1", &["s0"]), ("s2", &["s0"]), ("s3", &["s1", "s2"])]);
        // s0 finished, its children not read yet: it stays.
        let before = entries(&[("s0", true)]);
        assert!(to_forget(&before, &listed).is_empty());
        // s1 read: s0 may go; s1 is not finished, it stays.
        let read = entries(&[("s0", true), ("s1", false)]);
        assert_eq!(to_forget(&read, &listed), BTreeSet::from(["s0".to_owned()]));
        // Both finished and the merge child read: all three go at once,
        // each proved by s3.
        let merged = entries(&[("s0", true), ("s1", true), ("s2", true), ("s3", false)]);
        let gone = to_forget(&merged, &listed);
        assert_eq!(gone, BTreeSet::from(["s0".into(), "s1".into(), "s2".into()]));

        // After a restart, each forgotten shard is finished, and the
        // child with an entry is not.
        let left = entries(&[("s3", false)]);
        let lineage = Lineage::of(listed.iter().map(|(id, p)| (id.as_str(), p.as_slice())));
        let has_entry = |shard: &str| left.contains_key(shard);
        for shard in ["s0", "s1", "s2"] {
            assert!(lineage.finished_by_descendants(shard, &has_entry), "{shard}");
        }
        assert!(!lineage.finished_by_descendants("s3", &has_entry));
    }

    #[test]
    fn a_parent_stays_while_only_the_other_parent_of_a_merge_is_finished() {
        let listed = listing(&[("s1", &[]), ("s2", &[]), ("s3", &["s1", "s2"])]);
        let state = entries(&[("s1", true), ("s2", false)]);
        assert!(to_forget(&state, &listed).is_empty());
        // Without any entry below it, a shard is not known to be finished:
        // a new checkpoint reads every shard.
        let lineage = Lineage::of(listed.iter().map(|(id, p)| (id.as_str(), p.as_slice())));
        assert!(!lineage.finished_by_descendants("s1", &|_| false));
    }

    #[test]
    fn shards_the_stream_no_longer_lists_go_finished_or_not() {
        let listed = listing(&[("s3", &["s1", "s2"])]);
        let state = entries(&[("s1", true), ("s2", false), ("s3", false)]);
        assert_eq!(
            to_forget(&state, &listed),
            BTreeSet::from(["s1".to_owned(), "s2".to_owned()])
        );
        // An empty listing forgets nothing.
        assert!(to_forget(&state, &BTreeMap::new()).is_empty());
    }
}
