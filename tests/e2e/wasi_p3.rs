//! WASI 0.3 services (`wasi:http/handler@0.3`) with everything a 0.2
//! service has: deployed through the admin API in a tenant, held to their
//! limits, using key-value, config and logging, calling and called by 0.2
//! services, reusing instances where their policy says, counted in
//! metrics, rolled back.

use anyhow::{Result, ensure};
use berth_e2e::{Admin, BerthProcess, client, component};
use serde_json::json;
use std::time::{Duration, Instant};

async fn send(
    host: &BerthProcess,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>)> {
    let mut r = client()
        .request(method, host.url(path))
        .header("host", "acme.localhost")
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    // A body cut off at its limit ends the stream with an error: keep
    // what arrived.
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = r.chunk().await {
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, bytes))
}

async fn get(host: &BerthProcess, path: &str) -> Result<(u16, String)> {
    let (status, body) = send(host, reqwest::Method::GET, path, Vec::new()).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits until every upload so far serves its optimised build, so that
/// a later routing-table rebuild does not start instances afresh.
async fn optimised(host: &BerthProcess, uploads: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while host.log().matches("serving the optimised build").count() < uploads {
        ensure!(
            Instant::now() < deadline,
            "never optimised:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn acme(host: &BerthProcess) -> Result<Admin> {
    let op = host.operator()?;
    host.admin_as(&op.create_tenant("acme").await?)
}

#[tokio::test]
async fn a_p3_service_deploys_and_uses_every_capability() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let acme = acme(&host).await?;
    let p3 = component("testing-p3-parity")?;
    acme.deploy("acme", "p3", "1", &p3, "/p3").await?;
    acme.deploy(
        "acme",
        "caps",
        "1",
        &component("testing-capabilities")?,
        "/caps",
    )
    .await?;
    let set = acme
        .put(
            "/v1/tenants/acme/services/p3",
            json!({"config": {"greeting": "hej"}, "env": {"MODE": "p3"}}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");

    assert_eq!(get(&host, "/p3").await?, (200, "Hello, WASI!".into()));
    assert_eq!(get(&host, "/p3/env/MODE").await?, (200, "p3".into()));
    assert_eq!(
        get(&host, "/p3/config/greeting").await?,
        (200, "hej".into())
    );
    let (status, _) = send(&host, reqwest::Method::PUT, "/p3/kv/k", b"v1".to_vec()).await?;
    assert_eq!(status, 200);
    assert_eq!(get(&host, "/p3/kv/k").await?, (200, "v1".into()));
    // The body is streamed after the head, from a task of the guest.
    let (status, body) = get(&host, "/p3/stream/300").await?;
    assert_eq!((status, body.len()), (200, 300 * 1024));
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (status, echoed) = send(&host, reqwest::Method::POST, "/p3/echo", payload.clone()).await?;
    assert_eq!(status, 200);
    assert!(
        echoed == payload,
        "echo differs: {} bytes back",
        echoed.len()
    );

    // Guest output reaches the service's log, with the request's id.
    let r = client()
        .get(host.url("/p3/print"))
        .header("host", "acme.localhost")
        .send()
        .await?;
    let id = r.headers()["x-request-id"].to_str()?.to_string();
    let logs = acme.get("/v1/tenants/acme/services/p3/logs").await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = logs.body.to_string();
    while !text.contains("p3-parity: to stderr") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = acme
            .get("/v1/tenants/acme/services/p3/logs")
            .await?
            .body
            .to_string();
    }
    assert!(
        text.contains("p3-parity: to stdout") && text.contains(&id),
        "{text}"
    );

    // A 0.3 caller of a 0.2 service, and a 0.2 caller of a 0.3 service.
    let (status, body) = get(&host, "/p3/call/caps/whoami").await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("request_id"), "{body}");
    let (status, body) = get(&host, "/caps/forward/p3/count").await?;
    assert_eq!((status, body.as_str()), (200, "1"));

    // Counted like any request.
    let metrics = acme.get("/v1/tenants/acme/metrics").await?;
    let text = metrics
        .body
        .as_str()
        .map_or_else(|| metrics.body.to_string(), str::to_string);
    assert!(
        text.lines().any(|l| l.starts_with("berth_requests_total")
            && l.contains("service=\"p3\"")
            && l.contains("status=\"2xx\"")),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_p3_service_is_held_to_its_limits() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let acme = acme(&host).await?;
    acme.deploy("acme", "p3", "1", &component("testing-p3-parity")?, "/p3")
        .await?;
    let set = acme
        .put(
            "/v1/tenants/acme/services/p3",
            json!({"limits": {
                "wall_time": "1s", "cpu_time": "200ms",
                "request_body": "64KiB", "response_body": "128KiB"
            }}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    let started = Instant::now();
    assert_eq!(get(&host, "/p3/sleep/10000").await?.0, 504);
    assert_eq!(get(&host, "/p3/spin").await?.0, 504);
    ensure!(
        started.elapsed() < Duration::from_secs(8),
        "limits took {:?}",
        started.elapsed()
    );
    let (status, _) = send(
        &host,
        reqwest::Method::POST,
        "/p3/echo",
        vec![7; 200 * 1024],
    )
    .await?;
    assert_eq!(status, 413);
    // Over its response limit, the body is cut off at the limit, even
    // when the guest writes it in one piece.
    let (status, body) = get(&host, "/p3/stream/1024").await?;
    assert_eq!((status, body.len()), (200, 128 * 1024));
    // A trap before the response is a 500, and the service goes on.
    assert_eq!(get(&host, "/p3/trap-before-set").await?.0, 500);
    assert_eq!(get(&host, "/p3").await?, (200, "Hello, WASI!".into()));
    Ok(())
}

#[tokio::test]
async fn p3_instances_are_reused_by_policy_and_versions_roll_back() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let acme = acme(&host).await?;
    acme.deploy("acme", "svc", "1", &component("testing-p3-parity")?, "/svc")
        .await?;
    let set = acme
        .put(
            "/v1/tenants/acme/services/svc",
            json!({"reuse": {"max_requests": 3}}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    optimised(&host, 1).await?;
    let mut counts = Vec::new();
    for _ in 0..4 {
        counts.push(get(&host, "/svc/count").await?.1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts, ["1", "2", "3", "1"]);

    // A 0.2 version of the same service, then back to the 0.3 one.
    acme.deploy(
        "acme",
        "svc",
        "2",
        &component("testing-serve-parity")?,
        "/svc",
    )
    .await?;
    let (status, body) = send(&host, reqwest::Method::POST, "/svc/echo", b"x".to_vec()).await?;
    assert_eq!(
        (status, body.as_slice()),
        (200, b"Hello, WASI!".as_slice()),
        "0.2 does not echo"
    );
    let back = acme
        .send(
            acme.request(
                reqwest::Method::POST,
                "/v1/tenants/acme/services/svc/rollback",
            )
            .json(&json!({})),
        )
        .await?;
    assert_eq!(back.status, 200, "{back:?}");
    let (status, body) = send(&host, reqwest::Method::POST, "/svc/echo", b"back".to_vec()).await?;
    assert_eq!((status, body.as_slice()), (200, b"back".as_slice()));
    Ok(())
}
