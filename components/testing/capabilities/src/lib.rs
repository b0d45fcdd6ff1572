//! A probe of the host's capabilities, one route each:
//!
//! - `GET|PUT|DELETE /kv/{bucket}/{key}`: read, write (the body) or delete a key;
//! - `GET /keys/{bucket}`: the bucket's keys, as JSON;
//! - `POST /incr/{key}`: atomic increment by 1 in `default`, returns the sum;
//! - `POST /update/{key}`: atomic JSON read-modify-write (+1) in `default`;
//! - `GET /config/{key}`: a configuration value (404 when unset);
//! - `POST /log`: logs the body through `wasi:logging` and prints it to stdout;
//! - `GET /whoami`: the request id, trace context and path this request has;
//! - `GET /call/{service}`: calls `{service}`'s `/whoami` and returns its answer;
//! - `GET /calls/{service}/{n}`: calls `{service}`'s `/whoami` `n` times in
//!   a row, and fails as the first failed call does;
//! - `GET /forward/{service}/{*path}`: calls `{service}`'s `/{path}` and
//!   returns its answer;
//! - `GET /big/{n}`: `n` bytes of `x`;
//! - `GET /call-http/{service}`: the same over plain wasi:http, a request to
//!   `http://{service}.internal/whoami`, as a service built without
//!   berth-sdk would make it;
//! - `POST /relay/{service}`: sends its body and `content-type` to
//!   `{service}`'s `/echo` and returns the answer;
//! - `POST /echo`: the method, `content-type` and body it was sent, as JSON;
//! - `GET /loop/{service}`: calls `{service}`'s `/loop/{service}`, and so on,
//!   answering with the status the call came back with;
//! - `GET /kv-hoard/{kib}/{n}`: stores `kib` KiB under one key, then reads
//!   that key `n` times in one `get-many` batch;
//! - `POST /kvloop/{op}/{n}`: `n` key-value `get`s or `set`s in a row, for
//!   the benchmark of one round trip from a guest.

use berth_sdk::kv::Bucket;
use berth_sdk::{Body, Error, Params, Request, Response, Router, StatusCode, call, serve};

fn text(status: StatusCode, body: impl Into<String>) -> Result<Response, Error> {
    Ok(http_response(status, body.into()))
}

fn http_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}

async fn kv_get(_r: Request, p: Params) -> Result<Response, Error> {
    let bucket = Bucket::open(p.get("bucket").unwrap_or_default())?;
    match bucket.get_bytes(p.get("key").unwrap_or_default())? {
        Some(value) => Ok(Response::new(Body::from(value))),
        None => text(StatusCode::NOT_FOUND, "no such key"),
    }
}

async fn kv_put(mut r: Request, p: Params) -> Result<Response, Error> {
    let value = r.body_mut().contents().await?.to_vec();
    let bucket = Bucket::open(p.get("bucket").unwrap_or_default())?;
    bucket.set_bytes(p.get("key").unwrap_or_default(), &value)?;
    text(StatusCode::NO_CONTENT, "")
}

async fn kv_delete(_r: Request, p: Params) -> Result<Response, Error> {
    let bucket = Bucket::open(p.get("bucket").unwrap_or_default())?;
    bucket.delete(p.get("key").unwrap_or_default())?;
    text(StatusCode::NO_CONTENT, "")
}

async fn keys(_r: Request, p: Params) -> Result<Response, Error> {
    let keys = Bucket::open(p.get("bucket").unwrap_or_default())?.keys()?;
    text(StatusCode::OK, serde_json::json!(keys).to_string())
}

async fn incr(_r: Request, p: Params) -> Result<Response, Error> {
    let sum = Bucket::open_default()?.increment(p.get("key").unwrap_or_default(), 1)?;
    text(StatusCode::OK, sum.to_string())
}

async fn update(_r: Request, p: Params) -> Result<Response, Error> {
    let bucket = Bucket::open_default()?;
    let new: u64 = bucket.update(p.get("key").unwrap_or_default(), |old: Option<u64>| {
        Ok(old.unwrap_or(0) + 1)
    })?;
    text(StatusCode::OK, new.to_string())
}

async fn config(_r: Request, p: Params) -> Result<Response, Error> {
    match berth_sdk::config::get(p.get("key").unwrap_or_default())? {
        Some(value) => text(StatusCode::OK, value),
        None => text(StatusCode::NOT_FOUND, "not set"),
    }
}

async fn log(mut r: Request, _p: Params) -> Result<Response, Error> {
    let line = r.body_mut().str_contents().await?.to_string();
    berth_sdk::warn!("{line}");
    println!("stdout: {line}");
    text(StatusCode::NO_CONTENT, "")
}

async fn whoami(r: Request, _p: Params) -> Result<Response, Error> {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body = serde_json::json!({
        "request_id": header("x-request-id"),
        "traceparent": header("traceparent"),
        "path_info": header("x-berth-path-info"),
    });
    text(StatusCode::OK, body.to_string())
}

/// `GET {path}` on the `service` named in the route, through berth-sdk's `call`.
async fn call_get(p: &Params, path: &str) -> Result<Response, Error> {
    let request = berth_sdk::http::Request::get(path).body(Body::empty())?;
    call(p.get("service").unwrap_or_default(), request).await
}

async fn call_whoami(_r: Request, p: Params) -> Result<Response, Error> {
    call_get(&p, "/whoami").await
}

async fn call_many(_r: Request, p: Params) -> Result<Response, Error> {
    let n: u32 = p.parse("n")?;
    for _ in 0..n {
        call_get(&p, "/whoami").await?;
    }
    text(StatusCode::OK, format!("{n} calls"))
}

async fn forward(_r: Request, p: Params) -> Result<Response, Error> {
    let path = format!("/{}", p.get("path").unwrap_or_default());
    call_get(&p, &path).await
}

async fn big(_r: Request, p: Params) -> Result<Response, Error> {
    let n: usize = p.parse("n")?;
    Ok(Response::new(Body::from(vec![b'x'; n])))
}

async fn call_over_http(_r: Request, p: Params) -> Result<Response, Error> {
    let service = p.get("service").unwrap_or_default();
    let request = berth_sdk::http::Request::get(format!("http://{service}.internal/whoami"))
        .body(Body::empty())?;
    wstd::http::Client::new()
        .send(request)
        .await
        .map_err(|e| Error::new(StatusCode::BAD_GATEWAY, e.to_string()))
}

async fn relay(mut r: Request, p: Params) -> Result<Response, Error> {
    let body = r.body_mut().contents().await?.to_vec();
    let mut request = berth_sdk::http::Request::post("/echo");
    if let Some(kind) = r.headers().get("content-type") {
        request = request.header("content-type", kind);
    }
    call(
        p.get("service").unwrap_or_default(),
        request.body(Body::from(body))?,
    )
    .await
}

async fn echo(mut r: Request, _p: Params) -> Result<Response, Error> {
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.body_mut().str_contents().await?.to_string();
    let answer = serde_json::json!({
        "method": r.method().as_str(),
        "content_type": content_type,
        "body": body,
    });
    let mut response = http_response(StatusCode::CREATED, answer.to_string());
    response
        .headers_mut()
        .insert("x-echoed", berth_sdk::http::HeaderValue::from_static("yes"));
    Ok(response)
}

async fn call_loop(_r: Request, p: Params) -> Result<Response, Error> {
    let service = p.get("service").unwrap_or_default();
    let request = berth_sdk::http::Request::get(format!("/loop/{service}")).body(Body::empty())?;
    let response = call(service, request).await?;
    text(response.status(), "")
}

async fn kv_hoard(_r: Request, p: Params) -> Result<Response, Error> {
    let kib: usize = p.parse("kib")?;
    let n: usize = p.parse("n")?;
    let bucket = Bucket::open_default()?;
    // A JSON string, so that the batch's values decode.
    bucket.set_bytes(
        "hoard",
        format!("\"{}\"", "h".repeat(kib * 1024)).as_bytes(),
    )?;
    let keys = vec!["hoard".to_string(); n];
    let got: Vec<Option<serde_json::Value>> = bucket.get_many(&keys)?;
    text(StatusCode::OK, format!("read {} copies", got.len()))
}

async fn kv_loop(_r: Request, p: Params) -> Result<Response, Error> {
    let n: u32 = p.parse("n")?;
    let bucket = Bucket::open_default()?;
    let keys: Vec<String> = (0..16).map(|i| format!("bench-{i}")).collect();
    for key in &keys {
        bucket.set_bytes(key, b"0123456789abcdef")?;
    }
    let set = match p.get("op") {
        Some("set") => true,
        Some("get") => false,
        _ => return Err(Error::bad_request("op is get or set")),
    };
    for i in 0..n as usize {
        let key = &keys[i % keys.len()];
        if set {
            bucket.set_bytes(key, b"0123456789abcdef")?;
        } else {
            bucket.get_bytes(key)?;
        }
    }
    text(StatusCode::OK, n.to_string())
}

serve!(
    Router::new()
        .get("/kv/{bucket}/{key}", kv_get)
        .put("/kv/{bucket}/{key}", kv_put)
        .delete("/kv/{bucket}/{key}", kv_delete)
        .get("/keys/{bucket}", keys)
        .post("/incr/{key}", incr)
        .post("/update/{key}", update)
        .get("/config/{key}", config)
        .post("/log", log)
        .get("/whoami", whoami)
        .get("/call/{service}", call_whoami)
        .get("/calls/{service}/{n}", call_many)
        .get("/forward/{service}/{*path}", forward)
        .get("/big/{n}", big)
        .get("/call-http/{service}", call_over_http)
        .post("/relay/{service}", relay)
        .post("/echo", echo)
        .get("/loop/{service}", call_loop)
        .post("/kvloop/{op}/{n}", kv_loop)
        .get("/kv-hoard/{kib}/{n}", kv_hoard)
);
