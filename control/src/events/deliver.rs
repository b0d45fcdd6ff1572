//! The delivery loop every host runs: claim due deliveries tenant by
//! tenant (each tenant within its own slots, so one tenant's backlog never
//! holds another's), run each in its subscriber, and record the outcome:
//! acknowledged, retried after a back-off with jitter, or dead.

use std::sync::{Arc, Weak};
use std::time::Duration;

use berth_runtime::telemetry::trace_context::{CallChain, TraceContext};

use super::lease::HeldLease;
use super::{Events, cloudevents};
use crate::store::events::ClaimedDelivery;
use crate::store::now_millis;

/// How long the loop waits after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 3_600_000;

pub(super) async fn run(events: Weak<Events>) {
    loop {
        let Some(me) = events.upgrade() else { return };
        let poll = me.settings.poll;
        let wait = match claim_round(&me).await {
            Ok(()) => poll,
            Err(error) => {
                tracing::warn!(%error, "cannot claim event deliveries");
                STORE_RETRY
            }
        };
        let woken = me.wake.notified();
        let _ = tokio::time::timeout(wait, woken).await;
    }
}

/// One pass over the tenants with deliveries due.
async fn claim_round(me: &Arc<Events>) -> Result<(), crate::store::StoreError> {
    let now = now_millis();
    let lease_until = now + super::plan::millis(me.settings.lease);
    for tenant in me.log.tenants_with_events().await? {
        let slots = me.slots(&tenant);
        let free = u32::try_from(slots.available_permits()).unwrap_or(0);
        if free == 0 {
            continue;
        }
        for delivery in me.log.claim(&tenant, now, lease_until, free).await? {
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                // Claimed but no slot: the lease runs out and it is taken
                // again; this cannot happen while only this loop claims.
                continue;
            };
            let lease = me
                .leases
                .hold(delivery.key.clone(), delivery.lease_until_ms);
            let me = Arc::clone(me);
            tokio::spawn(async move {
                deliver(&me, delivery, lease).await;
                drop(slot);
                me.wake.notify_one();
            });
        }
    }
    Ok(())
}

async fn deliver(me: &Events, delivery: ClaimedDelivery, lease: HeldLease) {
    let attempt = delivery.attempts + 1;
    let message = &delivery.message;
    let key = &delivery.key;
    let request_id: Arc<str> = Arc::from(format!("evt-{}-{attempt}", message.id));
    let parent = message
        .traceparent
        .as_deref()
        .and_then(|t| http::HeaderValue::from_str(t).ok());
    let chain = CallChain::root(TraceContext::continuing(parent.as_ref()));
    let outcome = if key.service == super::nats::NATS_TARGET {
        match me.nats.get() {
            Some(bridge) => {
                let sent = bridge.send(&key.path, message);
                match tokio::time::timeout(me.settings.delivery_timeout, sent).await {
                    Ok(result) => result,
                    Err(_) => Err("NATS did not answer in time".to_string()),
                }
            }
            None => Err("this host has no NATS bridge".to_string()),
        }
    } else {
        deliver_to_service(me, message, key, attempt, &request_id, chain).await
    };
    record(me, &delivery, &lease, attempt, &request_id, outcome).await;
}

/// Runs one delivery in its subscriber.
async fn deliver_to_service(
    me: &Events,
    message: &crate::store::events::NewMessage,
    key: &crate::store::events::DeliveryKey,
    attempt: u32,
    request_id: &Arc<str>,
    chain: CallChain,
) -> Result<(), String> {
    match cloudevents::request(message, &key.service, &key.path, attempt) {
        Ok(request) => {
            let delivered = me.target.deliver(
                &key.tenant,
                &key.service,
                request,
                Arc::clone(request_id),
                chain,
            );
            match tokio::time::timeout(me.settings.delivery_timeout, delivered).await {
                Ok(Ok(status)) if status.is_success() => Ok(()),
                Ok(Ok(status)) => Err(format!("answered {status}")),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(format!(
                    "no answer within {:?}",
                    me.settings.delivery_timeout
                )),
            }
        }
        Err(error) => Err(format!("cannot build the request: {error}")),
    }
}

/// Records an attempt's outcome: acknowledged, retried later, or dead.
async fn record(
    me: &Events,
    delivery: &ClaimedDelivery,
    lease: &HeldLease,
    attempt: u32,
    request_id: &Arc<str>,
    outcome: Result<(), String>,
) {
    let (message, key) = (&delivery.message, &delivery.key);
    let labels = [("tenant", key.tenant.clone()), ("topic", key.topic.clone())];
    let recorded = match &outcome {
        Ok(()) => {
            metrics::counter!(
                "berth_event_deliveries_total",
                &labels_with(&labels, "acknowledged")
            )
            .increment(1);
            me.log.acknowledge(key, now_millis()).await
        }
        Err(error) => {
            let retry_at = (attempt < delivery.max_attempts)
                .then(|| now_millis() + backoff_ms(delivery.backoff_ms, attempt));
            let outcome = if retry_at.is_some() {
                "retried"
            } else {
                "dead"
            };
            metrics::counter!(
                "berth_event_deliveries_total",
                &labels_with(&labels, outcome)
            )
            .increment(1);
            tracing::info!(
                tenant = %key.tenant, topic = %key.topic, service = %key.service,
                event_id = %message.id, request_id = %request_id, attempt, %error,
                outcome, "event delivery failed"
            );
            // Under the lease as it stands: a renewal cannot move it meanwhile.
            let until = lease.cell.lock().await;
            me.log.fail(key, *until, error, retry_at).await
        }
    };
    if let Err(error) = recorded {
        // The claim runs out and the delivery is made again: at least once.
        tracing::warn!(%error, event_id = %message.id, "cannot record a delivery's outcome");
    }
}

fn labels_with(
    labels: &[(&'static str, String); 2],
    outcome: &'static str,
) -> [(&'static str, String); 3] {
    [
        labels[0].clone(),
        labels[1].clone(),
        ("outcome", outcome.to_string()),
    ]
}

/// The wait after the `attempt`th failure: the first back-off doubled for
/// each attempt before, capped, then between half of that and all of it
/// ("equal jitter"), so that failures at one moment spread out.
fn backoff_ms(first_ms: i64, attempt: u32) -> i64 {
    let doubled = first_ms.saturating_mul(1i64 << attempt.saturating_sub(1).min(30));
    let capped = doubled.clamp(1, MAX_BACKOFF_MS);
    let half = capped / 2;
    let jitter =
        i64::try_from(berth_runtime::random::roll() % (half.max(1) as u64 + 1)).unwrap_or(0);
    half + jitter
}

/// Publishes each topic's backlog, oldest waiting delivery and dead
/// letters as gauges, for dashboards and autoscalers.
pub(super) async fn watch_backlog(events: Weak<Events>) {
    const EVERY: Duration = Duration::from_secs(5);
    loop {
        let Some(me) = events.upgrade() else { return };
        let now = now_millis();
        match me.log.topics(None).await {
            Ok(topics) => {
                for t in topics {
                    let labels = [("tenant", t.tenant.clone()), ("topic", t.name.clone())];
                    metrics::gauge!("berth_topic_backlog", &labels).set(t.backlog as f64);
                    let age = t
                        .oldest_ms
                        .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
                    metrics::gauge!("berth_topic_oldest_age_seconds", &labels).set(age);
                    metrics::gauge!("berth_topic_dead_letters", &labels).set(t.dead_letters as f64);
                }
            }
            Err(error) => tracing::debug!(%error, "cannot read topic backlogs"),
        }
        drop(me);
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 1..=4 {
            let full = 100 * (1 << (attempt - 1));
            for _ in 0..100 {
                let wait = backoff_ms(100, attempt);
                assert!((full / 2..=full).contains(&wait), "{attempt}: {wait}");
            }
        }
        assert!(backoff_ms(1000, 40) <= MAX_BACKOFF_MS);
    }
}
