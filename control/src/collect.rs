//! Collecting stored bytes no version names any more: blobs in the data
//! directory (and, for a fleet, in Postgres), compiled artifacts, and linked
//! components held in memory. Runs after every deletion and at start.
//!
//! An upload pins its digest from the moment its bytes are complete until
//! its version is recorded (or it fails), and a collection holds the pins
//! for its whole pass, from reading which digests versions name to the last
//! file it deletes: so an upload of the same digest as a version being
//! deleted never loses its bytes. A fleet's shared blobs are collected only
//! once they are older than the grace time
//! ([`ControlSettings::shared_blob_grace`](super::ControlSettings), an hour
//! by default), since another host's upload puts its blob before it
//! records its version.

use std::collections::HashSet;

use super::{ControlError, ControlPlane};
use crate::store::now_millis;

/// What one collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub blobs: usize,
    pub artifacts: usize,
    pub shared_blobs: u64,
}

/// An upload's hold on its digest; released with [`ControlPlane::unpin`].
pub(super) struct Pin(String);

impl ControlPlane {
    /// Keeps `digest`'s bytes from being collected until [`unpin`](Self::unpin).
    pub(super) async fn pin(&self, digest: &str) -> Pin {
        *self
            .pins
            .lock()
            .await
            .entry(digest.to_string())
            .or_insert(0) += 1;
        Pin(digest.to_string())
    }

    pub(super) async fn unpin(&self, pin: Pin) {
        let mut pins = self.pins.lock().await;
        if let Some(count) = pins.get_mut(&pin.0) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&pin.0);
            }
        }
    }

    /// Deletes what no version, declared service or upload in progress
    /// names.
    pub async fn collect_garbage(&self) -> Result<Collected, ControlError> {
        let pins = self.pins.lock().await;
        let mut keep: HashSet<String> = self.store.digests().await?.into_iter().collect();
        keep.extend(self.static_services.iter().map(|s| s.digest.clone()));
        keep.extend(pins.keys().cloned());
        let io =
            |e: std::io::Error| ControlError::Internal(format!("collecting stored bytes: {e}"));
        let mut collected = Collected::default();
        for digest in self.blobs.stored().map_err(io)? {
            if !keep.contains(&digest) {
                self.blobs.remove(&digest).map_err(io)?;
                collected.blobs += 1;
            }
        }
        collected.artifacts = self.host.remove_artifacts_except(&keep).map_err(io)?;
        self.compiler.retain(&keep);
        drop(pins);
        if self.store.holds_blobs() {
            let grace =
                i64::try_from(self.settings.shared_blob_grace.as_millis()).unwrap_or(i64::MAX);
            collected.shared_blobs = self
                .store
                .delete_unreferenced_blobs(now_millis().saturating_sub(grace))
                .await?;
        }
        if collected != Collected::default() {
            tracing::info!(
                blobs = collected.blobs,
                artifacts = collected.artifacts,
                shared_blobs = collected.shared_blobs,
                "stored bytes no version names were deleted"
            );
        }
        Ok(collected)
    }
}
