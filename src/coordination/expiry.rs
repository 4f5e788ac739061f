//! When a lease counts as expired: its counter has not moved for the lease
//! duration, as this instance's own monotonic clock sees it (the KCL's
//! rule), so that instances need not agree on the time of day.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Lease;

/// What this instance has seen of each lease's counter, and since when.
#[derive(Debug, Default)]
pub struct Observer {
    seen: HashMap<String, (u64, Instant)>,
}

impl Observer {
    /// Notes the leases as read at `now`: a counter that changed starts
    /// its wait again.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        self.seen.retain(|shard, _| leases.iter().any(|l| &l.shard == shard));
        for lease in leases {
            let entry = self.seen.entry(lease.shard.clone()).or_insert((lease.counter, now));
            if entry.0 != lease.counter {
                *entry = (lease.counter, now);
            }
        }
    }

    /// The first moment after `now` at which one of `leases` held by
    /// another instance, and not ended, becomes expired should its counter
    /// stand still: the keeper looks again then rather than at its next
    /// round, so that a dead instance's lease is taken within a lease
    /// duration of its last renewal being read, not a renewal interval
    /// later still.
    pub fn next_expiry(&self, leases: &[Lease], me: &str, now: Instant, duration: Duration) -> Option<Instant> {
        leases
            .iter()
            .filter(|l| !l.ended && l.owner.as_deref().is_some_and(|owner| owner != me))
            .filter_map(|l| match self.seen.get(&l.shard) {
                Some((counter, since)) if *counter == l.counter => Some(*since + duration),
                _ => None,
            })
            .filter(|at| *at > now)
            .min()
    }

    /// Whether `lease` may be taken: nobody holds it, or its counter has
    /// not moved for `duration` since this instance first saw that value.
    /// A lease never observed is not expired: it must be watched for a
    /// whole period first.
    pub fn expired(&self, lease: &Lease, now: Instant, duration: Duration) -> bool {
        if lease.owner.is_none() {
            return true;
        }
        match self.seen.get(&lease.shard) {
            Some((counter, since)) => *counter == lease.counter && now.duration_since(*since) >= duration,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_expiry_is_the_first_standing_counter_of_another_instance_to_run_out() {
        let start = Instant::now();
        let lease_time = Duration::from_secs(3);
        let mut observer = Observer::default();
        let mut mine = lease("a", Some("me"), 1);
        let other = lease("b", Some("them"), 4);
        let mut ended = lease("c", Some("them"), 9);
        ended.ended = true;
        let free = lease("d", None, 2);
        observer.observe(&[mine.clone(), other.clone(), ended.clone(), free.clone()], start);
        let later = lease("e", Some("them"), 1);
        observer.observe(
            &[mine.clone(), other.clone(), ended.clone(), free.clone(), later.clone()],
            start + Duration::from_secs(1),
        );
        let all = [mine.clone(), other.clone(), ended, free, later];
        // Not mine, not an ended one, not a free one: b's, seen first.
        assert_eq!(
            observer.next_expiry(&all, "me", start, lease_time),
            Some(start + lease_time)
        );
        // Past b's expiry, e's is next; past both, none.
        let after_b = start + lease_time;
        assert_eq!(
            observer.next_expiry(&all, "me", after_b, lease_time),
            Some(start + Duration::from_secs(1) + lease_time)
        );
        assert_eq!(
            observer.next_expiry(&all, "me", after_b + Duration::from_secs(1), lease_time),
            None
        );
        // A counter that moved waits again from when it was seen moving.
        mine.counter = 2;
        let renewed = lease("b", Some("them"), 5);
        let at = start + Duration::from_secs(2);
        observer.observe(&[mine.clone(), renewed.clone()], at);
        assert_eq!(
            observer.next_expiry(&[mine, renewed], "me", at, lease_time),
            Some(at + lease_time)
        );
    }

    fn lease(shard: &str, owner: Option<&str>, counter: u64) -> Lease {
        Lease {
            shard: shard.into(),
            owner: owner.map(Into::into),
            counter,
            state: None,
            parents: vec![],
            ended: false,
            renewed_at: None,
        }
    }

    #[test]
    fn a_lease_expires_only_after_its_counter_stood_still_for_the_whole_duration() {
        let period = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut observer = Observer::default();
        let held = lease("s1", Some("a"), 4);
        assert!(!observer.expired(&held, t0, period), "never observed: not expired");
        observer.observe(std::slice::from_ref(&held), t0);
        assert!(!observer.expired(&held, t0 + Duration::from_secs(9), period));
        assert!(observer.expired(&held, t0 + period, period));

        // A renewal (the counter moved) starts the wait again.
        let renewed = lease("s1", Some("a"), 5);
        observer.observe(std::slice::from_ref(&renewed), t0 + Duration::from_secs(9));
        assert!(!observer.expired(&renewed, t0 + Duration::from_secs(18), period));
        assert!(observer.expired(&renewed, t0 + Duration::from_secs(19), period));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let observer = Observer::default();
        assert!(observer.expired(&lease("s1", None, 9), Instant::now(), Duration::from_secs(10)));
    }
}
