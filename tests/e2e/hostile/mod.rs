//! The hostile suite: one host, a control tenant under steady load, and an
//! attacker tenant (and hostile clients) trying one thing after another. For
//! each case: what the attacker gets, whether the host still serves, the
//! control tenant's p99 latency and error count, and the host's memory.
//!
//! The table it prints (and writes to `target/hostile-report.md`) is the one
//! in `docs/security.md`.

use anyhow::{Context, Result, ensure};
use berth_e2e::{BerthProcess, client, component};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod accounting;

/// Requests per second the control tenant receives throughout.
const CONTROL_RATE: u64 = 100;
/// Each case runs at least this long, so its latency window holds enough
/// control requests for a p99.
const CASE_WINDOW: Duration = Duration::from_millis(1500);

/// Open-loop load on the control tenant: one request every 1/CONTROL_RATE s,
/// whatever happened to the previous ones.
struct ControlLoad {
    samples: Arc<Mutex<Vec<(Instant, Duration, u16)>>>,
    stop: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlLoad {
    fn start(url: String) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicUsize::new(0));
        let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            // The host closes a keep-alive connection idle past its header
            // read timeout (1 s here); a client reusing one at that moment
            // sees it closed under its request, the race every keep-alive
            // client has. Clients avoid it by idling less than the server.
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .pool_idle_timeout(Duration::from_millis(500))
                .build()
                .unwrap_or_else(|_| client());
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / CONTROL_RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Bounded: at most 10 minutes of load.
            for _ in 0..CONTROL_RATE * 600 {
                tick.tick().await;
                if st.load(Ordering::Relaxed) != 0 {
                    break;
                }
                let (http, url, s) = (http.clone(), url.clone(), Arc::clone(&s));
                tokio::spawn(async move {
                    let started = Instant::now();
                    let status = match http
                        .get(&url)
                        .header("host", "control.localhost")
                        .send()
                        .await
                    {
                        Ok(r) => r.status().as_u16(),
                        Err(error) => {
                            // Status 0 in the report; the cause here.
                            eprintln!("control request failed: {error:?}");
                            0
                        }
                    };
                    if let Ok(mut v) = s.lock() {
                        v.push((started, started.elapsed(), status));
                    }
                });
            }
        });
        Self {
            samples,
            stop,
            task,
        }
    }

    /// p99 latency, requests, and the statuses of the failures (0: no
    /// answer) among requests started since `from`.
    fn window(&self, from: Instant, to: Instant) -> (Duration, usize, Vec<u16>) {
        let samples = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        let mut latencies: Vec<Duration> = samples
            .iter()
            .filter(|(at, _, _)| *at >= from && *at < to)
            .map(|(_, took, _)| *took)
            .collect();
        let failed = samples
            .iter()
            .filter(|(at, _, status)| *at >= from && *at < to && *status != 200)
            .map(|(_, _, status)| *status)
            .collect();
        latencies.sort();
        let p99 = latencies
            .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        (p99, latencies.len(), failed)
    }

    async fn finish(self) {
        self.stop.store(1, Ordering::Relaxed);
        let _ = self.task.await;
        // Let the last requests land.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

struct Row {
    case: &'static str,
    window: Duration,
    observed: String,
    p99: Duration,
    /// The p99 this case was held to.
    bound: Duration,
    requests: usize,
    /// The statuses of the control requests that failed (0: no answer).
    failed: Vec<u16>,
    rss_mib: u64,
}

struct Suite {
    host: BerthProcess,
    load: ControlLoad,
    rows: Vec<Row>,
    upstream_port: u16,
    upstream_hits: Arc<AtomicUsize>,
    /// The control p99 a case must stay under, once the baseline is known.
    p99_bound: Duration,
    attacker_token: String,
    hoarder_token: String,
}

impl Suite {
    /// Runs `attack` again and again for at least [`CASE_WINDOW`] (and at
    /// most 1,000 times), then records the control tenant's window.
    async fn case<F, Fut>(&mut self, case: &'static str, attack: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        self.case_repeated(case, 1000, attack).await
    }

    /// Runs `attack` once, then keeps measuring until [`CASE_WINDOW`] ends.
    async fn case_once<F, Fut>(&mut self, case: &'static str, attack: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        self.case_repeated(case, 1, attack).await
    }

    async fn case_repeated<F, Fut>(
        &mut self,
        case: &'static str,
        times: usize,
        attack: F,
    ) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        // A window over the bound is measured again, against a baseline
        // measured afresh just before: one stall of the shared 2-core
        // machine should not decide a case, and neither should neighbours
        // that slowed the whole machine since the first baseline. A case
        // over its bound on every attempt fails.
        let mut bound = self.p99_bound;
        for attempt in 1..=ATTEMPTS {
            let row = self.measure(case, times, &attack, bound).await?;
            if row.p99 <= bound || attempt == ATTEMPTS {
                self.rows.push(row);
                break;
            }
            let quiet = self.quiet_p99().await?;
            bound = bound.max(p99_bound(quiet));
            println!(
                "{case}: control p99 {:?} over {:?}; quiet p99 now {quiet:?}, measuring again",
                row.p99, row.bound
            );
        }
        Ok(())
    }

    /// The control tenant's p99 with no attack running, over one case window.
    async fn quiet_p99(&self) -> Result<Duration> {
        let started = Instant::now();
        tokio::time::sleep(CASE_WINDOW).await;
        let ended = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (p99, requests, failed) = self.load.window(started, ended);
        ensure!(
            failed.is_empty() && requests > 100,
            "quiet window: {requests} requests, failed with {failed:?}"
        );
        Ok(p99)
    }

    async fn measure<F, Fut>(
        &mut self,
        case: &'static str,
        times: usize,
        attack: &F,
        bound: Duration,
    ) -> Result<Row>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        let started = Instant::now();
        let mut observed = String::new();
        for _ in 0..times {
            observed = attack().await.with_context(|| format!("case: {case}"))?;
            if started.elapsed() >= CASE_WINDOW {
                break;
            }
        }
        if let Some(left) = CASE_WINDOW.checked_sub(started.elapsed()) {
            tokio::time::sleep(left).await;
        }
        let ended = Instant::now();
        // Requests started in the window may still be running.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (p99, requests, failed) = self.load.window(started, ended);
        let still = client()
            .get(self.host.url("/"))
            .header("host", "control.localhost")
            .send()
            .await?;
        ensure!(still.status() == 200, "{case}: the host stopped serving");
        let rss_mib = self.host.rss_kib()? / 1024;
        println!(
            "{case:<48} {observed:<40} p99 {p99:>8.1?} n={requests} failed={failed:?} rss={rss_mib}MiB"
        );
        Ok(Row {
            case,
            window: ended - started,
            observed,
            p99,
            bound,
            requests,
            failed,
            rss_mib,
        })
    }

    fn addr(&self) -> String {
        self.host.base.trim_start_matches("http://").to_string()
    }
}

/// A loopback HTTP server that counts the connections it accepts. It runs on
/// plain threads, apart from the test's busy async runtime.
async fn upstream() -> Result<(u16, Arc<AtomicUsize>)> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10_000) {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                // Read the whole head: closing on unread bytes would reset
                // the connection.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
                );
                // Let the client close first (bounded by the read timeout).
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    Ok((port, hits))
}

/// Sends raw bytes and reads until the server closes (bounded by `limit`).
async fn raw_exchange(addr: &str, send: &[u8], limit: Duration) -> Result<(String, Duration)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(send).await?;
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    Ok((
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    ))
}

fn status_line(answer: &str) -> String {
    answer.lines().next().unwrap_or("(closed)").to_string()
}

async fn set_up() -> Result<Suite> {
    let host = BerthProcess::empty(&[
        "--header-read-timeout",
        "1s",
        "--body-grace",
        "1s",
        "--body-min-rate",
        "1KiB",
        "--max-instances-per-tenant",
        &accounting::TENANT_SHARE.to_string(),
    ])?;
    let op = host.operator()?;
    let control = host.admin_as(&op.create_tenant("control").await?)?;
    let attacker_token = op.create_tenant("attacker").await?;
    let attacker = host.admin_as(&attacker_token)?;
    let trusted = host.admin_as(&op.create_tenant("trusted").await?)?;
    control
        .deploy("control", "hello", "1", &component("hello")?, "/")
        .await?;
    control
        .deploy(
            "control",
            "kv",
            "1",
            &component("testing-capabilities")?,
            "/kv",
        )
        .await?;
    attacker
        .deploy(
            "attacker",
            "hostile",
            "1",
            &component("testing-hostile")?,
            "/",
        )
        .await?;
    attacker
        .deploy(
            "attacker",
            "fetch",
            "1",
            &component("testing-fetch")?,
            "/fetch",
        )
        .await?;
    // A WASI 0.3 guest: the component-model async ABI gives it handles,
    // tasks and an event loop of its own to attack with.
    attacker
        .deploy(
            "attacker",
            "p3",
            "1",
            &component("testing-p3-parity")?,
            "/p3",
        )
        .await?;
    // The same guest in instances shared by up to 8 requests at once.
    attacker
        .deploy(
            "attacker",
            "p3-shared",
            "1",
            &component("testing-p3-parity")?,
            "/p3-shared",
        )
        .await?;
    ensure!(
        attacker
            .put(
                "/v1/tenants/attacker/services/p3-shared",
                json!({"reuse": {"max_concurrent": 8}})
            )
            .await?
            .status
            == 200
    );
    trusted
        .deploy(
            "trusted",
            "fetch",
            "1",
            &component("testing-fetch")?,
            "/fetch",
        )
        .await?;
    // Trusted keeps the default one-minute wall time, so a slow upload meets
    // the body-rate guard rather than the deadline.
    trusted
        .deploy(
            "trusted",
            "hostile",
            "1",
            &component("testing-hostile")?,
            "/hostile",
        )
        .await?;
    let attacker_limits = json!({"limits": {
        "memory": "32MiB", "cpu_time": "300ms", "wall_time": "1s",
        "response_body": "1MiB", "request_body": "1MiB", "outbound_requests": 2,
        "concurrency": 8, "queue": 8, "queue_timeout": "500ms"
    }});
    ensure!(
        op.put("/v1/tenants/attacker", attacker_limits)
            .await?
            .status
            == 200
    );
    ensure!(
        op.put(
            "/v1/tenants/trusted",
            json!({"limits": {"private_outbound": true, "outbound_requests": 2}})
        )
        .await?
        .status
            == 200
    );
    let (upstream_port, upstream_hits) = upstream().await?;
    let admin_port = host
        .admin
        .as_deref()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .context("admin port")?;
    let allow = |hosts: Vec<String>| json!({ "allowed_outbound_hosts": hosts });
    ensure!(
        attacker
            .put(
                "/v1/tenants/attacker/services/fetch",
                allow(vec![format!("127.0.0.1:{upstream_port}")])
            )
            .await?
            .status
            == 200
    );
    ensure!(
        trusted
            .put(
                "/v1/tenants/trusted/services/fetch",
                allow(vec![
                    format!("127.0.0.1:{upstream_port}"),
                    format!("127.0.0.1:{admin_port}")
                ])
            )
            .await?
            .status
            == 200
    );
    let load = ControlLoad::start(host.url("/"));
    let mut suite = Suite {
        host,
        load,
        rows: Vec::new(),
        upstream_port,
        upstream_hits,
        p99_bound: Duration::MAX,
        attacker_token,
        hoarder_token: String::new(),
    };
    accounting::set_up(&mut suite, &op).await?;
    Ok(suite)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_and_clients_are_contained_beside_a_control_tenant() -> Result<()> {
    let mut s = set_up().await?;
    // Baseline: the control tenant alone.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (baseline, n, failed) = s
        .load
        .window(started + Duration::from_secs(1), Instant::now());
    ensure!(
        failed.is_empty() && n > 100,
        "baseline: {n} requests, failed with {failed:?}"
    );
    println!("baseline p99 {baseline:?} over {n} requests");
    s.p99_bound = p99_bound(baseline);

    let outcome = async {
        hostile_guests(&mut s).await?;
        accounting::accounting(&mut s).await?;
        accounting::guest_logs(&mut s).await?;
        accounting::kv_fairness(&mut s).await?;
        outbound(&mut s).await?;
        hostile_clients(&mut s).await
    }
    .await;
    if let Err(error) = outcome {
        let log = s.host.log();
        let _ = std::fs::write(berth_e2e::repo_root().join("target/hostile-host.log"), &log);
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!("host log, last lines first:\n{}", tail.join("\n"));
        return Err(error);
    }

    let Suite {
        host, load, rows, ..
    } = s;
    load.finish().await;
    let mut report = format!(
        "Control tenant alone: p99 {:.1} ms over {n} requests at {CONTROL_RATE} requests/s.\n\n\
         | Attack | What the attacker gets | Control p99 | Control requests (failed) | Host RSS |\n\
         |---|---|---|---|---|\n",
        baseline.as_secs_f64() * 1000.0
    );
    for row in &rows {
        report.push_str(&format!(
            "| {} | {} | {:.1} ms | {} ({}) | {} MiB |\n",
            row.case,
            row.observed,
            row.p99.as_secs_f64() * 1000.0,
            row.requests,
            row.failed.len(),
            row.rss_mib
        ));
    }
    println!("{report}");
    let _ = std::fs::write(
        berth_e2e::repo_root().join("target/hostile-report.md"),
        &report,
    );
    // The pass criteria, for every case: no control request failed, its
    // p99 stayed within bound, and the host's memory stayed bounded.
    for row in &rows {
        let sent = (row.window.as_secs_f64() * CONTROL_RATE as f64) as usize;
        ensure!(
            row.requests * 10 >= sent * 9,
            "{}: {} of {sent} control requests completed",
            row.case,
            row.requests
        );
        ensure!(
            row.failed.is_empty(),
            "{}: control requests failed with {:?}",
            row.case,
            row.failed
        );
        ensure!(
            row.p99 <= row.bound,
            "{}: control p99 {:?} above {:?} (first baseline {:?})",
            row.case,
            row.p99,
            row.bound,
            baseline
        );
        ensure!(
            row.rss_mib < 1024,
            "{}: host RSS {} MiB",
            row.case,
            row.rss_mib
        );
    }
    drop(host);
    Ok(())
}

/// Added to the 25% bound: on a 2-core machine that also runs the load
/// generator and the attackers' clients, a p99 of a few milliseconds moves by
/// about this much between two quiet windows.
const P99_SLACK: Duration = Duration::from_millis(5);

/// Windows a case may take before its p99 decides it.
const ATTEMPTS: usize = 3;

/// The control p99 allowed while an attack runs, given the p99 alone.
fn p99_bound(quiet: Duration) -> Duration {
    quiet.mul_f64(1.25).max(quiet + P99_SLACK)
}

async fn hostile_guests(s: &mut Suite) -> Result<()> {
    // The closures take their own copy of the address: `case` borrows the
    // suite mutably while they run.
    let base = s.host.base.clone();
    let t = move |path: &str| {
        client()
            .get(format!("{base}{path}"))
            .header("host", "attacker.localhost")
    };
    let expect = |what: &'static str, got: (u16, String), status: u16, kind: &str| {
        ensure!(
            got.0 == status && got.1.contains(kind),
            "{what}: got {got:?}, wanted {status} {kind}"
        );
        Ok(format!("{} {}", got.0, got.1))
    };
    async fn kind_of(r: reqwest::RequestBuilder) -> Result<(u16, String)> {
        let r = r.send().await?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        Ok((
            status,
            body["type"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("https://berth.dev/problems/")
                .to_string(),
        ))
    }

    s.case("infinite loop", || async {
        expect("spin", kind_of(t("/spin")).await?, 504, "cpu-deadline")
    })
    .await?;
    s.case("8 spinning guests at once (4x the workers)", || async {
        let all = futures::future::join_all((0..8).map(|_| kind_of(t("/spin")))).await;
        for got in all {
            let got = got?;
            ensure!(got.0 == 504, "spinner got {got:?}");
        }
        Ok("504 ×8 (cpu-deadline or wall-deadline)".into())
    })
    .await?;
    s.case("memory.grow to the maximum", || async {
        let r = t("/grow").send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        let pages: u64 = text
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        ensure!(
            status == 200 && pages * 65536 <= 32 << 20,
            "{status} {text}"
        );
        Ok(format!("200, memory.grow refused after {} MiB", pages / 16))
    })
    .await?;
    s.case("infinite recursion", || async {
        expect("recurse", kind_of(t("/recurse")).await?, 500, "guest-trap")
    })
    .await?;
    s.case("1 GB random buffer", || async {
        expect(
            "random",
            kind_of(t("/random?bytes=1000000000")).await?,
            500,
            "guest-trap",
        )
    })
    .await?;
    s.case("a WASI 0.3 guest spinning, 8 at once", || async {
        let all = futures::future::join_all((0..8).map(|_| kind_of(t("/p3/spin")))).await;
        for got in all {
            let got = got?;
            ensure!(got.0 == 504, "0.3 spinner got {got:?}");
        }
        Ok("504 ×8".into())
    })
    .await?;
    s.case(
        "a WASI 0.3 instance shared 8 ways, every request spinning",
        || async {
            let all =
                futures::future::join_all((0..8).map(|_| kind_of(t("/p3-shared/spin")))).await;
            let mut seen = Vec::new();
            for got in all {
                let got = got?;
                // The spinner that ends its instance is told so; the others
                // caught in it are told that (or meet their own deadline).
                ensure!(
                    [
                        (504, "cpu-deadline"),
                        (503, "instance-failed"),
                        (504, "wall-deadline")
                    ]
                    .iter()
                    .any(|(status, kind)| got.0 == *status && got.1 == *kind),
                    "shared spinner got {got:?}"
                );
                seen.push(got.0);
            }
            ensure!(
                seen.contains(&504),
                "no request was named the spinner: {seen:?}"
            );
            // Requests arriving together share an instance: some are caught
            // in a neighbour's overrun (each in its own, all would be 504).
            ensure!(seen.contains(&503), "no instance was shared: {seen:?}");
            seen.sort_unstable();
            Ok(format!("{seen:?}"))
        },
    )
    .await?;
    s.case("a WASI 0.3 guest holding a million futures", || async {
        expect(
            "hoard",
            kind_of(t("/p3/hoard/1000000")).await?,
            500,
            "guest-trap",
        )
    })
    .await?;
    s.case("a million host resources", || async {
        expect(
            "resources",
            kind_of(t("/resources?count=1000000")).await?,
            500,
            "guest-trap",
        )
    })
    .await?;
    s.case("a 100,000-field header map", || async {
        // The host caps a header map at 128 KiB: the guest either sees its
        // appends refused or traps on the refusal.
        let r = t("/headers?count=100000").send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        match status {
            200 => {
                ensure!(!text.contains("100000 of"), "{text}");
                Ok(format!("200, {}", text.trim()))
            }
            500 => {
                ensure!(text.contains("guest-trap"), "{text}");
                Ok("500 guest-trap (map refused at 128 KiB)".into())
            }
            other => anyhow::bail!("{other} {text}"),
        }
    })
    .await?;
    s.case("never writes a response", || async {
        expect("never", kind_of(t("/never")).await?, 504, "wall-deadline")
    })
    .await?;
    s.case_once("endless response body", || async {
        let r = t("/endless").send().await?;
        let status = r.status().as_u16();
        let mut body = r.bytes_stream();
        let mut got = 0usize;
        use futures::StreamExt;
        while let Some(Ok(chunk)) = body.next().await {
            got += chunk.len();
            ensure!(got <= (1 << 20) + (64 << 10), "read {got} bytes");
        }
        ensure!(status == 200, "{status}");
        Ok(format!("200, cut off after {} KiB", got / 1024))
    })
    .await?;
    s.case("request flood (64 slow requests at once)", || async {
        let all = futures::future::join_all((0..64).map(|_| kind_of(t("/sleep?ms=300")))).await;
        let (mut ok, mut busy) = (0, 0);
        for got in all {
            match got?.0 {
                200 => ok += 1,
                503 => busy += 1,
                other => anyhow::bail!("flood got {other}"),
            }
        }
        ensure!(busy > 0 && ok > 0, "{ok} served, {busy} refused");
        Ok(format!("{ok} served, {busy} refused with 503"))
    })
    .await?;
    Ok(())
}

async fn outbound(s: &mut Suite) -> Result<()> {
    let base = s.host.base.clone();
    let port = s.upstream_port;
    let hits = Arc::clone(&s.upstream_hits);
    let admin = s.host.admin.clone().unwrap_or_default();
    let fetch = move |tenant: &str, url: String, count: u32| {
        client()
            .get(format!("{base}/fetch"))
            .header("host", format!("{tenant}.localhost"))
            .header("x-fetch-url", url)
            .header("x-fetch-count", count.to_string())
    };
    // The trusted tenant reaches the upstream: the refusals below are the
    // policy, not a broken upstream.
    let r = fetch("trusted", format!("http://127.0.0.1:{port}/"), 1)
        .send()
        .await?;
    ensure!(r.status() == 200, "trusted fetch: {}", r.status());
    let before = hits.load(Ordering::SeqCst);

    let refused = |tenant: &'static str, url: String, what: &'static str| {
        let request = fetch(tenant, url, 1);
        async move {
            let r = request.send().await?;
            let (status, text) = (r.status().as_u16(), r.text().await?);
            ensure!(status == 502 && text.contains("failed"), "{status} {text}");
            Ok(format!("refused: {what}"))
        }
    };
    s.case_once("outbound to 127.0.0.1 (allowed by name)", || {
        refused(
            "attacker",
            format!("http://127.0.0.1:{port}/"),
            "loopback address",
        )
    })
    .await?;
    s.case_once("outbound to the host's admin port", || {
        refused(
            "trusted",
            format!("{admin}/v1/tenants"),
            "the host's own listener",
        )
    })
    .await?;
    s.case_once("outbound to a host not on the allow-list", || {
        refused(
            "attacker",
            format!("http://127.0.0.2:{port}/"),
            "not allowed",
        )
    })
    .await?;
    ensure!(
        hits.load(Ordering::SeqCst) == before,
        "a refused request reached the upstream"
    );
    let log = s.host.log();
    for reason in [
        "127.0.0.1 is a loopback, private or link-local address",
        "is one of this host's own listeners",
        "destination not in allowed_outbound_hosts",
    ] {
        ensure!(
            log.contains(reason),
            "no refusal `{reason}` in the host's log"
        );
    }
    s.case_once("5 outbound requests, 2 allowed", || async {
        let r = fetch("trusted", format!("http://127.0.0.1:{port}/"), 5)
            .send()
            .await?;
        let (status, text) = (r.status().as_u16(), r.text().await?);
        ensure!(
            status == 502 && text.contains("request 3"),
            "{status} {text}"
        );
        Ok("third refused".into())
    })
    .await?;
    Ok(())
}

async fn hostile_clients(s: &mut Suite) -> Result<()> {
    let addr = s.addr();
    let a = addr.clone();
    s.case("10 GB request body", || async {
        let (answer, took) = raw_exchange(
            &a,
            b"POST /echo HTTP/1.1\r\nhost: attacker.localhost\r\ncontent-length: 10000000000\r\n\r\nxxxx",
            Duration::from_secs(5),
        )
        .await?;
        ensure!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        Ok(format!("413 after {} ms", took.as_millis()))
    })
    .await?;
    let a = addr.clone();
    s.case("10,000 request headers", || async {
        let mut head = String::from("GET / HTTP/1.1\r\nhost: attacker.localhost\r\n");
        for i in 0..10_000 {
            head.push_str(&format!("x-h{i}: v\r\n"));
        }
        head.push_str("\r\n");
        let (answer, _) = raw_exchange(&a, head.as_bytes(), Duration::from_secs(5)).await?;
        ensure!(
            answer.starts_with("HTTP/1.1 431"),
            "{}",
            status_line(&answer)
        );
        Ok(status_line(&answer))
    })
    .await?;
    let a = addr.clone();
    s.case("slowloris (head never finished)", || async {
        let (answer, took) = raw_exchange(
            &a,
            b"GET / HTTP/1.1\r\nhost: attacker.localhost\r\nx-slow: ",
            Duration::from_secs(5),
        )
        .await?;
        ensure!(took < Duration::from_secs(3), "still open after {took:?}");
        Ok(
            format!("{} after {} ms", status_line(&answer), took.as_millis())
                .replace("(closed)", "closed"),
        )
    })
    .await?;
    let a = addr.clone();
    s.case("slow POST (a byte every 200 ms)", || async {
        let mut stream = tokio::net::TcpStream::connect(&a).await?;
        stream
            .write_all(b"POST /hostile/read HTTP/1.1\r\nhost: trusted.localhost\r\ncontent-length: 100000\r\n\r\n")
            .await?;
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        for _ in 0..50 {
            let _ = stream.write_all(b"x").await;
            match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(_) => {}
            }
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let took = started.elapsed();
        ensure!(answer.starts_with("HTTP/1.1 408"), "{answer:?} after {took:?}");
        Ok(format!("408 after {} ms", took.as_millis()))
    })
    .await?;
    let a = addr.clone();
    s.case("Content-Length with Transfer-Encoding", || async {
        // RFC 9112 6.3: Transfer-Encoding wins and the connection closes
        // after the response, so the request smuggled behind it is never
        // read.
        let (answer, took) = raw_exchange(
            &a,
            b"POST / HTTP/1.1\r\nhost: attacker.localhost\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: attacker.localhost\r\n\r\n",
            Duration::from_secs(3),
        )
        .await?;
        ensure!(answer.matches("HTTP/1.1 ").count() == 1, "{answer}");
        ensure!(answer.contains("connection: close"), "{answer}");
        ensure!(took < Duration::from_secs(2), "connection kept open");
        Ok(format!("{}, then closed; smuggled request not read", status_line(&answer)))
    })
    .await?;
    let a = addr.clone();
    s.case("absolute-form target with another tenant's Host", || async {
        // RFC 9112 3.2.2: the target's authority routes; a Host header
        // naming another tenant is a 400, never the other tenant's service.
        let (answer, _) = raw_exchange(
            &a,
            b"GET http://control.localhost/ HTTP/1.1\r\nhost: attacker.localhost\r\nconnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await?;
        ensure!(answer.starts_with("HTTP/1.1 400"), "{}", status_line(&answer));
        let (answer, _) = raw_exchange(
            &a,
            b"GET http://control.localhost/ HTTP/1.1\r\nconnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await?;
        ensure!(answer.starts_with("HTTP/1.1 200"), "{}", status_line(&answer));
        Ok("400; the target alone routes (200)".into())
    })
    .await?;
    let a = addr.clone();
    s.case_once("HTTP/2 rapid reset (1,000 streams)", || async {
        rapid_reset(&a).await
    })
    .await?;
    Ok(())
}

/// Opens streams and cancels each at once, as fast as the connection allows.
async fn rapid_reset(addr: &str) -> Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    let driver = tokio::spawn(connection);
    let mut sent = 0;
    for _ in 0..1000 {
        let Ok(mut ready) = client.clone().ready().await else {
            break;
        };
        let request = http::Request::get("http://attacker.localhost/sleep?ms=50").body(())?;
        match ready.send_request(request, true) {
            Ok((response, _)) => drop(response),
            Err(_) => break,
        }
        sent += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
    let how = match ended {
        Ok(Ok(Err(e))) if e.is_go_away() => format!("GOAWAY ({:?})", e.reason()),
        Ok(Ok(Err(e))) => format!("closed ({e})"),
        Ok(_) => "closed".to_string(),
        Err(_) => "still open".to_string(),
    };
    Ok(format!("{sent} streams reset; {how}"))
}
