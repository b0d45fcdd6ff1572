//! Schedules: once per tick across three hosts on Postgres, and missed
//! ticks across a restart.

use anyhow::Result;
use berth_api::events::*;
use berth_api::services::ServiceChange;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::fleet::fleet_host;
use berth_e2e::postgres::Postgres;

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
    let launch = || host_in(&data);
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
