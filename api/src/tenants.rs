//! `/v1/tenants`, `/v1/tenants/{tenant}/tokens` and `/v1/whoami`.

use serde::{Deserialize, Serialize};

use crate::limits::TenantLimits;
use crate::names::TenantName;

/// `POST /v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: TenantName,
}

/// A new tenant and its first token, shown only this once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedTenant {
    pub name: TenantName,
    pub token: String,
    pub token_id: String,
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantView {
    pub name: TenantName,
    /// Domains bound to the tenant besides `{name}.{base-domain}`.
    pub domains: Vec<String>,
    /// The tenant's host name under the base domain.
    pub host: String,
    /// The limits the operator set; unset ones take their defaults.
    pub limits: TenantLimits,
    /// Every limit the tenant runs under, defaults filled in.
    pub effective_limits: TenantLimits,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// `PUT /v1/tenants/{tenant}`: fields left out stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    /// Replaces the domains bound to the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    /// Replaces the tenant's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TenantLimits>,
}

/// `POST /v1/tenants/{tenant}/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for, to tell tokens apart when listing them.
    #[serde(default)]
    pub description: String,
}

/// A new token; the secret is shown only this once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub id: String,
    pub tenant: TenantName,
    pub description: String,
    pub token: String,
}

/// A token as it is listed: never its secret, which is not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub tenant: TenantName,
    pub description: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// Whom a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Tenant,
}

/// `GET /v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub role: Role,
    /// The tenant, for a tenant token.
    pub tenant: Option<TenantName>,
}
