//! Test guest: fetches the URL in the `x-fetch-url` header and answers with
//! the upstream's status and body, or 502 with the error. Built on `wstd`.

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
    let outgoing = Request::get(url).body(Body::empty())?;
    match Client::new().send(outgoing).await {
        Ok(upstream) => {
            let status = upstream.status();
            let mut body = upstream.into_body();
            let text = body.str_contents().await?.to_string();
            Ok(Response::builder()
                .status(status)
                .body(format!("upstream said: {text}").into())?)
        }
        Err(error) => Ok(Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(format!("outbound request failed: {error:?}\n").into())?),
    }
}
