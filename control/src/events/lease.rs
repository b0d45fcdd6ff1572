//! The claims this host holds on deliveries in flight, renewed while the
//! delivery runs. A claim's lease is short (a host that dies loses its
//! claims within one lease, and another host takes them over), yet a slow
//! delivery keeps its claim as long as its host lives to renew it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::Events;
use crate::store::events::DeliveryKey;
use crate::store::now_millis;

/// The end of one claim as the store has it. A failure is recorded under
/// it, and renewing changes it, so the two take turns through the lock.
pub(super) type LeaseCell = Arc<tokio::sync::Mutex<i64>>;

/// Claims held by this host's deliveries in flight.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<DeliveryKey, LeaseCell>>,
}

impl Leases {
    /// Holds a claim until the returned guard goes.
    pub(super) fn hold(self: &Arc<Self>, key: DeliveryKey, until_ms: i64) -> HeldLease {
        let cell = Arc::new(tokio::sync::Mutex::new(until_ms));
        self.lock().insert(key.clone(), Arc::clone(&cell));
        HeldLease {
            leases: Arc::clone(self),
            key,
            cell,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeliveryKey, LeaseCell>> {
        match self.held.lock() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn snapshot(&self) -> Vec<(DeliveryKey, LeaseCell)> {
        self.lock()
            .iter()
            .map(|(key, cell)| (key.clone(), Arc::clone(cell)))
            .collect()
    }
}

/// A claim held by a delivery in flight; dropping it stops the renewals.
pub(super) struct HeldLease {
    leases: Arc<Leases>,
    key: DeliveryKey,
    pub(super) cell: LeaseCell,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.leases.lock().remove(&self.key);
    }
}

/// Renews every claim in flight three times per lease, so a claim lapses
/// only when its host stopped renewing it.
pub(super) async fn renew(events: Weak<Events>) {
    loop {
        let Some(me) = events.upgrade() else { return };
        let every = me.settings.lease / 3;
        for (key, cell) in me.leases.snapshot() {
            let mut until = cell.lock().await;
            if Arc::strong_count(&cell) == 1 {
                continue; // its delivery ended since the snapshot
            }
            let renewed = now_millis() + super::plan::millis(me.settings.lease);
            match me.log.extend_claim(&key, *until, renewed).await {
                Ok(true) => *until = renewed,
                Ok(false) => tracing::info!(
                    tenant = %key.tenant, topic = %key.topic, seq = key.seq,
                    "a delivery's claim lapsed and another host may make it again"
                ),
                Err(error) => tracing::warn!(%error, "cannot renew a delivery's claim"),
            }
        }
        drop(me);
        tokio::time::sleep(every).await;
    }
}
