//! Events: a service's schedules and subscriptions as people write them in
//! `berth.toml` and the admin API, and what the topic routes take and show.
//!
//! An event reaches a service as an HTTP request (CloudEvents 1.0, binary
//! mode) to a path of its own; a schedule's tick is such an event too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use crate::units::DurationSpec;

/// Most schedules one service may have.
pub const MAX_SCHEDULES: usize = 32;
/// Most subscriptions one service may have.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Most delivery attempts a subscription may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// Longest back-off between two attempts.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(3600);
/// The `ce-type` of a schedule's tick.
pub const TICK_TYPE: &str = "berth.schedule.tick";

/// What happens to the ticks that fell while no host ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MissedTicks {
    /// They are not fired; the schedule goes on from the next tick.
    #[default]
    Skip,
    /// The latest of them is fired once, at start.
    FireOnce,
}

/// `[[service.schedule]]`: call `path` at each tick of `cron`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Six fields with seconds (`*/2 * * * * *`) or the classic five
    /// (`0 3 * * *`, at second 0).
    pub cron: String,
    /// The path of the service's own that each tick is sent to.
    pub path: String,
    /// An IANA time zone (`Europe/Paris`); `UTC` by default.
    #[serde(default = "utc", skip_serializing_if = "is_utc")]
    pub time_zone: String,
    /// What to do with ticks missed while no host ran.
    #[serde(default, skip_serializing_if = "is_skip")]
    pub missed: MissedTicks,
}

fn utc() -> String {
    "UTC".to_string()
}

fn is_utc(zone: &String) -> bool {
    zone == "UTC"
}

fn is_skip(missed: &MissedTicks) -> bool {
    *missed == MissedTicks::Skip
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    zone: chrono_tz::Tz,
}

impl CronSchedule {
    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&after.with_timezone(&self.zone))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The latest tick in `(after, until]`, looking at no more than
    /// `bound` ticks (a schedule every second, missed for a day, stops
    /// looking there).
    pub fn latest_in(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        bound: usize,
    ) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&after.with_timezone(&self.zone))
            .take(bound)
            .map(|t| t.with_timezone(&Utc))
            .take_while(|t| *t <= until)
            .last()
    }
}

impl ScheduleSpec {
    /// The schedule's cron expression, parsed in its time zone.
    pub fn parse(&self) -> Result<CronSchedule, String> {
        let fields = self.cron.split_whitespace().count();
        let expression = match fields {
            5 => format!("0 {}", self.cron),
            6 => self.cron.clone(),
            n => {
                return Err(format!(
                    "schedule cron `{}` has {n} fields; use 6 (with seconds) or 5",
                    self.cron
                ));
            }
        };
        let schedule = cron::Schedule::from_str(&expression)
            .map_err(|e| format!("schedule cron `{}` is not valid: {e}", self.cron))?;
        let zone = chrono_tz::Tz::from_str(&self.time_zone).map_err(|_| {
            format!(
                "schedule time_zone `{}` is not an IANA time zone",
                self.time_zone
            )
        })?;
        Ok(CronSchedule { schedule, zone })
    }

    /// Checks the expression, the zone and the path.
    pub fn check(&self) -> Result<(), String> {
        self.parse()?;
        check_path("schedule", &self.path)
    }
}

/// `[[service.subscription]]`: deliver each event of `topic` (of the
/// service's tenant) to `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub topic: String,
    /// The path of the service's own that each event is sent to.
    pub path: String,
    /// Only events of this `ce-type`; every event when left out.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Attempts before an event goes to the topic's dead letters (5 by
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The wait before the second attempt, doubled for each after it, with
    /// jitter (`1s` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<DurationSpec>,
}

/// Attempts when a subscription does not say.
pub const DEFAULT_ATTEMPTS: u32 = 5;
/// First back-off when a subscription does not say.
pub const DEFAULT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

impl SubscriptionSpec {
    pub fn check(&self) -> Result<(), String> {
        check_topic(&self.topic)?;
        check_path("subscription", &self.path)?;
        if let Some(kind) = &self.event_type {
            check_event_type(kind)?;
        }
        if let Some(n) = self.max_attempts
            && !(1..=MAX_ATTEMPTS).contains(&n)
        {
            return Err(format!(
                "subscription max_attempts is {n}; use 1 to {MAX_ATTEMPTS}"
            ));
        }
        if let Some(backoff) = self.backoff
            && (backoff.0.is_zero() || backoff.0 > MAX_BACKOFF)
        {
            return Err(format!(
                "subscription backoff is {:?}; use more than 0 and at most {}s",
                backoff.0,
                MAX_BACKOFF.as_secs()
            ));
        }
        Ok(())
    }

    pub fn attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_ATTEMPTS)
    }

    pub fn first_backoff(&self) -> std::time::Duration {
        self.backoff.map_or(DEFAULT_BACKOFF, |d| d.0)
    }
}

/// Checks a service's schedules and subscriptions together.
pub fn check_events(
    schedules: &[ScheduleSpec],
    subscriptions: &[SubscriptionSpec],
) -> Result<(), String> {
    if schedules.len() > MAX_SCHEDULES {
        return Err(format!(
            "{} schedules; a service may have {MAX_SCHEDULES}",
            schedules.len()
        ));
    }
    if subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(format!(
            "{} subscriptions; a service may have {MAX_SUBSCRIPTIONS}",
            subscriptions.len()
        ));
    }
    schedules.iter().try_for_each(ScheduleSpec::check)?;
    subscriptions.iter().try_for_each(SubscriptionSpec::check)
}

fn check_path(what: &str, path: &str) -> Result<(), String> {
    let ok = path.starts_with('/')
        && path.len() <= 1024
        && path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'#');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} path `{}` must start with `/` and be a valid URI path",
            path.chars().take(80).collect::<String>()
        ))
    }
}

/// A topic name: 1 to 128 of letters, digits, `.`, `-` and `_`, starting
/// with a letter or digit.
pub fn check_topic(topic: &str) -> Result<(), String> {
    let ok = !topic.is_empty()
        && topic.len() <= 128
        && topic.starts_with(|c: char| c.is_ascii_alphanumeric())
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid topic `{}`: use 1 to 128 letters, digits, `.`, `-` and `_`, starting with a letter or digit",
            topic.chars().take(80).collect::<String>()
        ))
    }
}

/// A `ce-type`: printable ASCII, 1 to 256 bytes.
pub fn check_event_type(kind: &str) -> Result<(), String> {
    if !kind.is_empty() && kind.len() <= 256 && kind.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err("an event type (`ce-type`) is 1 to 256 printable ASCII characters".to_string())
    }
}

/// `POST .../topics/{topic}/events` → 202.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublishedEvent {
    /// The event's id (`ce-id`), the given one or a new one.
    pub id: String,
    /// How many subscriptions it was stored for.
    pub deliveries: u32,
}

/// A topic of a tenant, with its backlog.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicView {
    pub name: String,
    /// Deliveries waiting (first attempts and retries).
    pub backlog: u64,
    /// Age of the oldest waiting delivery, in milliseconds.
    pub oldest_age_ms: u64,
    /// Deliveries that ran out of attempts.
    pub dead_letters: u64,
    /// Services subscribed, as `service path`.
    pub subscriptions: Vec<String>,
    /// Milliseconds since the Unix epoch of the last acknowledged delivery.
    pub last_delivery_ms: Option<i64>,
}

/// `GET .../topics`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicList {
    pub topics: Vec<TopicView>,
}

/// One delivery that ran out of attempts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub service: String,
    pub path: String,
    pub attempts: u32,
    /// What the last attempt got.
    pub last_error: String,
    /// Milliseconds since the Unix epoch the event was published.
    pub published_ms: i64,
}

/// `GET .../topics/{topic}/dead-letters`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetterView>,
}

/// `POST .../dead-letters/redrive` → how many were sent again.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Redriven {
    pub redriven: u64,
}

/// One schedule of a service, with its ticks.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub service: String,
    pub cron: String,
    pub time_zone: String,
    pub path: String,
    pub missed: MissedTicks,
    /// Milliseconds since the Unix epoch.
    pub next_tick_ms: Option<i64>,
    pub last_tick_ms: Option<i64>,
}

/// `GET .../schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

/// One subscription of a service.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub service: String,
    #[serde(flatten)]
    pub spec: SubscriptionSpec,
}

/// `GET .../subscriptions`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: &str) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.to_string(),
            path: "/tick".to_string(),
            time_zone: zone.to_string(),
            missed: MissedTicks::Skip,
        }
    }

    #[test]
    fn cron_takes_five_or_six_fields_in_a_zone() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let every_two = schedule("*/2 * * * * *", "UTC").parse();
        let next = every_two.map(|s| s.next_after(at("2026-01-01T00:00:01Z")));
        assert_eq!(next, Ok(Some(at("2026-01-01T00:00:02Z"))));
        // 03:00 in Paris is 02:00 UTC in winter.
        let paris = schedule("0 3 * * *", "Europe/Paris").parse();
        let next = paris.map(|s| s.next_after(at("2026-01-01T00:00:00Z")));
        assert_eq!(next, Ok(Some(at("2026-01-01T02:00:00Z"))));
        assert!(schedule("* * *", "UTC").check().is_err());
        assert!(schedule("*/2 * * * * *", "Mars/Olympus").check().is_err());
        assert!(schedule("61 * * * * *", "UTC").check().is_err());
    }

    #[test]
    fn the_latest_missed_tick_is_found_within_a_bound() {
        let every_second = schedule("* * * * * *", "UTC").parse();
        let start = DateTime::<Utc>::from_timestamp(1_000, 0).unwrap_or_default();
        let until = DateTime::<Utc>::from_timestamp(1_010, 0).unwrap_or_default();
        let latest = every_second.map(|s| s.latest_in(start, until, 100));
        assert_eq!(latest, Ok(Some(until)));
    }

    #[test]
    fn topics_and_subscriptions_are_checked() {
        assert!(check_topic("orders.placed-v1_x").is_ok());
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
        let sub = SubscriptionSpec {
            topic: "orders".into(),
            path: "on-order".into(),
            event_type: None,
            max_attempts: None,
            backoff: None,
        };
        assert!(sub.check().is_err_and(|m| m.contains("path")));
        let sub = SubscriptionSpec {
            path: "/on-order".into(),
            max_attempts: Some(0),
            ..sub
        };
        assert!(sub.check().is_err_and(|m| m.contains("max_attempts")));
    }
}
