//! The admin API: JSON over HTTP on its own listener, for operators and
//! tenants. Routes call the [`ControlPlane`]; the OpenAPI document at
//! `/v1/openapi.json` is generated from the handlers' annotations.

pub mod auth;
mod events;
mod observe;
pub mod problem;
mod services;
mod system;
mod tenants;
mod ui;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use auth::OperatorToken;
use berth_control::ControlPlane;
use berth_runtime::telemetry::next_request_id;

/// What every admin handler shares.
pub struct AdminState {
    pub control: Arc<ControlPlane>,
    pub operator: OperatorToken,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The data plane's address, for the URLs the API reports.
    pub data_plane: String,
    /// False while the host is starting or draining.
    pub ready: AtomicBool,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth admin API",
        description = "Tenants, tokens, versions and deployments of a Berth host."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "tenants", description = "Tenants and their tokens (operator)"),
        (name = "services", description = "Services, versions and deployments"),
        (name = "events", description = "Topics, dead letters, schedules and subscriptions"),
        (name = "observability", description = "Usage stats, deploy history, tenant metrics"),
        (name = "system", description = "Health, readiness, metrics")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The admin router and the OpenAPI document that describes it.
pub fn router(state: Arc<AdminState>) -> axum::Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(
            tenants::get_tenant,
            tenants::update_tenant,
            tenants::delete_tenant
        ))
        .routes(routes!(tenants::create_token, tenants::list_tokens))
        .routes(routes!(tenants::revoke_token))
        .routes(routes!(services::list_services))
        .routes(routes!(
            services::get_service,
            services::put_service,
            services::delete_service
        ))
        .routes(routes!(services::upload_version, services::delete_version))
        .routes(routes!(services::rollback))
        .routes(routes!(services::logs))
        .routes(routes!(observe::service_stats_route))
        .routes(routes!(observe::tenant_stats))
        .routes(routes!(observe::tenant_usage))
        .routes(routes!(observe::history))
        .routes(routes!(observe::tenant_metrics))
        .routes(routes!(events::publish))
        .routes(routes!(events::topics))
        .routes(routes!(events::topic))
        .routes(routes!(events::dead_letters))
        .routes(routes!(events::redrive))
        .routes(routes!(events::schedules))
        .routes(routes!(events::subscriptions))
        .routes(routes!(tenants::whoami))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::readyz_admin))
        .routes(routes!(system::metrics))
        .split_for_parts();
    let openapi = Arc::new(openapi);
    router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&openapi);
                async move { axum::Json(doc) }
            }),
        )
        .route("/ui", axum::routing::get(ui::redirect))
        .route("/ui/", axum::routing::get(ui::index))
        .route("/ui/app.js", axum::routing::get(ui::script))
        .route("/ui/app.css", axum::routing::get(ui::style))
        .fallback(system::not_found)
        .layer(axum::middleware::from_fn(with_request_id))
        .with_state(state)
}

/// Gives every admin request an id, in its span, its error body and the
/// `x-request-id` response header.
async fn with_request_id(request: Request, next: Next) -> Response {
    let id = next_request_id();
    let span = tracing::info_span!(
        "admin",
        request_id = %id,
        http.request.method = %request.method(),
        url.path = request.uri().path(),
    );
    let has_body = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || request
            .headers()
            .contains_key(http::header::TRANSFER_ENCODING);
    let mut response = problem::REQUEST_ID
        .scope(Arc::clone(&id), next.run(request).instrument(span.clone()))
        .await;
    let _entered = span.enter();
    tracing::info!(status = response.status().as_u16(), "admin request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if has_body && !response.status().is_success() {
        // The body may be left unread (a refused or oversized upload): say
        // the connection closes, so no client sends its next request on it.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Serves the admin API until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
