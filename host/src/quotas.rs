//! A tenant's quotas: the ceilings on what each of its instances may use, how
//! many of its requests run and wait at once, and how much it may store.
//!
//! The operator sets them as a JSON object (`PUT /v1/tenants/{t}`,
//! `berth tenant limits`); every field is optional and falls back to a
//! default that is safe for a shared host.

use serde::Deserialize;
use std::time::Duration;

use crate::kv::KvQuota;
use crate::limits::{Limits, LimitsSpec};
use crate::units::{ByteSize, DurationSpec};

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
        }
    }
}

/// The `limits` object as the operator writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuotasSpec {
    pub memory: Option<ByteSize>,
    pub cpu_time: Option<DurationSpec>,
    pub wall_time: Option<DurationSpec>,
    pub request_body: Option<ByteSize>,
    pub response_body: Option<ByteSize>,
    pub max_headers: Option<usize>,
    pub header_bytes: Option<ByteSize>,
    pub outbound_requests: Option<u32>,
    pub concurrency: Option<u32>,
    pub queue: Option<u32>,
    pub queue_timeout: Option<DurationSpec>,
    pub services: Option<u32>,
    pub versions: Option<u32>,
    pub storage: Option<ByteSize>,
    pub private_outbound: Option<bool>,
    pub kv_keys: Option<u64>,
    pub kv_value_size: Option<ByteSize>,
    pub kv_storage: Option<ByteSize>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid tenant limits: {0}")]
pub struct QuotaError(pub String);

impl TenantQuotas {
    /// Reads the stored or submitted `limits` object; `null` means defaults.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, QuotaError> {
        if value.is_null() {
            return Ok(Self::default());
        }
        let spec: TenantQuotasSpec =
            serde_json::from_value(value.clone()).map_err(|e| QuotaError(e.to_string()))?;
        let quotas = spec.apply_to(Self::default());
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
    pub fn to_json(&self) -> serde_json::Value {
        let l = &self.instance;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        serde_json::json!({
            "memory": l.memory_bytes,
            "cpu_time": ms(l.cpu_time),
            "wall_time": ms(l.wall_time),
            "request_body": l.request_body_bytes,
            "response_body": l.response_body_bytes,
            "max_headers": l.max_headers,
            "header_bytes": l.header_bytes,
            "outbound_requests": l.outbound_requests,
            "concurrency": self.concurrency,
            "queue": self.queue,
            "queue_timeout": ms(self.queue_timeout),
            "services": self.services,
            "versions": self.versions,
            "storage": self.storage_bytes,
            "private_outbound": self.private_outbound,
            "kv_keys": self.kv.keys,
            "kv_value_size": self.kv.value_bytes,
            "kv_storage": self.kv.total_bytes,
        })
    }
}

impl TenantQuotasSpec {
    fn apply_to(&self, base: TenantQuotas) -> TenantQuotas {
        let instance = LimitsSpec {
            memory: self.memory,
            cpu_time: self.cpu_time,
            wall_time: self.wall_time,
            request_body: self.request_body,
            max_headers: self.max_headers,
            header_bytes: self.header_bytes,
            response_body: self.response_body,
            outbound_requests: self.outbound_requests,
        }
        .apply_to(base.instance);
        TenantQuotas {
            instance,
            concurrency: self.concurrency.unwrap_or(base.concurrency),
            queue: self.queue.unwrap_or(base.queue),
            queue_timeout: self.queue_timeout.map_or(base.queue_timeout, |d| d.0),
            services: self.services.unwrap_or(base.services),
            versions: self.versions.unwrap_or(base.versions),
            storage_bytes: self.storage.map_or(base.storage_bytes, |b| b.0),
            private_outbound: self.private_outbound.unwrap_or(base.private_outbound),
            kv: KvQuota {
                keys: self.kv_keys.unwrap_or(base.kv.keys),
                value_bytes: self.kv_value_size.map_or(base.kv.value_bytes, |b| b.0),
                total_bytes: self.kv_storage.map_or(base.kv.total_bytes, |b| b.0),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_keep_their_defaults_and_round_trip() {
        let quotas =
            TenantQuotas::from_json(&serde_json::json!({"memory": "32MiB", "concurrency": 4}))
                .unwrap_or_default();
        assert_eq!(quotas.instance.memory_bytes, 32 << 20);
        assert_eq!(quotas.concurrency, 4);
        assert_eq!(quotas.queue, TenantQuotas::default().queue);
        let again = TenantQuotas::from_json(&quotas.to_json()).unwrap_or_default();
        assert_eq!(again, quotas);
    }

    #[test]
    fn refuses_unknown_fields_and_nonsense() {
        for bad in [
            serde_json::json!({"memroy": "1MiB"}),
            serde_json::json!({"memory": "lots"}),
            serde_json::json!({"concurrency": 0}),
            serde_json::json!({"cpu_time": "5"}),
            serde_json::json!([1, 2]),
        ] {
            assert!(TenantQuotas::from_json(&bad).is_err(), "{bad}");
        }
    }
}
