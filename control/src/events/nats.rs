//! The NATS bridge: topics bound to NATS subjects by the operator
//! (`--nats-url`, `--nats-bind TENANT/TOPIC=SUBJECT[:in|out|both]`).
//!
//! - **Outbound**: the binding is one more subscriber of its topic, so an
//!   event leaves for NATS with the same at-least-once delivery, retries and
//!   dead letters as any: a delivery is acknowledged once the NATS server
//!   has the message (a flush after the publish). The CloudEvents
//!   attributes travel as NATS headers (`ce-id`, `ce-type`, ...).
//! - **Inbound**: every host subscribes in one queue group, so NATS gives
//!   each message to one host, which publishes it to the topic (stored
//!   before the message is taken; core NATS does not redeliver, so a host
//!   dying in between loses that message, as any core NATS subscriber
//!   would). Messages the bridge itself sent are marked and not taken back.

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Weak;

use super::{Events, Publish};
use crate::ControlError;
use crate::store::events::NewMessage;

/// The pseudo-service a bridged topic's outbound deliveries go to; no
/// service name can start with `@`.
pub const NATS_TARGET: &str = "@nats";
/// Marks a message the bridge published, so no host takes it back in.
const BRIDGED_HEADER: &str = "berth-bridged";
/// The queue group every host's inbound subscriptions join.
const QUEUE_GROUP: &str = "berth";

/// Which ways a binding carries events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    pub inbound: bool,
    pub outbound: bool,
}

/// One topic bound to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsBinding {
    pub tenant: String,
    pub topic: String,
    pub subject: String,
    pub direction: Direction,
}

impl std::str::FromStr for NatsBinding {
    type Err = String;

    /// `TENANT/TOPIC=SUBJECT[:in|out|both]`.
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("`{text}`: use TENANT/TOPIC=SUBJECT[:in|out|both]");
        let (topic_part, subject_part) = text.split_once('=').ok_or_else(usage)?;
        let (tenant, topic) = topic_part.split_once('/').ok_or_else(usage)?;
        berth_api::names::check_name(tenant).map_err(|e| format!("`{text}`: {e}"))?;
        berth_api::events::check_topic(topic)?;
        let (subject, direction) = match subject_part.rsplit_once(':') {
            Some((subject, "in")) => (subject, (true, false)),
            Some((subject, "out")) => (subject, (false, true)),
            Some((subject, "both")) => (subject, (true, true)),
            Some(_) => return Err(usage()),
            None => (subject_part, (true, true)),
        };
        let valid = !subject.is_empty()
            && subject.len() <= 256
            && subject
                .split('.')
                .all(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
        // Only an inbound subject may have wildcards: one event cannot be
        // published to many subjects.
        let wild = subject.split('.').any(|t| t == "*" || t == ">");
        if !valid || (wild && direction.1) {
            return Err(format!(
                "`{text}`: `{subject}` is not a NATS subject (dot-separated tokens; wildcards only for :in)"
            ));
        }
        Ok(Self {
            tenant: tenant.to_string(),
            topic: topic.to_string(),
            subject: subject.to_string(),
            direction: Direction {
                inbound: direction.0,
                outbound: direction.1,
            },
        })
    }
}

/// The bridge's connection and bindings.
pub struct NatsBridge {
    pub client: async_nats::Client,
    pub bindings: Vec<NatsBinding>,
}

impl NatsBridge {
    pub async fn connect(url: &str, bindings: Vec<NatsBinding>) -> Result<Self, ControlError> {
        let client = async_nats::ConnectOptions::new()
            .name("berth")
            .connect(url)
            .await
            .map_err(|e| ControlError::InvalidInput(format!("cannot reach NATS at {url}: {e}")))?;
        Ok(Self { client, bindings })
    }

    /// Publishes one delivery's message to `subject` and waits until the
    /// server has it.
    pub async fn send(&self, subject: &str, message: &NewMessage) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        let attributes = [
            (
                "ce-specversion",
                super::cloudevents::SPEC_VERSION.to_string(),
            ),
            ("ce-id", message.id.clone()),
            ("ce-source", message.source.clone()),
            ("ce-type", message.event_type.clone()),
            ("ce-time", super::cloudevents::time_text(message.time_ms)),
            (BRIDGED_HEADER, "1".to_string()),
        ];
        for (name, value) in attributes {
            headers.insert(name, value.as_str());
        }
        if let Some(kind) = &message.content_type {
            headers.insert("content-type", kind.as_str());
        }
        if let Some(key) = &message.partition_key {
            headers.insert("ce-partitionkey", key.as_str());
        }
        self.client
            .publish_with_headers(
                subject.to_string(),
                headers,
                Bytes::from(message.payload.clone()),
            )
            .await
            .map_err(|e| format!("NATS publish failed: {e}"))?;
        self.client
            .flush()
            .await
            .map_err(|e| format!("NATS did not take the message: {e}"))
    }
}

/// Takes each bound subject's messages into its topic, until the events
/// go away.
pub(super) async fn run_inbound(
    events: Weak<Events>,
    client: async_nats::Client,
    binding: NatsBinding,
) {
    let mut subscriber = match client
        .queue_subscribe(binding.subject.clone(), QUEUE_GROUP.to_string())
        .await
    {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::error!(subject = %binding.subject, %error, "cannot subscribe to NATS");
            return;
        }
    };
    while let Some(message) = subscriber.next().await {
        let Some(me) = events.upgrade() else { return };
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        if header(BRIDGED_HEADER).is_some() {
            continue;
        }
        let publish = Publish {
            event_type: header("ce-type").unwrap_or_else(|| "nats.message".to_string()),
            source: Some(
                header("ce-source").unwrap_or_else(|| format!("nats:{}", message.subject)),
            ),
            id: header("ce-id"),
            partition_key: header("ce-partitionkey").or_else(|| header("partition-key")),
            content_type: header("content-type"),
            traceparent: header("traceparent"),
            payload: message.payload.to_vec(),
            bridged: true,
        };
        match me.publish(&binding.tenant, &binding.topic, publish).await {
            Ok(published) => tracing::debug!(
                tenant = %binding.tenant, topic = %binding.topic, id = %published.id,
                "event taken in from NATS"
            ),
            Err(error) => {
                metrics::counter!("berth_nats_inbound_dropped_total", "tenant" => binding.tenant.clone())
                    .increment(1);
                tracing::warn!(
                    tenant = %binding.tenant, topic = %binding.topic, subject = %message.subject,
                    %error, "a NATS message was not taken in"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_parse_with_their_direction() {
        let both: Result<NatsBinding, _> = "acme/orders=shop.orders".parse();
        assert_eq!(
            both.map(|b| (b.subject, b.direction)),
            Ok((
                "shop.orders".to_string(),
                Direction {
                    inbound: true,
                    outbound: true
                }
            ))
        );
        let inbound: Result<NatsBinding, _> = "acme/orders=shop.*:in".parse();
        assert!(inbound.is_ok_and(|b| b.direction.inbound && !b.direction.outbound));
        for bad in [
            "acme/orders",
            "orders=shop",
            "acme/orders=shop.*",
            "acme/orders=a..b",
            "acme/orders=shop:sideways",
            "Acme/orders=shop",
        ] {
            assert!(bad.parse::<NatsBinding>().is_err(), "{bad}");
        }
    }
}
