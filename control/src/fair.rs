//! Compile slots shared fairly between tenants. A compile takes every core
//! it can, so the host runs few at once; when they are all busy, each
//! tenant waits in a queue of its own, and a freed slot goes to the waiting
//! tenant served longest ago, so a tenant uploading twenty slow components
//! holds another tenant's deploy up by at most the compile in flight. A tenant's queue is bounded:
//! past it, the upload is refused at once (429) instead of held, as is an
//! upload past the tenant's [`UPLOADS_PER_TENANT`] in progress.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

use super::{ControlError, lock};

/// Compiles one tenant may have waiting for one kind of slot.
pub const QUEUE_PER_TENANT: usize = 4;

/// The tenant's compile queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this tenant already has {0} compiles waiting; try again when one is done")]
pub struct QueueFull(pub usize);

/// A few slots, handed out to tenants in turn.
#[derive(Debug)]
pub struct FairSlots {
    state: Mutex<State>,
    per_tenant: usize,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Tenants with someone waiting.
    turns: VecDeque<String>,
    waiting: HashMap<String, VecDeque<oneshot::Sender<SlotPermit>>>,
    /// When each tenant was last handed a slot, by a count of hand-outs:
    /// the waiting tenant served longest ago goes next, so a tenant that
    /// has just had its turn waits behind one that arrives after it.
    served: HashMap<String, u64>,
    handed: u64,
}

impl State {
    /// The waiting tenant served longest ago (never, for a newcomer).
    fn next_turn(&mut self) -> Option<String> {
        let (at, _) = self
            .turns
            .iter()
            .enumerate()
            .min_by_key(|(_, tenant)| self.served.get(*tenant).copied().unwrap_or(0))?;
        self.turns.remove(at)
    }

    fn note_served(&mut self, tenant: &str) {
        self.handed += 1;
        let handed = self.handed;
        self.served.insert(tenant.to_string(), handed);
        // Forget tenants served long ago that wait for nothing: they would
        // go first anyway, as newcomers do.
        if self.served.len() > 1024 {
            let waiting = &self.waiting;
            self.served.retain(|t, _| waiting.contains_key(t));
        }
    }
}

/// One slot, given back when dropped: to the next tenant in turn.
#[derive(Debug)]
pub struct SlotPermit {
    slots: Option<Arc<FairSlots>>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.give_back(slots.clone());
        }
    }
}

impl FairSlots {
    pub fn new(slots: usize, per_tenant: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: slots.max(1),
                ..State::default()
            }),
            per_tenant,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `tenant`: at once if one is free and nobody waits, else
    /// after the tenants ahead in turn. Refused when the tenant already has
    /// its queue's worth waiting.
    pub async fn acquire(self: &Arc<Self>, tenant: &str) -> Result<SlotPermit, QueueFull> {
        let receiver = {
            let mut state = self.state();
            if state.free > 0 && state.turns.is_empty() {
                state.free -= 1;
                state.note_served(tenant);
                return Ok(SlotPermit {
                    slots: Some(Arc::clone(self)),
                });
            }
            let queue = state.waiting.entry(tenant.to_string()).or_default();
            queue.retain(|waiter| !waiter.is_closed());
            if queue.len() >= self.per_tenant {
                return Err(QueueFull(queue.len()));
            }
            let (sender, receiver) = oneshot::channel();
            queue.push_back(sender);
            if !state.turns.iter().any(|t| t == tenant) {
                state.turns.push_back(tenant.to_string());
            }
            receiver
        };
        // The sender is dropped only with the whole queue, which lives as
        // long as `self`: a closed channel cannot happen while we wait.
        receiver.await.map_err(|_| QueueFull(0))
    }

    /// Hands a slot to the first waiter of the next tenant in turn, or
    /// frees it.
    fn give_back(&self, me: Arc<Self>) {
        let mut state = self.state();
        while let Some(tenant) = state.next_turn() {
            let Some(queue) = state.waiting.get_mut(&tenant) else {
                continue;
            };
            let mut handed = false;
            while let Some(waiter) = queue.pop_front() {
                let permit = SlotPermit {
                    slots: Some(Arc::clone(&me)),
                };
                match waiter.send(permit) {
                    Ok(()) => {
                        handed = true;
                        break;
                    }
                    // The waiter gave up (its upload was cancelled); the
                    // permit comes back undropped-into-a-slot: forget it.
                    Err(mut unsent) => {
                        unsent.slots = None;
                    }
                }
            }
            if queue.is_empty() {
                state.waiting.remove(&tenant);
            } else {
                state.turns.push_back(tenant.clone());
            }
            if handed {
                state.note_served(&tenant);
                return;
            }
        }
        state.free += 1;
    }
}

/// Uploads one tenant may have in progress at once (receiving, waiting for
/// a compile, compiling); past it, 429. Each holds a file of up to the
/// upload limit in the data directory until it is stored or refused.
pub const UPLOADS_PER_TENANT: usize = 8;

/// One of a tenant's uploads in progress, counted until dropped.
pub(super) struct UploadSlot {
    uploading: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl UploadSlot {
    pub(super) fn take(
        uploading: &Arc<Mutex<HashMap<String, usize>>>,
        tenant: &str,
    ) -> Result<Self, ControlError> {
        let mut counts = lock(uploading);
        let count = counts.entry(tenant.to_string()).or_insert(0);
        if *count >= UPLOADS_PER_TENANT {
            return Err(ControlError::Busy(format!(
                "tenant `{tenant}` already has {UPLOADS_PER_TENANT} uploads in progress; \
                 try again when one is done"
            )));
        }
        *count += 1;
        Ok(Self {
            uploading: Arc::clone(uploading),
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.uploading);
        if let Some(count) = counts.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn tenants_take_turns_whatever_their_backlog() -> Result<(), QueueFull> {
        let slots = FairSlots::new(1, 100);
        let first = slots.acquire("bulk").await?;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let spawn = |tenant: &'static str, n: usize| {
            let (slots, order) = (Arc::clone(&slots), Arc::clone(&order));
            tokio::spawn(async move {
                if let Ok(permit) = slots.acquire(tenant).await {
                    order
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(format!("{tenant}{n}"));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    drop(permit);
                }
            })
        };
        for n in 0..5 {
            tasks.push(spawn("bulk", n));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tasks.push(spawn("small", 0));
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(first);
        for task in tasks {
            let _ = task.await;
        }
        let order = order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // The small tenant came in last, behind five of bulk's, and waits
        // only for the compile in flight: bulk has just had its turn.
        assert_eq!(order[..2], ["small0".to_string(), "bulk0".to_string()]);
        assert_eq!(order.len(), 6);
        Ok(())
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_a_cancelled_waiter_frees_its_place() {
        let slots = FairSlots::new(1, 2);
        let held = slots.acquire("a").await;
        assert!(held.is_ok());
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let slots = Arc::clone(&slots);
                tokio::spawn(async move { slots.acquire("a").await.map(drop) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(slots.acquire("a").await.err(), Some(QueueFull(2)));
        // Another tenant still gets in line.
        let other = tokio::time::timeout(Duration::from_millis(10), slots.acquire("b")).await;
        assert!(other.is_err(), "b waits its turn");
        for task in &waiting {
            task.abort();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        // The aborted waiters are skipped and the slot is free again.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), slots.acquire("c"))
                .await
                .is_ok_and(|p| p.is_ok())
        );
    }
}
