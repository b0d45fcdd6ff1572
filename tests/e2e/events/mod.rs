//! Events end to end, against real hosts, with `components/testing/events`
//! as the subscriber (it records each delivery in key-value and fails as
//! its config says): delivery and its guarantees (`delivery.rs`),
//! schedules (`schedules.rs`), quotas and one tenant's flood beside another
//! (`quotas.rs`), and the NATS bridge, the dashboard and the CLI
//! (`interfaces.rs`). The helpers they share are here.

use anyhow::{Context, Result, bail, ensure};
use berth_api::events::{PublishedEvent, ScheduleSpec, SubscriptionSpec};
use berth_api::services::ServiceChange;
use berth_api::units::DurationSpec;
use berth_e2e::{Admin, BerthProcess, component};

use serde_json::Value;
use std::time::{Duration, Instant};

mod delivery;
mod interfaces;
mod quotas;
mod schedules;

/// `berth serve` with its state in `data`, to start again there after a
/// kill.
fn host_in(data: &std::path::Path) -> Result<BerthProcess> {
    BerthProcess::launch(berth_e2e::Launch {
        args: vec![],
        config: None,
        data_dir: data.to_path_buf(),
    })
}

/// A host of its own with the tenant `acme`, and the operator's client.
pub(super) async fn acme_host() -> Result<(BerthProcess, Admin)> {
    let host = BerthProcess::empty(&[])?;
    let admin = host.operator()?;
    admin.create_tenant("acme").await?;
    Ok((host, admin))
}

/// Applies `change` to `service` of `tenant`; fails unless it is taken.
pub(super) async fn configure(
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

pub(super) fn subscription(
    topic: &str,
    path: &str,
    attempts: u32,
    backoff_ms: u64,
) -> SubscriptionSpec {
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
pub(super) async fn deploy_consumer(
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

pub(super) async fn publish(
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
pub(super) async fn seen(host: &BerthProcess, tenant: &str, service: &str) -> Result<Vec<Value>> {
    let response = host
        .tenant_get(tenant, &format!("/{service}/seen"))
        .send()
        .await?;
    ensure!(response.status() == 200, "seen: {}", response.status());
    let seen: Vec<Value> = response.json().await?;
    Ok(seen)
}

/// Waits (bounded) until `service` has recorded `n` deliveries.
pub(super) async fn until_seen(
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

/// Waits (bounded) until `service` of `acme` has recorded every id of
/// `ids` and `done` holds of its records; returns the records and the ids
/// they carry, for the caller to assert on whatever was reached.
pub(super) async fn until_every_id(
    host: &BerthProcess,
    service: &str,
    ids: &std::collections::HashSet<String>,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Result<(Vec<Value>, std::collections::HashSet<String>)> {
    let started = Instant::now();
    loop {
        let seen = seen(host, "acme", service).await?;
        let delivered: std::collections::HashSet<String> =
            seen.iter().map(|r| field(r, "id").to_string()).collect();
        if (delivered.len() >= ids.len() && done(&seen)) || started.elapsed() > within {
            return Ok((seen, delivered));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) fn field<'a>(record: &'a Value, name: &str) -> &'a str {
    record[name].as_str().unwrap_or_default()
}

/// Runs a client verb of `berth` against `host` as the operator; its
/// standard output, or why it failed.
pub(super) fn berth_cli(host: &BerthProcess, args: &[&str]) -> Result<String> {
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
