//! Hot deploys under load: weighted splits route by their weights, and
//! activations, splits and rollbacks never fail a request.

use anyhow::{Context, Result};
use berth_e2e::{BerthProcess, component};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// GETs `path` as tenant `acme` from `workers` tasks until `stop`, recording
/// (start, end, status, version) for every response.
async fn load(
    host: &BerthProcess,
    path: &str,
    workers: usize,
    until: Instant,
    max_requests: usize,
) -> Result<Vec<(Instant, Instant, u16, String)>> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(workers)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = Arc::new(host.url(path));
    let per_worker = max_requests / workers;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let client = client.clone();
        let url = Arc::clone(&url);
        tasks.spawn(async move {
            let mut seen = Vec::new();
            while Instant::now() < until && seen.len() < per_worker {
                let start = Instant::now();
                let response = client
                    .get(url.as_str())
                    .header("host", "acme.localhost")
                    .send()
                    .await;
                let (status, version) = match response {
                    Ok(r) => {
                        let version = r
                            .headers()
                            .get("x-berth-version")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let status = r.status().as_u16();
                        // The whole body must arrive, too.
                        let ok = r.bytes().await.is_ok();
                        (if ok { status } else { 0 }, version)
                    }
                    Err(_) => (0, String::new()),
                };
                seen.push((start, Instant::now(), status, version));
            }
            seen
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.context("load worker")?);
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_split_routes_by_its_weights() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    op.create_tenant("acme").await?;
    let hello = component("hello")?;
    op.deploy("acme", "web", "stable", &hello, "/web").await?;
    op.deploy("acme", "web", "canary", &hello, "/web").await?;
    let set = op
        .put(
            "/v1/tenants/acme/services/web",
            json!({"split": {"stable": 90, "canary": 10}}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    let results = load(
        &host,
        "/web",
        16,
        Instant::now() + Duration::from_secs(120),
        10_000,
    )
    .await?;
    assert_eq!(results.len(), 10_000);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, _, status, version) in &results {
        assert_eq!(*status, 200);
        *counts.entry(version.as_str()).or_default() += 1;
    }
    let canary = counts.get("canary").copied().unwrap_or(0);
    // 10% of 10,000 is 1,000; the standard deviation is 30.
    assert!(
        (850..=1150).contains(&canary),
        "canary served {canary}: {counts:?}"
    );
    assert_eq!(counts.get("stable").copied().unwrap_or(0) + canary, 10_000);
    Ok(())
}

/// The versions that serve under each deployment, by label.
fn serving(body: &serde_json::Value) -> BTreeSet<String> {
    if let Some(active) = body["active"].as_str() {
        return BTreeSet::from([active.to_string()]);
    }
    body["split"]
        .as_object()
        .map(|split| {
            split
                .iter()
                .filter(|(_, w)| w.as_u64().unwrap_or(0) > 0)
                .map(|(label, _)| label.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_under_load_drop_no_request() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    op.create_tenant("acme").await?;
    let hello = component("hello")?;
    let bytes = std::fs::read(&hello)?;
    op.deploy("acme", "web", "v0", &hello, "/web").await?;
    for i in 1..=8 {
        let up = op
            .upload("acme", "web", &format!("v{i}"), bytes.clone())
            .await?;
        assert!(up.status == 201, "{up:?}");
    }

    let duration = Duration::from_secs(20);
    let started = Instant::now();
    let until = started + duration;
    // (change sent, change answered, what serves before, what serves after)
    let changes = {
        let op = op.clone();
        tokio::spawn(async move {
            let mut log = Vec::new();
            let mut before = BTreeSet::from(["v0".to_string()]);
            tokio::time::sleep(Duration::from_millis(500)).await;
            for step in 0..20u32 {
                let sent = Instant::now();
                let answer = match step % 4 {
                    0 | 1 => {
                        op.put(
                            "/v1/tenants/acme/services/web",
                            json!({"version": format!("v{}", step % 8 + 1)}),
                        )
                        .await?
                    }
                    2 => {
                        op.put(
                            "/v1/tenants/acme/services/web",
                            json!({"split": {"v1": 50, format!("v{}", step % 7 + 2): 50}}),
                        )
                        .await?
                    }
                    _ => {
                        op.post("/v1/tenants/acme/services/web/rollback", json!({}))
                            .await?
                    }
                };
                anyhow::ensure!(answer.status == 200, "change {step}: {answer:?}");
                let after = serving(&answer.body);
                log.push((sent, Instant::now(), before.clone(), after.clone()));
                before = after;
                tokio::time::sleep(Duration::from_millis(900)).await;
            }
            anyhow::Ok(log)
        })
    };
    let results = load(&host, "/web", 16, until, usize::MAX).await?;
    let changes = changes.await??;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(changes.len(), 20);

    let failed: Vec<_> = results.iter().filter(|r| r.2 != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed",
        failed.len(),
        results.len()
    );
    // Speed is `make bench`'s to measure; here every change must have met
    // traffic, at least 50 requests a change on average.
    let rate = results.len() as f64 / elapsed;
    println!("{} requests at {rate:.0} per second", results.len());
    assert!(
        results.len() >= 20 * 50,
        "only {} requests for 20 changes",
        results.len()
    );

    // A version is allowed for a request if it served at some moment of it:
    // before the first change it overlaps, through the last one, including
    // both sides of every change whose window overlaps the request.
    for (start, end, _, version) in &results {
        let mut allowed: BTreeSet<String> = BTreeSet::new();
        let mut current = BTreeSet::from(["v0".to_string()]);
        for (sent, answered, before, after) in &changes {
            if answered < start {
                current = after.clone();
                continue;
            }
            if sent > end {
                break;
            }
            allowed.extend(before.iter().cloned());
            allowed.extend(after.iter().cloned());
            current = after.clone();
        }
        allowed.extend(current);
        assert!(
            allowed.contains(version),
            "a response came from {version}, which was not serving during its request (allowed {allowed:?})"
        );
    }
    eprintln!(
        "{} requests in {elapsed:.1}s ({rate:.0}/s) across 20 changes, none failed",
        results.len()
    );
    Ok(())
}
