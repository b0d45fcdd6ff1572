//! `wasi:messaging@0.2.0-draft`'s producer: a guest publishes a message to
//! a topic of its tenant. It goes the way `POST
//! http://events.internal/topics/{topic}` goes (the same ingress, checks,
//! quotas and answer), counted against the request's outgoing-request limit.
//!
//! A message's metadata names its CloudEvents attributes: `ce-type` (or
//! `type`; `wasi.messaging.message` when absent), `ce-id` (`id`),
//! `ce-source` (`source`) and `partition-key`; its content type is the
//! event's `content-type`. There is one broker, the host: `connect` takes
//! any name.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::Resource;

use super::bindings::messaging_producer as producer;
use super::bindings::messaging_types::{self as types, Error, Metadata, Topic};
use super::calls::EVENTS_SERVICE;
use super::messaging_handles::{MessagingClient, OutgoingMessage};
use super::state::HostState;

/// Largest message a guest may build: the largest event.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most metadata pairs on one message.
const MAX_METADATA: usize = 64;
/// The event type of a message whose metadata names none.
const DEFAULT_TYPE: &str = "wasi.messaging.message";

fn too_large(what: &str) -> wasmtime::Error {
    wasmtime::format_err!("a wasi:messaging message's {what} is over its limit")
}

impl OutgoingMessage {
    /// Bytes the host holds for the message.
    fn size(&self) -> u64 {
        let meta: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.data.len() + self.content_type.as_ref().map_or(0, String::len) + meta) as u64
    }

    fn check(&self) -> wasmtime::Result<()> {
        if self.data.len() > MAX_MESSAGE_BYTES {
            return Err(too_large("data"));
        }
        if self.metadata.len() > MAX_METADATA {
            return Err(too_large("metadata"));
        }
        Ok(())
    }

    fn meta(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| {
            self.metadata
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        })
    }
}

impl HostState {
    /// Charges a changed message again at its new size (a trap when the
    /// instance's memory is used up).
    fn recharge(&mut self, message: &Resource<OutgoingMessage>) -> wasmtime::Result<()> {
        let budget = std::sync::Arc::clone(self.limiter.budget());
        let message = self.table.get_mut(message)?;
        message.check()?;
        // The old charge goes first, so a message near the limit can be
        // changed within it.
        message.held = budget.charge(0)?;
        message.held = budget.charge(message.size())?;
        Ok(())
    }
}

impl types::Host for HostState {}

impl types::HostClient for HostState {
    async fn connect(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<Resource<MessagingClient>, Error>> {
        Ok(Ok(self.table.push(MessagingClient)?))
    }

    async fn disconnect(
        &mut self,
        _client: Resource<MessagingClient>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(Ok(()))
    }

    async fn drop(&mut self, client: Resource<MessagingClient>) -> wasmtime::Result<()> {
        self.table.delete(client)?;
        Ok(())
    }
}

impl types::HostMessage for HostState {
    async fn new(&mut self, data: Vec<u8>) -> wasmtime::Result<Resource<OutgoingMessage>> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(too_large("data"));
        }
        let held = self.limiter.budget().charge(data.len() as u64)?;
        Ok(self.table.push(OutgoingMessage {
            data,
            content_type: None,
            metadata: Vec::new(),
            held,
        })?)
    }

    async fn topic(&mut self, _m: Resource<OutgoingMessage>) -> wasmtime::Result<Option<Topic>> {
        // A message built here was not received on any topic.
        Ok(None)
    }

    async fn content_type(
        &mut self,
        m: Resource<OutgoingMessage>,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&m)?.content_type.clone())
    }

    async fn set_content_type(
        &mut self,
        m: Resource<OutgoingMessage>,
        content_type: String,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.content_type = Some(content_type);
        self.recharge(&m)
    }

    async fn data(&mut self, m: Resource<OutgoingMessage>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&m)?.data.clone())
    }

    async fn set_data(
        &mut self,
        m: Resource<OutgoingMessage>,
        data: Vec<u8>,
    ) -> wasmtime::Result<()> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(too_large("data"));
        }
        self.table.get_mut(&m)?.data = data;
        self.recharge(&m)
    }

    async fn metadata(
        &mut self,
        m: Resource<OutgoingMessage>,
    ) -> wasmtime::Result<Option<Metadata>> {
        let metadata = &self.table.get(&m)?.metadata;
        Ok((!metadata.is_empty()).then(|| metadata.clone()))
    }

    async fn add_metadata(
        &mut self,
        m: Resource<OutgoingMessage>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        let metadata = &mut self.table.get_mut(&m)?.metadata;
        metadata.retain(|(k, _)| *k != key);
        metadata.push((key, value));
        self.recharge(&m)
    }

    async fn set_metadata(
        &mut self,
        m: Resource<OutgoingMessage>,
        meta: Metadata,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.metadata = meta;
        self.recharge(&m)
    }

    async fn remove_metadata(
        &mut self,
        m: Resource<OutgoingMessage>,
        key: String,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.metadata.retain(|(k, _)| *k != key);
        self.recharge(&m)
    }

    async fn drop(&mut self, m: Resource<OutgoingMessage>) -> wasmtime::Result<()> {
        self.table.delete(m)?;
        Ok(())
    }
}

impl producer::Host for HostState {
    async fn send(
        &mut self,
        _client: Resource<MessagingClient>,
        topic: Topic,
        message: Resource<OutgoingMessage>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let message = self.table.delete(message)?;
        let calls = match self.hooks.take_internal_call() {
            Ok(calls) => calls,
            Err(limit) => {
                return Ok(Err(Error::Other(format!(
                    "this request has made its {limit} outgoing requests"
                ))));
            }
        };
        let request = match publish_request(&topic, &message) {
            Ok(request) => request,
            Err(why) => return Ok(Err(Error::Other(why))),
        };
        drop(message);
        let response = calls.call(EVENTS_SERVICE, request).await;
        let status = response.status();
        if status == http::StatusCode::ACCEPTED {
            return Ok(Ok(()));
        }
        let detail = match response.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        let why = format!("{status}: {detail}");
        Ok(Err(match status {
            http::StatusCode::FORBIDDEN => Error::PermissionDenied(why),
            s if s.is_client_error() => Error::Other(why),
            _ => Error::Connection(why),
        }))
    }
}

/// The message as the request `http://events.internal` takes.
fn publish_request(
    topic: &str,
    message: &OutgoingMessage,
) -> Result<http::Request<wasmtime_wasi_http::WasiBody>, String> {
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{EVENTS_SERVICE}.internal/topics/{topic}"))
        .header(
            "ce-type",
            message.meta(&["ce-type", "type"]).unwrap_or(DEFAULT_TYPE),
        );
    let attributes = [
        ("ce-id", message.meta(&["ce-id", "id"])),
        ("ce-source", message.meta(&["ce-source", "source"])),
        ("partition-key", message.meta(&["partition-key"])),
        ("content-type", message.content_type.as_deref()),
    ];
    for (name, value) in attributes {
        if let Some(value) = value {
            builder = builder.header(name, value);
        }
    }
    let body = Full::new(Bytes::from(message.data.clone()))
        .map_err(|never| match never {})
        .boxed_unsync();
    builder
        .body(body)
        .map_err(|e| format!("the message's topic or metadata make no request: {e}"))
}
