//! An event subscriber and publisher for the end-to-end tests:
//!
//! - `POST /on/{name}` and `POST /tick`: a delivery. Its `ce-*` headers,
//!   `content-type`, `traceparent`, path and body are appended to the
//!   key-value list `seen`, and the attempt for its `ce-id` is counted.
//!   It answers 500 while that count is at most the config value
//!   `fail_first` (0 when unset), and always when `always_fail` is `true`;
//!   otherwise 200. With the config value `delay_ms` it waits that long
//!   after recording before it answers, so a delivery can be caught in
//!   flight.
//! - `GET /seen`: the list, as a JSON array.
//! - `POST /publish/{topic}`: publishes its body to `{topic}` through
//!   `http://events.internal/topics/{topic}`, with the `ce-type` and
//!   `partition-key` it was sent; answers with the status and body it got.

use berth_sdk::kv::Bucket;
use berth_sdk::{Body, Error, Params, Request, Response, Router, StatusCode, config, serve};

fn header(r: &Request, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn answer(status: StatusCode, body: String) -> Result<Response, Error> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    Ok(response)
}

async fn delivery(mut r: Request, _p: Params) -> Result<Response, Error> {
    let body = r.body_mut().contents().await?.to_vec();
    let id = header(&r, "ce-id");
    let bucket = Bucket::open_default()?;
    let attempt = bucket.increment(&format!("attempts:{id}"), 1)?;
    let record = serde_json::json!({
        "path": r.uri().path(),
        "id": id,
        "type": header(&r, "ce-type"),
        "source": header(&r, "ce-source"),
        "time": header(&r, "ce-time"),
        "specversion": header(&r, "ce-specversion"),
        "partitionkey": header(&r, "ce-partitionkey"),
        "content_type": header(&r, "content-type"),
        "traceparent": header(&r, "traceparent"),
        "attempt_header": header(&r, "x-berth-delivery-attempt"),
        "attempt": attempt,
        "body": String::from_utf8_lossy(&body),
    });
    bucket.update("seen", |old: Option<Vec<serde_json::Value>>| {
        let mut seen = old.unwrap_or_default();
        seen.push(record.clone());
        Ok(seen)
    })?;
    let fail_first: i64 = config::get("fail_first")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let delay_ms: u64 = config::get("delay_ms")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if delay_ms > 0 {
        wstd::task::sleep(wstd::time::Duration::from_millis(delay_ms)).await;
    }
    let always = config::get("always_fail").ok().flatten().as_deref() == Some("true");
    if always || attempt <= fail_first {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failing attempt {attempt}"),
        );
    }
    answer(StatusCode::OK, "ok".to_string())
}

async fn seen(_r: Request, _p: Params) -> Result<Response, Error> {
    let seen: Option<Vec<serde_json::Value>> = Bucket::open_default()?.get("seen")?;
    answer(
        StatusCode::OK,
        serde_json::json!(seen.unwrap_or_default()).to_string(),
    )
}

async fn publish(mut r: Request, p: Params) -> Result<Response, Error> {
    let body = r.body_mut().contents().await?.to_vec();
    let topic = p.get("topic").unwrap_or_default();
    let mut request =
        berth_sdk::http::Request::post(format!("http://events.internal/topics/{topic}"))
            .header("content-type", "application/json");
    for name in ["ce-type", "partition-key"] {
        let value = header(&r, name);
        if !value.is_empty() {
            request = request.header(name, value);
        }
    }
    let mut response = wstd::http::Client::new()
        .send(request.body(Body::from(body))?)
        .await
        .map_err(|e| Error::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let status = response.status();
    let text = response.body_mut().str_contents().await?.to_string();
    answer(status, text)
}

serve!(
    Router::new()
        .post("/on/{name}", delivery)
        .post("/tick", delivery)
        .get("/seen", seen)
        .post("/publish/{topic}", publish)
);
