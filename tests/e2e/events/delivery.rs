//! Publishing and delivery: CloudEvents headers, retries, dead letters,
//! per-key order, a SIGKILL between store and delivery (on one host and
//! in a Postgres fleet), rollback of
//! subscriptions, and wasi:messaging.

use anyhow::{Context, Result, ensure};
use berth_api::events::*;
use berth_api::services::ServiceChange;
use berth_e2e::{client, component};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn a_published_event_arrives_as_a_cloudevent_with_its_headers() -> Result<()> {
    let (host, admin) = acme_host().await?;
    let placed = SubscriptionSpec {
        event_type: Some("order.placed".into()),
        ..subscription("orders", "/on/order", 5, 100)
    };
    deploy_consumer(&admin, "acme", "orders", vec![placed], vec![], &[]).await?;

    let published = publish(
        &admin,
        "acme",
        "orders",
        "order.placed",
        r#"{"order": 1}"#,
        Some("customer-7"),
    )
    .await?;
    assert_eq!(published.deliveries, 1);
    // Another type is stored for no one: the subscription filters on it.
    let other = publish(&admin, "acme", "orders", "order.cancelled", "{}", None).await?;
    assert_eq!(other.deliveries, 0);

    let record = until_seen(&host, "acme", "orders", 1, Duration::from_secs(10)).await?;
    let first = &record[0];
    assert_eq!(field(first, "path"), "/on/order");
    assert_eq!(field(first, "id"), published.id);
    assert_eq!(field(first, "type"), "order.placed");
    assert_eq!(field(first, "specversion"), "1.0");
    assert_eq!(field(first, "source"), "/tenants/acme/topics/orders");
    assert_eq!(field(first, "partitionkey"), "customer-7");
    assert_eq!(field(first, "content_type"), "application/json");
    assert_eq!(field(first, "body"), r#"{"order": 1}"#);
    assert_eq!(field(first, "attempt_header"), "1");
    assert!(
        chrono_like(field(first, "time")),
        "ce-time is RFC 3339: {first}"
    );
    assert_eq!(field(first, "traceparent").len(), 55, "{first}");

    // The delivery continues the publisher's trace: same trace, new span.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = admin
        .send(
            admin
                .request(
                    reqwest::Method::POST,
                    "/v1/tenants/acme/topics/orders/events",
                )
                .header("ce-type", "order.placed")
                .header("traceparent", parent)
                .body("{}"),
        )
        .await?;
    assert_eq!(traced.status, 202, "{traced:?}");
    let traced_id = traced.body["id"].as_str().unwrap_or_default().to_string();
    let record = until_seen(&host, "acme", "orders", 2, Duration::from_secs(10)).await?;
    let delivered = record
        .iter()
        .find(|r| field(r, "id") == traced_id)
        .context("the traced event was not delivered")?;
    let traceparent = field(delivered, "traceparent");
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && traceparent != parent,
        "{traceparent}"
    );

    // A guest publishes through http://events.internal, without wasi:messaging.
    let response = host
        .tenant_get("acme", "/orders/publish/orders")
        .send()
        .await?;
    assert_eq!(response.status(), 405, "the publish route takes POST");
    let response = client()
        .post(host.url("/orders/publish/orders"))
        .header("host", "acme.localhost")
        .header("ce-type", "order.placed")
        .body(r#"{"order": 2}"#)
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let record = until_seen(&host, "acme", "orders", 3, Duration::from_secs(10)).await?;
    assert_eq!(field(&record[2], "source"), "/services/orders");
    assert_eq!(field(&record[2], "body"), r#"{"order": 2}"#);

    // Without a type, to a bad topic, or to an unknown tenant: refused.
    let no_type = admin
        .send(
            admin
                .request(
                    reqwest::Method::POST,
                    "/v1/tenants/acme/topics/orders/events",
                )
                .body("{}"),
        )
        .await?;
    assert_eq!(no_type.status, 400, "{no_type:?}");
    let bad_topic = admin
        .send(
            admin
                .request(reqwest::Method::POST, "/v1/tenants/acme/topics/_x/events")
                .header("ce-type", "t"),
        )
        .await?;
    assert_eq!(bad_topic.status, 400, "{bad_topic:?}");
    let no_tenant = admin
        .send(
            admin
                .request(
                    reqwest::Method::POST,
                    "/v1/tenants/nobody/topics/orders/events",
                )
                .header("ce-type", "t"),
        )
        .await?;
    assert_eq!(no_tenant.status, 404, "{no_tenant:?}");
    // A tenant's token reaches only its own topics.
    let other = admin.create_tenant("other").await?;
    let other = host.admin_as(&other)?;
    let denied = other.get("/v1/tenants/acme/topics").await?;
    assert_eq!(denied.status, 403);

    let topics: TopicList = admin.get("/v1/tenants/acme/topics").await?.parse()?;
    let orders = topics
        .topics
        .iter()
        .find(|t| t.name == "orders")
        .context("the orders topic is listed")?;
    assert_eq!(orders.backlog, 0);
    assert!(orders.last_delivery_ms.is_some());
    assert_eq!(orders.subscriptions, vec!["orders /on/order".to_string()]);
    Ok(())
}

/// `2026-12-01T07:00:00.123Z`, roughly.
fn chrono_like(text: &str) -> bool {
    text.len() >= 20 && text.as_bytes().get(4) == Some(&b'-') && text.contains('T')
}

#[tokio::test]
async fn a_failing_consumer_is_retried_then_dead_lettered_and_redriven() -> Result<()> {
    let (host, admin) = acme_host().await?;
    // Fails three times, then takes it.
    deploy_consumer(
        &admin,
        "acme",
        "flaky",
        vec![subscription("jobs", "/on/job", 6, 100)],
        vec![],
        &[("fail_first", "3")],
    )
    .await?;
    // Always fails: dead after three attempts.
    deploy_consumer(
        &admin,
        "acme",
        "broken",
        vec![subscription("jobs", "/on/job", 3, 100)],
        vec![],
        &[("always_fail", "true")],
    )
    .await?;
    let event = publish(&admin, "acme", "jobs", "job.created", "{}", None).await?;
    assert_eq!(event.deliveries, 2);

    let flaky = until_seen(&host, "acme", "flaky", 4, Duration::from_secs(15)).await?;
    let attempts: Vec<u64> = flaky
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert!(flaky.iter().all(|r| field(r, "id") == event.id));
    let headers: Vec<&str> = flaky.iter().map(|r| field(r, "attempt_header")).collect();
    assert_eq!(headers, ["1", "2", "3", "4"]);

    // Dead after its attempts; nothing more is delivered to either.
    let started = Instant::now();
    let dead = loop {
        let dead: DeadLetterList = admin
            .get("/v1/tenants/acme/topics/jobs/dead-letters")
            .await?
            .parse()?;
        if !dead.dead_letters.is_empty() {
            break dead;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(15),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let letter = &dead.dead_letters[0];
    assert_eq!((letter.service.as_str(), letter.attempts), ("broken", 3));
    assert_eq!(letter.id, event.id);
    assert!(letter.last_error.contains("500"), "{letter:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        seen(&host, "acme", "flaky").await?.len(),
        4,
        "acknowledged once, never again"
    );
    assert_eq!(seen(&host, "acme", "broken").await?.len(), 3);
    // The backlog gauges an autoscaler reads say so too.
    let started = Instant::now();
    loop {
        let text = host.metrics_text().await?;
        let dead = text.lines().any(|l| {
            l.starts_with("berth_topic_dead_letters{")
                && l.contains("topic=\"jobs\"")
                && l.ends_with(" 1")
        });
        if dead {
            assert!(text.contains("berth_topic_backlog{"), "{text}");
            assert!(text.contains("berth_topic_oldest_age_seconds{"), "{text}");
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "no berth_topic_dead_letters for jobs in /metrics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let topics: TopicList = admin.get("/v1/tenants/acme/topics").await?.parse()?;
    assert_eq!(topics.topics[0].dead_letters, 1);
    assert_eq!(topics.topics[0].backlog, 0);

    // Fixed, and redriven from the CLI: delivered again, from attempt 1.
    let fix = ServiceChange {
        config: Some(BTreeMap::new()),
        ..Default::default()
    };
    configure(&admin, "acme", "broken", &fix).await?;
    let out = berth_cli(
        &host,
        &[
            "dead-letters",
            "jobs",
            "--redrive",
            "-o",
            "json",
            "--tenant",
            "acme",
        ],
    )?;
    let redriven: Redriven = serde_json::from_str(&out)?;
    assert_eq!(redriven.redriven, 1);
    let broken = until_seen(&host, "acme", "broken", 4, Duration::from_secs(10)).await?;
    assert_eq!(broken[3]["attempt_header"], "1");
    let out = berth_cli(&host, &["dead-letters", "jobs", "--tenant", "acme"])?;
    assert!(!out.contains(&event.id), "no dead letter is left: {out}");
    Ok(())
}

#[tokio::test]
async fn events_of_one_key_keep_their_order_across_retries() -> Result<()> {
    let (host, admin) = acme_host().await?;
    // Every event's first attempt fails.
    deploy_consumer(
        &admin,
        "acme",
        "ledger",
        vec![subscription("entries", "/on/entry", 5, 100)],
        vec![],
        &[("fail_first", "1")],
    )
    .await?;
    let mut ids = Vec::new();
    for i in 0..5 {
        let event = publish(
            &admin,
            "acme",
            "entries",
            "entry",
            &i.to_string(),
            Some("account-1"),
        )
        .await?;
        ids.push(event.id);
    }
    let seen = until_seen(&host, "acme", "ledger", 10, Duration::from_secs(20)).await?;
    let order: Vec<(&str, u64)> = seen
        .iter()
        .map(|r| (field(r, "id"), r["attempt"].as_u64().unwrap_or(0)))
        .collect();
    let expected: Vec<(&str, u64)> = ids
        .iter()
        .flat_map(|id| [(id.as_str(), 1), (id.as_str(), 2)])
        .collect();
    assert_eq!(
        order, expected,
        "each event is retried before the next is tried"
    );
    Ok(())
}

#[tokio::test]
async fn a_sigkill_between_store_and_delivery_loses_nothing() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    let launch = || host_in(&data);
    let host = launch()?;
    let admin = host.operator()?;
    admin.create_tenant("acme").await?;
    deploy_consumer(
        &admin,
        "acme",
        "sink",
        vec![subscription("work", "/on/work", 5, 100)],
        vec![],
        &[],
    )
    .await?;
    let mut ids = HashSet::new();
    for i in 0..40 {
        ids.insert(
            publish(&admin, "acme", "work", "work", &i.to_string(), None)
                .await?
                .id,
        );
    }
    // Killed at once: some deliveries are stored, some in flight.
    host.kill()?;
    let host = launch()?;
    // Counted by id: a delivery in flight at the kill is made again.
    let within = Duration::from_secs(30);
    let (seen, delivered) = until_every_id(&host, "sink", &ids, within, |_| true).await?;
    assert_eq!(delivered, ids, "every stored event is delivered");
    // At least once: any repeat carries the same id, and is one that was in
    // flight when the host died.
    assert!(seen.len() <= ids.len() + 8, "{} deliveries", seen.len());
    Ok(())
}

/// On a fleet no host gives up claims at start: the survivor takes over
/// the dead host's deliveries in flight once their claims lapse (15 s
/// unrenewed), and everything stored is delivered.
#[tokio::test]
async fn a_fleet_host_killed_mid_delivery_loses_nothing() -> Result<()> {
    let pg = berth_e2e::postgres::Postgres::start()?;
    let dir = tempfile::tempdir()?;
    let doomed = crate::fleet::fleet_host(dir.path(), "doomed", &pg)?;
    let admin = doomed.operator()?;
    admin.create_tenant("acme").await?;
    let slow = [("delay_ms", "400")];
    let work = vec![subscription("work", "/on/work", 5, 100)];
    deploy_consumer(&admin, "acme", "sink", work, vec![], &slow).await?;
    let mut ids = HashSet::new();
    for i in 0..30 {
        let event = publish(&admin, "acme", "work", "work", &i.to_string(), None).await?;
        ids.insert(event.id);
    }
    // Killed while the first deliveries wait in the consumer: recorded,
    // not yet answered, claimed by this host alone.
    until_seen(&doomed, "acme", "sink", 1, Duration::from_secs(20)).await?;
    doomed.kill()?;
    let survivor = crate::fleet::fleet_host(dir.path(), "survivor", &pg)?;
    // Done once the deliveries in flight at the kill were made again.
    let retaken = |seen: &[Value]| seen.iter().any(|r| r["attempt"].as_i64() == Some(2));
    let within = Duration::from_secs(60);
    let (seen, delivered) = until_every_id(&survivor, "sink", &ids, within, retaken).await?;
    assert_eq!(delivered, ids, "every stored event is delivered");
    // The deliveries in flight at the kill are made again, by the
    // survivor, with the same id: at most the dead host's 8 slots.
    let again: Vec<&Value> = seen
        .iter()
        .filter(|r| r["attempt"].as_i64() == Some(2))
        .collect();
    assert!(
        !again.is_empty() && again.len() <= 8,
        "{} deliveries made again: {again:?}",
        again.len()
    );
    assert!(seen.len() <= ids.len() + 8, "{} deliveries", seen.len());
    Ok(())
}

#[tokio::test]
async fn a_rollback_brings_back_the_subscriptions_of_the_previous_deployment() -> Result<()> {
    let (host, admin) = acme_host().await?;
    deploy_consumer(
        &admin,
        "acme",
        "svc",
        vec![subscription("old-topic", "/on/old", 5, 100)],
        vec![],
        &[],
    )
    .await?;
    let bytes = std::fs::read(component("testing-events")?)?;
    let up = admin.upload("acme", "svc", "2", bytes).await?;
    ensure!(up.status == 201 || up.status == 200, "{up:?}");
    let deploy = ServiceChange {
        version: Some("2".parse()?),
        subscriptions: Some(vec![subscription("new-topic", "/on/new", 5, 100)]),
        ..Default::default()
    };
    configure(&admin, "acme", "svc", &deploy).await?;
    let deliveries = |topic: &'static str| {
        let admin = admin.clone();
        async move {
            Ok::<_, anyhow::Error>(
                publish(&admin, "acme", topic, "t", "{}", None)
                    .await?
                    .deliveries,
            )
        }
    };
    assert_eq!(
        (
            deliveries("new-topic").await?,
            deliveries("old-topic").await?
        ),
        (1, 0)
    );

    let back = admin
        .send(admin.request(
            reqwest::Method::POST,
            "/v1/tenants/acme/services/svc/rollback",
        ))
        .await?;
    ensure!(back.status == 200, "{back:?}");
    let view = admin.service("acme", "svc").await?;
    assert_eq!(view.active.map(|v| v.to_string()).as_deref(), Some("1"));
    assert_eq!(view.subscriptions[0].topic, "old-topic");
    assert_eq!(
        (
            deliveries("new-topic").await?,
            deliveries("old-topic").await?
        ),
        (0, 1)
    );
    drop(host);
    Ok(())
}

#[tokio::test]
async fn a_guest_publishes_through_wasi_messaging() -> Result<()> {
    let (host, admin) = acme_host().await?;
    deploy_consumer(
        &admin,
        "acme",
        "orders",
        vec![subscription("orders", "/on/order", 5, 100)],
        vec![],
        &[],
    )
    .await?;
    admin
        .deploy("acme", "pub", "1", &component("testing-messaging")?, "/pub")
        .await?;
    let post = |path: &str| {
        client()
            .post(host.url(path))
            .header("host", "acme.localhost")
    };
    let sent = post("/pub/send/orders")
        .header("x-type", "order.placed")
        .header("x-id", "msg-1")
        .header("x-key", "customer-9")
        .body(r#"{"order": 3}"#)
        .send()
        .await?;
    assert_eq!(sent.status(), 202, "{:?}", sent.text().await);
    let record = until_seen(&host, "acme", "orders", 1, Duration::from_secs(10)).await?;
    let first = &record[0];
    assert_eq!(field(first, "id"), "msg-1");
    assert_eq!(field(first, "type"), "order.placed");
    assert_eq!(field(first, "source"), "/services/pub");
    assert_eq!(field(first, "partitionkey"), "customer-9");
    assert_eq!(field(first, "content_type"), "application/json");
    assert_eq!(field(first, "body"), r#"{"order": 3}"#);

    // A bad topic is the guest's error to read, not a trap.
    let refused = post("/pub/send/_bad").body("{}").send().await?;
    assert_eq!(refused.status(), 502);
    assert!(refused.text().await?.contains("400"));
    // A message over 1 MiB traps its instance; the service goes on.
    assert_eq!(post("/pub/big/2").send().await?.status(), 500);
    assert_eq!(post("/pub/big/1").send().await?.status(), 200);
    Ok(())
}
