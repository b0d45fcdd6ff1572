//! The ways in and out: the NATS bridge, the dashboard, the CLI.

use anyhow::{Context, Result, ensure};
use berth_api::events::*;
use berth_api::services::ServiceChange;
use berth_e2e::{BerthProcess, component};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn topics_bridge_to_a_real_nats_server_both_ways() -> Result<()> {
    use futures::StreamExt;
    let nats = berth_e2e::nats::NatsServer::start()?;
    let url = nats.url();
    let host =
        BerthProcess::empty(&["--nats-url", &url, "--nats-bind", "acme/orders=shop.orders"])?;
    let admin = host.operator()?;
    admin.create_tenant("acme").await?;
    deploy_consumer(
        &admin,
        "acme",
        "orders",
        vec![subscription("orders", "/on/order", 5, 100)],
        vec![],
        &[],
    )
    .await?;
    let outside = async_nats::connect(url.as_str()).await?;
    let mut watching = outside.subscribe("shop.orders").await?;
    outside.flush().await?;

    // Out: an event published in Berth reaches NATS with its attributes.
    let event = publish(
        &admin,
        "acme",
        "orders",
        "order.placed",
        r#"{"n":1}"#,
        Some("k"),
    )
    .await?;
    assert_eq!(event.deliveries, 2, "the service and the bridge");
    let message = tokio::time::timeout(Duration::from_secs(10), watching.next())
        .await?
        .context("no message on shop.orders")?;
    let header = |m: &async_nats::Message, name: &str| {
        m.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
    };
    assert_eq!(
        header(&message, "ce-id").as_deref(),
        Some(event.id.as_str())
    );
    assert_eq!(header(&message, "ce-type").as_deref(), Some("order.placed"));
    assert_eq!(header(&message, "ce-partitionkey").as_deref(), Some("k"));
    assert_eq!(&message.payload[..], br#"{"n":1}"#);

    // In: a message from outside is delivered to the topic's subscribers.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-type", "order.placed");
    headers.insert("ce-id", "from-outside-1");
    outside
        .publish_with_headers("shop.orders", headers, r#"{"n":2}"#.into())
        .await?;
    outside.flush().await?;
    let seen = until_seen(&host, "acme", "orders", 2, Duration::from_secs(10)).await?;
    let inbound = seen
        .iter()
        .find(|r| field(r, "id") == "from-outside-1")
        .context("the outside message was not delivered")?;
    assert_eq!(field(inbound, "source"), "nats:shop.orders");
    assert_eq!(field(inbound, "body"), r#"{"n":2}"#);

    // Nothing loops: the bridge's own message is not taken back in, and
    // the outside one is not sent back out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        seen_ids(&host).await?,
        ["from-outside-1".to_string(), event.id.clone()].into()
    );
    let outside_copy = tokio::time::timeout(Duration::from_secs(2), watching.next()).await?;
    assert!(outside_copy.is_some_and(|m| header(&m, "ce-id").as_deref() == Some("from-outside-1")));
    let echo = tokio::time::timeout(Duration::from_millis(1500), watching.next()).await;
    assert!(echo.is_err(), "a message came back out: {echo:?}");
    drop(nats);
    Ok(())
}

/// The ids `orders` of `acme` has seen, once each, with their count of
/// deliveries checked to be one.
async fn seen_ids(host: &BerthProcess) -> Result<HashSet<String>> {
    let seen = seen(host, "acme", "orders").await?;
    let ids: HashSet<String> = seen.iter().map(|r| field(r, "id").to_string()).collect();
    ensure!(ids.len() == seen.len(), "delivered twice: {seen:?}");
    Ok(ids)
}

#[tokio::test]
async fn the_dashboard_shows_topics_and_redrives_dead_letters_in_a_real_browser() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let token = op.create_tenant("acme").await?;
    deploy_consumer(
        &op,
        "acme",
        "broken",
        vec![subscription("jobs", "/on/job", 2, 50)],
        vec![],
        &[("always_fail", "true")],
    )
    .await?;
    let event = publish(&op, "acme", "jobs", "job.created", "{}", None).await?;
    let started = Instant::now();
    while seen(&host, "acme", "broken").await?.len() < 2 {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "never tried twice"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let admin_url = host.admin.clone().context("no admin")?;
    let mut browser = berth_e2e::browser::Browser::launch().await?;
    browser.goto(&format!("{admin_url}/ui")).await?;
    browser
        .eval(&format!(
            "document.getElementById('token').value = {}; document.getElementById('sign-in').click(); true",
            serde_json::json!(token)
        ))
        .await?;
    let row = "document.querySelector('#topics tr[data-topic=\"jobs\"]')";
    browser
        .wait_for(
            &format!("{row} && {row}.cells[3].textContent === '1'"),
            Duration::from_secs(10),
        )
        .await?;
    browser.eval(&format!("{row}.click(); true")).await?;
    let dead = "document.getElementById('dead-letters').textContent";
    browser
        .wait_for(
            &format!("{dead}.includes({})", serde_json::json!(event.id)),
            Duration::from_secs(10),
        )
        .await?;

    // Fixed, then redriven from the page: delivered, and no dead letter left.
    let fix = ServiceChange {
        config: Some(BTreeMap::new()),
        ..Default::default()
    };
    configure(&op, "acme", "broken", &fix).await?;
    browser
        .eval("document.getElementById('redrive').click(); true")
        .await?;
    until_seen(&host, "acme", "broken", 3, Duration::from_secs(10)).await?;
    browser
        .wait_for(
            &format!(
                "{row}.cells[3].textContent === '0' && !{dead}.includes({})",
                serde_json::json!(event.id)
            ),
            Duration::from_secs(10),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_cli_deploys_schedules_and_subscriptions_and_lists_them() -> Result<()> {
    let (host, _admin) = acme_host().await?;
    let wasm = component("testing-events")?;
    let wasm = wasm.to_str().context("path")?;
    berth_cli(
        &host,
        &[
            "deploy",
            wasm,
            "--service",
            "clock",
            "--version",
            "1",
            "--tenant",
            "acme",
            "--schedule",
            "/tick=* * * * * *@Europe/Paris",
            "--subscribe",
            "jobs=/on/job:job.created",
        ],
    )?;
    let shown = berth_cli(&host, &["service", "clock", "--tenant", "acme"])?;
    assert!(
        shown.contains("/tick * * * * * * (Europe/Paris)"),
        "{shown}"
    );
    assert!(shown.contains("jobs -> /on/job (job.created)"), "{shown}");
    until_seen(&host, "acme", "clock", 1, Duration::from_secs(10)).await?;
    let schedules: ScheduleList = serde_json::from_str(&berth_cli(
        &host,
        &["schedules", "-o", "json", "--tenant", "acme"],
    )?)?;
    assert_eq!(schedules.schedules.len(), 1);
    assert!(schedules.schedules[0].last_tick_ms.is_some());
    let subscriptions: berth_api::events::SubscriptionList = serde_json::from_str(&berth_cli(
        &host,
        &["subscriptions", "-o", "json", "--tenant", "acme"],
    )?)?;
    assert_eq!(subscriptions.subscriptions[0].spec.topic, "jobs");
    let published: PublishedEvent = serde_json::from_str(&berth_cli(
        &host,
        &[
            "publish",
            "jobs",
            "--type",
            "job.created",
            "--data",
            "{}",
            "-o",
            "json",
            "--tenant",
            "acme",
        ],
    )?)?;
    assert_eq!(published.deliveries, 1);
    let topics = berth_cli(&host, &["topics", "--tenant", "acme"])?;
    assert!(
        topics.contains("jobs") && topics.contains("clock /on/job"),
        "{topics}"
    );

    // A bad flag is refused before anything is sent, naming the problem.
    let out = std::process::Command::new(berth_e2e::berth_bin()?)
        .args([
            "deploy",
            wasm,
            "--service",
            "x",
            "--version",
            "1",
            "--schedule",
            "/t=every minute",
        ])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cron"), "{stderr}");
    Ok(())
}
