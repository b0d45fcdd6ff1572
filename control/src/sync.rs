//! Keeping a host's routing table level with a store other hosts write to.
//!
//! Level-triggered: the host compares the store's generation with the one it
//! applied, every poll interval or as soon as the store says something
//! changed, and on a difference rebuilds from a whole snapshot. A missed
//! notification or a failed round costs one interval, never a wrong table.
//! While the store cannot be reached, the host serves on from the table it
//! has.

use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{ControlError, ControlPlane};
use crate::store::blobs::BlobError;

impl ControlPlane {
    /// Brings the routing table up to the store's generation; returns
    /// whether it changed anything.
    pub async fn sync_once(&self) -> Result<bool, ControlError> {
        let outcome = async {
            let generation = self.store.generation().await?;
            if generation == *self.applied.lock().await {
                return Ok(false);
            }
            self.apply().await.map(|()| true)
        }
        .await;
        self.note_store_health(&outcome);
        outcome
    }

    /// Whether the last contact with the store worked.
    pub fn store_reachable(&self) -> bool {
        self.store_reachable.load(Ordering::Acquire)
    }

    pub(super) fn note_store_health<T>(&self, outcome: &Result<T, ControlError>) {
        let reachable = !matches!(outcome, Err(ControlError::Store(e)) if e.is_unavailable());
        let was = self.store_reachable.swap(reachable, Ordering::AcqRel);
        if was && !reachable {
            tracing::warn!(
                "state store unreachable: serving the last synced state, refusing changes"
            );
        } else if !was && reachable {
            tracing::info!("state store reachable again");
        }
    }

    /// Syncs for as long as the process runs: every `every`, or sooner when
    /// the store reports a change.
    pub fn spawn_sync(self: &Arc<Self>, every: Duration) {
        let control = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                control.store.wait_for_change(every).await;
                match control.sync_once().await {
                    Ok(true) => tracing::debug!("routing table synced with the state store"),
                    Ok(false) => {}
                    Err(ControlError::Store(e)) if e.is_unavailable() => {}
                    Err(error) => tracing::warn!(%error, "cannot sync with the state store"),
                }
            }
        });
    }

    /// A stored component's bytes: from the data directory, or fetched from
    /// the store (checked against their digest) and kept there.
    pub(super) async fn component_bytes(&self, digest: &str) -> Result<Vec<u8>, ControlError> {
        let blobs = self.blobs.clone();
        let wanted = digest.to_string();
        let local = tokio::task::spawn_blocking(move || blobs.read(&wanted))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        match local {
            Err(BlobError::Missing(_)) if self.store.holds_blobs() => {}
            other => return Ok(other?),
        }
        let bytes = self
            .store
            .blob(digest)
            .await?
            .ok_or_else(|| BlobError::Missing(digest.to_string()))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != digest {
            return Err(ControlError::Internal(format!(
                "the state store's bytes for {digest} hash to {actual}; refusing them"
            )));
        }
        let blobs = self.blobs.clone();
        let (digest, kept) = (digest.to_string(), bytes.clone());
        tokio::task::spawn_blocking(move || blobs.keep(&digest, &kept))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))??;
        Ok(bytes)
    }
}
