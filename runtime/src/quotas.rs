//! A tenant's quotas: the ceilings on what each of its instances may use, how
//! many of its requests run and wait at once, and how much it may store.
//!
//! The operator sets them as [`TenantLimits`] (`PUT /v1/tenants/{t}`,
//! `berth tenant limits`); every field is optional and falls back to a
//! default that is safe for a shared host.

use berth_api::limits::TenantLimits;
use berth_api::units::{ByteSize, DurationSpec};
use std::time::Duration;

use crate::kv::KvQuota;
use crate::limits::Limits;

/// Everything one tenant is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantQuotas {
    /// Ceilings for every instance of the tenant's services; a service may
    /// set tighter limits of its own, never looser ones.
    pub instance: Limits,
    /// Requests of the tenant running at once, over all its services.
    pub concurrency: u32,
    /// Requests of the tenant waiting for one of those places; past it they
    /// are refused with 503 and `Retry-After`.
    pub queue: u32,
    /// How long a request may wait in that queue.
    pub queue_timeout: Duration,
    pub services: u32,
    /// Versions over all the tenant's services.
    pub versions: u32,
    /// Bytes of components stored over all those versions.
    pub storage_bytes: u64,
    /// Whether the tenant's services may reach loopback, private and
    /// link-local addresses when their allow-list names them.
    pub private_outbound: bool,
    /// Key-value data over all the tenant's services.
    pub kv: KvQuota,
    /// Topics, stored events, publishing and deliveries.
    pub events: EventQuota,
}

/// What a tenant's events may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventQuota {
    pub topics: u32,
    /// Events stored at once, dead letters included.
    pub backlog: u64,
    /// Payload bytes of those events.
    pub storage_bytes: u64,
    /// Events published per second, per host.
    pub publish_rate: u32,
    /// Deliveries in flight at once, per host.
    pub concurrency: u32,
}

impl Default for EventQuota {
    fn default() -> Self {
        Self {
            topics: 100,
            backlog: 100_000,
            storage_bytes: 256 * 1024 * 1024,
            publish_rate: 1000,
            concurrency: 8,
        }
    }
}

impl Default for TenantQuotas {
    fn default() -> Self {
        Self {
            instance: Limits::default(),
            concurrency: 256,
            queue: 1024,
            queue_timeout: Duration::from_secs(5),
            services: 100,
            versions: 1000,
            storage_bytes: 2 * 1024 * 1024 * 1024,
            private_outbound: false,
            kv: KvQuota::default(),
            events: EventQuota::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid tenant limits: {0}")]
pub struct QuotaError(pub String);

impl TenantQuotas {
    /// The quotas the operator's `limits` make, unset ones at their
    /// defaults; refused when they make no sense.
    pub fn from_limits(limits: &TenantLimits) -> Result<Self, QuotaError> {
        let quotas = Self::default().overridden_by(limits);
        let events = &quotas.events;
        if events.publish_rate == 0 || events.concurrency == 0 {
            return Err(QuotaError(
                "publish_rate and event_concurrency must be at least 1".into(),
            ));
        }
        if quotas.concurrency == 0 {
            return Err(QuotaError("concurrency must be at least 1".into()));
        }
        if quotas.instance.memory_bytes < 64 * 1024 {
            return Err(QuotaError(
                "memory must be at least 64KiB (one WebAssembly page)".into(),
            ));
        }
        Ok(quotas)
    }

    /// The resolved quotas, every field present, in the form they are set.
    pub fn to_limits(&self) -> TenantLimits {
        let l = &self.instance;
        TenantLimits {
            memory: Some(ByteSize(l.memory_bytes)),
            cpu_time: Some(DurationSpec(l.cpu_time)),
            wall_time: Some(DurationSpec(l.wall_time)),
            request_body: Some(ByteSize(l.request_body_bytes)),
            response_body: Some(ByteSize(l.response_body_bytes)),
            max_headers: Some(l.max_headers),
            header_bytes: Some(ByteSize(l.header_bytes as u64)),
            outbound_requests: Some(l.outbound_requests),
            concurrency: Some(self.concurrency),
            queue: Some(self.queue),
            queue_timeout: Some(DurationSpec(self.queue_timeout)),
            services: Some(self.services),
            versions: Some(self.versions),
            storage: Some(ByteSize(self.storage_bytes)),
            private_outbound: Some(self.private_outbound),
            kv_keys: Some(self.kv.keys),
            kv_value_size: Some(ByteSize(self.kv.value_bytes)),
            kv_storage: Some(ByteSize(self.kv.total_bytes)),
            event_topics: Some(self.events.topics),
            event_backlog: Some(self.events.backlog),
            event_storage: Some(ByteSize(self.events.storage_bytes)),
            publish_rate: Some(self.events.publish_rate),
            event_concurrency: Some(self.events.concurrency),
        }
    }

    /// These quotas with the fields `limits` sets replaced.
    fn overridden_by(self, limits: &TenantLimits) -> TenantQuotas {
        TenantQuotas {
            instance: self.instance.overridden_by(&limits.instance()),
            concurrency: limits.concurrency.unwrap_or(self.concurrency),
            queue: limits.queue.unwrap_or(self.queue),
            queue_timeout: limits.queue_timeout.map_or(self.queue_timeout, |d| d.0),
            services: limits.services.unwrap_or(self.services),
            versions: limits.versions.unwrap_or(self.versions),
            storage_bytes: limits.storage.map_or(self.storage_bytes, |b| b.0),
            private_outbound: limits.private_outbound.unwrap_or(self.private_outbound),
            kv: KvQuota {
                keys: limits.kv_keys.unwrap_or(self.kv.keys),
                value_bytes: limits.kv_value_size.map_or(self.kv.value_bytes, |b| b.0),
                total_bytes: limits.kv_storage.map_or(self.kv.total_bytes, |b| b.0),
            },
            events: EventQuota {
                topics: limits.event_topics.unwrap_or(self.events.topics),
                backlog: limits.event_backlog.unwrap_or(self.events.backlog),
                storage_bytes: limits
                    .event_storage
                    .map_or(self.events.storage_bytes, |b| b.0),
                publish_rate: limits.publish_rate.unwrap_or(self.events.publish_rate),
                concurrency: limits.event_concurrency.unwrap_or(self.events.concurrency),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_keep_their_defaults_and_round_trip() -> Result<(), QuotaError> {
        let limits = TenantLimits {
            memory: Some(ByteSize(32 << 20)),
            concurrency: Some(4),
            ..TenantLimits::default()
        };
        let quotas = TenantQuotas::from_limits(&limits)?;
        assert_eq!(quotas.instance.memory_bytes, 32 << 20);
        assert_eq!(quotas.concurrency, 4);
        assert_eq!(quotas.queue, TenantQuotas::default().queue);
        assert_eq!(TenantQuotas::from_limits(&quotas.to_limits())?, quotas);
        Ok(())
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            TenantLimits {
                concurrency: Some(0),
                ..TenantLimits::default()
            },
            TenantLimits {
                memory: Some(ByteSize(1024)),
                ..TenantLimits::default()
            },
        ] {
            assert!(TenantQuotas::from_limits(&bad).is_err(), "{bad:?}");
        }
    }
}
