//! The hostile suite's accounting cases (issue 18): what a guest makes the
//! host hold, and what it takes of the instance pool, is its tenant's.
//! Hand-written components (WAT, through the `wat` crate) that no toolchain
//! would build, and guests that hoard host resources.

use anyhow::{Result, ensure};
use berth_e2e::client;
use serde_json::json;

use super::Suite;

/// Instance slots one tenant may hold in this suite's host.
pub const TENANT_SHARE: u32 = 24;

/// A component of `outer` nested components, each instantiating `inner`
/// copies of a core module that defines `memories` memories and `tables`
/// tables.
fn nested(outer: usize, inner: usize, memories: usize, tables: usize) -> Result<Vec<u8>> {
    let module = format!(
        "(core module $m {} {})",
        "(memory 0) ".repeat(memories),
        "(table 0 funcref) ".repeat(tables)
    );
    let inner = "(core instance (instantiate $m)) ".repeat(inner);
    let outer = "(instance (instantiate $c)) ".repeat(outer);
    Ok(wat::parse_str(format!(
        "(component (component $c {module} {inner}) {outer})"
    ))?)
}

/// Components that would take far more of the pool than one instance slot:
/// each must be refused at upload, naming the limit to raise.
fn pool_bombs() -> Result<Vec<(&'static str, Vec<u8>, &'static str)>> {
    Ok(vec![
        (
            "4 nested components x 100 instances with a memory each",
            nested(4, 100, 1, 0)?,
            "memories",
        ),
        (
            "one module with 100 zero-page memories (the most wasmparser takes)",
            nested(1, 1, 100, 0)?,
            "memor",
        ),
        (
            "40 instances of a module with a table",
            nested(1, 40, 0, 1)?,
            "tables",
        ),
        (
            "200 empty core instances",
            nested(1, 200, 0, 0)?,
            "core module instances",
        ),
    ])
}

pub async fn accounting(s: &mut Suite) -> Result<()> {
    let attacker = s.host.admin_as(&s.attacker_token)?;
    for (case, bytes, limit) in pool_bombs()? {
        let admin = attacker.clone();
        let vsz_before = s.host.vsz_kib()?;
        s.case_once(case, || {
            let (admin, bytes) = (admin.clone(), bytes.clone());
            async move {
                let up = admin.upload("attacker", "bomb", "1", bytes).await?;
                let detail = up.body["detail"].as_str().unwrap_or_default().to_string();
                ensure!(
                    up.status == 422 && detail.contains(limit) && detail.contains("--max-"),
                    "{up:?}"
                );
                Ok(format!("422 at upload ({limit})"))
            }
        })
        .await?;
        let grew = s.host.vsz_kib()?.saturating_sub(vsz_before);
        ensure!(
            grew < 1 << 30,
            "{case}: virtual size grew by {} GiB",
            grew >> 20
        );
    }

    // The hoarder has the attacker's 32 MiB but the default CPU time: what
    // stops it must be the memory budget, whatever a debug build's host
    // calls cost.
    let base = s.host.base.clone();
    let attacker_get = move |path: String| {
        client()
            .get(format!("{base}{path}"))
            .header("host", "hoarder.localhost")
            .header("x-padding", "p".repeat(24 * 1024))
    };
    // Each case: the hoarder's 32 MiB budget stops it (a trap reported as
    // memory-limit, or for the batch an error the guest reads and answers
    // 507 with), and the host's peak RSS grows by no more than that budget
    // and a little for the host's own work.
    for (case, path, stopped) in [
        (
            "8,000 header maps of 120 KiB",
            "/fields?count=8000&kib=120",
            500,
        ),
        (
            "100,000 copies of a 24 KiB request head",
            "/request-headers?count=100000",
            500,
        ),
        (
            "get-many of one 512 KiB value, 1,000 times",
            "/kv/kv-hoard/512/1000",
            507,
        ),
        (
            "1,000 CAS handles on one 512 KiB value",
            "/cas-hoard?count=1000&kib=512",
            507,
        ),
    ] {
        let get = attacker_get.clone();
        s.host.reset_peak_rss()?;
        let before = s.host.rss_kib()?;
        s.case_once(case, || {
            let request = get(path.to_string());
            async move {
                let r = request.send().await?;
                let status = r.status().as_u16();
                let text = r.text().await?;
                ensure!(
                    status == stopped && text.contains("memory"),
                    "{status} {}",
                    text.chars().take(300).collect::<String>()
                );
                Ok(format!("{status}, stopped at its memory limit"))
            }
        })
        .await?;
        let grew = s.host.peak_rss_kib()?.saturating_sub(before) / 1024;
        ensure!(
            grew <= 32 + 32,
            "{case}: peak RSS grew by {grew} MiB, past the 32 MiB budget and 32 MiB of slack"
        );
    }
    // Under the budget, the same guests are served.
    let r = attacker_get("/kv/kv-hoard/512/8".into()).send().await?;
    ensure!(r.status() == 200, "a batch within budget: {}", r.status());
    let r = attacker_get("/cas-hoard?count=8&kib=512".into())
        .send()
        .await?;
    ensure!(
        r.status() == 200,
        "CAS handles within budget: {}",
        r.status()
    );

    let base = s.host.base.clone();
    s.case_once("a tenant asks for 3x its share of the pool", || {
        let base = base.clone();
        async move {
            let all = futures::future::join_all((0..TENANT_SHARE * 3).map(|_| {
                client()
                    .get(format!("{base}/sleep?ms=1000"))
                    .header("host", "hoarder.localhost")
                    .send()
            }))
            .await;
            let (mut ok, mut refused) = (0, 0);
            for r in all {
                let r = r?;
                match r.status().as_u16() {
                    200 => ok += 1,
                    503 if r.headers().contains_key("retry-after") => refused += 1,
                    other => anyhow::bail!("got {other}"),
                }
            }
            ensure!(
                ok <= TENANT_SHARE as usize * 2 && refused > 0,
                "{ok} served, {refused} refused"
            );
            Ok(format!(
                "{ok} served, {refused} refused with 503 and Retry-After"
            ))
        }
    })
    .await?;
    Ok(())
}

/// Guest output: bounded per service, and never a forged host line.
pub async fn guest_logs(s: &mut Suite) -> Result<()> {
    let base = s.host.base.clone();
    let hoarder = move |method: reqwest::Method, path: &str| {
        client()
            .request(method, format!("{base}{path}"))
            .header("host", "hoarder.localhost")
    };
    // A line through wasi:logging that would start a host log line of its
    // own, and a terminal escape.
    let forged = "2026-01-01T00:00:00.000000Z  INFO berth: forged by a guest";
    let r = hoarder(reqwest::Method::POST, "/kv/log")
        .body(format!("innocent\n{forged}\u{1b}[2J"))
        .send()
        .await?;
    ensure!(r.status().is_success(), "log: {}", r.status());

    let flood = hoarder.clone();
    s.case_once("100,000 stdout lines in one request", || {
        let request = flood(reqwest::Method::GET, "/chatter?lines=100000");
        async move {
            let r = request.send().await?;
            ensure!(r.status() == 200, "{}", r.status());
            Ok("200; lines past the log rate dropped and counted".into())
        }
    })
    .await?;
    // The next line the service writes, once its allowance refills, says
    // how many went before it.
    let r = hoarder(reqwest::Method::GET, "/chatter?lines=1")
        .send()
        .await?;
    ensure!(r.status() == 200);
    let log = s.host.log();
    let written = log.matches("chatter line").count();
    ensure!(
        (900..=2000).contains(&written),
        "{written} of 100,001 chatter lines reached the host's log"
    );
    let logs = s
        .host
        .admin_as(&s.hoarder_token)?
        .get("/v1/tenants/hoarder/services/hostile/logs?limit=1000")
        .await?;
    ensure!(
        logs.body.to_string().contains("were dropped"),
        "no note of dropped lines in the service's log"
    );
    let metrics = s.host.metrics_text().await?;
    ensure!(
        metrics.contains(
            "berth_guest_log_lines_dropped_total{tenant=\"hoarder\",service=\"hostile\"}"
        ),
        "no dropped-lines metric"
    );
    ensure!(
        log.contains("innocent\\n2026-01-01"),
        "the guest's line is not in the host's log, escaped"
    );
    ensure!(
        !log.lines().any(|line| line.starts_with(forged)),
        "a guest forged a host log line"
    );
    Ok(())
}

/// p99 of `n` small key-value writes, one after another, as `tenant`.
async fn kv_write_p99(base: &str, tenant: &str, n: usize) -> Result<std::time::Duration> {
    let http = client();
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = std::time::Instant::now();
        let r = http
            .put(format!("{base}/kv/kv/default/small{}", i % 16))
            .header("host", format!("{tenant}.localhost"))
            .body("a small value")
            .send()
            .await?;
        ensure!(r.status().is_success(), "{tenant} write: {}", r.status());
        took.push(started.elapsed());
    }
    took.sort();
    Ok(took[(n * 99 / 100).min(n - 1)])
}

/// One tenant writing large values at full speed does not slow another
/// tenant's key-value writes past the suite's p99 bound.
pub async fn kv_fairness(s: &mut Suite) -> Result<()> {
    let base = s.host.base.clone();
    // Warm both tenants' files.
    kv_write_p99(&base, "control", 20).await?;
    let quiet = kv_write_p99(&base, "control", 300).await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (base, stop) = (base.clone(), std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let http = client();
                let big = vec![b'x'; 1000 * 1024];
                let mut written = 0u32;
                // Bounded: at most 2,000 writes each.
                for i in 0..2000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let r = http
                        .put(format!("{base}/kv/kv/default/big{w}-{}", i % 4))
                        .header("host", "hoarder.localhost")
                        .body(big.clone())
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status().is_success()) {
                        written += 1;
                    }
                }
                written
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut loaded = kv_write_p99(&base, "control", 300).await?;
    let bound = super::p99_bound(quiet);
    if loaded > bound {
        // Once more, as the suite measures every case: one stall of a
        // shared 2-core machine should not decide it.
        loaded = kv_write_p99(&base, "control", 300).await?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for writer in writers {
        written += writer.await?;
    }
    // Its default pace lets a burst of 8 MiB through at once.
    ensure!(
        written >= 8,
        "the hoarder wrote only {written} large values"
    );
    ensure!(
        loaded <= bound,
        "control's key-value write p99 {loaded:?} beside 1 MB writes, over {bound:?} (quiet {quiet:?})"
    );
    let observed = format!(
        "control's key-value write p99 {:.1} ms beside {written} 1 MB writes (quiet {:.1} ms)",
        loaded.as_secs_f64() * 1000.0,
        quiet.as_secs_f64() * 1000.0
    );
    println!("{observed}");
    Ok(())
}

/// The tenant and services the accounting cases use.
pub async fn set_up(s: &mut Suite, op: &berth_e2e::Admin) -> Result<()> {
    s.hoarder_token = op.create_tenant("hoarder").await?;
    let hoarder = s.host.admin_as(&s.hoarder_token)?;
    hoarder
        .deploy(
            "hoarder",
            "hostile",
            "1",
            &berth_e2e::component("testing-hostile")?,
            "/",
        )
        .await?;
    let limits = json!({"limits": {"memory": "32MiB", "queue": 4, "queue_timeout": "300ms"}});
    ensure!(op.put("/v1/tenants/hoarder", limits).await?.status == 200);
    hoarder
        .deploy(
            "hoarder",
            "kv",
            "1",
            &berth_e2e::component("testing-capabilities")?,
            "/kv",
        )
        .await?;
    Ok(())
}
