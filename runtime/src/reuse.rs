//! Instance reuse: a service's policy for keeping an instance after a
//! request, and the park where kept instances wait for the next request of
//! the same service version.
//!
//! A parked instance keeps its instance-pool slot, so the park gives one back
//! whenever a request of any tenant finds the pool full: kept instances are
//! a cache that never stands between a request and a slot. Each version's
//! instances are kept apart, so reuse never crosses a version, a service or
//! a tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_api::reuse::InstanceReuse;

/// How long an idle instance is kept when the policy does not say.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A service's reuse policy, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReusePolicy {
    /// Requests one instance serves over its life; 1 is a fresh instance
    /// per request.
    pub max_requests: u32,
    /// Requests one WASI 0.3 instance serves at once; 1 is one after
    /// another. WASI 0.2 instances serve one at a time whatever it says.
    pub max_concurrent: u32,
    pub idle_timeout: Duration,
}

impl ReusePolicy {
    /// A fresh instance for every request: the default for every world.
    pub const FRESH: Self = Self {
        max_requests: 1,
        max_concurrent: 1,
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
    };

    pub fn from_spec(spec: &InstanceReuse) -> Self {
        Self {
            max_requests: spec.requests(),
            max_concurrent: spec.concurrent(),
            idle_timeout: spec.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0),
        }
    }

    /// Whether an instance may serve more than one request.
    pub fn reuses(&self) -> bool {
        self.max_requests > 1
    }

    /// Whether a WASI 0.3 instance may serve several requests at once.
    pub fn shares(&self) -> bool {
        self.max_concurrent > 1 && self.max_requests > 1
    }
}

impl Default for ReusePolicy {
    fn default() -> Self {
        Self::FRESH
    }
}

/// Names one set of instances that may serve each other's requests: one
/// service version under one set of limits and one tenant gate. Every
/// routing-table build makes new keys, so an instance never outlives a
/// change of its version's settings in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReuseKey(u64);

impl ReuseKey {
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

struct Parked<I> {
    instance: I,
    since: Instant,
    idle_timeout: Duration,
}

impl<I> Parked<I> {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= self.idle_timeout
    }
}

/// Idle instances by the key they may serve.
pub struct InstancePark<I> {
    idle: Mutex<HashMap<ReuseKey, VecDeque<Parked<I>>>>,
}

impl<I> Default for InstancePark<I> {
    fn default() -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
        }
    }
}

impl<I> InstancePark<I> {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ReuseKey, VecDeque<Parked<I>>>) -> R) -> R {
        match self.idle.lock() {
            Ok(mut idle) => f(&mut idle),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The most recently parked instance of `key` (its memory is the most
    /// likely to be in cache), if one is still within its idle time.
    /// Expired ones met on the way are dropped, outside the lock.
    pub fn take(&self, key: ReuseKey) -> Option<I> {
        let now = Instant::now();
        let (found, expired) = self.with(|idle| {
            let Some(queue) = idle.get_mut(&key) else {
                return (None, Vec::new());
            };
            let found = queue.pop_back().filter(|p| !p.expired(now));
            let expired = drain_expired(queue, now);
            if queue.is_empty() {
                idle.remove(&key);
            }
            (found, expired)
        });
        drop(expired);
        found.map(|p| p.instance)
    }

    /// Keeps an instance for `key`, unless `key` already keeps `cap`.
    /// Returns the instance when it was not kept, for the caller to drop.
    pub fn put(&self, key: ReuseKey, instance: I, idle_timeout: Duration, cap: usize) -> Option<I> {
        self.with(|idle| {
            let queue = idle.entry(key).or_default();
            if queue.len() >= cap {
                return Some(instance);
            }
            queue.push_back(Parked {
                instance,
                since: Instant::now(),
                idle_timeout,
            });
            None
        })
    }

    /// Gives up the instance parked longest, whatever its key: a request
    /// found the pool full. False when nothing is parked.
    pub fn evict_oldest(&self) -> bool {
        let evicted = self.with(|idle| {
            let key = idle
                .iter()
                .filter_map(|(key, queue)| queue.front().map(|p| (p.since, *key)))
                .min()
                .map(|(_, key)| key)?;
            let queue = idle.get_mut(&key)?;
            let oldest = queue.pop_front();
            if queue.is_empty() {
                idle.remove(&key);
            }
            oldest
        });
        evicted.is_some()
    }

    /// Drops every instance past its idle time.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<Parked<I>> = self.with(|idle| {
            let mut expired = Vec::new();
            idle.retain(|_, queue| {
                expired.extend(drain_expired(queue, now));
                !queue.is_empty()
            });
            expired
        });
        expired.len()
    }

    /// Instances parked now.
    pub fn len(&self) -> usize {
        self.with(|idle| idle.values().map(VecDeque::len).sum())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes the expired instances of one queue. A key's instances share
/// one idle time and are parked in time order, so the expired ones are at
/// its front: nothing is allocated unless some expired.
fn drain_expired<I>(queue: &mut VecDeque<Parked<I>>, now: Instant) -> Vec<Parked<I>> {
    let mut expired = Vec::new();
    while queue.front().is_some_and(|p| p.expired(now)) {
        expired.extend(queue.pop_front());
    }
    expired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_kept_apart_by_key_and_cap() {
        let park = InstancePark::default();
        let (a, b) = (ReuseKey::next(), ReuseKey::next());
        let long = Duration::from_secs(60);
        assert!(park.put(a, 1, long, 2).is_none());
        assert!(park.put(a, 2, long, 2).is_none());
        assert_eq!(park.put(a, 3, long, 2), Some(3), "over the cap");
        assert!(park.put(b, 10, long, 2).is_none());
        assert_eq!(park.take(a), Some(2), "most recent first");
        assert_eq!(park.take(b), Some(10));
        assert_eq!(park.take(b), None, "never another key's");
        assert_eq!(park.len(), 1);
    }

    #[test]
    fn idle_instances_expire_and_the_oldest_is_evicted_first() {
        let park = InstancePark::default();
        let (a, b) = (ReuseKey::next(), ReuseKey::next());
        assert!(park.put(a, 1, Duration::ZERO, 4).is_none());
        assert_eq!(park.take(a), None, "expired at once");
        assert!(park.put(a, 2, Duration::from_secs(60), 4).is_none());
        assert!(park.put(b, 3, Duration::from_secs(60), 4).is_none());
        assert!(park.evict_oldest());
        assert_eq!(park.take(a), None, "a's was parked first");
        assert_eq!(park.take(b), Some(3));
        assert!(!park.evict_oldest());
        assert!(park.put(b, 4, Duration::ZERO, 4).is_none());
        assert_eq!(park.sweep(), 1);
        assert!(park.is_empty());
    }
}
