//! The workers serving shared instances now, as requests find them: by
//! the key whose requests they may serve, with their requests in flight
//! and taken over their instance's life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

use crate::reuse::{ReuseKey, ReusePolicy};

/// The workers running now, by the key whose requests they may serve.
pub struct Workers<J> {
    busy: Mutex<HashMap<ReuseKey, Vec<Busy<J>>>>,
}

/// A running worker, as requests see it.
struct Busy<J> {
    id: u64,
    jobs: mpsc::UnboundedSender<J>,
    /// Requests handed to it that have not ended.
    in_flight: u32,
    /// Requests it has taken over the instance's life.
    accepted: u32,
    /// Set when the instance should take no more requests (one of its
    /// tasks runs on and on).
    closed: Arc<AtomicBool>,
}

impl<J> Default for Workers<J> {
    fn default() -> Self {
        Self {
            busy: Mutex::new(HashMap::new()),
        }
    }
}

impl<J> Workers<J> {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ReuseKey, Vec<Busy<J>>>) -> R) -> R {
        match self.busy.lock() {
            Ok(mut busy) => f(&mut busy),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Hands `job` to a running worker of `key` with room for it, or gives
    /// it back. The hand-over and the count are one step, so a worker that
    /// finds no request in flight knows none is on its way.
    pub(super) fn offer(&self, key: ReuseKey, policy: ReusePolicy, mut job: J) -> Result<(), J> {
        self.with(|busy| {
            for worker in busy.get_mut(&key).into_iter().flatten() {
                if worker.in_flight >= policy.max_concurrent
                    || worker.accepted >= policy.max_requests
                    || worker.closed.load(Ordering::Relaxed)
                {
                    continue;
                }
                match worker.jobs.send(job) {
                    Ok(()) => {
                        worker.in_flight += 1;
                        worker.accepted += 1;
                        return Ok(());
                    }
                    Err(mpsc::error::SendError(back)) => job = back,
                }
            }
            Err(job)
        })
    }

    /// Files a new worker, already serving its first request.
    pub(super) fn register(
        &self,
        key: ReuseKey,
        id: u64,
        jobs: mpsc::UnboundedSender<J>,
        accepted: u32,
        closed: Arc<AtomicBool>,
    ) {
        self.with(|busy| {
            busy.entry(key).or_default().push(Busy {
                id,
                jobs,
                in_flight: 1,
                accepted,
                closed,
            });
        });
    }

    pub(super) fn finished(&self, key: ReuseKey, id: u64) {
        self.with(|busy| {
            if let Some(worker) = busy
                .get_mut(&key)
                .and_then(|w| w.iter_mut().find(|w| w.id == id))
            {
                worker.in_flight = worker.in_flight.saturating_sub(1);
            }
        });
    }

    /// Takes the worker off the list if it has no request in flight; true
    /// when it is off the list. No request is handed to it after this.
    pub(super) fn leave_if_idle(&self, key: ReuseKey, id: u64) -> bool {
        self.take_off(key, id, |worker| worker.in_flight == 0)
    }

    /// Takes the worker off the list, whatever it serves now.
    pub(super) fn remove(&self, key: ReuseKey, id: u64) {
        self.take_off(key, id, |_| true);
    }

    fn take_off(&self, key: ReuseKey, id: u64, when: impl FnOnce(&Busy<J>) -> bool) -> bool {
        self.with(|busy| {
            let Some(workers) = busy.get_mut(&key) else {
                return true;
            };
            let Some(at) = workers.iter().position(|w| w.id == id) else {
                return true;
            };
            if !when(&workers[at]) {
                return false;
            }
            workers.swap_remove(at);
            if workers.is_empty() {
                busy.remove(&key);
            }
            true
        })
    }
}
