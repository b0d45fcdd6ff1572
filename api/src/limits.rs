//! Limits as people write them: in `berth.toml`, in the admin API and on
//! the command line. Every field is optional; one left out keeps its
//! default (or, for a service, its tenant's ceiling).

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, DurationSpec};

/// What one instance of a service may use: the `limits` of a service, and
/// the per-instance part of a tenant's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLimits {
    /// Linear memory of one instance (`"64MiB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Guest CPU time of one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<DurationSpec>,
    /// Time from a request's arrival to its response's last byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_bytes: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<ByteSize>,
    /// Outgoing HTTP requests (service calls included) one request may make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_requests: Option<u32>,
}

/// Everything a tenant is held to: the ceilings of its instances, how many
/// of its requests run and wait at once, and what it may store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_bytes: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_requests: Option<u32>,
    /// Requests running at once, over all the tenant's services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Requests waiting for one of those places; past it, 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// How long a request may wait in that queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<u32>,
    /// Versions over all the tenant's services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<u32>,
    /// Bytes of components stored over all those versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<ByteSize>,
    /// Whether the tenant's services may reach private addresses their
    /// allow-list names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_outbound: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_keys: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_value_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_storage: Option<ByteSize>,
    /// Topics the tenant may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_topics: Option<u32>,
    /// Events stored at once (waiting, being retried, or dead letters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_backlog: Option<u64>,
    /// Payload bytes of those events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_storage: Option<ByteSize>,
    /// Events the tenant may publish per second, per host (twice as many
    /// in a burst); past it, 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_rate: Option<u32>,
    /// Deliveries to the tenant's services in flight at once, per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_concurrency: Option<u32>,
}

impl TenantLimits {
    /// The part that bounds each instance.
    pub fn instance(&self) -> ServiceLimits {
        ServiceLimits {
            memory: self.memory,
            cpu_time: self.cpu_time,
            wall_time: self.wall_time,
            request_body: self.request_body,
            max_headers: self.max_headers,
            header_bytes: self.header_bytes,
            response_body: self.response_body,
            outbound_requests: self.outbound_requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_units_and_refuse_unknown_fields() -> Result<(), serde_json::Error> {
        let limits: TenantLimits =
            serde_json::from_str(r#"{"memory": "32MiB", "concurrency": 4, "cpu_time": "2s"}"#)?;
        assert_eq!(limits.memory, Some(ByteSize(32 << 20)));
        assert_eq!(limits.instance().memory, limits.memory);
        // Written back in bytes and milliseconds, and read again the same.
        let text = serde_json::to_string(&limits)?;
        assert_eq!(
            text,
            r#"{"memory":33554432,"cpu_time":"2000ms","concurrency":4}"#
        );
        assert_eq!(serde_json::from_str::<TenantLimits>(&text)?, limits);
        assert!(serde_json::from_str::<TenantLimits>(r#"{"memroy": 1}"#).is_err());
        assert!(serde_json::from_str::<ServiceLimits>(r#"{"concurrency": 1}"#).is_err());
        Ok(())
    }
}
