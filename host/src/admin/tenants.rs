//! `/v1/tenants`: tenants (operator only) and their tokens.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

use super::AdminState;
use super::auth::{Caller, hash_secret, new_secret, new_token_id};
use super::problem::{ApiError, Problem};
use crate::control::ControlError;
use crate::quotas::TenantQuotas;
use crate::store::{TenantRecord, TokenRecord, now};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// `[a-z0-9][a-z0-9-]{0,62}`
    name: String,
}

/// A new tenant and its first token, shown only this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedTenant {
    name: String,
    token: String,
    token_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    name: String,
    /// Domains bound to the tenant besides `{name}.{base-domain}`.
    domains: Vec<String>,
    /// The tenant's host name under the base domain.
    host: String,
    /// The limits the operator set; unset ones take their defaults.
    #[schema(value_type = Object)]
    limits: serde_json::Value,
    /// Every limit the tenant runs under, defaults filled in.
    #[schema(value_type = Object)]
    effective_limits: serde_json::Value,
    created_at: i64,
}

impl TenantView {
    fn new(record: TenantRecord, base_domain: &str) -> Self {
        Self {
            host: format!("{}.{base_domain}", record.name),
            name: record.name,
            domains: record.domains,
            effective_limits: TenantQuotas::from_json(&record.limits)
                .unwrap_or_default()
                .to_json(),
            limits: record.limits,
            created_at: record.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    /// Replaces the domains bound to the tenant.
    domains: Option<Vec<String>>,
    /// Replaces the tenant's limits.
    #[schema(value_type = Option<Object>)]
    limits: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for, to tell tokens apart when listing them.
    #[serde(default)]
    description: String,
}

/// A new token; the secret is shown only this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    id: String,
    tenant: String,
    description: String,
    token: String,
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::Control(ControlError::Internal(e.to_string()))
}

/// A new token of `tenant`: its record and its secret, shown once.
fn new_token(tenant: &str, description: String) -> Result<(TokenRecord, String), ApiError> {
    let secret = new_secret("berth_")?;
    let record = TokenRecord {
        id: new_token_id().map_err(io_error)?,
        tenant: tenant.to_string(),
        description,
        created_at: now(),
    };
    Ok((record, secret))
}

async fn issue_token(
    state: &AdminState,
    tenant: &str,
    description: String,
) -> Result<CreatedToken, ApiError> {
    let (record, secret) = new_token(tenant, description)?;
    state
        .control
        .add_token(&record, &hash_secret(&secret))
        .await?;
    Ok(CreatedToken {
        id: record.id,
        tenant: record.tenant,
        description: record.description,
        token: secret,
    })
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        io_error(e)
    }
}

/// Create a tenant and its first token.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses(
        (status = 201, body = CreatedTenant),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create_tenant(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    body: Result<Json<NewTenant>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedTenant>), ApiError> {
    caller.require_operator()?;
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (token, secret) = new_token(&body.name, "created with the tenant".into())?;
    state
        .control
        .create_tenant(&body.name, &token, &hash_secret(&secret))
        .await?;
    tracing::info!(tenant = %body.name, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedTenant {
            name: body.name,
            token: secret,
            token_id: token.id,
        }),
    ))
}

/// List tenants.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, body = [TenantView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_tenants(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
) -> Result<Json<Vec<TenantView>>, ApiError> {
    caller.require_operator()?;
    let base = &state.control.settings().base_domain;
    let tenants = state.control.tenants().await?;
    Ok(Json(
        tenants
            .into_iter()
            .map(|t| TenantView::new(t, base))
            .collect(),
    ))
}

/// One tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = TenantView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_tenant(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    caller.require_tenant(&tenant)?;
    let record = state.control.tenant(&tenant).await?;
    Ok(Json(TenantView::new(
        record,
        &state.control.settings().base_domain,
    )))
}

/// Bind domains to a tenant or set its limits.
#[utoipa::path(put, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path)), request_body = TenantUpdate,
    responses((status = 200, body = TenantView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn update_tenant(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: Result<Json<TenantUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<TenantView>, ApiError> {
    caller.require_operator()?;
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let record = state
        .control
        .update_tenant(&tenant, body.domains, body.limits)
        .await?;
    Ok(Json(TenantView::new(
        record,
        &state.control.settings().base_domain,
    )))
}

/// Delete a tenant with its tokens, services and versions.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_tenant(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_operator()?;
    state.control.delete_tenant(&tenant).await?;
    tracing::info!(%tenant, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Create a token for a tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "tenants",
    params(("tenant" = String, Path)), request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn create_token(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: Option<Json<NewToken>>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require_tenant(&tenant)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let token = issue_token(&state, &tenant, body.description).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// List a tenant's tokens, without their secrets.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/tokens", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = [TokenRecord]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_tokens(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    caller.require_tenant(&tenant)?;
    Ok(Json(state.control.tokens(&tenant).await?))
}

/// Revoke a token; it stops working at once.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/tokens/{id}", tag = "tenants",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_token(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_tenant(&tenant)?;
    state.control.revoke_token(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the token belongs to.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// `operator` or `tenant`.
    role: &'static str,
    /// The tenant, for a tenant token.
    tenant: Option<String>,
}

/// Who the presented token belongs to.
#[utoipa::path(get, path = "/v1/whoami", tag = "tenants",
    responses((status = 200, body = WhoAmI), (status = 401, body = Problem)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(match caller {
        Caller::Operator => WhoAmI {
            role: "operator",
            tenant: None,
        },
        Caller::Tenant(tenant) => WhoAmI {
            role: "tenant",
            tenant: Some(tenant),
        },
    })
}
