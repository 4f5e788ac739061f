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
