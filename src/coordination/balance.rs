//! Which leases an instance takes in one round, as the KCL decides: leases
//! nobody can prove they hold (expired or released) first, up to this
//! instance's share; when there are none and it holds fewer than its
//! share, one lease from the most loaded instance. A shard split from or
//! merged from others is taken only once every parent has ended.
//!
//! Unlike the KCL, a steal never takes a lease whose owner is writing an
//! object of it (a pending intent in the lease as listed): the new owner
//! would have to redo that object while the old one may still put it.
//! The take is conditional on the counter as listed, and every intent the
//! owner saves moves the counter, so a lease stolen holds no intent.
//!
//! Pure: the caller reads the table, says which leases are expired
//! ([`super::expiry::Observer`]) and makes the fenced takes; two instances
//! that pick the same lease race on its counter and one of them loses.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Lease;

/// A lease to take, and the counter the take is conditional on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Take {
    pub shard: String,
    pub counter: u64,
    /// Taken from a live instance rather than picked up.
    pub steal: bool,
}

/// The leases `me` should try to take now. `expired` says whether a lease
/// held by someone else may be taken without stealing.
pub fn plan(leases: &[Lease], me: &str, expired: impl Fn(&Lease) -> bool) -> Vec<Take> {
    let ended: HashMap<&str, bool> = leases.iter().map(|l| (l.shard.as_str(), l.ended)).collect();
    // A parent the table no longer has was trimmed past retention: done.
    let readable = |l: &Lease| !l.ended && l.parents.iter().all(|p| ended.get(p.as_str()).copied().unwrap_or(true));
    let eligible: Vec<&Lease> = leases.iter().filter(|l| readable(l)).collect();
    if eligible.is_empty() {
        return vec![];
    }
    let free = |l: &Lease| !l.held_by(me) && expired(l);
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for lease in eligible.iter().filter(|l| !free(l)) {
        if let Some(owner) = &lease.owner {
            *load.entry(owner.as_str()).or_default() += 1;
        }
    }
    let workers: HashSet<&str> = load.keys().copied().chain([me]).collect();
    let target = eligible.len().div_ceil(workers.len());
    let mine = load.get(me).copied().unwrap_or(0);
    if mine >= target {
        return vec![];
    }

    let mut available: Vec<&Lease> = eligible.iter().copied().filter(|l| free(l)).collect();
    if !available.is_empty() {
        // Start at a place of our own so that instances starting together
        // do not all race for the same first lease.
        available.sort_by(|a, b| a.shard.cmp(&b.shard));
        let start = spread(me) % available.len();
        available.rotate_left(start);
        return available
            .into_iter()
            .take(target - mine)
            .map(|l| Take {
                shard: l.shard.clone(),
                counter: l.counter,
                steal: false,
            })
            .collect();
    }

    // Nothing free: one lease from the most loaded instance, when that
    // evens the load (it holds at least two more than we do).
    let Some((busiest, most)) = load
        .iter()
        .filter(|(owner, _)| **owner != me)
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
    else {
        return vec![];
    };
    if *most < mine + 2 {
        return vec![];
    }
    eligible
        .iter()
        .filter(|l| l.owner.as_deref() == Some(busiest) && !writing(l))
        .max_by(|a, b| a.shard.cmp(&b.shard))
        .map(|l| {
            vec![Take {
                shard: l.shard.clone(),
                counter: l.counter,
                steal: true,
            }]
        })
        .unwrap_or_default()
}

/// Whether the lease's state holds a pending intent: its owner is writing
/// an object of its records. An unreadable state counts as one.
fn writing(lease: &Lease) -> bool {
    let Some(text) = &lease.state else {
        return false;
    };
    let shard = spillway_transforms::SourceId::new(lease.shard.as_str());
    crate::checkpoint::shard::ShardState::from_json(&shard, text).map_or(true, |state| !state.pending.is_empty())
}

fn spread(worker: &str) -> usize {
    worker
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lease(shard: usize, owner: Option<&str>) -> Lease {
        Lease {
            shard: format!("shardId-{shard:012}"),
            owner: owner.map(Into::into),
            counter: 0,
            state: None,
            parents: vec![],
            ended: false,
            renewed_at: None,
        }
    }

    /// Rounds of planning and taking by `workers` in the order `turns`
    /// gives, with each take applied only when its counter still matches
    /// (as the table's condition does); `dead` workers never run and their
    /// leases count as expired.
    fn simulate(leases: &mut [Lease], workers: &[String], dead: &HashSet<String>, turns: &[usize]) {
        for &turn in turns {
            let me = &workers[turn % workers.len()];
            if dead.contains(me) {
                continue;
            }
            let takes = plan(leases, me, |l| l.owner.as_ref().is_none_or(|o| dead.contains(o)));
            for take in takes {
                let lease = leases.iter_mut().find(|l| l.shard == take.shard).unwrap();
                if lease.counter == take.counter {
                    lease.owner = Some(me.clone());
                    lease.counter += 1;
                }
            }
        }
    }

    fn loads(leases: &[Lease], workers: &[String], dead: &HashSet<String>) -> Vec<usize> {
        workers
            .iter()
            .filter(|w| !dead.contains(*w))
            .map(|w| leases.iter().filter(|l| l.held_by(w)).count())
            .collect()
    }

    proptest! {
        #[test]
        fn every_shard_gets_one_live_owner_and_the_load_is_within_one_of_even(
            shards in 1usize..40,
            count in 1usize..6,
            killed in 0usize..3,
            turns in proptest::collection::vec(0usize..6, 0..30),
        ) {
            let workers: Vec<String> = (0..count).map(|w| format!("worker-{w}")).collect();
            let mut leases: Vec<Lease> = (0..shards).map(|s| lease(s, None)).collect();
            // Everyone runs until balanced, in an arbitrary order first.
            simulate(&mut leases, &workers, &HashSet::new(), &turns);
            let round: Vec<usize> = (0..count).cycle().take(count * (shards + 2) * 2).collect();
            simulate(&mut leases, &workers, &HashSet::new(), &round);
            let none = HashSet::new();
            let load = loads(&leases, &workers, &none);
            prop_assert!(leases.iter().all(|l| l.owner.is_some()));
            prop_assert!(load.iter().max().unwrap() - load.iter().min().unwrap() <= 1, "{load:?}");

            // Some of them die: the others take every lease over, evenly.
            let dead: HashSet<String> = workers.iter().take(killed.min(count - 1)).cloned().collect();
            simulate(&mut leases, &workers, &dead, &round);
            let load = loads(&leases, &workers, &dead);
            prop_assert!(leases.iter().all(|l| l.owner.as_ref().is_some_and(|o| !dead.contains(o))));
            prop_assert_eq!(load.iter().sum::<usize>(), shards);
            prop_assert!(load.iter().max().unwrap() - load.iter().min().unwrap() <= 1, "{load:?}");
        }
    }

    #[test]
    fn a_child_is_taken_only_after_every_parent_has_ended() {
        let mut parent_a = lease(0, Some("other"));
        let parent_b = lease(1, None);
        let mut child = lease(2, None);
        child.parents = vec![parent_a.shard.clone(), parent_b.shard.clone()];
        let expired = |l: &Lease| l.owner.is_none();
        let taken =
            |leases: &[Lease]| -> Vec<String> { plan(leases, "me", expired).into_iter().map(|t| t.shard).collect() };
        let leases = vec![parent_a.clone(), parent_b.clone(), child.clone()];
        assert!(!taken(&leases).contains(&child.shard));

        parent_a.ended = true;
        let leases = vec![parent_a.clone(), parent_b.clone(), child.clone()];
        assert!(!taken(&leases).contains(&child.shard), "one parent still open");

        let mut b_ended = parent_b.clone();
        b_ended.ended = true;
        let leases = vec![parent_a, b_ended, child.clone()];
        assert_eq!(taken(&leases), vec![child.shard.clone()]);

        // A parent trimmed from the table counts as ended.
        assert_eq!(taken(&[child.clone()]), vec![child.shard]);
    }

    #[test]
    fn a_live_lease_is_stolen_only_to_even_the_load() {
        let held =
            |owners: &[&str]| -> Vec<Lease> { owners.iter().enumerate().map(|(s, o)| lease(s, Some(o))).collect() };
        let never = |_: &Lease| false;
        // a holds 3, b holds 1: b takes one of a's.
        let takes = plan(&held(&["a", "a", "a", "b"]), "b", never);
        assert_eq!(takes.len(), 1);
        assert!(takes[0].steal);
        assert_eq!(takes[0].shard, lease(2, None).shard);
        // 2 and 2, or 2 and 1 with an odd count: nothing moves.
        assert_eq!(plan(&held(&["a", "a", "b", "b"]), "b", never), vec![]);
        assert_eq!(plan(&held(&["a", "a", "b"]), "b", never), vec![]);
        // A new instance takes one at a time from the busiest.
        let takes = plan(&held(&["a", "a", "a", "b", "b", "b"]), "c", never);
        assert_eq!(takes.len(), 1);
        assert_eq!(plan(&held(&["a", "a", "a", "b", "b", "b"]), "a", never), vec![]);
    }

    /// A lease whose owner is writing an object of it (a pending intent in
    /// its state) is not stolen: another of the busiest owner's is, or none
    /// this round.
    #[test]
    fn a_lease_with_a_pending_intent_is_not_stolen() {
        use crate::checkpoint::shard::ShardState;
        use crate::checkpoint::state::{PendingObject, Run, SourceRun, STATE_VERSION};
        use spillway_transforms::{Offset, SequenceNumber, SourceId};
        let never = |_: &Lease| false;
        let writing = |shard: usize| -> Lease {
            let mut lease = lease(shard, Some("a"));
            let offset = |n: u64| Offset::new(SequenceNumber::from_u64(n), 0);
            let state = ShardState {
                version: STATE_VERSION,
                pending: vec![PendingObject {
                    key: "events/x".into(),
                    runs: vec![SourceRun {
                        source: SourceId::new(lease.shard.as_str()),
                        run: Run {
                            first: offset(1),
                            last: offset(3),
                        },
                    }],
                }],
                ..Default::default()
            };
            lease.state = Some(state.to_json());
            lease
        };
        // a holds 0, 1 and 2 (2 being written), b holds 3: b takes 1.
        let leases = vec![
            lease(0, Some("a")),
            lease(1, Some("a")),
            writing(2),
            lease(3, Some("b")),
        ];
        let takes = plan(&leases, "b", never);
        assert_eq!(
            takes.iter().map(|t| t.shard.as_str()).collect::<Vec<_>>(),
            [lease(1, None).shard]
        );
        // Every one of a's being written: nothing is stolen this round.
        let leases = vec![writing(0), writing(1), writing(2), lease(3, Some("b"))];
        assert_eq!(plan(&leases, "b", never), vec![]);
        // An expired lease is taken, pending intents and all (its new owner
        // redoes them).
        let leases = vec![writing(0), lease(1, Some("b"))];
        assert_eq!(plan(&leases, "b", |l: &Lease| l.owner.as_deref() == Some("a")).len(), 1);
    }
}
