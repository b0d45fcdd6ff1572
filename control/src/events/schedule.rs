//! The scheduler every host runs: for each schedule of a serving service,
//! each tick is recorded by whichever host gets there first (the tick's
//! row is unique in the store), and the one that records it stores the
//! tick's delivery. Ticks that fell while no host ran are skipped or fired
//! once, as the schedule says.

use berth_api::events::{MissedTicks, TICK_TYPE};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use super::plan::{PlannedSchedule, millis};
use super::{Events, cloudevents};
use crate::store::events::{NewDelivery, NewMessage, SCHEDULE_TOPIC, Tick};

/// A tick this late (or less) is on time; an earlier one was missed while
/// no host ran.
const GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(2);
/// Most ticks looked at when finding the latest missed one.
const MISSED_BOUND: usize = 100_000;
/// Most ticks of one schedule fired in one pass (a host that was stalled).
const CATCH_UP: usize = 16;
/// Longest the scheduler sleeps without looking.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Ticks are kept this long for `berth schedules` and restarts.
const TICK_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Where one schedule stands on this host.
struct Cursor {
    /// The latest tick known to be recorded (by any host).
    last: DateTime<Utc>,
}

pub(super) async fn run(events: Weak<Events>) {
    let mut cursors: HashMap<(String, String, String), Cursor> = HashMap::new();
    let mut pruned = DateTime::<Utc>::MIN_UTC;
    loop {
        let Some(me) = events.upgrade() else { return };
        let plan = me.plan();
        let now = Utc::now();
        cursors.retain(|key, _| {
            plan.schedules()
                .iter()
                .any(|s| (&s.tenant, &s.service, &s.key) == (&key.0, &key.1, &key.2))
        });
        let mut sleep = MAX_SLEEP;
        for schedule in plan.schedules() {
            let key = (
                schedule.tenant.clone(),
                schedule.service.clone(),
                schedule.key.clone(),
            );
            let cursor = match cursors.get_mut(&key) {
                Some(cursor) => cursor,
                None => match start(&me, schedule, now).await {
                    Ok(cursor) => cursors.entry(key).or_insert(cursor),
                    Err(error) => {
                        tracing::warn!(%error, service = %schedule.service, "cannot read a schedule's ticks");
                        continue;
                    }
                },
            };
            if let Err(error) = fire_due(&me, schedule, cursor, now).await {
                tracing::warn!(%error, service = %schedule.service, "cannot record a schedule's tick");
            }
            if let Some(next) = schedule.cron.next_after(cursor.last.max(now))
                && let Ok(until) = (next - now).to_std()
            {
                sleep = sleep.min(until);
            }
        }
        if now - pruned > chrono::TimeDelta::hours(1) {
            pruned = now;
            if let Err(error) = me
                .log
                .prune_ticks(now.timestamp_millis() - TICK_RETENTION_MS)
                .await
            {
                tracing::debug!(%error, "cannot prune old ticks");
            }
        }
        let replanned = me.replanned.notified();
        let _ = tokio::time::timeout(sleep.max(Duration::from_millis(5)), replanned).await;
    }
}

/// Where a schedule this host has not looked at yet stands: after its last
/// recorded tick, with the ticks missed since handled by its policy; a
/// schedule never ticked before starts now.
async fn start(
    me: &Events,
    schedule: &PlannedSchedule,
    now: DateTime<Utc>,
) -> Result<Cursor, crate::store::StoreError> {
    let last = me
        .log
        .last_tick(&schedule.tenant, &schedule.service, &schedule.key)
        .await?;
    let Some(last) = last.and_then(DateTime::<Utc>::from_timestamp_millis) else {
        return Ok(Cursor { last: now });
    };
    let Some(missed) = schedule.cron.latest_in(last, now - GRACE, MISSED_BOUND) else {
        return Ok(Cursor { last });
    };
    // Ticks between `last` and `missed` fell while no host ran.
    let fire = schedule.spec.missed == MissedTicks::FireOnce;
    let recorded = record(me, schedule, missed, fire).await?;
    if recorded {
        tracing::info!(
            tenant = %schedule.tenant, service = %schedule.service, cron = %schedule.spec.cron,
            missed = %missed, fired = fire, "ticks were missed while no host ran"
        );
    }
    Ok(Cursor { last: missed })
}

/// Records every tick up to now (at most [`CATCH_UP`] in one pass).
async fn fire_due(
    me: &Events,
    schedule: &PlannedSchedule,
    cursor: &mut Cursor,
    now: DateTime<Utc>,
) -> Result<(), crate::store::StoreError> {
    for _ in 0..CATCH_UP {
        let Some(tick) = schedule.cron.next_after(cursor.last) else {
            return Ok(());
        };
        if tick > now {
            return Ok(());
        }
        record(me, schedule, tick, true).await?;
        cursor.last = tick;
    }
    Ok(())
}

/// Records one tick and, when `fire`, its delivery; false when another
/// host (or an earlier run) had recorded it.
async fn record(
    me: &Events,
    schedule: &PlannedSchedule,
    tick: DateTime<Utc>,
    fire: bool,
) -> Result<bool, crate::store::StoreError> {
    let tick_ms = tick.timestamp_millis();
    let record = Tick {
        tenant: schedule.tenant.clone(),
        service: schedule.service.clone(),
        schedule: schedule.key.clone(),
        tick_ms,
    };
    let message = NewMessage {
        tenant: schedule.tenant.clone(),
        topic: SCHEDULE_TOPIC.to_string(),
        id: tick_id(schedule, tick_ms),
        event_type: TICK_TYPE.to_string(),
        source: format!("/services/{}/schedules", schedule.service),
        time_ms: tick_ms,
        content_type: Some("application/json".to_string()),
        partition_key: None,
        traceparent: None,
        payload: serde_json::json!({
            "cron": schedule.spec.cron,
            "time_zone": schedule.spec.time_zone,
            "tick": cloudevents::time_text(tick_ms),
        })
        .to_string()
        .into_bytes(),
    };
    let delivery = NewDelivery {
        service: schedule.service.clone(),
        path: schedule.spec.path.clone(),
        max_attempts: berth_api::events::DEFAULT_ATTEMPTS,
        backoff_ms: millis(berth_api::events::DEFAULT_BACKOFF),
    };
    let recorded = me
        .log
        .record_tick(
            &record,
            fire.then_some((&message, &delivery)),
            &me.plan().quota(&schedule.tenant),
        )
        .await?;
    if recorded && fire {
        me.wake.notify_one();
    }
    Ok(recorded)
}

/// The same id on every host for one tick of one schedule, so a consumer
/// can de-duplicate a tick like any event.
fn tick_id(schedule: &PlannedSchedule, tick_ms: i64) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(
        format!(
            "{}\n{}\n{}",
            schedule.tenant, schedule.service, schedule.key
        )
        .as_bytes(),
    );
    format!("tick-{}-{tick_ms}", hex::encode(&digest[..8]))
}
