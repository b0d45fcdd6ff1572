//! The control plane's life cycle through raw HTTP and through the CLI:
//! create a tenant, deploy, serve, deploy again, split, roll back, delete.

use anyhow::{Context, Result, ensure};
use berth_e2e::{BerthProcess, berth_bin, component};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::process::Command;

/// Which versions answered `n` requests, by `x-berth-version`.
pub async fn versions_seen(
    host: &BerthProcess,
    tenant: &str,
    path: &str,
    n: usize,
) -> Result<HashMap<String, usize>> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let response = host.tenant_get(tenant, path).send().await?;
        // The guest answers (json-api says 404 to paths it does not know);
        // the host never fails.
        anyhow::ensure!(
            response.status().as_u16() < 500,
            "status {}",
            response.status()
        );
        let version = response
            .headers()
            .get("x-berth-version")
            .and_then(|v| v.to_str().ok())
            .context("no x-berth-version")?
            .to_string();
        *seen.entry(version).or_insert(0) += 1;
    }
    Ok(seen)
}

#[tokio::test]
async fn the_whole_life_cycle_over_http() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let token = op.create_tenant("acme").await?;
    let acme = host.admin_as(&token)?;

    let hello = std::fs::read(component("hello")?)?;
    let up = acme
        .upload("acme", "greeter", "1.0.0", hello.clone())
        .await?;
    assert_eq!(up.status, 201, "{up:?}");
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&hello)));
    assert_eq!(up.body["digest"], json!(digest));
    assert_eq!(up.body["size"], json!(hello.len()));
    let again = acme
        .upload("acme", "greeter", "1.0.0", hello.clone())
        .await?;
    assert_eq!(again.status, 200, "same bytes, same label: {again:?}");

    // Uploaded but not active: nothing answers yet.
    let before = host.tenant_get("acme", "/greet").send().await?;
    assert_eq!(before.status(), 404);

    let set = acme
        .put(
            "/v1/tenants/acme/services/greeter",
            json!({"route": "/greet", "version": "1.0.0"}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.body["active"], json!("1.0.0"));
    let response = host.tenant_get("acme", "/greet").send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-berth-version"], "1.0.0");
    assert_eq!(response.text().await?, "Hello from Berth!\n");
    // Other tenants (and the default one) do not see acme's routes.
    let default = berth_e2e::client().get(host.url("/greet")).send().await?;
    assert_eq!(default.status(), 404);

    let api = std::fs::read(component("json-api")?)?;
    let up = acme.upload("acme", "greeter", "2.0.0", api).await?;
    assert_eq!(up.status, 201, "{up:?}");
    let set = acme
        .put(
            "/v1/tenants/acme/services/greeter",
            json!({"version": "2.0.0"}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    let seen = versions_seen(&host, "acme", "/greet/health", 5).await?;
    assert_eq!(seen.get("2.0.0"), Some(&5), "{seen:?}");

    let set = acme
        .put(
            "/v1/tenants/acme/services/greeter",
            json!({"split": {"1.0.0": 50, "2.0.0": 50}}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.body["split"], json!({"1.0.0": 50, "2.0.0": 50}));
    let seen = versions_seen(&host, "acme", "/greet", 400).await?;
    for label in ["1.0.0", "2.0.0"] {
        let n = seen.get(label).copied().unwrap_or(0);
        assert!(
            (140..=260).contains(&n),
            "{label} served {n} of 400: {seen:?}"
        );
    }

    // Rollback with no target returns to what served before the split.
    let back = acme
        .post("/v1/tenants/acme/services/greeter/rollback", json!({}))
        .await?;
    assert_eq!(back.status, 200, "{back:?}");
    assert_eq!(back.body["active"], json!("2.0.0"));
    let back = acme
        .post(
            "/v1/tenants/acme/services/greeter/rollback",
            json!({"to": "1.0.0"}),
        )
        .await?;
    assert_eq!(back.body["active"], json!("1.0.0"), "{back:?}");
    let seen = versions_seen(&host, "acme", "/greet", 5).await?;
    assert_eq!(seen.get("1.0.0"), Some(&5), "{seen:?}");

    let busy = acme
        .delete("/v1/tenants/acme/services/greeter/versions/1.0.0")
        .await?;
    assert_eq!(busy.status, 409, "the active version cannot go: {busy:?}");
    let gone = acme
        .delete("/v1/tenants/acme/services/greeter/versions/2.0.0")
        .await?;
    assert_eq!(gone.status, 204, "{gone:?}");
    let shown = acme.get("/v1/tenants/acme/services/greeter").await?;
    assert_eq!(shown.body["versions"].as_array().map(Vec::len), Some(1));
    assert_eq!(shown.body["route"], json!("/greet"));

    let listed = acme.get("/v1/tenants/acme/services").await?;
    assert_eq!(listed.body[0]["name"], json!("greeter"));
    let deleted = acme.delete("/v1/tenants/acme/services/greeter").await?;
    assert_eq!(deleted.status, 204);
    let after = host.tenant_get("acme", "/greet").send().await?;
    assert_eq!(after.status(), 404);
    assert_eq!(
        acme.get("/v1/tenants/acme/services/greeter").await?.status,
        404
    );

    assert_eq!(op.delete("/v1/tenants/acme").await?.status, 204);
    assert_eq!(
        acme.get("/v1/tenants/acme").await?.status,
        401,
        "its tokens went with it"
    );
    Ok(())
}

#[tokio::test]
async fn routes_follow_host_names_prefixes_and_bound_domains() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    op.create_tenant("acme").await?;
    op.create_tenant("globex").await?;
    op.deploy("acme", "root", "1", &component("hello")?, "/")
        .await?;
    op.deploy("acme", "api", "1", &component("json-api")?, "/api")
        .await?;
    op.deploy("globex", "echo", "1", &component("echo")?, "/api")
        .await?;

    let r = host.tenant_get("acme", "/api/health").send().await?;
    assert_eq!(r.text().await?, r#"{"status":"ok"}"#);
    let r = host.tenant_get("acme", "/apix").send().await?;
    assert_eq!(
        r.text().await?,
        "Hello from Berth!\n",
        "longest prefix on a segment boundary"
    );
    let r = host
        .tenant_get("globex", "/api/x")
        .header("x-echo", "1")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, "", "globex's echo, not acme's api");

    // A second service of a tenant cannot take a route already in use.
    let up = op
        .upload("acme", "other", "1", std::fs::read(component("hello")?)?)
        .await?;
    assert_eq!(up.status, 201);
    let clash = op
        .put(
            "/v1/tenants/acme/services/other",
            json!({"route": "/api", "version": "1"}),
        )
        .await?;
    assert_eq!(clash.status, 409, "{clash:?}");

    let bound = op
        .put(
            "/v1/tenants/globex",
            json!({"domains": ["shop.example.test"]}),
        )
        .await?;
    assert_eq!(bound.status, 200, "{bound:?}");
    let r = berth_e2e::client()
        .get(host.url("/api/health"))
        .header("host", "shop.example.test")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await?,
        "",
        "globex's echo answers on its bound domain"
    );
    let taken = op
        .put(
            "/v1/tenants/acme",
            json!({"domains": ["shop.example.test"]}),
        )
        .await?;
    assert_eq!(taken.status, 409, "{taken:?}");
    Ok(())
}

pub fn cli(host: &BerthProcess, token: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(berth_bin()?)
        .args(args)
        .env("BERTH_ADMIN_URL", host.admin.clone().unwrap_or_default())
        .env("BERTH_TOKEN", token)
        .env_remove("BERTH_TENANT")
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn the_whole_life_cycle_through_the_cli() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = berth_e2e::OPERATOR_TOKEN;
    let (code, out, err) = cli(&host, op, &["tenant", "create", "acme", "-o", "json"])?;
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out)?;
    let token = created["token"].as_str().context("token")?.to_string();

    let hello = component("hello")?;
    let api = component("json-api")?;
    let hello_path = hello.to_str().context("path")?;
    let api_path = api.to_str().context("path")?;
    let (code, out, err) = cli(
        &host,
        &token,
        &[
            "deploy",
            hello_path,
            "--service",
            "web",
            "--version",
            "1.0.0",
            "--route",
            "/web",
        ],
    )?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployed web 1.0.0"), "{out}");
    assert!(out.contains("http://acme.localhost:"), "{out}");
    // Not on a terminal: progress as plain lines on stderr, stdout the result.
    assert!(
        err.contains("uploading ") && err.contains("compiled in "),
        "{err}"
    );
    let r = host.tenant_get("acme", "/web").send().await?;
    assert_eq!(r.headers()["x-berth-version"], "1.0.0");

    let (code, _, err) = cli(
        &host,
        &token,
        &[
            "deploy",
            api_path,
            "--service",
            "web",
            "--version",
            "2.0.0",
            "--split",
            "1.0.0=50,2.0.0=50",
        ],
    )?;
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = cli(&host, &token, &["service", "web", "-o", "json"])?;
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(shown["split"], json!({"1.0.0": 50, "2.0.0": 50}));
    let seen = versions_seen(&host, "acme", "/web", 200).await?;
    assert_eq!(seen.len(), 2, "{seen:?}");

    let (code, out, _) = cli(&host, &token, &["services"])?;
    assert_eq!(code, 0);
    assert!(
        out.contains("web") && out.contains("1.0.0=50,2.0.0=50"),
        "{out}"
    );
    let (code, out, err) = cli(&host, &token, &["rollback", "web", "--to", "1.0.0"])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("now serves 1.0.0"), "{out}");
    let (code, out, _) = cli(&host, &token, &["token", "list", "-o", "json"])?;
    assert_eq!(code, 0);
    assert!(!out.contains(&token), "listing never shows secrets");
    let (code, _, _) = cli(&host, &token, &["logs", "web"])?;
    assert_eq!(code, 0);
    let (code, out, _) = cli(&host, &token, &["delete", "web"])?;
    assert_eq!(code, 0);
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(host.tenant_get("acme", "/web").send().await?.status(), 404);

    // Failures: one line, non-zero exit.
    let (code, out, err) = cli(&host, "wrong", &["services"])?;
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = cli(&host, &token, &["rollback", "nope"])?;
    assert_ne!(code, 0);
    assert!(err.contains("404") && err.contains("nope"), "{err}");
    let (code, _, err) = cli(
        &host,
        &token,
        &[
            "deploy",
            "/no/such/file.wasm",
            "--service",
            "x",
            "--version",
            "1",
        ],
    )?;
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/file.wasm"), "{err}");
    Ok(())
}

#[tokio::test]
async fn guest_output_is_kept_per_service_and_can_be_followed() -> Result<()> {
    use futures::StreamExt;
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let token = op.create_tenant("acme").await?;
    let acme = host.admin_as(&token)?;
    acme.deploy("acme", "boom", "1", &component("testing-trap")?, "/boom")
        .await?;

    let follow = acme
        .request(
            reqwest::Method::GET,
            "/v1/tenants/acme/services/boom/logs?follow=true",
        )
        .send()
        .await?;
    assert_eq!(follow.status(), 200);
    let failed = host.tenant_get("acme", "/boom/trap").send().await?;
    assert_eq!(failed.status(), 500);
    let request_id = failed.headers()["x-request-id"].to_str()?.to_string();

    // The follower sees the panic message of that very request.
    let mut stream = follow.bytes_stream();
    let mut text = String::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk?));
            if text.contains(&request_id) {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await;
    assert!(matches!(found, Ok(Ok(true))), "follower saw: {text}");

    let recent = acme.get("/v1/tenants/acme/services/boom/logs").await?;
    assert_eq!(recent.status, 200);
    let line = match &recent.body {
        serde_json::Value::String(ndjson) => ndjson.lines().next().unwrap_or("").to_string(),
        other => other.to_string(),
    };
    let line: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(line["request_id"], json!(request_id));
    assert_eq!(line["stream"], json!("stderr"));
    assert_eq!(line["version"], json!("1"));
    Ok(())
}

#[tokio::test]
async fn config_file_services_live_in_the_default_tenant_beside_deployed_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::serve(
        &berth_e2e::service("hello", "hello", "/hello", "")?,
        dir.path(),
    )?;
    let op = host.operator()?;
    let echo = std::fs::read(component("echo")?)?;
    assert_eq!(op.upload("default", "echo", "1", echo).await?.status, 201);
    let clash = op
        .put(
            "/v1/tenants/default/services/echo",
            json!({"route": "/hello", "version": "1"}),
        )
        .await?;
    assert_eq!(clash.status, 409, "{clash:?}");
    assert_eq!(
        op.get("/v1/tenants/default/services/echo").await?.body["active"],
        json!(null),
        "a refused change stores nothing"
    );
    let set = op
        .put(
            "/v1/tenants/default/services/echo",
            json!({"route": "/echo", "version": "1"}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    let http = berth_e2e::client();
    let hello = http.get(host.url("/hello")).send().await?;
    assert_eq!(hello.text().await?, "Hello from Berth!\n");
    let echoed = http.post(host.url("/echo")).body("ping").send().await?;
    assert_eq!(echoed.headers()["x-berth-version"], "1");
    assert_eq!(echoed.text().await?, "ping");
    Ok(())
}

/// Two changes to different parts of a service's settings at once both land:
/// each is applied to the record the store reads inside its revision retry.
#[tokio::test]
async fn concurrent_settings_changes_both_land() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    acme.deploy("acme", "web", "1", &component("hello")?, "/")
        .await?;
    let path = "/v1/tenants/acme/services/web";
    for round in 0..30 {
        let (first, second, config) = (
            format!("first{round}"),
            format!("second{round}"),
            format!("round{round}"),
        );
        let (a, b, c) = tokio::join!(
            acme.put(path, json!({ "secrets": { first.clone(): "1" } })),
            acme.put(path, json!({ "secrets": { second.clone(): "2" } })),
            acme.put(path, json!({ "config": { config.clone(): "3" } })),
        );
        for answer in [a?, b?, c?] {
            anyhow::ensure!(answer.status == 200, "round {round}: {answer:?}");
        }
        let now = acme.get(path).await?;
        let secrets = now.body["secrets"].as_array().context("secrets")?;
        for name in [&first, &second] {
            anyhow::ensure!(
                secrets.iter().any(|s| s == name.as_str()),
                "round {round}: secret {name} was lost: {}",
                now.body
            );
        }
        anyhow::ensure!(
            now.body["config"][config.as_str()] == "3",
            "round {round}: config lost: {}",
            now.body
        );
    }
    Ok(())
}

/// A tenant and its first token are made in one step: a creation racing a
/// deletion of the same name either wins whole (its token works) or loses
/// whole, never a created tenant with a failed answer or no token.
#[tokio::test]
async fn a_tenant_is_created_with_its_token_in_one_step() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    for round in 0..40 {
        let (created, deleted) =
            tokio::join!(op.post("/v1/tenants", json!({ "name": "race" })), async {
                // Give the creation a head start of a few hundred µs.
                tokio::time::sleep(std::time::Duration::from_micros(200 * (round % 5))).await;
                op.delete("/v1/tenants/race").await
            });
        let (created, deleted) = (created?, deleted?);
        anyhow::ensure!(
            created.status == 201,
            "round {round}: creation answered {created:?}"
        );
        anyhow::ensure!(
            deleted.status == 204 || deleted.status == 404,
            "round {round}: deletion answered {deleted:?}"
        );
        if deleted.status == 404 {
            // The deletion came first; the new tenant is whole.
            let token = created.body["token"].as_str().context("token")?;
            let tenant = host.admin_as(token)?;
            let seen = tenant.get("/v1/tenants/race").await?;
            anyhow::ensure!(seen.status == 200, "round {round}: {seen:?}");
            let gone = op.delete("/v1/tenants/race").await?;
            anyhow::ensure!(gone.status == 204, "round {round}: {gone:?}");
        }
    }
    Ok(())
}

/// The OpenAPI document is generated from the same types the host answers
/// with: every limit a tenant's answer shows is a property of the
/// document's `TenantLimits`, and the answers parse as `berth-api` types.
#[tokio::test]
async fn the_openapi_document_describes_what_the_host_answers() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    acme.deploy("acme", "web", "1.0.0", &component("hello")?, "/web")
        .await?;
    let doc = op.get("/v1/openapi.json").await?;
    ensure!(doc.status == 200, "{doc:?}");
    let schemas = &doc.body["components"]["schemas"];
    for name in [
        "TenantLimits",
        "ServiceLimits",
        "TenantView",
        "ServiceView",
        "ServiceChange",
        "UploadedVersion",
        "Problem",
    ] {
        ensure!(schemas[name].is_object(), "no schema {name}");
    }
    let documented: std::collections::BTreeSet<&String> = schemas["TenantLimits"]["properties"]
        .as_object()
        .context("TenantLimits has no properties")?
        .keys()
        .collect();
    let tenant = acme.get("/v1/tenants/acme").await?;
    let shown: std::collections::BTreeSet<&String> = tenant.body["effective_limits"]
        .as_object()
        .context("no effective limits")?
        .keys()
        .collect();
    ensure!(documented == shown, "{documented:?} != {shown:?}");
    let service = acme.service("acme", "web").await?;
    ensure!(service.active.as_deref() == Some("1.0.0"), "{service:?}");
    ensure!(
        service.versions[0].digest.starts_with("sha256:"),
        "{service:?}"
    );
    // A name the API would refuse is refused before anything is stored.
    let bad = op
        .post("/v1/tenants", serde_json::json!({"name": "Not A Name"}))
        .await?;
    ensure!(bad.status == 400, "{bad:?}");
    let problem: berth_api::Problem = bad.parse()?;
    ensure!(problem.detail.contains("lowercase"), "{problem:?}");
    Ok(())
}
