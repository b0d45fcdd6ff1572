//! Per-tenant admission and CPU sharing: what keeps one tenant's flood of
//! requests or spinning guests from taking the host away from the others.
//!
//! - A request first takes one of its tenant's places (`concurrency`); when
//!   none is free it waits in a bounded queue, and past the queue (or after
//!   `queue_timeout`) it is refused with 503 and `Retry-After`.
//! - A guest that is still running at an epoch tick gives up its worker and
//!   waits for one of its tenant's CPU slots before running the next tick.
//!   Short requests finish before any tick and never touch the slots; a
//!   tenant's long runners take turns on at most `cpu_slots` workers, so the
//!   other workers stay free for everyone else.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::RequestError;
use crate::quotas::TenantQuotas;

/// One tenant's admission state, shared by every version of its services
/// and kept across routing-table rebuilds while its quotas stay the same.
#[derive(Debug)]
pub struct TenantGate {
    running: Arc<Semaphore>,
    waiting: AtomicU32,
    max_waiting: u32,
    queue_timeout: Duration,
    cpu: Arc<Semaphore>,
    /// Requests that may run at once: the tenant's concurrency, or its
    /// share of the instance pool where that is smaller. Every request and
    /// service call holds one instance while it runs, so this is also what
    /// meters the tenant's pool slots.
    places: u32,
    shape: (u32, u32, Duration, usize, u32),
}

/// A request's place among its tenant's running requests.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
}

/// Decrements the waiting count however the wait ends.
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Workers a tenant's long-running guests may hold at once by default: half
/// the machine, at least one, so the other half always answers others.
pub fn default_cpu_slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    (cores / 2).max(1)
}

impl TenantGate {
    pub fn new(quotas: &TenantQuotas, cpu_slots: usize, instance_share: u32) -> Self {
        let places = quotas.concurrency.min(instance_share.max(1));
        Self {
            places,
            running: Arc::new(Semaphore::new(places as usize)),
            waiting: AtomicU32::new(0),
            max_waiting: quotas.queue,
            queue_timeout: quotas.queue_timeout,
            cpu: Arc::new(Semaphore::new(cpu_slots.max(1))),
            shape: (
                quotas.concurrency,
                quotas.queue,
                quotas.queue_timeout,
                cpu_slots,
                instance_share,
            ),
        }
    }

    /// Whether this gate already enforces these quotas, so it can be kept
    /// (with the requests it holds) when the routing table is rebuilt.
    pub fn enforces(&self, quotas: &TenantQuotas, cpu_slots: usize, instance_share: u32) -> bool {
        self.shape
            == (
                quotas.concurrency,
                quotas.queue,
                quotas.queue_timeout,
                cpu_slots,
                instance_share,
            )
    }

    /// Takes a place for one request, waiting in the tenant's queue if need be.
    pub async fn admit(&self) -> Result<Admission, RequestError> {
        if let Ok(permit) = Arc::clone(&self.running).try_acquire_owned() {
            return Ok(Admission { _permit: permit });
        }
        let before = self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        if before >= self.max_waiting {
            return Err(RequestError::TenantBusy);
        }
        match tokio::time::timeout(
            self.queue_timeout,
            Arc::clone(&self.running).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(Admission { _permit: permit }),
            Ok(Err(_)) | Err(_) => Err(RequestError::TenantBusy),
        }
    }

    /// The CPU share a request's guest draws on at epoch ticks.
    pub fn cpu_share(&self) -> CpuShare {
        CpuShare {
            slots: Arc::clone(&self.cpu),
            held: Arc::default(),
        }
    }

    /// Requests of the tenant that may run at once.
    pub fn places(&self) -> u32 {
        self.places
    }

    /// Requests of the tenant running now.
    pub fn in_flight(&self) -> usize {
        let total = self.places as usize;
        total.saturating_sub(self.running.available_permits())
    }
}

/// One guest's turn-taking on its tenant's CPU slots. Clones share the
/// slot: the store's epoch callback takes it, and the task running the guest
/// gives it up whenever the guest blocks.
#[derive(Clone)]
pub struct CpuShare {
    slots: Arc<Semaphore>,
    /// The slot held for the current tick, from the first tick on.
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

/// What the guest awaits between two ticks.
pub type NextSlice = Pin<Box<dyn Future<Output = ()> + Send>>;

impl CpuShare {
    /// Gives up the slot while the guest waits in the host (on a service it
    /// called, an upstream, a timer): a guest blocked there uses no CPU, and
    /// holding the slot would stall the tenant's other guests, the callee of
    /// a service call among them.
    pub fn release(&self) {
        drop(lock(&self.held).take());
    }

    /// Gives up the slot used for the tick just run, and returns the wait
    /// for the next one. The semaphore is fair, so the tenant's long runners
    /// take turns in order.
    pub fn next_slice(&self) -> NextSlice {
        self.release();
        let held = Arc::clone(&self.held);
        let slots = Arc::clone(&self.slots);
        Box::pin(async move {
            // Always give the worker up, even when a slot is free: that is
            // what lets deadlines and other tasks run.
            tokio::task::yield_now().await;
            if let Ok(permit) = slots.acquire_owned().await {
                *lock(&held) = Some(permit);
            }
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(concurrency: u32, queue: u32) -> TenantGate {
        let quotas = TenantQuotas {
            concurrency,
            queue,
            queue_timeout: Duration::from_millis(50),
            ..TenantQuotas::default()
        };
        TenantGate::new(&quotas, 1, u32::MAX)
    }

    #[tokio::test]
    async fn a_tenant_runs_no_more_than_its_share_of_the_pool() {
        let quotas = TenantQuotas {
            concurrency: 8,
            queue: 0,
            ..TenantQuotas::default()
        };
        let gate = TenantGate::new(&quotas, 1, 2);
        let (a, b) = (gate.admit().await, gate.admit().await);
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(gate.admit().await.err(), Some(RequestError::TenantBusy));
        assert_eq!(gate.in_flight(), 2);
        assert!(gate.enforces(&quotas, 1, 2) && !gate.enforces(&quotas, 1, 3));
    }

    #[tokio::test]
    async fn refuses_past_the_queue_and_after_the_queue_timeout() {
        let gate = Arc::new(gate(1, 1));
        let first = gate.admit().await;
        assert!(first.is_ok());
        // One request may wait; it times out because the place stays taken.
        let waiter = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.admit().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(gate.admit().await.err(), Some(RequestError::TenantBusy));
        assert_eq!(
            waiter.await.unwrap_or(Ok(())),
            Err(RequestError::TenantBusy)
        );
        drop(first);
        assert!(gate.admit().await.is_ok());
        assert_eq!(gate.in_flight(), 0);
    }

    #[tokio::test]
    async fn long_runners_take_turns_on_the_cpu_slots() {
        let gate = gate(4, 0);
        let a = gate.cpu_share();
        let b = gate.cpu_share();
        a.next_slice().await;
        // `a` holds the only slot until its next tick gives it up.
        let b_next = b.next_slice();
        tokio::pin!(b_next);
        let waited = tokio::time::timeout(Duration::from_millis(20), &mut b_next).await;
        assert!(waited.is_err());
        let a_next = a.next_slice();
        b_next.await;
        let a_waited = tokio::time::timeout(Duration::from_millis(20), a_next).await;
        assert!(a_waited.is_err());
    }

    #[tokio::test]
    async fn a_guest_in_the_host_gives_its_cpu_slot_up() {
        let gate = gate(4, 4);
        let first = gate.cpu_share();
        let second = gate.cpu_share();
        first.next_slice().await;
        // The one slot is held: the other guest's next slice waits.
        let waiting = tokio::time::timeout(Duration::from_millis(20), second.next_slice()).await;
        assert!(waiting.is_err());
        first.release();
        let after = tokio::time::timeout(Duration::from_millis(20), second.next_slice()).await;
        assert!(after.is_ok());
    }
}
