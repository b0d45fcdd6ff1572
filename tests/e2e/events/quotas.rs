//! Per-tenant event quotas, and one tenant's flood beside another.

use anyhow::{Result, ensure};
use berth_api::events::*;
use berth_e2e::{Admin, BerthProcess, client};
use serde_json::Value;
use std::time::{Duration, Instant};

use super::*;

/// Sets `tenant`'s limits; fails unless they are taken.
async fn set_limits(admin: &Admin, tenant: &str, limits: Value) -> Result<()> {
    let set = admin
        .put(
            &format!("/v1/tenants/{tenant}"),
            serde_json::json!({ "limits": limits }),
        )
        .await?;
    ensure!(set.status == 200, "limits of {tenant}: {set:?}");
    Ok(())
}

/// Publishes without failing on a refusal; the status and body.
async fn try_publish(admin: &Admin, tenant: &str, topic: &str) -> Result<(u16, Value)> {
    let answer = admin
        .send(
            admin
                .request(
                    reqwest::Method::POST,
                    &format!("/v1/tenants/{tenant}/topics/{topic}/events"),
                )
                .header("ce-type", "t")
                .body("{}"),
        )
        .await?;
    Ok((answer.status, answer.body))
}

#[tokio::test]
async fn event_quotas_refuse_with_a_clear_status() -> Result<()> {
    let (host, admin) = acme_host().await?;
    set_limits(
        &admin,
        "acme",
        serde_json::json!({"event_topics": 1, "event_backlog": 3}),
    )
    .await?;
    // A consumer that never takes anything: its events stay stored.
    deploy_consumer(
        &admin,
        "acme",
        "stuck",
        vec![subscription("a", "/on/a", 100, 3_600_000)],
        vec![],
        &[("always_fail", "true")],
    )
    .await?;
    for _ in 0..3 {
        assert_eq!(try_publish(&admin, "acme", "a").await?.0, 202);
    }
    let (status, body) = try_publish(&admin, "acme", "a").await?;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("3 events"),
        "{body}"
    );
    let (status, body) = try_publish(&admin, "acme", "b").await?;
    assert_eq!(status, 409, "a second topic is over the quota: {body}");

    // Publishing faster than the rate: the burst passes, then 429.
    admin.create_tenant("fast").await?;
    set_limits(&admin, "fast", serde_json::json!({"publish_rate": 2})).await?;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(try_publish(&admin, "fast", "x").await?.0);
    }
    assert_eq!(&statuses[..4], [202; 4], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // Another tenant is not held to acme's quotas.
    admin.create_tenant("other").await?;
    assert_eq!(try_publish(&admin, "other", "b").await?.0, 202);
    drop(host);
    Ok(())
}

/// Events the noisy tenant stores for a consumer that always fails.
const FLOOD: usize = 100_000;

#[tokio::test]
async fn a_tenants_flood_does_not_delay_another_tenants_deliveries() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let admin = host.operator()?;
    for tenant in ["noisy", "quiet"] {
        admin.create_tenant(tenant).await?;
    }
    set_limits(
        &admin,
        "noisy",
        serde_json::json!({"event_backlog": FLOOD * 2, "publish_rate": 1_000_000}),
    )
    .await?;
    deploy_consumer(
        &admin,
        "noisy",
        "failing",
        vec![subscription("flood", "/on/flood", 100, 10)],
        vec![],
        &[("always_fail", "true")],
    )
    .await?;
    deploy_consumer(
        &admin,
        "quiet",
        "steady",
        vec![subscription("calm", "/on/calm", 5, 100)],
        vec![],
        &[],
    )
    .await?;

    let quiet_latency = |host: &BerthProcess, admin: &Admin| {
        let (host, admin) = (host.url(""), admin.clone());
        async move {
            let mut latencies = Vec::new();
            for i in 0..30 {
                let started = Instant::now();
                publish(&admin, "quiet", "calm", "calm", &i.to_string(), None).await?;
                loop {
                    let seen: Vec<Value> = client()
                        .get(format!("{host}/steady/seen"))
                        .header("host", "quiet.localhost")
                        .send()
                        .await?
                        .json()
                        .await?;
                    if seen.iter().any(|r| field(r, "body") == i.to_string()) {
                        break;
                    }
                    ensure!(
                        started.elapsed() < Duration::from_secs(30),
                        "never delivered"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                latencies.push(started.elapsed());
            }
            latencies.sort_unstable();
            Ok::<_, anyhow::Error>(latencies)
        }
    };
    let p99 = |l: &[Duration]| l[(l.len() * 99 / 100).min(l.len() - 1)];
    let calm = quiet_latency(&host, &admin).await?;

    // The flood, from 16 publishers at once.
    let started = Instant::now();
    let mut publishers = Vec::new();
    for p in 0..16 {
        let admin = admin.clone();
        publishers.push(tokio::spawn(async move {
            for _ in (p..FLOOD).step_by(16) {
                let (status, body) = try_publish(&admin, "noisy", "flood").await?;
                ensure!(status == 202, "flood publish: {status} {body}");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for publisher in publishers {
        publisher.await??;
    }
    let published_in = started.elapsed();
    let flooded = quiet_latency(&host, &admin).await?;
    let topics: TopicList = admin.get("/v1/tenants/noisy/topics").await?.parse()?;
    let backlog = topics
        .topics
        .first()
        .map_or(0, |t| t.backlog + t.dead_letters);
    eprintln!(
        "{FLOOD} events stored in {published_in:?}; quiet p99 {:?} calm, {:?} under the flood (backlog {backlog})",
        p99(&calm),
        p99(&flooded)
    );
    assert!(
        backlog as usize >= FLOOD * 9 / 10,
        "the flood is stored: {backlog}"
    );
    let bound = p99(&calm) * 3 + Duration::from_millis(500);
    assert!(
        p99(&flooded) <= bound,
        "quiet's p99 went from {:?} to {:?} under the flood (bound {bound:?})",
        p99(&calm),
        p99(&flooded)
    );
    Ok(())
}
