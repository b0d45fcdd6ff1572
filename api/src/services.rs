//! `/v1/tenants/{tenant}/services`: versions, deployments, rollbacks,
//! history and logs.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::events::{ScheduleSpec, SubscriptionSpec};
use crate::limits::ServiceLimits;
use crate::names::{Digest, ServiceName, TenantName, VersionLabel};
use crate::reuse::InstanceReuse;

/// A stored version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionView {
    pub label: VersionLabel,
    pub digest: Digest,
    /// The component's size in bytes.
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// A service as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceView {
    pub tenant: TenantName,
    pub name: ServiceName,
    pub route: Option<String>,
    /// The version serving all traffic, when there is no split.
    pub active: Option<VersionLabel>,
    /// Weights by version label, when traffic is split.
    pub split: Option<BTreeMap<VersionLabel, u32>>,
    /// The deployment a rollback without a target returns to.
    pub previous: Option<BTreeMap<VersionLabel, u32>>,
    pub versions: Vec<VersionView>,
    pub config: BTreeMap<String, String>,
    /// The names of the service's secrets; their values are never shown.
    pub secrets: Vec<String>,
    /// Key-value buckets besides `default`.
    pub buckets: Vec<String>,
    pub limits: ServiceLimits,
    pub allowed_outbound_hosts: Vec<String>,
    /// Environment variables the guest reads through `wasi:cli/environment`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How instances are reused between requests; empty means a fresh
    /// instance per request.
    #[serde(default)]
    pub reuse: InstanceReuse,
    /// Paths of the service called on a clock.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// Topics whose events the service receives.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
    /// Where the service answers, when it is deployed.
    pub url: Option<String>,
    /// Seconds since the Unix epoch.
    pub updated_at: i64,
    /// Declared in the host's config file (`berth.toml`): it serves as the
    /// file says, and the admin API refuses to change it.
    #[serde(default)]
    pub declared: bool,
}

/// What an upload stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadedVersion {
    pub label: VersionLabel,
    pub digest: Digest,
    pub size: u64,
    /// Time spent compiling (0 when the bytes were already stored).
    pub compile_ms: u64,
}

/// `PUT .../services/{service}`: fields left out stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceChange {
    /// Path prefix the service answers under, e.g. `/orders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Serve all traffic from this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionLabel>,
    /// Split traffic by weight between versions, e.g. `{"1.0.0": 90, "1.1.0": 10}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<BTreeMap<VersionLabel, u32>>,
    /// Configuration values, read by the guest through `wasi:config/store`;
    /// replaces the whole set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// Secret values, read like config but never shown again: each key given
    /// is set, or removed when its value is `null`; others stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BTreeMap<String, Option<String>>>,
    /// Key-value buckets besides `default`; replaces the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<String>>,
    /// Replaces the service's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ServiceLimits>,
    /// Replaces the hosts the service may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_outbound_hosts: Option<Vec<String>>,
    /// Environment variables; replaces the whole set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Replaces the instance reuse policy (`{}` goes back to a fresh
    /// instance per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<InstanceReuse>,
    /// Replaces the service's schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules: Option<Vec<ScheduleSpec>>,
    /// Replaces the service's subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<Vec<SubscriptionSpec>>,
}

/// `POST .../services/{service}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to serve; by default the previous deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<VersionLabel>,
}

/// One line a guest wrote, as `.../logs` streams it (one JSON object per
/// line).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub version: String,
    pub request_id: String,
    /// `stdout`, `stderr`, or `log` (`wasi:logging`). Borrowed where the
    /// host makes a line, so writing one allocates only its message.
    #[schema(value_type = String)]
    pub stream: Cow<'static, str>,
    /// `error`, `warn`, `info`, `debug` or `trace`; stdout is `info` and
    /// stderr `warn`.
    #[schema(value_type = String)]
    pub level: Cow<'static, str>,
    pub message: String,
}

/// One change to a service, for its deploy history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeployEventView {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// `upload`, `deploy`, `configure`, `rollback` or `delete-version`.
    pub action: String,
    /// What changed: the version uploaded (with its digest), or the split
    /// now serving (with what served before).
    pub detail: String,
    /// Who changed it: `operator`, or `token {id}` of the tenant's token;
    /// empty for changes made before Berth recorded it.
    #[serde(default)]
    pub actor: String,
}

/// `GET .../services/{service}/history`, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub events: Vec<DeployEventView>,
}
