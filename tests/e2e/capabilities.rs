//! Host capabilities seen from guests, through the `testing-capabilities`
//! probe: key-value isolation, atomicity and durability, config and secrets,
//! logs, and service-to-service calls.

use anyhow::{Context, Result};
use berth_e2e::{Admin, BerthProcess, Launch, client, component};
use serde_json::json;
use std::time::Duration;

/// Deploys the probe as `service` of `tenant` at `/{service}`.
async fn probe(admin: &Admin, tenant: &str, service: &str) -> Result<()> {
    admin
        .deploy(
            tenant,
            service,
            "1",
            &component("testing-capabilities")?,
            &format!("/{service}"),
        )
        .await
}

/// One request to the data plane as `tenant`: status and body.
async fn send(
    host: &BerthProcess,
    tenant: &str,
    method: reqwest::Method,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    let response = client()
        .request(method, host.url(path))
        .header("host", format!("{tenant}.localhost"))
        .body(body.to_string())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

async fn get(host: &BerthProcess, tenant: &str, path: &str) -> Result<(u16, String)> {
    send(host, tenant, reqwest::Method::GET, path, "").await
}

async fn put(host: &BerthProcess, tenant: &str, path: &str, body: &str) -> Result<u16> {
    Ok(send(host, tenant, reqwest::Method::PUT, path, body)
        .await?
        .0)
}

#[tokio::test]
async fn key_value_data_is_confined_to_its_service_tenant_and_buckets() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    let globex = host.admin_as(&op.create_tenant("globex").await?)?;
    probe(&acme, "acme", "a").await?;
    probe(&acme, "acme", "b").await?;
    probe(&globex, "globex", "a").await?;

    assert_eq!(put(&host, "acme", "/a/kv/default/k", "acme-a").await?, 204);
    assert_eq!(
        get(&host, "acme", "/a/kv/default/k").await?,
        (200, "acme-a".into())
    );
    // Another service of the tenant, and the same service name in another
    // tenant, each see their own (empty) data.
    assert_eq!(get(&host, "acme", "/b/kv/default/k").await?.0, 404);
    assert_eq!(get(&host, "globex", "/a/kv/default/k").await?.0, 404);
    assert_eq!(
        put(&host, "globex", "/a/kv/default/k", "globex-a").await?,
        204
    );
    assert_eq!(
        get(&host, "acme", "/a/kv/default/k").await?,
        (200, "acme-a".into())
    );

    // A bucket the service did not declare does not exist for it.
    let (status, body) = send(&host, "acme", reqwest::Method::PUT, "/a/kv/sessions/s", "x").await?;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("sessions"), "{body}");
    let declared = acme
        .put(
            "/v1/tenants/acme/services/a",
            json!({"buckets": ["sessions"]}),
        )
        .await?;
    assert_eq!(declared.status, 200, "{declared:?}");
    assert_eq!(declared.body["buckets"], json!(["sessions"]));
    assert_eq!(put(&host, "acme", "/a/kv/sessions/s", "x").await?, 204);
    assert_eq!(get(&host, "acme", "/a/kv/default/s").await?.0, 404);
    assert_eq!(
        get(&host, "acme", "/a/keys/default").await?,
        (200, r#"["k"]"#.into())
    );
    let bad = acme
        .put("/v1/tenants/acme/services/a", json!({"buckets": ["../x"]}))
        .await?;
    assert_eq!(bad.status, 400, "{bad:?}");

    // Deleting the service deletes its data; a new service of that name
    // starts empty.
    assert_eq!(
        acme.delete("/v1/tenants/acme/services/a").await?.status,
        204
    );
    probe(&acme, "acme", "a").await?;
    assert_eq!(get(&host, "acme", "/a/kv/default/k").await?.0, 404);
    assert_eq!(
        get(&host, "globex", "/a/kv/default/k").await?,
        (200, "globex-a".into())
    );
    Ok(())
}

/// `clients` clients each POST to `path` (as acme) `each` times, all at
/// once; every answer must be 200. Returns the bodies.
async fn posts_at_once(
    host: &BerthProcess,
    path: &str,
    clients: usize,
    each: usize,
) -> Result<Vec<String>> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = host.url(path);
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut bodies = Vec::new();
            for _ in 0..each {
                let response = http
                    .post(&url)
                    .header("host", "acme.localhost")
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 200, "status {}", response.status());
                bodies.push(response.text().await?);
            }
            anyhow::Ok(bodies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

#[tokio::test]
async fn concurrent_increments_and_updates_add_up_exactly() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    probe(&acme, "acme", "a").await?;

    // 50 clients, 20 increments each, all at once.
    let mut all: Vec<u64> = posts_at_once(&host, "/a/incr/n", 50, 20)
        .await?
        .iter()
        .map(|sum| sum.parse())
        .collect::<Result<_, _>>()?;
    all.sort_unstable();
    // Every increment saw a distinct sum: none was lost or applied twice.
    assert_eq!(all, (1..=1000).collect::<Vec<u64>>());
    assert_eq!(
        get(&host, "acme", "/a/kv/default/n").await?,
        (200, "1000".into())
    );

    // Read-modify-write through compare-and-swap, 20 clients at once.
    posts_at_once(&host, "/a/update/m", 20, 10).await?;
    assert_eq!(
        get(&host, "acme", "/a/kv/default/m").await?,
        (200, "200".into())
    );
    Ok(())
}

#[tokio::test]
async fn key_value_quotas_refuse_writes_with_a_clear_error() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    let limits = json!({"limits": {"kv_keys": 2, "kv_value_size": "16B", "kv_storage": "1KiB"}});
    assert_eq!(op.put("/v1/tenants/acme", limits).await?.status, 200);
    probe(&acme, "acme", "a").await?;
    assert_eq!(put(&host, "acme", "/a/kv/default/k1", "small").await?, 204);
    let (status, body) = send(
        &host,
        "acme",
        reqwest::Method::PUT,
        "/a/kv/default/k2",
        "a value longer than sixteen bytes",
    )
    .await?;
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("limit"), "{body}");
    assert_eq!(put(&host, "acme", "/a/kv/default/k2", "ok").await?, 204);
    let (status, body) = send(&host, "acme", reqwest::Method::PUT, "/a/kv/default/k3", "x").await?;
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("keys"), "{body}");
    // Overwriting a key the tenant has is still allowed.
    assert_eq!(put(&host, "acme", "/a/kv/default/k1", "again").await?, 204);
    Ok(())
}

#[tokio::test]
async fn key_value_data_survives_redeploys_and_restarts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let launch = || Launch {
        args: vec![],
        config: None,
        data_dir: dir.path().join("data"),
    };
    let host = BerthProcess::launch(launch())?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    probe(&acme, "acme", "a").await?;
    assert_eq!(put(&host, "acme", "/a/kv/default/k", "kept").await?, 204);
    // A new version of the service sees the same data.
    acme.deploy("acme", "a", "2", &component("testing-capabilities")?, "/a")
        .await?;
    assert_eq!(
        get(&host, "acme", "/a/kv/default/k").await?,
        (200, "kept".into())
    );
    host.kill()?;

    let host = BerthProcess::launch(launch())?;
    assert_eq!(
        get(&host, "acme", "/a/kv/default/k").await?,
        (200, "kept".into())
    );
    Ok(())
}

/// Every byte under `dir`, for looking for a secret at rest.
fn all_bytes(dir: &std::path::Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(all_bytes(&path)?);
        } else {
            out.extend(std::fs::read(&path)?);
        }
    }
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn config_and_secrets_reach_the_guest_and_secrets_stay_hidden() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut cmd = std::process::Command::new(berth_e2e::berth_bin()?);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(&data)
    .env("BERTH_OPERATOR_TOKEN", berth_e2e::OPERATOR_TOKEN)
    .env("BERTH_SECRETS_KEY", "5a".repeat(32));
    let host = BerthProcess::spawn(cmd)?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    probe(&acme, "acme", "a").await?;
    let secret = "s3cret-value-9f2c";
    let set = acme
        .put(
            "/v1/tenants/acme/services/a",
            json!({"config": {"greeting": "hi"}, "secrets": {"api_key": secret}}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(
        get(&host, "acme", "/a/config/greeting").await?,
        (200, "hi".into())
    );
    assert_eq!(
        get(&host, "acme", "/a/config/api_key").await?,
        (200, secret.into())
    );
    assert_eq!(get(&host, "acme", "/a/config/missing").await?.0, 404);

    // The admin API names the secret, never shows it.
    let shown = acme.get("/v1/tenants/acme/services/a").await?;
    assert_eq!(shown.body["secrets"], json!(["api_key"]));
    assert_eq!(shown.body["config"], json!({"greeting": "hi"}));
    assert!(!shown.body.to_string().contains(secret));
    // Setting config again leaves secrets alone; `null` removes one.
    acme.put(
        "/v1/tenants/acme/services/a",
        json!({"config": {"greeting": "hello"}}),
    )
    .await?;
    assert_eq!(
        get(&host, "acme", "/a/config/api_key").await?,
        (200, secret.into())
    );

    // Not in the data directory (the key is set), not in the log.
    assert!(!contains(&all_bytes(&data)?, secret.as_bytes()));
    assert!(!host.log().contains(secret));

    for bad in [
        json!({"config": {"bad key!": "x"}}),
        json!({"config": {"api_key": "x"}}),
        json!({"secrets": {"": "x"}}),
    ] {
        let answer = acme.put("/v1/tenants/acme/services/a", bad.clone()).await?;
        assert_eq!(answer.status, 400, "{bad} → {answer:?}");
    }
    let removed = acme
        .put(
            "/v1/tenants/acme/services/a",
            json!({"secrets": {"api_key": null}}),
        )
        .await?;
    assert_eq!(removed.body["secrets"], json!([]));
    assert_eq!(get(&host, "acme", "/a/config/api_key").await?.0, 404);
    Ok(())
}

#[tokio::test]
async fn guest_logs_reach_the_service_log_and_only_its_tenant() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    let globex = host.admin_as(&op.create_tenant("globex").await?)?;
    probe(&acme, "acme", "a").await?;
    probe(&acme, "acme", "b").await?;
    let (status, _) = send(
        &host,
        "acme",
        reqwest::Method::POST,
        "/a/log",
        "line-from-a",
    )
    .await?;
    assert_eq!(status, 204);

    let lines = acme.get("/v1/tenants/acme/services/a/logs").await?;
    let text = match &lines.body {
        serde_json::Value::String(ndjson) => ndjson.clone(),
        other => other.to_string(),
    };
    let parsed: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let logged = parsed
        .iter()
        .find(|l| l["stream"] == "log")
        .context("no wasi:logging line")?;
    assert!(
        logged["message"]
            .as_str()
            .is_some_and(|m| m.contains("line-from-a"))
    );
    assert_eq!(logged["level"], "warn");
    assert_eq!(logged["version"], "1");
    let printed = parsed
        .iter()
        .find(|l| l["stream"] == "stdout")
        .context("no stdout line")?;
    assert_eq!(printed["request_id"], logged["request_id"]);

    let other = acme.get("/v1/tenants/acme/services/b/logs").await?;
    assert!(!other.body.to_string().contains("line-from-a"));
    let foreign = globex.get("/v1/tenants/acme/services/a/logs").await?;
    assert_eq!(foreign.status, 403);
    // The host's own log carries the line with who wrote it.
    assert!(host.wait_for_log("line-from-a", Duration::from_secs(5)));
    let line = host
        .log()
        .lines()
        .find(|l| l.contains("line-from-a") && l.contains("berth::guest"))
        .map(str::to_string)
        .context("no log line")?;
    assert!(
        line.contains("acme") && line.contains("request_id"),
        "{line}"
    );
    Ok(())
}

#[tokio::test]
async fn service_calls_stay_in_the_tenant_carry_ids_and_stop_loops() -> Result<()> {
    let host = BerthProcess::empty(&["--max-call-depth", "5"])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    let globex = host.admin_as(&op.create_tenant("globex").await?)?;
    probe(&acme, "acme", "a").await?;
    probe(&acme, "acme", "b").await?;
    probe(&globex, "globex", "c").await?;

    // berth-sdk's `call` (berth:service/call), and a plain wasi:http request
    // to `http://b.internal` as another SDK would make it: the same call.
    for path in ["/a/call/b", "/a/call-http/b"] {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let response = client()
            .get(host.url(path))
            .header("host", "acme.localhost")
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{path}");
        let outer_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .context("no request id")?
            .to_string();
        let seen: serde_json::Value = response.json().await?;
        // The callee sees the caller's request id and the same trace.
        assert_eq!(seen["request_id"], json!(outer_id), "{path}");
        let traceparent = seen["traceparent"].as_str().context("no traceparent")?;
        assert!(
            traceparent.starts_with(&format!("00-{trace}-")),
            "{path}: {traceparent}"
        );
        assert!(!traceparent.contains("00f067aa0ba902b7"), "{traceparent}");
        assert_eq!(seen["path_info"], "/whoami", "{path}");
    }

    // The method, headers and body reach the callee; its status, headers
    // and body come back.
    let response = client()
        .post(host.url("/a/relay/b"))
        .header("host", "acme.localhost")
        .header("content-type", "text/plain")
        .body("three blind mice")
        .send()
        .await?;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response
            .headers()
            .get("x-echoed")
            .and_then(|v| v.to_str().ok()),
        Some("yes")
    );
    let echoed: serde_json::Value = response.json().await?;
    assert_eq!(
        echoed,
        json!({"method": "POST", "content_type": "text/plain", "body": "three blind mice"})
    );

    // No such service, and another tenant's service: both 404, no network.
    assert_eq!(get(&host, "acme", "/a/call/nosuch").await?.0, 404);
    assert_eq!(get(&host, "acme", "/a/call/c").await?.0, 404);
    assert_eq!(get(&host, "acme", "/a/call-http/c").await?.0, 404);
    assert_eq!(get(&host, "globex", "/c/call/c").await?.0, 200);

    // Calls the host refuses come back to the guest as errors it can read
    // (berth-sdk answers 502 with the reason): a name that is not a
    // service's, and a call past the request's `outbound_requests` (32).
    let (status, body) = get(&host, "acme", "/a/call/not.valid").await?;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("`not.valid` is not a service name"), "{body}");
    assert_eq!(get(&host, "acme", "/a/calls/b/32").await?.0, 200);
    let (status, body) = get(&host, "acme", "/a/calls/b/33").await?;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("already made its 32 outgoing requests"),
        "{body}"
    );

    // A whole answer the caller's memory could not hold is refused with a
    // reason (502), not handed over to trap the caller; a smaller one comes
    // through whole.
    let limited = acme
        .put(
            "/v1/tenants/acme/services/a",
            json!({"limits": {"memory": "8MiB"}}),
        )
        .await?;
    assert_eq!(limited.status, 200, "{limited:?}");
    let (status, body) = get(&host, "acme", "/a/forward/b/big/100000").await?;
    assert_eq!((status, body.len()), (200, 100_000));
    let (status, body) = get(&host, "acme", "/a/forward/b/big/12000000").await?;
    let start: String = body.chars().take(300).collect();
    assert_eq!(status, 502, "{start}");
    assert!(body.contains("memory limit of 8388608 bytes"), "{start}");

    // A loop ends at the depth bound with 508, passed back up the chain.
    let (status, _) = get(&host, "acme", "/a/loop/a").await?;
    assert_eq!(status, 508);
    assert!(host.wait_for_log("call-depth-exceeded", Duration::from_secs(5)));
    // The host serves on.
    assert_eq!(get(&host, "acme", "/b/call/a").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn the_cli_sets_config_secrets_and_buckets() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let token = op.create_tenant("acme").await?;
    let acme = host.admin_as(&token)?;
    probe(&acme, "acme", "a").await?;
    let cli = |args: &[&str], stdin: &str| -> Result<(i32, String, String)> {
        use std::io::Write;
        let mut child = std::process::Command::new(berth_e2e::berth_bin()?)
            .args(args)
            .env("BERTH_ADMIN_URL", host.admin.clone().unwrap_or_default())
            .env("BERTH_TOKEN", &token)
            .env_remove("BERTH_TENANT")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (code, out, err) = cli(
        &[
            "config",
            "a",
            "greeting=hi there",
            "--secret",
            "token=-",
            "--buckets",
            "sessions",
        ],
        "from-stdin\n",
    )?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("greeting=hi there"), "{out}");
    assert!(
        out.contains("token=<secret>") && !out.contains("from-stdin"),
        "{out}"
    );
    assert!(out.contains("sessions"), "{out}");
    assert_eq!(
        get(&host, "acme", "/a/config/token").await?,
        (200, "from-stdin".into())
    );
    assert_eq!(
        get(&host, "acme", "/a/config/greeting").await?,
        (200, "hi there".into())
    );
    assert_eq!(put(&host, "acme", "/a/kv/sessions/s", "x").await?, 204);

    let (code, _, err) = cli(
        &["config", "a", "--unset", "token", "--unset", "greeting"],
        "",
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(get(&host, "acme", "/a/config/token").await?.0, 404);
    assert_eq!(get(&host, "acme", "/a/config/greeting").await?.0, 404);

    let (code, _, err) = cli(&["config", "a", "no-equals-sign"], "")?;
    assert_ne!(code, 0);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let (code, _, err) = cli(&["config", "nosuch"], "")?;
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    Ok(())
}

/// hyper sends no body with a 204 or an answer to `HEAD` and drops it unread;
/// the guest writing it must not see its stream torn down under it (it used
/// to log "sending the response failed: connection reset" now and then).
#[tokio::test]
async fn bodiless_answers_never_fail_the_guest() -> Result<()> {
    use futures::StreamExt;
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    probe(&acme, "acme", "a").await?;
    let http = client();
    let statuses: Vec<u16> = futures::stream::iter(0..600)
        .map(|i| {
            let request = if i % 2 == 0 {
                http.put(host.url(&format!("/a/kv/default/k{}", i % 8)))
                    .body("v")
            } else {
                http.head(host.url("/a/big/100000"))
            };
            let request = request.header("host", "acme.localhost");
            async move { request.send().await.map_or(0, |r| r.status().as_u16()) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 200),
        "statuses: {:?}",
        statuses
            .iter()
            .filter(|s| **s != 204 && **s != 200)
            .collect::<Vec<_>>()
    );
    let log = host.log();
    assert!(
        !log.contains("sending the response failed"),
        "a guest's response failed: {}",
        log.lines()
            .find(|l| l.contains("sending the response failed"))
            .unwrap_or_default()
    );
    Ok(())
}
