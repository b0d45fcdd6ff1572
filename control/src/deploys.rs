//! Deploy operations: upload, configure (route, deployment, settings),
//! roll back, delete. Each goes through [`ControlPlane::audited`], which
//! times it into the deploy metrics and records it in the service's history.

use berth_api::names::check_label;
use berth_api::{ServiceName, VersionLabel};
use bytes::Bytes;
use futures::Stream;
use std::time::Instant;

use super::compile::Tier;
use super::rules::{check_capabilities, resolve_settings, storage_exceeded};
use super::{ControlError, ControlPlane, Uploaded, fair};
use crate::store::blobs::BlobError;
use crate::store::{
    DeployEvent, Deployment, PutVersion, ServiceRecord, ServiceUpdate, VersionRecord, now,
    now_millis,
};
use berth_runtime::config::normalize_route;
use berth_runtime::quotas::TenantQuotas;
use berth_runtime::telemetry::metrics;

impl ControlPlane {
    /// Streams, checks, compiles and stores one version. Nothing is stored
    /// unless every step succeeds.
    pub async fn upload_version<S, E>(
        &self,
        tenant: &str,
        service: &ServiceName,
        label: &VersionLabel,
        body: S,
    ) -> Result<Uploaded, ControlError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let work = async {
            let _uploading = fair::UploadSlot::take(&self.uploading, tenant)?;
            let quotas = self.quotas(tenant).await?;
            let usage = self.check_counts(tenant, service, &quotas).await?;
            let storage_left = quotas.storage_bytes.saturating_sub(usage.bytes);
            let limit = self.settings.max_upload_bytes.min(storage_left);
            let received = match self.blobs.receive(body, limit).await {
                Err(BlobError::TooLarge { .. }) if limit < self.settings.max_upload_bytes => {
                    return Err(storage_exceeded(tenant, &quotas, &usage));
                }
                other => other?,
            };
            let pin = self.pin(&received.digest).await;
            let stored = self
                .store_received(tenant, service, label, &quotas, received)
                .await;
            self.unpin(pin).await;
            stored
        };
        self.audited(tenant, service, "upload", work, |uploaded| {
            uploaded
                .created
                .then(|| format!("{label} ({})", uploaded.version.digest))
        })
        .await
    }

    /// Checks, compiles and records a complete upload.
    async fn store_received(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
        quotas: &TenantQuotas,
        received: crate::store::blobs::Received,
    ) -> Result<Uploaded, ControlError> {
        if let Ok(existing) = self.store.service(tenant, service).await
            && let Some(version) = existing.version(label)
        {
            if version.digest == received.digest {
                return Ok(Uploaded {
                    version: version.clone(),
                    created: false,
                    compile_ms: 0,
                });
            }
            return Err(ControlError::Conflict(format!(
                "version `{label}` of service `{service}` already holds {}; versions are immutable, upload under a new label",
                version.digest
            )));
        }

        let started = Instant::now();
        let mut optimise_later = None;
        let linked = self.compiler.linked(&received.digest);
        let pre = match linked {
            // The same bytes are already checked, compiled and linked here.
            Some(pre) => {
                metrics::compile_cache_hit("memory");
                pre
            }
            None => {
                let bytes = tokio::fs::read(received.path()).await.map_err(|e| {
                    ControlError::Internal(format!("cannot read the upload back: {e}"))
                })?;
                match self.compiler.tiered(tenant, bytes).await? {
                    Tier::Full(pre) => pre,
                    Tier::Quick(pre, bytes) => {
                        optimise_later = Some(bytes);
                        pre
                    }
                }
            }
        };
        let compile_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let digest = received.digest.clone();
        let size = received.size;
        let blobs = self.blobs.clone();
        let path = tokio::task::spawn_blocking(move || blobs.persist(received))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))??;
        if self.store.holds_blobs() {
            // Before any version names the digest, so every host that sees
            // the version can fetch its bytes.
            let bytes = tokio::fs::read(&path).await.map_err(BlobError::Io)?;
            self.store.put_blob(&digest, &bytes).await?;
        }
        self.compiler.keep(digest.clone(), pre);

        let version = VersionRecord {
            label: label.to_string(),
            digest,
            size,
            created_at: now(),
        };
        let outcome = {
            let _one_at_a_time = self.quota_check.lock().await;
            let usage = self.check_counts(tenant, service, quotas).await?;
            if usage.bytes.saturating_add(size) > quotas.storage_bytes {
                return Err(storage_exceeded(tenant, quotas, &usage));
            }
            self.store.put_version(tenant, service, &version).await?
        };
        tracing::info!(tenant, service, version = label, digest = %version.digest, compile_ms, "version stored");
        if let Some(bytes) = optimise_later {
            self.optimise_in_background(tenant, version.digest.clone(), bytes);
        }
        Ok(Uploaded {
            version,
            created: outcome == PutVersion::Created,
            compile_ms,
        })
    }

    /// Sets a service's route, deployment and settings in one change.
    pub async fn configure(
        &self,
        tenant: &str,
        service: &str,
        mut update: ServiceUpdate,
    ) -> Result<ServiceRecord, ControlError> {
        let action = if update.deployment.is_some() {
            "deploy"
        } else {
            "configure"
        };
        let mut changed = Vec::new();
        if let Some(route) = &update.route {
            changed.push(format!("route {route}"));
        }
        if update.settings.is_some() {
            changed.push("settings".to_string());
        }
        let work = async {
            if let Some(route) = &update.route {
                update.route = Some(normalize_route(route).map_err(ControlError::InvalidInput)?);
            }
            // The route the service will have, checked before anything is stored.
            let current = self.store.service(tenant, service).await?;
            let route = update
                .route
                .clone()
                .or(current.route)
                .unwrap_or_else(|| format!("/{service}"));
            self.check_static_route(tenant, &route)?;
            if let Some(deployment) = &update.deployment {
                if deployment.0.is_empty() || deployment.0.values().all(|w| *w == 0) {
                    return Err(ControlError::InvalidInput(
                        "a split needs at least one version with a weight above 0".into(),
                    ));
                }
                for label in deployment.labels() {
                    check_label(label).map_err(|e| ControlError::InvalidInput(e.to_string()))?;
                }
            }
            if let Some(change) = &update.settings {
                // Checked as they would be now; the store applies the change to
                // the record it reads inside its revision retry.
                let settings = &change.applied(&current.settings);
                check_capabilities(settings)?;
                let quotas = self.quotas(tenant).await?;
                resolve_settings(settings, &quotas)?;
                let asked = quotas.instance.overridden_by(&settings.limits);
                if let Some(why) = asked.first_looser_than(&quotas.instance) {
                    return Err(ControlError::LimitAboveTenant(format!(
                        "limits: {why}; a service may tighten its tenant's limits, never loosen them"
                    )));
                }
            }
            let record = self.store.update_service(tenant, service, update).await?;
            self.apply().await?;
            Ok(record)
        };
        self.audited(tenant, service, action, work, |record| {
            if action == "deploy"
                && let Some(deployment) = &record.deployment
            {
                let from = record
                    .previous
                    .as_ref()
                    .map_or_else(String::new, |p| format!(" (from {})", p.describe()));
                changed.insert(0, format!("{}{from}", deployment.describe()));
            }
            Some(changed.join("; "))
        })
        .await
    }

    /// Serves the previous deployment again, or the version `to` names.
    pub async fn rollback(
        &self,
        tenant: &str,
        service: &str,
        to: Option<&str>,
    ) -> Result<ServiceRecord, ControlError> {
        let work = async {
            let current = self.store.service(tenant, service).await?;
            let route = current.route.unwrap_or_else(|| format!("/{service}"));
            self.check_static_route(tenant, &route)?;
            let record = self.store.rollback(tenant, service, to).await?;
            self.apply().await?;
            Ok(record)
        };
        self.audited(tenant, service, "rollback", work, |record| {
            let to = record
                .deployment
                .as_ref()
                .map_or_else(|| "nothing".to_string(), Deployment::describe);
            Some(format!("to {to}"))
        })
        .await
    }

    pub async fn delete_service(&self, tenant: &str, service: &str) -> Result<(), ControlError> {
        let work = async {
            self.store.delete_service(tenant, service).await?;
            self.forget_data(tenant, Some(service)).await;
            self.apply_and_collect().await
        };
        // The service's history goes with it.
        self.audited(tenant, service, "delete", work, |_| None)
            .await
    }

    /// A service's deploy history, oldest first.
    pub async fn history(
        &self,
        tenant: &str,
        service: &str,
        limit: u32,
    ) -> Result<Vec<DeployEvent>, ControlError> {
        if self.is_declared(tenant, service) {
            // Its history is the config file's.
            return Ok(Vec::new());
        }
        self.store.service(tenant, service).await?;
        Ok(self.store.history(tenant, service, limit).await?)
    }

    /// The one path every deploy action takes: timed into the deploy
    /// metrics, and written to the service's history (`describe`'s line)
    /// once it has succeeded.
    async fn audited<T>(
        &self,
        tenant: &str,
        service: &str,
        action: &'static str,
        work: impl Future<Output = Result<T, ControlError>>,
        describe: impl FnOnce(&T) -> Option<String>,
    ) -> Result<T, ControlError> {
        let started = Instant::now();
        let outcome = match self.refuse_declared(tenant, service) {
            Ok(()) => work.await,
            Err(refused) => Err(refused),
        };
        metrics::deploy_finished(tenant, action, outcome.is_ok(), started.elapsed());
        if let Ok(done) = &outcome
            && let Some(detail) = describe(done)
        {
            self.remember(tenant, service, action, detail).await;
        }
        outcome
    }

    /// Appends to a service's deploy history. The change it records is
    /// already made; a failure here loses only the history line.
    async fn remember(&self, tenant: &str, service: &str, action: &str, detail: String) {
        let event = DeployEvent {
            tenant: tenant.to_string(),
            service: service.to_string(),
            at: now_millis(),
            action: action.to_string(),
            detail,
            actor: crate::actor::current(),
        };
        if let Err(error) = self.store.record_event(&event).await {
            tracing::warn!(tenant, service, %error, "cannot record a deploy event");
        }
    }

    /// Deletes a version no deployment serves; its history says so.
    pub async fn delete_version(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
    ) -> Result<(), ControlError> {
        let work = async {
            self.store.delete_version(tenant, service, label).await?;
            self.apply_and_collect().await
        };
        self.audited(tenant, service, "delete-version", work, |_| {
            Some(label.to_string())
        })
        .await
    }
}
