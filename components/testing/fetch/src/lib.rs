//! Test guest: fetches the URL in the `x-fetch-url` header (`x-fetch-count`
//! times, default once) and answers with the last upstream's status and
//! body, or 502 with the first error. Built on `wstd`.

use wstd::http::{Body, Client, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, wstd::http::Error> {
    let Some(url) = request
        .headers()
        .get("x-fetch-url")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body("missing x-fetch-url header\n".into())?);
    };
    let count: u32 = request
        .headers()
        .get("x-fetch-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut last = (StatusCode::OK, String::new());
    for n in 1..=count {
        let outgoing = Request::get(url).body(Body::empty())?;
        match Client::new().send(outgoing).await {
            Ok(upstream) => {
                let status = upstream.status();
                let mut body = upstream.into_body();
                last = (status, body.str_contents().await?.to_string());
            }
            Err(error) => {
                return Ok(Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(format!("outbound request failed (request {n}): {error:?}\n").into())?);
            }
        }
    }
    Ok(Response::builder()
        .status(last.0)
        .body(format!("upstream said: {}", last.1).into())?)
}
