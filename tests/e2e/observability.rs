//! Observability seen from outside: Prometheus metrics after a known
//! sequence of requests, the tenant's view of them, host-computed stats,
//! the deploy history, OTLP span export with trace context carried across
//! services, JSON logs, and the dashboard in a real headless browser.

use anyhow::{Context, Result, ensure};
use berth_e2e::browser::Browser;
use berth_e2e::collector::Collector;
use berth_e2e::{Admin, BerthProcess, client, component};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One Prometheus sample: its labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `want`;
/// 0 when there is none (a counter never incremented may not be rendered).
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(url: &str) -> Result<Vec<Sample>> {
    let text = client().get(url).send().await?.text().await?;
    Ok(parse_metrics(&text))
}

async fn hit(
    host: &BerthProcess,
    tenant: &str,
    method: reqwest::Method,
    path: &str,
) -> Result<u16> {
    let response = client()
        .request(method, host.url(path))
        .header("host", format!("{tenant}.localhost"))
        .send()
        .await?;
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok(status)
}

/// Has the probe at `/p` of acme write `line` to its log.
async fn log_line(host: &BerthProcess, line: &str) -> Result<()> {
    let response = client()
        .post(host.url("/p/log"))
        .header("host", "acme.localhost")
        .body(line.to_string())
        .send()
        .await?;
    ensure!(response.status() == 204, "logging: {}", response.status());
    Ok(())
}

async fn deploy(admin: &Admin, tenant: &str, service: &str, crate_name: &str) -> Result<()> {
    admin
        .deploy(
            tenant,
            service,
            "1",
            &component(crate_name)?,
            &format!("/{service}"),
        )
        .await
}

#[tokio::test]
async fn metrics_count_each_request_by_status_failure_and_operation() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme_token = op.create_tenant("acme").await?;
    let acme = host.admin_as(&acme_token)?;
    let globex = host.admin_as(&op.create_tenant("globex").await?)?;
    let limits = json!({"limits": {"cpu_time": "200ms", "wall_time": "5s"}});
    ensure!(op.put("/v1/tenants/acme", limits).await?.status == 200);
    deploy(&acme, "acme", "p", "testing-capabilities").await?;
    deploy(&acme, "acme", "h", "testing-hostile").await?;
    deploy(&globex, "globex", "p", "testing-capabilities").await?;

    use reqwest::Method;
    for _ in 0..7 {
        assert_eq!(hit(&host, "acme", Method::GET, "/p/whoami").await?, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            hit(&host, "acme", Method::GET, "/p/no-such-route").await?,
            404
        );
    }
    assert_eq!(
        hit(&host, "acme", Method::PUT, "/p/kv/default/k").await?,
        204
    );
    assert_eq!(
        hit(&host, "acme", Method::GET, "/p/kv/default/k").await?,
        200
    );
    assert_eq!(hit(&host, "acme", Method::GET, "/h/spin").await?, 504);
    assert_eq!(hit(&host, "acme", Method::GET, "/h/spin").await?, 504);
    assert_eq!(hit(&host, "acme", Method::GET, "/h/recurse").await?, 500);
    assert_eq!(hit(&host, "globex", Method::GET, "/p/whoami").await?, 200);
    assert_eq!(hit(&host, "nobody", Method::GET, "/p/whoami").await?, 404);

    let admin_url = host.admin.clone().context("no admin")?;
    // Uploads are served from Winch's build while Cranelift compiles them
    // in the background; both components' optimised builds are counted
    // once they are done.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = scrape(&format!("{admin_url}/metrics")).await?;
        if value(&all, "berth_compiles_total", &[("result", "ok")]) >= 2.0
            || std::time::Instant::now() > deadline
        {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let p = [("tenant", "acme"), ("service", "p"), ("version", "1")];
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = p.to_vec();
        labels.push(extra);
        labels
    };
    assert_eq!(
        value(&all, "berth_requests_total", &with(("status", "2xx"))),
        9.0
    );
    assert_eq!(
        value(&all, "berth_requests_total", &with(("status", "4xx"))),
        3.0
    );
    assert_eq!(
        value(&all, "berth_requests_total", &with(("status", "5xx"))),
        0.0
    );
    for histogram in [
        "berth_request_duration_seconds_count",
        "berth_instantiation_duration_seconds_count",
        "berth_guest_cpu_seconds_count",
        "berth_guest_memory_peak_bytes_count",
    ] {
        assert_eq!(value(&all, histogram, &p), 12.0, "{histogram}");
    }
    // 7 + 2 answered 2xx (the key-value PUT and GET) and 3 answered 4xx;
    // every duration falls in the +Inf bucket.
    assert_eq!(
        value(
            &all,
            "berth_request_duration_seconds_bucket",
            &with(("le", "+Inf"))
        ),
        12.0
    );
    assert_eq!(value(&all, "berth_requests_in_flight", &p), 0.0);
    let kv = |op_name| {
        value(
            &all,
            "berth_kv_operations_total",
            &[("tenant", "acme"), ("service", "p"), ("op", op_name)],
        )
    };
    assert_eq!((kv("set"), kv("get")), (1.0, 1.0));
    assert!(value(&all, "berth_response_bytes_total", &p) > 0.0);

    let h = [("tenant", "acme"), ("service", "h")];
    assert_eq!(
        value(
            &all,
            "berth_requests_total",
            &[h[0], h[1], ("status", "5xx")]
        ),
        3.0
    );
    let failures = |kind| {
        value(
            &all,
            "berth_guest_failures_total",
            &[h[0], h[1], ("kind", kind)],
        )
    };
    assert_eq!(
        (failures("cpu-deadline"), failures("guest-trap")),
        (2.0, 1.0)
    );
    assert_eq!(
        value(
            &all,
            "berth_deadline_kills_total",
            &[h[0], h[1], ("deadline", "cpu")]
        ),
        2.0
    );

    // Control-plane figures: acme uploaded two versions; each distinct
    // component compiled once, and globex's copy of the probe reused it.
    assert_eq!(
        value(
            &all,
            "berth_deploys_total",
            &[("tenant", "acme"), ("action", "upload"), ("result", "ok")]
        ),
        2.0
    );
    assert_eq!(
        value(&all, "berth_compiles_total", &[("result", "ok")]),
        2.0
    );
    assert!(value(&all, "berth_instance_pool_capacity", &[]) > 0.0);
    assert_eq!(
        value(
            &all,
            "berth_unrouted_requests_total",
            &[("kind", "no-route")]
        ),
        1.0
    );

    // A tenant sees its own series and nothing else.
    let mine = acme.get("/v1/tenants/acme/metrics").await?;
    assert_eq!(mine.status, 200);
    let text = mine.body.as_str().context("metrics text")?.to_string();
    let samples = parse_metrics(&text);
    assert!(!samples.is_empty());
    assert!(
        samples
            .iter()
            .all(|s| s.labels.get("tenant").map(String::as_str) == Some("acme")),
        "{text}"
    );
    assert_eq!(
        value(&samples, "berth_requests_total", &with(("status", "2xx"))),
        9.0
    );
    assert!(
        text.contains("# TYPE berth_requests_total counter"),
        "{text}"
    );
    assert!(!text.contains("globex"));
    assert_eq!(globex.get("/v1/tenants/acme/metrics").await?.status, 403);
    assert_eq!(
        host.admin_as("wrong")?
            .get("/v1/tenants/acme/metrics")
            .await?
            .status,
        401
    );
    Ok(())
}

#[tokio::test]
async fn stats_and_history_describe_known_traffic_and_deploys() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let token = op.create_tenant("acme").await?;
    let acme = host.admin_as(&token)?;
    let globex = host.admin_as(&op.create_tenant("globex").await?)?;
    deploy(&acme, "acme", "h", "testing-hostile").await?;
    let v2 = acme
        .upload(
            "acme",
            "h",
            "2",
            std::fs::read(component("testing-hostile")?)?,
        )
        .await?;
    ensure!(v2.status == 201, "{v2:?}");
    let split = json!({"split": {"1": 50, "2": 50}});
    ensure!(acme.put("/v1/tenants/acme/services/h", split).await?.status == 200);
    ensure!(
        acme.post("/v1/tenants/acme/services/h/rollback", json!({}))
            .await?
            .status
            == 200
    );

    use reqwest::Method;
    for _ in 0..10 {
        assert_eq!(hit(&host, "acme", Method::GET, "/h/").await?, 200);
    }
    for _ in 0..2 {
        assert_eq!(hit(&host, "acme", Method::GET, "/h/recurse").await?, 500);
    }
    let stats = acme.get("/v1/tenants/acme/services/h/stats").await?;
    assert_eq!(stats.status, 200, "{stats:?}");
    for window in ["1m", "5m", "15m"] {
        let w = &stats.body["windows"][window];
        assert_eq!(w["requests"], 12, "{window}: {w}");
        assert_eq!(w["errors"], 2, "{window}: {w}");
        let rate = w["error_rate"].as_f64().context("error_rate")?;
        assert!((rate - 2.0 / 12.0).abs() < 1e-9);
        assert!(w["p50_ms"].as_f64().is_some_and(|p| p > 0.0), "{w}");
        assert!(w["p99_ms"].as_f64() >= w["p50_ms"].as_f64(), "{w}");
        assert!(
            w["cpu_ms_per_request"].as_f64().is_some_and(|c| c > 0.0),
            "{w}"
        );
        assert!(
            w["memory_peak_bytes"].as_u64().is_some_and(|m| m > 0),
            "{w}"
        );
    }
    let minute_rate = stats.body["windows"]["1m"]["requests_per_second"].as_f64();
    assert_eq!(minute_rate, Some(12.0 / 60.0));
    let series_total: u64 = stats.body["series"]
        .as_array()
        .context("series")?
        .iter()
        .filter_map(|p| p["requests"].as_u64())
        .sum();
    assert_eq!(series_total, 12);

    let tenant_stats = acme.get("/v1/tenants/acme/stats").await?;
    assert_eq!(tenant_stats.body["services"][0]["service"], "h");
    assert_eq!(
        tenant_stats.body["services"][0]["windows"]["5m"]["requests"],
        12
    );
    assert_eq!(
        globex
            .get("/v1/tenants/acme/services/h/stats")
            .await?
            .status,
        403
    );
    assert_eq!(
        acme.get("/v1/tenants/acme/services/nope/stats")
            .await?
            .status,
        404
    );

    // The CLI shows the same figures.
    let out = std::process::Command::new(berth_e2e::berth_bin()?)
        .args(["stats", "h", "-o", "json"])
        .env("BERTH_ADMIN_URL", host.admin.clone().unwrap_or_default())
        .env("BERTH_TOKEN", &token)
        .env_remove("BERTH_TENANT")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(cli["windows"]["15m"]["requests"], 12);
    let table = std::process::Command::new(berth_e2e::berth_bin()?)
        .arg("stats")
        .env("BERTH_ADMIN_URL", host.admin.clone().unwrap_or_default())
        .env("BERTH_TOKEN", &token)
        .env_remove("BERTH_TENANT")
        .output()?;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("16.67%"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("h ") && l.contains("15m")),
        "{table}"
    );

    // Version 2 serves nothing after the rollback; deleting it is history
    // too.
    let gone = acme
        .delete("/v1/tenants/acme/services/h/versions/2")
        .await?;
    assert_eq!(gone.status, 204, "{gone:?}");
    let history = acme.get("/v1/tenants/acme/services/h/history").await?;
    let events = history.parse::<berth_api::services::HistoryView>()?.events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "upload",
            "deploy",
            "upload",
            "deploy",
            "rollback",
            "delete-version"
        ],
        "{events:?}"
    );
    assert_eq!(events[1].detail, "1; route /h");
    assert_eq!(events[3].detail, "1=50, 2=50 (from 1)");
    assert_eq!(events[4].detail, "to 1");
    assert_eq!(events[5].detail, "2");
    // Each change names who made it: here the tenant's own token.
    assert!(
        events.iter().all(|e| e.actor.starts_with("token ")),
        "{events:?}"
    );
    Ok(())
}

/// Spans the collector has for `trace_id`, once there are `count`.
async fn spans_of(
    collector: &Collector,
    trace_id: &[u8],
    count: usize,
) -> Result<Vec<opentelemetry_proto::tonic::trace::v1::Span>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let spans: Vec<_> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        if spans.len() >= count || Instant::now() > deadline {
            return Ok(spans);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            V::StringValue(s) => s.clone(),
            V::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn spans_reach_an_otlp_collector_with_the_trace_carried_across_services() -> Result<()> {
    let collector = Collector::start().await?;
    let host = BerthProcess::empty(&["--otlp-endpoint", &collector.endpoint])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    deploy(&acme, "acme", "a", "testing-capabilities").await?;
    deploy(&acme, "acme", "b", "testing-capabilities").await?;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let response = client()
        .get(host.url("/a/call/b"))
        .header("host", "acme.localhost")
        .header("traceparent", format!("00-{trace}-{client_span}-01"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let seen_by_b: Value = response.json().await?;

    let spans = spans_of(&collector, &hex::decode(trace)?, 2).await?;
    assert_eq!(spans.len(), 2, "{spans:?}");
    let by_service = |s: &str| {
        spans
            .iter()
            .find(|span| attribute(span, "berth.service") == s)
    };
    let a = by_service("a").context("no span of a")?;
    let b = by_service("b").context("no span of b")?;
    // a continues the client's trace; b is a child of a, in the same trace.
    assert_eq!(a.parent_span_id, hex::decode(client_span)?);
    assert_eq!(b.trace_id, a.trace_id);
    assert_eq!(b.parent_span_id, a.span_id);
    // What b's guest was told is the span that was exported for it.
    let traceparent = seen_by_b["traceparent"].as_str().context("traceparent")?;
    assert_eq!(
        traceparent,
        format!("00-{trace}-{}-01", hex::encode(&b.span_id))
    );
    for span in [a, b] {
        assert_eq!(span.kind, 2, "a server span");
        assert_eq!(attribute(span, "http.request.method"), "GET");
        assert_eq!(attribute(span, "http.response.status_code"), "200");
        assert_eq!(attribute(span, "berth.tenant"), "acme");
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    assert_eq!(a.name, "GET /a");
    assert_eq!(attribute(a, "url.path"), "/a/call/b");
    assert_eq!(attribute(b, "berth.call.depth"), "1");
    // a's span encloses b's.
    assert!(a.start_time_unix_nano <= b.start_time_unix_nano);
    assert!(a.end_time_unix_nano >= b.end_time_unix_nano);

    // Without a traceparent the host starts a trace of its own; a failing
    // request is marked as an error.
    let response = client()
        .get(host.url("/a/loop/a"))
        .header("host", "acme.localhost")
        .send()
        .await?;
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .context("x-request-id")?
        .to_string();
    response.bytes().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let root = loop {
        let found = collector.spans().into_iter().find(|s| {
            attribute(s, "berth.request_id") == request_id && s.parent_span_id.is_empty()
        });
        if let Some(span) = found {
            break span;
        }
        ensure!(Instant::now() < deadline, "no root span for {request_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(root.trace_id.len(), 16);
    let received = collector
        .received
        .lock()
        .map(|r| r.requests.clone())
        .unwrap_or_default();
    assert!(
        received
            .iter()
            .all(|r| r == "POST /v1/traces application/x-protobuf"),
        "{received:?}"
    );
    Ok(())
}

#[tokio::test]
async fn json_logs_carry_the_request_span() -> Result<()> {
    let host = BerthProcess::empty(&["--log-format", "json"])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    deploy(&acme, "acme", "p", "testing-capabilities").await?;
    log_line(&host, "a line for the json log").await?;
    let line = host
        .wait_for_line(&["a line for the json log"], Duration::from_secs(5))
        .context("guest line not in the host log")?;
    let event: Value = serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
    let span = &event["span"];
    assert_eq!(span["tenant"], "acme", "{event}");
    assert_eq!(span["service"], "p", "{event}");
    assert_eq!(span["version"], "1", "{event}");
    assert!(
        span["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{event}"
    );
    // Every line the host wrote is JSON.
    for line in host.log().lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).with_context(|| format!("not JSON: {line}"))?;
    }
    Ok(())
}

#[tokio::test]
async fn the_dashboard_signs_in_and_shows_a_service_live_in_a_real_browser() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let token = op.create_tenant("acme").await?;
    let acme = host.admin_as(&token)?;
    deploy(&acme, "acme", "p", "testing-capabilities").await?;
    for _ in 0..3 {
        assert_eq!(
            hit(&host, "acme", reqwest::Method::GET, "/p/whoami").await?,
            200
        );
    }
    let admin_url = host.admin.clone().context("no admin")?;
    let mut browser = Browser::launch().await?;
    browser.goto(&format!("{admin_url}/ui")).await?;

    // A wrong token is refused on the page.
    browser
        .eval("document.getElementById('token').value = 'wrong'; document.getElementById('sign-in').click(); true")
        .await?;
    let error = browser
        .wait_for(
            "document.getElementById('sign-in-error').textContent",
            Duration::from_secs(10),
        )
        .await?;
    assert!(
        error.as_str().is_some_and(|e| e.contains("Sign-in failed")),
        "{error}"
    );

    browser
        .eval(&format!(
            "document.getElementById('token').value = {}; document.getElementById('sign-in').click(); true",
            json!(token)
        ))
        .await?;
    let row = "document.querySelector('#services tr[data-service=\"p\"]')";
    browser
        .wait_for(&format!("!!{row}"), Duration::from_secs(10))
        .await?;
    assert_eq!(
        browser
            .eval("document.getElementById('who').textContent")
            .await?,
        "tenant acme"
    );
    browser.eval(&format!("{row}.click(); true")).await?;
    let count = "document.getElementById('requests-15m').textContent";
    browser
        .wait_for(&format!("{count} === '3'"), Duration::from_secs(10))
        .await?;
    assert_eq!(
        browser
            .eval("document.getElementById('service-serving').textContent")
            .await?,
        "1"
    );
    let history = browser
        .eval("document.getElementById('history').textContent")
        .await?;
    assert!(
        history
            .as_str()
            .is_some_and(|h| h.contains("deploy") && h.contains("upload")),
        "{history}"
    );

    // Traffic shows up without reloading the page.
    for _ in 0..5 {
        assert_eq!(
            hit(&host, "acme", reqwest::Method::GET, "/p/whoami").await?,
            200
        );
    }
    browser
        .wait_for(&format!("{count} === '8'"), Duration::from_secs(10))
        .await?;

    // Logs: recent lines, then followed live.
    log_line(&host, "first line from the browser test").await?;
    let logs = "document.getElementById('logs').textContent";
    browser
        .wait_for(
            &format!("{logs}.includes('first line from the browser test')"),
            Duration::from_secs(10),
        )
        .await?;
    browser
        .eval("document.getElementById('follow').click(); true")
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    log_line(&host, "followed line").await?;
    browser
        .wait_for(
            &format!("{logs}.includes('followed line')"),
            Duration::from_secs(10),
        )
        .await?;

    // Nothing the page loaded came from anywhere but this host.
    let origins = browser
        .eval("JSON.stringify([location.origin, ...performance.getEntriesByType('resource').map(e => new URL(e.name).origin)])")
        .await?;
    let origins: Vec<String> = serde_json::from_str(origins.as_str().unwrap_or("[]"))?;
    assert!(origins.len() > 1);
    assert!(origins.iter().all(|o| *o == admin_url), "{origins:?}");
    Ok(())
}

#[tokio::test]
async fn outgoing_requests_carry_the_trace_to_the_upstream() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that keeps the head of the one request it gets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            // The whole head, however many reads it takes, before answering:
            // an upstream that answers and closes early resets the client.
            let mut head = Vec::new();
            let mut buf = vec![0u8; 8192];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = head_tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let config = berth_e2e::service(
        "fetch",
        "testing-fetch",
        "/fetch",
        &format!("allowed_outbound_hosts = [\"127.0.0.1:{port}\"]\nprivate_outbound = true"),
    )?;
    let host = BerthProcess::serving(&config)?;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let response = client()
        .get(host.url("/fetch"))
        .header("x-fetch-url", format!("http://127.0.0.1:{port}/"))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let head = tokio::time::timeout(Duration::from_secs(5), head_rx).await??;
    let traceparent = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("traceparent:")
                .map(|v| v.trim().to_string())
        })
        .with_context(|| format!("no traceparent upstream:\n{head}"))?;
    // The same trace; the parent is the host's span for the request, not
    // the client's.
    assert!(
        traceparent.starts_with(&format!("00-{trace}-")),
        "{traceparent}"
    );
    assert!(!traceparent.contains("b7ad6b7169203331"), "{traceparent}");
    assert!(traceparent.ends_with("-01"), "{traceparent}");
    Ok(())
}
