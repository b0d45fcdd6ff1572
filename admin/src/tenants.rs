//! `/v1/tenants`: tenants (operator only) and their tokens.

use axum::Json;
use axum::extract::{Path, State};
use berth_api::Problem;
use berth_api::tenants::{
    CreatedTenant, CreatedToken, NewTenant, NewToken, Role, TenantUpdate, TenantView, TokenView,
    WhoAmI,
};
use http::StatusCode;
use std::sync::Arc;

use super::AdminState;
use super::auth::{Caller, hash_secret, new_secret, new_token_id};
use super::problem::{ApiError, stored};
use berth_control::ControlError;
use berth_control::store::{TenantRecord, TokenRecord, now};
use berth_runtime::quotas::TenantQuotas;

/// The API's view of a stored tenant.
fn tenant_view(record: TenantRecord, base_domain: &str) -> Result<TenantView, ApiError> {
    Ok(TenantView {
        host: format!("{}.{base_domain}", record.name),
        name: stored(&record.name)?,
        domains: record.domains,
        effective_limits: TenantQuotas::from_limits(&record.limits)
            .unwrap_or_default()
            .to_limits(),
        limits: record.limits,
        created_at: record.created_at,
    })
}

fn token_view(record: TokenRecord) -> Result<TokenView, ApiError> {
    Ok(TokenView {
        tenant: stored(&record.tenant)?,
        id: record.id,
        description: record.description,
        created_at: record.created_at,
    })
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
        tenant: stored(&record.tenant)?,
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
            .map(|t| tenant_view(t, base))
            .collect::<Result<_, _>>()?,
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
    Ok(Json(tenant_view(
        record,
        &state.control.settings().base_domain,
    )?))
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
    Ok(Json(tenant_view(
        record,
        &state.control.settings().base_domain,
    )?))
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
    responses((status = 200, body = [TokenView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_tokens(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    caller.require_tenant(&tenant)?;
    let tokens = state.control.tokens(&tenant).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(token_view)
            .collect::<Result<_, _>>()?,
    ))
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

/// Who the presented token belongs to.
#[utoipa::path(get, path = "/v1/whoami", tag = "tenants",
    responses((status = 200, body = WhoAmI), (status = 401, body = Problem)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(match caller {
        Caller::Operator => WhoAmI {
            role: Role::Operator,
            tenant: None,
        },
        Caller::Tenant(tenant, _) => WhoAmI {
            role: Role::Tenant,
            tenant: tenant.parse().ok(),
        },
    })
}
