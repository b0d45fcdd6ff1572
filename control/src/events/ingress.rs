//! Events published by guests: `POST http://events.internal/topics/{topic}`
//! with the same headers as the admin API's publish route, answered the
//! same way (202 with the id, or a problem).

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiBody;

use berth_runtime::capabilities::calls::{EventIngress, EventOrigin};

use super::cloudevents::header_text;
use super::{Events, MAX_PAYLOAD_BYTES, Publish};
use crate::ControlError;

#[async_trait::async_trait]
impl EventIngress for Events {
    async fn publish(
        &self,
        origin: EventOrigin<'_>,
        request: http::Request<WasiBody>,
    ) -> http::Response<WasiBody> {
        let (head, body) = request.into_parts();
        let Some(topic) = head.uri.path().strip_prefix("/topics/") else {
            return problem(
                StatusCode::NOT_FOUND,
                "events.internal takes POST /topics/{topic}",
            );
        };
        if head.method != http::Method::POST {
            return problem(StatusCode::METHOD_NOT_ALLOWED, "publish an event with POST");
        }
        let Some(event_type) = header_text(&head.headers, "ce-type") else {
            return problem(StatusCode::BAD_REQUEST, "the `ce-type` header is required");
        };
        let payload = match http_body_util::Limited::new(body, MAX_PAYLOAD_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => {
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("an event's payload is at most {MAX_PAYLOAD_BYTES} bytes"),
                );
            }
        };
        let publish = Publish {
            event_type,
            source: header_text(&head.headers, "ce-source")
                .or_else(|| Some(format!("/services/{}", origin.service))),
            id: header_text(&head.headers, "ce-id"),
            partition_key: header_text(&head.headers, "partition-key"),
            content_type: header_text(&head.headers, "content-type"),
            traceparent: Some(origin.traceparent),
            payload,
            bridged: false,
        };
        match Events::publish(self, origin.tenant, topic, publish).await {
            Ok(published) => {
                let body = serde_json::to_vec(&published).unwrap_or_default();
                response(StatusCode::ACCEPTED, "application/json", body)
            }
            Err(ControlError::InvalidInput(detail)) => problem(StatusCode::BAD_REQUEST, &detail),
            Err(error) => {
                tracing::warn!(tenant = origin.tenant, request_id = origin.request_id, %error, "a guest's event was not stored");
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the event could not be stored",
                )
            }
        }
    }
}

fn problem(status: StatusCode, detail: &str) -> http::Response<WasiBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    response(
        status,
        "application/problem+json",
        body.to_string().into_bytes(),
    )
}

fn response(status: StatusCode, kind: &'static str, body: Vec<u8>) -> http::Response<WasiBody> {
    let body = http_body_util::Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(kind),
    );
    response
}
