//! Authorization: every admin route with no token, a wrong token, another
//! tenant's token, the right tenant's token and the operator token.

use anyhow::Result;
use berth_e2e::{Admin, BerthProcess, component};
use reqwest::Method;
use serde_json::json;

/// Who may call a route.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    Operator,
    Tenant,
    AnyToken,
    Public,
}

struct Route {
    method: Method,
    path: &'static str,
    body: Option<serde_json::Value>,
    wasm: bool,
    access: Access,
}

fn route(method: Method, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        body: None,
        wasm: false,
        access,
    }
}

fn with_body(mut r: Route, body: serde_json::Value) -> Route {
    r.body = Some(body);
    r
}

async fn call(admin: &Admin, route: &Route, hello: &[u8]) -> Result<u16> {
    let mut request = admin.request(route.method.clone(), route.path);
    if route.wasm {
        request = request
            .header("content-type", "application/wasm")
            .body(hello.to_vec());
    } else if let Some(body) = &route.body {
        request = request.json(body);
    }
    Ok(admin.send(request).await?.status)
}

#[tokio::test]
async fn every_admin_route_checks_who_is_calling() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme_token = op.create_tenant("acme").await?;
    let globex_token = op.create_tenant("globex").await?;
    op.deploy("acme", "web", "1", &component("hello")?, "/web")
        .await?;
    let hello = std::fs::read(component("hello")?)?;

    use Access::*;
    // Destructive routes come last, so earlier ones find what they act on.
    let mut routes = vec![
        route(Method::GET, "/healthz", Public),
        route(Method::GET, "/readyz", Public),
        route(Method::GET, "/readyz/admin", Public),
        route(Method::GET, "/metrics", Public),
        route(Method::GET, "/v1/openapi.json", Public),
        route(Method::GET, "/v1/whoami", AnyToken),
        route(Method::GET, "/v1/tenants", Operator),
        with_body(
            route(Method::POST, "/v1/tenants", Operator),
            json!({"name": "initech"}),
        ),
        route(Method::GET, "/v1/tenants/acme", Tenant),
        with_body(
            route(Method::PUT, "/v1/tenants/acme", Operator),
            json!({"domains": []}),
        ),
        with_body(
            route(Method::POST, "/v1/tenants/acme/tokens", Tenant),
            json!({}),
        ),
        route(Method::GET, "/v1/tenants/acme/tokens", Tenant),
        route(
            Method::DELETE,
            "/v1/tenants/acme/tokens/tok_000000000000",
            Tenant,
        ),
        route(Method::GET, "/v1/tenants/acme/services", Tenant),
        route(Method::GET, "/v1/tenants/acme/services/web", Tenant),
        route(Method::GET, "/v1/tenants/acme/services/web/logs", Tenant),
        with_body(
            route(Method::PUT, "/v1/tenants/acme/services/web", Tenant),
            json!({"version": "1"}),
        ),
        with_body(
            route(
                Method::POST,
                "/v1/tenants/acme/services/web/rollback",
                Tenant,
            ),
            json!({"to": "1"}),
        ),
        route(
            Method::DELETE,
            "/v1/tenants/acme/services/web/versions/2",
            Tenant,
        ),
        route(Method::DELETE, "/v1/tenants/acme/services/web", Tenant),
        route(Method::DELETE, "/v1/tenants/acme", Operator),
    ];
    routes.insert(
        15,
        Route {
            method: Method::PUT,
            path: "/v1/tenants/acme/services/web/versions/2",
            body: None,
            wasm: true,
            access: Tenant,
        },
    );

    let nobody = host.admin_as("")?;
    let stranger =
        host.admin_as("berth_0000000000000000000000000000000000000000000000000000000000000000")?;
    let globex = host.admin_as(&globex_token)?;
    let acme = host.admin_as(&acme_token)?;
    for r in &routes {
        let what = format!("{} {}", r.method, r.path);
        let none = call(&nobody, r, &hello).await?;
        let wrong = call(&stranger, r, &hello).await?;
        let other = call(&globex, r, &hello).await?;
        let right = call(&acme, r, &hello).await?;
        let operator = call(&op, r, &hello).await?;
        match r.access {
            Public => {
                for s in [none, wrong, other, right, operator] {
                    assert_eq!(s, 200, "{what}");
                }
            }
            AnyToken => {
                assert_eq!((none, wrong), (401, 401), "{what}");
                for s in [other, right, operator] {
                    assert_eq!(s, 200, "{what}");
                }
            }
            Tenant | Operator => {
                assert_eq!(none, 401, "{what}: no token");
                assert_eq!(wrong, 401, "{what}: wrong token");
                assert_eq!(other, 403, "{what}: another tenant's token");
                if r.access == Tenant {
                    assert!(
                        ![401, 403].contains(&right),
                        "{what}: own tenant got {right}"
                    );
                } else {
                    assert_eq!(right, 403, "{what}: operator-only route");
                }
                assert!(
                    ![401, 403].contains(&operator),
                    "{what}: operator got {operator}"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn tokens_are_created_listed_without_secrets_and_revoked() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let first = op.create_tenant("acme").await?;
    let acme = host.admin_as(&first)?;

    let created = acme
        .post("/v1/tenants/acme/tokens", json!({"description": "ci"}))
        .await?;
    assert_eq!(created.status, 201, "{created:?}");
    let second = created.body["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = created.body["id"].as_str().unwrap_or_default().to_string();
    assert_ne!(second, first);

    let listed = acme.get("/v1/tenants/acme/tokens").await?;
    let text = listed.body.to_string();
    assert!(text.contains(&id) && text.contains("ci"), "{text}");
    assert!(
        !text.contains(&first) && !text.contains(&second),
        "no secrets: {text}"
    );

    let ci = host.admin_as(&second)?;
    assert_eq!(ci.get("/v1/tenants/acme/services").await?.status, 200);
    let revoked = acme
        .delete(&format!("/v1/tenants/acme/tokens/{id}"))
        .await?;
    assert_eq!(revoked.status, 204);
    let after = ci.get("/v1/tenants/acme/services").await?;
    assert_eq!(after.status, 401, "a revoked token stops working at once");
    assert_eq!(after.content_type, "application/problem+json");
    assert!(
        after.body["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(acme.get("/v1/tenants/acme/services").await?.status, 200);
    Ok(())
}
