//! Routing by prefix, 404s, the SDK's router and JSON, HTTP/2, concurrency.

use anyhow::Result;
use berth_e2e::{BerthProcess, client, service};

fn examples_config() -> Result<String> {
    Ok([
        service("hello", "hello", "/hello", "")?,
        service("json-api", "json-api", "/api", "")?,
        // The root route catches whatever no longer prefix claims.
        service("echo", "echo", "/", "")?,
    ]
    .concat())
}

#[tokio::test]
async fn longest_prefix_wins_and_unrouted_paths_are_404() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::serve(
        &[
            service("hello", "hello", "/hello", "")?,
            service("json-api", "json-api", "/hello/api", "")?,
        ]
        .concat(),
        dir.path(),
    )?;
    let http = client();

    let r = http.get(host.url("/hello")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, "Hello from Berth!\n");

    let r = http.get(host.url("/hello/anything")).send().await?;
    assert_eq!(r.text().await?, "Hello from Berth!\n");

    // The longer prefix wins over `/hello`.
    let r = http.get(host.url("/hello/api/health")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, r#"{"status":"ok"}"#);

    // A prefix matches whole segments only.
    for path in ["/hellox", "/", "/other/hello"] {
        let r = http.get(host.url(path)).send().await?;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let id = r.headers()["x-request-id"].to_str()?.to_string();
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["request_id"], id.as_str());
        assert_eq!(body["status"], 404);
    }
    Ok(())
}

#[tokio::test]
async fn sdk_router_matches_params_methods_and_validates_json() -> Result<()> {
    let host = BerthProcess::serving(&examples_config()?)?;
    let http = client();

    let r = http.get(host.url("/api/greet/ada")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["greeting"], "Hello, ada!");

    let quote = serde_json::json!({"items": [
        {"sku": "A-1", "quantity": 2, "unit_price_cents": 150},
        {"sku": "B-2", "quantity": 1, "unit_price_cents": 99}
    ]});
    let r = http
        .post(host.url("/api/quotes"))
        .header("content-type", "application/json")
        .body(quote.to_string())
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body, serde_json::json!({"items": 2, "total_cents": 399}));

    // Invalid input is a 400 that says what is wrong.
    let cases = [
        (r#"{"items": []}"#, "at least one item"),
        (
            r#"{"items": [{"sku": "A", "quantity": 0, "unit_price_cents": 1}]}"#,
            "items[0].quantity",
        ),
        (
            r#"{"items": [{"sku": "A", "quantity": 1}]}"#,
            "unit_price_cents",
        ),
        (r#"{"items": "#, "invalid JSON body at line 1"),
    ];
    for (input, expected) in cases {
        let r = http
            .post(host.url("/api/quotes"))
            .header("content-type", "application/json")
            .body(input)
            .send()
            .await?;
        assert_eq!(r.status(), 400, "{input}");
        let body: serde_json::Value = r.json().await?;
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{input}: {message}");
    }

    // Wrong method on a known path: 405 with Allow.
    let r = http.delete(host.url("/api/quotes")).send().await?;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");

    // Unknown path inside the service: the service's own 404.
    let r = http.get(host.url("/api/nothing-here")).send().await?;
    assert_eq!(r.status(), 404);
    Ok(())
}

#[tokio::test]
async fn serves_http2_cleartext() -> Result<()> {
    let host = BerthProcess::serving(&service("hello", "hello", "/", "")?)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()?;
    let r = http.get(host.url("/")).send().await?;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await?, "Hello from Berth!\n");
    Ok(())
}

#[tokio::test]
async fn a_thousand_concurrent_requests_are_all_answered() -> Result<()> {
    let host = BerthProcess::serving(&examples_config()?)?;
    let http = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let http = http.clone();
        let (url, expected) = match i % 3 {
            0 => (host.url("/hello"), "Hello from Berth!\n".to_string()),
            1 => (
                host.url(&format!("/api/greet/n{i}")),
                format!(r#"{{"greeting":"Hello, n{i}!"}}"#),
            ),
            _ => (host.url(&format!("/echo-{i}")), format!("body {i}")),
        };
        tasks.spawn(async move {
            let request = if i % 3 == 2 {
                http.post(&url).body(expected.clone())
            } else {
                http.get(&url)
            };
            let r = request.send().await?;
            let status = r.status();
            let body = r.text().await?;
            anyhow::ensure!(status == 200, "{url}: {status} {body}");
            anyhow::ensure!(body == expected, "{url}: got {body:?}, want {expected:?}");
            Ok::<_, anyhow::Error>(())
        });
    }
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        result??;
        answered += 1;
    }
    assert_eq!(answered, 1000);
    Ok(())
}
