//! Durable state: a restart restores every deployment from the store and the
//! compile cache, and a host killed at any point of a deploy comes back with
//! the old or the new state, never a broken one.

use anyhow::{Context, Result, bail};
use berth_e2e::{BerthProcess, Launch, component};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

fn start(data: &Path) -> Result<BerthProcess> {
    BerthProcess::launch(Launch {
        args: vec![],
        config: None,
        data_dir: data.to_path_buf(),
    })
}

/// The same component with a custom section appended: different bytes and
/// digest, so each upload is stored and compiled anew.
fn variant(component: &[u8], n: u32) -> Vec<u8> {
    let name = b"berth-test";
    let payload = n.to_le_bytes();
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&payload);
    bytes
}

#[tokio::test]
async fn a_restart_restores_100_services_without_recompiling() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let host = start(&data)?;
    let op = host.operator()?;
    op.create_tenant("acme").await?;
    let hello = component("hello")?;
    for i in 0..100 {
        op.deploy("acme", &format!("s{i}"), "1", &hello, &format!("/s{i}"))
            .await?;
    }
    host.stop()?;

    let host = start(&data)?;
    let log = host.log();
    assert!(
        !log.contains("component compiled"),
        "recompiled on restart:\n{log}"
    );
    assert!(log.contains("component loaded from compile cache"), "{log}");
    for i in 0..100 {
        let r = host.tenant_get("acme", &format!("/s{i}")).send().await?;
        assert_eq!(r.status(), 200, "service s{i}");
        assert_eq!(r.text().await?, "Hello from Berth!\n");
    }
    let services = host.operator()?.get("/v1/tenants/acme/services").await?;
    assert_eq!(services.body.as_array().map(Vec::len), Some(100));
    Ok(())
}

/// What a restarted host must show: the service active on `old` or `new`,
/// and the data plane serving exactly that version.
async fn check_consistent(host: &BerthProcess, old: &str, new: &str) -> Result<String> {
    let op = host.operator()?;
    let service = op.get("/v1/tenants/acme/services/web").await?;
    if service.status != 200 {
        bail!("service lost: {service:?}");
    }
    let active = service.body["active"]
        .as_str()
        .context("no active version")?
        .to_string();
    if active != old && active != new {
        bail!("active is {active}, expected {old} or {new}");
    }
    let r = host.tenant_get("acme", "/web").send().await?;
    if r.status() != 200 || r.headers()["x-berth-version"] != active.as_str() {
        bail!(
            "data plane serves {:?} with {}, store says {active}",
            r.headers().get("x-berth-version"),
            r.status()
        );
    }
    for version in service.body["versions"].as_array().into_iter().flatten() {
        let label = version["label"].as_str().unwrap_or_default();
        // Every recorded version must be whole: activating it works.
        let set = op
            .put("/v1/tenants/acme/services/web", json!({"version": label}))
            .await?;
        if set.status != 200 {
            bail!("recorded version {label} cannot be activated: {set:?}");
        }
        let r = host.tenant_get("acme", "/web").send().await?;
        if r.status() != 200 {
            bail!("recorded version {label} does not serve: {}", r.status());
        }
    }
    op.put("/v1/tenants/acme/services/web", json!({"version": active}))
        .await?;
    Ok(active)
}

#[tokio::test]
async fn a_host_killed_during_a_deploy_restarts_with_the_old_or_the_new_state() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let bytes = std::fs::read(component("hello")?)?;

    // How long one whole deploy takes here, to spread the kills over it.
    let host = start(&data)?;
    let op = host.operator()?;
    op.create_tenant("acme").await?;
    let started = Instant::now();
    op.upload("acme", "web", "v0", variant(&bytes, 0)).await?;
    op.put(
        "/v1/tenants/acme/services/web",
        json!({"route": "/web", "version": "v0"}),
    )
    .await?;
    let span = started.elapsed().max(Duration::from_millis(50));
    host.kill()?;

    let mut active = "v0".to_string();
    let rounds = 14u32;
    let mut outcomes = Vec::new();
    for round in 1..=rounds {
        let host = start(&data)?;
        active = check_consistent(&host, &active, &active)
            .await
            .with_context(|| format!("before round {round}"))?;
        let new = format!("v{round}");
        let op = host.operator()?;
        let body = variant(&bytes, round);
        let label = new.clone();
        let deploy = tokio::spawn(async move {
            let up = op.upload("acme", "web", &label, body).await?;
            if up.status == 201 {
                op.put("/v1/tenants/acme/services/web", json!({"version": label}))
                    .await?;
            }
            anyhow::Ok(())
        });
        // Kills land from before the upload to well after the activation:
        // a deploy on a busy 2-core machine can take twice the first one.
        let delay = span.mul_f64(f64::from(round) / f64::from(rounds) * 2.0);
        tokio::time::sleep(delay).await;
        host.kill()?;
        let _ = deploy.await;

        let host = start(&data)?;
        active = check_consistent(&host, &active, &new)
            .await
            .with_context(|| format!("after a kill {delay:?} into round {round}"))?;
        let versions = host
            .operator()?
            .get("/v1/tenants/acme/services/web")
            .await?;
        let stored = versions.body["versions"].as_array().map_or(0, Vec::len);
        eprintln!("kill at {delay:?}: serving {active}, {stored} versions stored");
        outcomes.push(active == new);
        host.kill()?;
    }
    // The kills spread over the deploy: some landed before it took effect,
    // some after.
    assert!(
        outcomes.contains(&true),
        "no kill came after a deploy: span {span:?}"
    );
    assert!(
        outcomes.contains(&false),
        "no kill came during a deploy: span {span:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_loses_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let host = start(&data)?;
    let op = host.operator()?;
    op.create_tenant("acme").await?;
    op.deploy(
        "acme",
        "slow",
        "1",
        &component("testing-slow-body")?,
        "/slow",
    )
    .await?;

    let in_flight = host
        .tenant_get("acme", "/slow?chunks=6&interval_ms=200")
        .send()
        .await?;
    assert_eq!(in_flight.status(), 200);
    let data_url = host.url("/slow");
    let admin_url = host.admin.clone().context("admin")?;
    let stopping = tokio::task::spawn_blocking(move || host.stop());
    let body = in_flight.text().await?;
    assert!(
        body.ends_with("chunk 5\n"),
        "the request in flight finished: {body:?}"
    );
    stopping.await??;
    assert!(
        berth_e2e::client().get(&data_url).send().await.is_err(),
        "the data plane stopped accepting"
    );
    assert!(
        berth_e2e::client()
            .get(format!("{admin_url}/healthz"))
            .send()
            .await
            .is_err()
    );

    let host = start(&data)?;
    let r = host
        .tenant_get("acme", "/slow?chunks=1&interval_ms=1")
        .send()
        .await?;
    assert_eq!(r.status(), 200, "the deployment survived the shutdown");
    assert_eq!(r.headers()["x-berth-version"], "1");
    Ok(())
}
