//! The durable side of events: messages stored before a publish returns,
//! one delivery per message and subscription, claimed by one host at a
//! time under a lease, and the ticks schedules have fired. Each method is
//! one transaction.

use super::StoreResult;
use berth_runtime::quotas::EventQuota;

/// Which of a tenant's event quotas a publish would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaHit {
    Topics(u32),
    Backlog(u64),
    Storage(u64),
}

impl std::fmt::Display for QuotaHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Topics(n) => write!(f, "the tenant has {n} topics, its quota"),
            Self::Backlog(n) => write!(
                f,
                "the tenant stores {n} events, its quota: wait for deliveries or clear dead letters"
            ),
            Self::Storage(n) => write!(
                f,
                "the tenant's stored events would pass its quota of {n} bytes"
            ),
        }
    }
}

/// A message as it is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub tenant: String,
    pub topic: String,
    pub id: String,
    pub event_type: String,
    pub source: String,
    /// Milliseconds since the Unix epoch (`ce-time`).
    pub time_ms: i64,
    pub content_type: Option<String>,
    pub partition_key: Option<String>,
    /// The publisher's trace context, so the delivery continues its trace.
    pub traceparent: Option<String>,
    pub payload: Vec<u8>,
}

/// Where one message goes: a service's path, with the subscription's retry
/// policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub service: String,
    pub path: String,
    pub max_attempts: u32,
    pub backoff_ms: i64,
}

/// Names one delivery: a message of a topic and a subscriber's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub tenant: String,
    pub topic: String,
    pub seq: i64,
    pub service: String,
    pub path: String,
}

/// A delivery this host has claimed, with its message.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub key: DeliveryKey,
    /// Attempts made before this one.
    pub attempts: u32,
    pub max_attempts: u32,
    pub backoff_ms: i64,
    /// The end of this host's claim; a failure is recorded only under it.
    pub lease_until_ms: i64,
    pub message: NewMessage,
}

/// A topic's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStats {
    pub tenant: String,
    pub name: String,
    pub backlog: u64,
    /// Milliseconds since the Unix epoch of the oldest waiting delivery.
    pub oldest_ms: Option<i64>,
    pub dead_letters: u64,
    pub last_delivery_ms: Option<i64>,
}

/// A delivery that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub event_type: String,
    pub service: String,
    pub path: String,
    pub attempts: u32,
    pub last_error: String,
    pub published_ms: i64,
}

/// One tick of one schedule, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub tenant: String,
    pub service: String,
    /// Names the schedule among the service's (its expression, zone and
    /// path), so a changed schedule starts afresh.
    pub schedule: String,
    pub tick_ms: i64,
}

/// The reserved topic that schedules' ticks are delivered through; a user
/// topic cannot start with `_`.
pub const SCHEDULE_TOPIC: &str = "_schedules";

#[async_trait::async_trait]
pub trait EventLog: Send + Sync {
    /// Stores a message and its deliveries within the tenant's quota;
    /// returns the message's place in its topic.
    async fn publish(
        &self,
        message: &NewMessage,
        deliveries: &[NewDelivery],
        quota: &EventQuota,
    ) -> StoreResult<i64>;

    /// Tenants with events stored: read from the usage counts, so finding
    /// them costs the same however large a backlog is.
    async fn tenants_with_events(&self) -> StoreResult<Vec<String>>;

    /// Claims up to `limit` of the tenant's due deliveries until
    /// `lease_until_ms`. A delivery with a partition key waits while an
    /// earlier one of its key and subscriber is pending, so per-key order
    /// holds across retries.
    async fn claim(
        &self,
        tenant: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;

    /// The subscriber acknowledged the delivery: it is removed (and its
    /// message, once no delivery is left).
    async fn acknowledge(&self, key: &DeliveryKey, now_ms: i64) -> StoreResult<()>;

    /// The attempt failed: tried again at `retry_at_ms`, or, with `None`,
    /// moved to the topic's dead letters.
    async fn fail(
        &self,
        key: &DeliveryKey,
        lease_until_ms: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> StoreResult<()>;

    /// Moves a claim's end from `from_ms` to `to_ms`; false when the claim
    /// is no longer the one this host made (ended, or lapsed and taken).
    async fn extend_claim(&self, key: &DeliveryKey, from_ms: i64, to_ms: i64) -> StoreResult<bool>;

    /// Gives up every claim: a single host at start, whose earlier run
    /// cannot be delivering any more.
    async fn release_claims(&self) -> StoreResult<u64>;

    /// Every topic of a tenant (of every tenant with `None`).
    async fn topics(&self, tenant: Option<&str>) -> StoreResult<Vec<TopicStats>>;

    async fn dead_letters(
        &self,
        tenant: &str,
        topic: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>>;

    /// Sends a topic's dead letters again, from their first attempt.
    async fn redrive(&self, tenant: &str, topic: &str, now_ms: i64) -> StoreResult<u64>;

    /// Records a tick, and with `fire` stores its message and delivery too;
    /// false when a host had recorded it already.
    async fn record_tick(
        &self,
        tick: &Tick,
        fire: Option<(&NewMessage, &NewDelivery)>,
        quota: &EventQuota,
    ) -> StoreResult<bool>;

    /// The latest tick recorded for a schedule.
    async fn last_tick(
        &self,
        tenant: &str,
        service: &str,
        schedule: &str,
    ) -> StoreResult<Option<i64>>;

    /// Forgets ticks older than `before_ms` (each schedule's latest stays).
    async fn prune_ticks(&self, before_ms: i64) -> StoreResult<u64>;
}
