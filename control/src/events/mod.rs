//! Events: topics of each tenant whose messages are stored before a
//! publish returns and delivered to their subscribers as HTTP requests
//! (CloudEvents, binary mode), retried with back-off until acknowledged or
//! moved to the topic's dead letters; and schedules, whose ticks are
//! delivered the same way. Every host runs the same loops; the store
//! decides which host delivers what (`store/events.rs`).

pub mod cloudevents;
mod deliver;
mod ingress;
mod lease;
pub mod nats;
pub mod plan;
mod schedule;
mod target;

use berth_api::events::{
    DeadLetterView, PublishedEvent, Redriven, ScheduleView, SubscriptionView, TopicView,
    check_event_type, check_topic,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

use crate::ControlError;
use crate::store::StoreError;
use crate::store::events::{EventLog, NewMessage, QuotaHit, SCHEDULE_TOPIC};
use crate::store::now_millis;
use plan::EventPlan;
pub use target::EventTarget;

/// Attempts to hand an event to NATS before it is a dead letter.
const NATS_ATTEMPTS: u32 = 20;

/// Largest event payload.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// How the event loops run on this host.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Most deliveries in flight at once per tenant on this host, over
    /// any tenant quota (`event_concurrency`, 8 by default).
    pub delivery_concurrency: u32,
    /// How often the loops look for work when nothing woke them.
    pub poll: Duration,
    /// Longest one delivery may take before it counts as failed.
    pub delivery_timeout: Duration,
    /// How long a claim holds unless renewed: a host renews its claims
    /// while their deliveries run, so another host takes a delivery over
    /// only once its host has stopped (died, or lost the store) this long.
    pub lease: Duration,
    /// Whether this host is the only one using the store: then claims left
    /// by an earlier run are given up at start.
    pub single_host: bool,
    /// The NATS server topics are bridged to, if any.
    pub nats_url: Option<String>,
    /// Topics bound to NATS subjects.
    pub nats_bindings: Vec<nats::NatsBinding>,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            delivery_concurrency: 64,
            poll: Duration::from_millis(250),
            delivery_timeout: Duration::from_secs(100),
            lease: Duration::from_secs(15),
            single_host: true,
            nats_url: None,
            nats_bindings: Vec::new(),
        }
    }
}

/// What a publisher gives besides the topic.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    pub event_type: String,
    pub source: Option<String>,
    pub id: Option<String>,
    pub partition_key: Option<String>,
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
    pub payload: Vec<u8>,
    /// Taken in from the NATS bridge: not sent back out to it.
    pub bridged: bool,
}

pub struct Events {
    log: Arc<dyn EventLog>,
    target: Arc<dyn EventTarget>,
    plan: RwLock<Arc<EventPlan>>,
    settings: EventSettings,
    /// Wakes the delivery loop: a publish, a finished delivery.
    wake: Notify,
    /// Wakes the scheduler: a new plan.
    replanned: Notify,
    /// Each tenant's deliveries in flight on this host, with the quota
    /// the semaphore was made for.
    slots: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    /// Each tenant's publishing on this host.
    paces: Mutex<HashMap<String, Pace>>,
    /// The NATS bridge, once connected.
    nats: std::sync::OnceLock<Arc<nats::NatsBridge>>,
    /// Claims held by deliveries in flight here, renewed while they run.
    leases: Arc<lease::Leases>,
}

/// A token bucket: `rate` events a second, bursts of twice that.
struct Pace {
    tokens: f64,
    at: std::time::Instant,
}

impl Events {
    pub fn new(
        log: Arc<dyn EventLog>,
        target: Arc<dyn EventTarget>,
        settings: EventSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            log,
            target,
            plan: RwLock::new(Arc::new(EventPlan::default())),
            settings,
            wake: Notify::new(),
            replanned: Notify::new(),
            slots: Mutex::new(HashMap::new()),
            paces: Mutex::new(HashMap::new()),
            nats: std::sync::OnceLock::new(),
            leases: Arc::default(),
        })
    }

    /// Starts the delivery, schedule and backlog loops; they end when the
    /// last other reference to `self` goes.
    pub async fn start(self: &Arc<Self>) -> Result<(), ControlError> {
        if self.settings.single_host {
            let released = self.log.release_claims().await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "deliveries an earlier run had claimed are sent again"
                );
            }
        }
        if let Some(url) = &self.settings.nats_url {
            let bridge =
                nats::NatsBridge::connect(url, self.settings.nats_bindings.clone()).await?;
            for binding in bridge.bindings.iter().filter(|b| b.direction.inbound) {
                tokio::spawn(nats::run_inbound(
                    Arc::downgrade(self),
                    bridge.client.clone(),
                    binding.clone(),
                ));
            }
            tracing::info!(url = %url, bindings = bridge.bindings.len(), "NATS bridge connected");
            let _ = self.nats.set(Arc::new(bridge));
        }
        tokio::spawn(deliver::run(Arc::downgrade(self)));
        tokio::spawn(schedule::run(Arc::downgrade(self)));
        tokio::spawn(deliver::watch_backlog(Arc::downgrade(self)));
        tokio::spawn(lease::renew(Arc::downgrade(self)));
        Ok(())
    }

    pub fn set_plan(&self, plan: EventPlan) {
        match self.plan.write() {
            Ok(mut current) => *current = Arc::new(plan),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(plan),
        }
        self.replanned.notify_one();
    }

    fn plan(&self) -> Arc<EventPlan> {
        match self.plan.read() {
            Ok(plan) => Arc::clone(&plan),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Stores an event for every subscription of the tenant's topic that
    /// takes its type; returns once it is stored.
    pub async fn publish(
        &self,
        tenant: &str,
        topic: &str,
        publish: Publish,
    ) -> Result<PublishedEvent, ControlError> {
        check_topic(topic).map_err(ControlError::InvalidInput)?;
        check_event_type(&publish.event_type).map_err(ControlError::InvalidInput)?;
        if publish.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(ControlError::InvalidInput(format!(
                "the event's payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                publish.payload.len()
            )));
        }
        let id = match publish.id {
            Some(id) => {
                check_attribute("ce-id", &id)?;
                id
            }
            None => cloudevents::new_id(),
        };
        let source = publish
            .source
            .unwrap_or_else(|| format!("/tenants/{tenant}/topics/{topic}"));
        check_attribute("ce-source", &source)?;
        if let Some(key) = &publish.partition_key {
            check_attribute("partition-key", key)?;
        }
        let plan = self.plan();
        let quota = plan.quota(tenant);
        if !self.publish_pace(tenant, quota.publish_rate) {
            return Err(ControlError::Busy(format!(
                "tenant `{tenant}` publishes more than {} events a second",
                quota.publish_rate
            )));
        }
        let mut deliveries = plan.deliveries(tenant, topic, &publish.event_type);
        if !publish.bridged
            && let Some(bridge) = self.nats.get()
        {
            deliveries.extend(
                bridge
                    .bindings
                    .iter()
                    .filter(|b| b.direction.outbound && b.tenant == tenant && b.topic == topic)
                    .map(|b| crate::store::events::NewDelivery {
                        service: nats::NATS_TARGET.to_string(),
                        path: b.subject.clone(),
                        max_attempts: NATS_ATTEMPTS,
                        backoff_ms: 1000,
                    }),
            );
        }
        let message = NewMessage {
            tenant: tenant.to_string(),
            topic: topic.to_string(),
            id: id.clone(),
            event_type: publish.event_type,
            source,
            time_ms: now_millis(),
            content_type: publish.content_type,
            partition_key: publish.partition_key,
            traceparent: publish.traceparent,
            payload: publish.payload,
        };
        match self.log.publish(&message, &deliveries, &quota).await {
            Ok(_) => {}
            Err(StoreError::EventQuota(hit @ QuotaHit::Topics(_))) => {
                return Err(ControlError::QuotaExceeded(hit.to_string()));
            }
            Err(StoreError::EventQuota(hit)) => return Err(ControlError::Busy(hit.to_string())),
            Err(other) => return Err(other.into()),
        }
        metrics::counter!("berth_events_published_total", "tenant" => tenant.to_string())
            .increment(1);
        self.wake.notify_one();
        Ok(PublishedEvent {
            id,
            deliveries: u32::try_from(deliveries.len()).unwrap_or(u32::MAX),
        })
    }

    pub async fn topics(&self, tenant: &str) -> Result<Vec<TopicView>, ControlError> {
        let now = now_millis();
        let plan = self.plan();
        let subscriptions = plan.subscriptions(tenant);
        let stats = self.log.topics(Some(tenant)).await?;
        let mut views: Vec<TopicView> = stats
            .into_iter()
            .map(|t| TopicView {
                subscriptions: subscribers_of(&subscriptions, &t.name),
                name: t.name,
                backlog: t.backlog,
                oldest_age_ms: t
                    .oldest_ms
                    .map_or(0, |at| u64::try_from(now - at).unwrap_or(0)),
                dead_letters: t.dead_letters,
                last_delivery_ms: t.last_delivery_ms,
            })
            .collect();
        // Topics subscribed to but not yet published to are topics too.
        for sub in &subscriptions {
            if !views.iter().any(|v| v.name == sub.spec.topic) {
                views.push(TopicView {
                    name: sub.spec.topic.clone(),
                    backlog: 0,
                    oldest_age_ms: 0,
                    dead_letters: 0,
                    subscriptions: subscribers_of(&subscriptions, &sub.spec.topic),
                    last_delivery_ms: None,
                });
            }
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(views)
    }

    pub async fn topic(&self, tenant: &str, topic: &str) -> Result<TopicView, ControlError> {
        self.topics(tenant)
            .await?
            .into_iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| {
                ControlError::Store(crate::store::StoreError::NotFound(format!(
                    "topic `{topic}` of tenant `{tenant}`"
                )))
            })
    }

    pub async fn dead_letters(
        &self,
        tenant: &str,
        topic: &str,
    ) -> Result<Vec<DeadLetterView>, ControlError> {
        check_known_topic(topic)?;
        Ok(self
            .log
            .dead_letters(tenant, topic, 1000)
            .await?
            .into_iter()
            .map(|d| DeadLetterView {
                id: d.id,
                event_type: d.event_type,
                service: d.service,
                path: d.path,
                attempts: d.attempts,
                last_error: d.last_error,
                published_ms: d.published_ms,
            })
            .collect())
    }

    pub async fn redrive(&self, tenant: &str, topic: &str) -> Result<Redriven, ControlError> {
        check_known_topic(topic)?;
        let redriven = self.log.redrive(tenant, topic, now_millis()).await?;
        self.wake.notify_one();
        Ok(Redriven { redriven })
    }

    pub async fn schedules(&self, tenant: &str) -> Result<Vec<ScheduleView>, ControlError> {
        let now = chrono::Utc::now();
        let mut views = Vec::new();
        for s in self
            .plan()
            .schedules()
            .iter()
            .filter(|s| s.tenant == tenant)
        {
            let last = self.log.last_tick(&s.tenant, &s.service, &s.key).await?;
            views.push(ScheduleView {
                service: s.service.clone(),
                cron: s.spec.cron.clone(),
                time_zone: s.spec.time_zone.clone(),
                path: s.spec.path.clone(),
                missed: s.spec.missed,
                next_tick_ms: s.cron.next_after(now).map(|t| t.timestamp_millis()),
                last_tick_ms: last,
            });
        }
        views.sort_by(|a, b| (&a.service, &a.path).cmp(&(&b.service, &b.path)));
        Ok(views)
    }

    pub fn subscriptions(&self, tenant: &str) -> Vec<SubscriptionView> {
        self.plan()
            .subscriptions(tenant)
            .into_iter()
            .map(|s| SubscriptionView {
                service: s.service,
                spec: s.spec,
            })
            .collect()
    }

    /// The tenant's slots for deliveries in flight on this host: its
    /// quota's, or the host's setting where that is lower. A changed quota
    /// takes a new semaphore; deliveries under the old one finish there.
    fn slots(&self, tenant: &str) -> Arc<Semaphore> {
        let size = self
            .plan()
            .quota(tenant)
            .concurrency
            .min(self.settings.delivery_concurrency.max(1));
        let mut slots = match self.slots.lock() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = slots
            .entry(tenant.to_string())
            .or_insert_with(|| (size, Arc::new(Semaphore::new(size as usize))));
        if entry.0 != size {
            *entry = (size, Arc::new(Semaphore::new(size as usize)));
        }
        Arc::clone(&entry.1)
    }

    /// Whether the tenant may publish one more event now.
    fn publish_pace(&self, tenant: &str, rate: u32) -> bool {
        let now = std::time::Instant::now();
        let burst = f64::from(rate) * 2.0;
        let mut paces = match self.paces.lock() {
            Ok(paces) => paces,
            Err(poisoned) => poisoned.into_inner(),
        };
        let pace = paces.entry(tenant.to_string()).or_insert(Pace {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(pace.at).as_secs_f64() * f64::from(rate);
        pace.tokens = (pace.tokens + refill).min(burst);
        pace.at = now;
        if pace.tokens >= 1.0 {
            pace.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn subscribers_of(subscriptions: &[plan::Subscriber], topic: &str) -> Vec<String> {
    subscriptions
        .iter()
        .filter(|s| s.spec.topic == topic)
        .map(|s| format!("{} {}", s.service, s.spec.path))
        .collect()
}

/// A topic a user may name: theirs, or the schedules' own.
fn check_known_topic(topic: &str) -> Result<(), ControlError> {
    if topic == SCHEDULE_TOPIC {
        return Ok(());
    }
    check_topic(topic).map_err(ControlError::InvalidInput)
}

/// An attribute given as text: printable ASCII, at most 1 KiB.
fn check_attribute(name: &str, value: &str) -> Result<(), ControlError> {
    if !value.is_empty() && value.len() <= 1024 && value.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        Ok(())
    } else {
        Err(ControlError::InvalidInput(format!(
            "`{name}` must be 1 to 1024 printable ASCII characters"
        )))
    }
}
