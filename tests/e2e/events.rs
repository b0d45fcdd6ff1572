//! Events end to end, against real hosts: a publish is delivered as a
//! CloudEvents request with its headers; a failing subscriber is retried
//! with back-off, then dead-lettered and redriven; per-key order holds
//! across retries; a SIGKILL between store and delivery loses nothing; a
//! schedule on three hosts sharing Postgres fires each tick once.

use anyhow::{Context, Result, bail, ensure};
use berth_api::events::{
    DeadLetterList, PublishedEvent, Redriven, ScheduleList, ScheduleSpec, SubscriptionSpec,
    TopicList,
};
use berth_api::services::ServiceChange;
use berth_api::units::DurationSpec;
use berth_e2e::postgres::Postgres;
use berth_e2e::{Admin, BerthProcess, Launch, client, component};

use crate::fleet::fleet_host;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// A host of its own with the tenant `acme`, and the operator's client.
async fn acme_host() -> Result<(BerthProcess, Admin)> {
    let host = BerthProcess::empty(&[])?;
    let admin = host.operator()?;
    admin.create_tenant("acme").await?;
    Ok((host, admin))
}

/// Applies `change` to `service` of `tenant`; fails unless it is taken.
async fn configure(
    admin: &Admin,
    tenant: &str,
    service: &str,
    change: &ServiceChange,
) -> Result<()> {
    let path = format!("/v1/tenants/{tenant}/services/{service}");
    let set = admin
        .send(admin.request(reqwest::Method::PUT, &path).json(change))
        .await?;
    ensure!(set.status == 200, "configuring {service}: {set:?}");
    Ok(())
}

fn subscription(topic: &str, path: &str, attempts: u32, backoff_ms: u64) -> SubscriptionSpec {
    SubscriptionSpec {
        topic: topic.to_string(),
        path: path.to_string(),
        event_type: None,
        max_attempts: Some(attempts),
        backoff: Some(DurationSpec(Duration::from_millis(backoff_ms))),
    }
}

/// Deploys the event subscriber as `service` of `tenant` at `/{service}`
/// with these subscriptions, schedules and config.
async fn deploy_consumer(
    admin: &Admin,
    tenant: &str,
    service: &str,
    subscriptions: Vec<SubscriptionSpec>,
    schedules: Vec<ScheduleSpec>,
    config: &[(&str, &str)],
) -> Result<()> {
    let route = format!("/{service}");
    admin
        .deploy(tenant, service, "1", &component("testing-events")?, &route)
        .await?;
    let change = ServiceChange {
        subscriptions: Some(subscriptions),
        schedules: Some(schedules),
        config: Some(
            config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    configure(admin, tenant, service, &change).await
}

async fn publish(
    admin: &Admin,
    tenant: &str,
    topic: &str,
    kind: &str,
    body: &str,
    key: Option<&str>,
) -> Result<PublishedEvent> {
    let mut request = admin
        .request(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tenant}/topics/{topic}/events"),
        )
        .header("ce-type", kind)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("partition-key", key);
    }
    let answer = admin.send(request).await?;
    ensure!(answer.status == 202, "publish: {answer:?}");
    answer.parse()
}

/// The deliveries `service` of `tenant` has recorded.
async fn seen(host: &BerthProcess, tenant: &str, service: &str) -> Result<Vec<Value>> {
    let response = host
        .tenant_get(tenant, &format!("/{service}/seen"))
        .send()
        .await?;
    ensure!(response.status() == 200, "seen: {}", response.status());
    let seen: Vec<Value> = response.json().await?;
    Ok(seen)
}

/// Waits (bounded) until `service` has recorded `n` deliveries.
async fn until_seen(
    host: &BerthProcess,
    tenant: &str,
    service: &str,
    n: usize,
    within: Duration,
) -> Result<Vec<Value>> {
    let started = Instant::now();
    loop {
        let seen = seen(host, tenant, service).await?;
        if seen.len() >= n {
            return Ok(seen);
        }
        if started.elapsed() > within {
            bail!(
                "{service} saw {} of {n} deliveries in {within:?}: {seen:?}",
                seen.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn field<'a>(record: &'a Value, name: &str) -> &'a str {
    record[name].as_str().unwrap_or_default()
}

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
    let record = until_seen(&host, "acme", "orders", 2, Duration::from_secs(10)).await?;
    assert_eq!(field(&record[1], "source"), "/services/orders");
    assert_eq!(field(&record[1], "body"), r#"{"order": 2}"#);

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

/// Runs a client verb of `berth` against `host` as the operator; its
/// standard output, or why it failed.
fn berth_cli(host: &BerthProcess, args: &[&str]) -> Result<String> {
    let admin = host.admin.as_deref().context("no admin address")?;
    let out = std::process::Command::new(berth_e2e::berth_bin()?)
        .args(args)
        .env("BERTH_ADMIN_URL", admin)
        .env("BERTH_TOKEN", berth_e2e::OPERATOR_TOKEN)
        .output()?;
    ensure!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    let launch = || {
        BerthProcess::launch(Launch {
            args: vec![],
            config: None,
            data_dir: data.clone(),
        })
    };
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
    let started = Instant::now();
    let (seen, delivered) = loop {
        let seen = seen(&host, "acme", "sink").await?;
        let delivered: HashSet<String> = seen.iter().map(|r| field(r, "id").to_string()).collect();
        if delivered.len() >= ids.len() || started.elapsed() > Duration::from_secs(30) {
            break (seen, delivered);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered, ids, "every stored event is delivered");
    // At least once: any repeat carries the same id, and is one that was in
    // flight when the host died.
    assert!(seen.len() <= ids.len() + 8, "{} deliveries", seen.len());
    Ok(())
}

#[tokio::test]
async fn a_schedule_fires_once_per_tick_across_three_hosts() -> Result<()> {
    let pg = Postgres::start()?;
    let dir = tempfile::tempdir()?;
    let hosts = [
        fleet_host(dir.path(), "a", &pg)?,
        fleet_host(dir.path(), "b", &pg)?,
        fleet_host(dir.path(), "c", &pg)?,
    ];
    let admin = hosts[0].operator()?;
    admin.create_tenant("acme").await?;
    let every_second = ScheduleSpec {
        cron: "* * * * * *".into(),
        path: "/tick".into(),
        time_zone: "Europe/Paris".into(),
        missed: Default::default(),
    };
    deploy_consumer(&admin, "acme", "clock", vec![], vec![every_second], &[]).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Unscheduled: no tick after this change reaches any host's plan.
    let stop = ServiceChange {
        schedules: Some(vec![]),
        ..Default::default()
    };
    configure(&admin, "acme", "clock", &stop).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks = seen(&hosts[1], "acme", "clock").await?;
    let ids: Vec<&str> = ticks.iter().map(|r| field(r, "id")).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "a tick fired twice: {ids:?}");
    assert!(
        (4..=12).contains(&ids.len()),
        "{} ticks in about 6-8 s of a schedule every second",
        ids.len()
    );
    assert!(
        ticks
            .iter()
            .all(|r| field(r, "type") == "berth.schedule.tick")
    );
    // Each tick fires at its second, whichever host wins it.
    let times: Vec<&str> = ticks.iter().map(|r| field(r, "time")).collect();
    assert!(times.iter().all(|t| t.ends_with(".000Z")), "{times:?}");
    let schedules: ScheduleList = admin.get("/v1/tenants/acme/schedules").await?.parse()?;
    assert!(schedules.schedules.is_empty(), "{schedules:?}");
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

/// The instant a tick is for, from its id (`tick-{schedule}-{ms}`).
fn tick_ms(record: &Value) -> i64 {
    field(record, "id")
        .rsplit('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn ticks_missed_while_no_host_ran_are_skipped_or_fired_once() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    let launch = || {
        BerthProcess::launch(Launch {
            args: vec![],
            config: None,
            data_dir: data.clone(),
        })
    };
    let host = launch()?;
    let admin = host.operator()?;
    admin.create_tenant("acme").await?;
    let every_second = |missed: &str| -> Result<ScheduleSpec> {
        Ok(ScheduleSpec {
            cron: "* * * * * *".into(),
            path: "/tick".into(),
            time_zone: "UTC".into(),
            missed: serde_json::from_value(Value::String(missed.into()))?,
        })
    };
    for (service, missed) in [("skipper", "skip"), ("catcher", "fire-once")] {
        deploy_consumer(
            &admin,
            "acme",
            service,
            vec![],
            vec![every_second(missed)?],
            &[],
        )
        .await?;
    }
    until_seen(&host, "acme", "catcher", 2, Duration::from_secs(10)).await?;
    until_seen(&host, "acme", "skipper", 2, Duration::from_secs(10)).await?;
    host.kill()?;
    let killed = now_ms();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarted = now_ms();
    let host = launch()?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Ticks for instants after the kill, up to shortly after the restart:
    // the same for both, but for the one missed tick the second fires.
    let after_kill = |seen: &[Value]| -> Vec<i64> {
        let mut ticks: Vec<i64> = seen
            .iter()
            .map(tick_ms)
            .filter(|t| *t > killed + 1000 && *t <= restarted + 1500)
            .collect();
        ticks.sort_unstable();
        ticks
    };
    // A delivery in flight at the kill is made again after the restart,
    // with the same id (at least once): ticks are counted by id.
    let distinct = |seen: Vec<Value>| -> Vec<Value> {
        let mut ids = HashSet::new();
        seen.into_iter()
            .filter(|r| ids.insert(field(r, "id").to_string()))
            .collect()
    };
    let catcher = distinct(seen(&host, "acme", "catcher").await?);
    let skipper = distinct(seen(&host, "acme", "skipper").await?);
    let (caught, skipped) = (after_kill(&catcher), after_kill(&skipper));
    assert_eq!(
        caught.len(),
        skipped.len() + 1,
        "fire-once fires the latest missed tick once: {caught:?} vs {skipped:?}"
    );
    let missed = caught.first().copied().unwrap_or(0);
    assert!(
        missed < restarted,
        "the extra tick is one that fell while no host ran: {caught:?}"
    );
    Ok(())
}

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
