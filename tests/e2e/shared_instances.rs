//! WASI 0.3 instances serving several requests at once (`reuse.max_concurrent`):
//! requests overlap in one instance, each keeps its own request id in the
//! guest's output and its own deadline, and what one request's failure
//! does to the others in its instance is what docs/security.md says.

use anyhow::{Context, Result, ensure};
use berth_e2e::{Admin, BerthProcess, client, component};
use serde_json::json;
use std::time::{Duration, Instant};

/// One request to the `acme` tenant's data plane: status, body, request id.
async fn get(host: &BerthProcess, path: &str) -> Result<(u16, String, String)> {
    let response = client()
        .get(host.url(path))
        .header("host", "acme.localhost")
        .timeout(Duration::from_secs(30))
        .send()
        .await?;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((status, response.text().await.unwrap_or_default(), id))
}

/// A host with `testing-p3-parity` at `/svc`, serving up to 8 requests at
/// once per instance, under `limits`.
async fn shared_service(limits: serde_json::Value) -> Result<(BerthProcess, Admin)> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    acme.deploy("acme", "svc", "1", &component("testing-p3-parity")?, "/svc")
        .await?;
    let set = acme
        .put(
            "/v1/tenants/acme/services/svc",
            json!({"reuse": {"max_requests": 1000, "max_concurrent": 8}, "limits": limits}),
        )
        .await?;
    ensure!(set.status == 200, "{set:?}");
    // The optimised build replaces the quick one once; wait for it so that
    // the requests below meet one routing table.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !host.log().contains("serving the optimised build") {
        ensure!(Instant::now() < deadline, "never optimised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((host, acme))
}

/// The `berth_instantiation_duration_seconds` count for the service.
async fn instantiations(host: &BerthProcess) -> Result<u64> {
    let text = host.metrics_text().await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("berth_instantiation_duration_seconds_count")
                && l.contains("service=\"svc\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

#[tokio::test]
async fn requests_overlap_in_one_instance_each_with_its_own_identity() -> Result<()> {
    let (host, acme) = shared_service(json!({})).await?;
    // Warm: one instance, parked after its request.
    assert_eq!(get(&host, "/svc/count").await?.0, 200);
    let before = instantiations(&host).await?;

    // Eight requests that each wait 400 ms, at once: one instance serves
    // them together.
    let started = Instant::now();
    let waits = (0..8).map(|_| get(&host, "/svc/sleep/400"));
    for (status, body, _) in futures::future::try_join_all(waits).await? {
        assert_eq!((status, body.as_str()), (200, "slept"));
    }
    let took = started.elapsed();
    ensure!(took < Duration::from_millis(2500), "8 waits took {took:?}");
    let made = instantiations(&host).await? - before;
    ensure!(made <= 2, "{made} instances for 8 requests at once");
    // The instance kept count of all it served.
    let (_, count, _) = get(&host, "/svc/count").await?;
    let count: u32 = count.parse()?;
    ensure!(count >= 6, "the instance served {count}");

    // Two requests overlap: each line the guest prints after its wait
    // carries the id of the request that printed it, not the other's.
    let (slow, fast) = tokio::try_join!(
        get(&host, "/svc/log-after/300"),
        get(&host, "/svc/log-after/100")
    )?;
    assert_eq!((slow.0, fast.0), (200, 200));
    let logs = acme.get("/v1/tenants/acme/services/svc/logs").await?;
    let text = match &logs.body {
        serde_json::Value::String(ndjson) => ndjson.clone(),
        other => other.to_string(),
    };
    for (ms, id) in [(300, &slow.2), (100, &fast.2)] {
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("after {ms}")))
            })
            .with_context(|| format!("no line for {ms}:\n{text}"))?;
        assert_eq!(line["request_id"].as_str(), Some(id.as_str()), "{line}");
    }
    Ok(())
}

#[tokio::test]
async fn a_request_past_its_deadline_does_not_harm_its_neighbours() -> Result<()> {
    let (host, _acme) = shared_service(json!({"wall_time": "1s"})).await?;
    assert_eq!(get(&host, "/svc/count").await?.0, 200);
    let started = Instant::now();
    let stuck = get(&host, "/svc/sleep/20000");
    let neighbours = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        futures::future::try_join_all((0..3).map(|_| get(&host, "/svc/sleep/300"))).await
    };
    let (stuck, neighbours) = tokio::join!(stuck, neighbours);
    let (status, body, _) = stuck?;
    assert_eq!(status, 504, "{body}");
    ensure!(body.contains("wall-deadline"), "{body}");
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline took {:?}",
        started.elapsed()
    );
    for (status, body, _) in neighbours? {
        assert_eq!((status, body.as_str()), (200, "slept"));
    }
    // The stuck request's task may still run: its instance is not kept,
    // and later requests get a sound one.
    let (status, count, _) = get(&host, "/svc/count").await?;
    ensure!(status == 200, "{status} {count}\n{}", host.log());
    let count: u32 = count
        .parse()
        .with_context(|| format!("count {count:?}:\n{}", host.log()))?;
    ensure!(count <= 2, "served by the stuck instance: {count}");
    Ok(())
}

#[tokio::test]
async fn a_request_past_its_cpu_budget_ends_its_instance_and_nothing_else() -> Result<()> {
    let (host, _acme) = shared_service(json!({"cpu_time": "300ms", "wall_time": "10s"})).await?;
    assert_eq!(get(&host, "/svc/count").await?.0, 200);

    // Requests already waiting in the instance when a neighbour spins are
    // caught in it: wasmtime cannot stop one task of an instance, and while
    // the spinner runs none of the others can. They fail with 503
    // `instance-failed` when its budget ends the instance.
    let waiting = futures::future::try_join_all((0..3).map(|_| get(&host, "/svc/sleep/2000")));
    let spinner = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        get(&host, "/svc/spin").await
    };
    // Requests arriving once it spins go to another instance: a task
    // running on and on closes its instance to new requests.
    let later = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        futures::future::try_join_all((0..3).map(|_| get(&host, "/svc/sleep/100"))).await
    };
    let (waiting, spinner, later) = tokio::join!(waiting, spinner, later);
    let (status, body, _) = spinner?;
    assert_eq!(status, 504, "{body}");
    ensure!(body.contains("cpu-deadline"), "{body}");
    for (status, body, _) in waiting? {
        assert_eq!(status, 503, "{body}");
        ensure!(body.contains("instance-failed"), "{body}");
    }
    for (status, body, _) in later? {
        assert_eq!((status, body.as_str()), (200, "slept"));
    }
    assert_eq!(get(&host, "/svc").await?.1, "Hello, WASI!");

    // A task that spins on after its request has ended is owned by no
    // request; it is held to one request's budget all the same, and its
    // instance is not kept.
    let failures = || host.log().matches("a shared instance failed").count();
    let before = failures();
    let (status, body, _) = get(&host, "/svc/spin-after").await?;
    assert_eq!((status, body.as_str()), (200, "spinning"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures() == before {
        ensure!(
            Instant::now() < deadline,
            "the orphaned spinner was never stopped:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, count, _) = get(&host, "/svc/count").await?;
    assert_eq!(status, 200);
    ensure!(
        count.parse::<u32>()? <= 2,
        "served by the spinner's instance: {count}"
    );
    Ok(())
}

#[tokio::test]
async fn concurrency_is_checked_and_shown() -> Result<()> {
    let (host, acme) = shared_service(json!({})).await?;
    let view = acme.get("/v1/tenants/acme/services/svc").await?;
    assert_eq!(view.body["reuse"]["max_concurrent"], 8, "{view:?}");
    let bad = acme
        .put(
            "/v1/tenants/acme/services/svc",
            json!({"reuse": {"max_requests": 4, "max_concurrent": 8}}),
        )
        .await?;
    assert_eq!(bad.status, 400, "{bad:?}");
    ensure!(bad.body.to_string().contains("max_concurrent"), "{bad:?}");
    let (code, shown, err) = crate::control::cli(
        &host,
        berth_e2e::OPERATOR_TOKEN,
        &["service", "svc", "--tenant", "acme"],
    )?;
    assert_eq!(code, 0, "{err}");
    ensure!(shown.contains("8 at once"), "{shown}");
    Ok(())
}

/// Sends four requests that each wait 300 ms at once, then asks the
/// instance how many it served: 5 when one instance served all of them,
/// 2 when each had its own.
async fn served_by_one_instance(host: &BerthProcess, prefix: &str) -> Result<u32> {
    let url = |path: &str| host.url(&format!("{prefix}{path}"));
    let waits =
        (0..4).map(|_| async { client().get(url("/sleep/300")).send().await?.text().await });
    for body in futures::future::try_join_all(waits).await? {
        assert_eq!(body, "slept");
    }
    Ok(client()
        .get(url("/count"))
        .send()
        .await?
        .text()
        .await?
        .parse()?)
}

#[tokio::test]
async fn concurrency_is_set_by_berth_up_and_berth_toml() -> Result<()> {
    // berth up
    let dir = tempfile::tempdir()?;
    let mut cmd = std::process::Command::new(berth_e2e::berth_bin()?);
    cmd.arg("up")
        .arg(component("testing-p3-parity")?)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--max-instance-concurrency", "4"]);
    let host = BerthProcess::spawn(cmd)?;
    let served = served_by_one_instance(&host, "").await?;
    ensure!(served >= 4, "berth up: the instance served {served}");
    drop(host);
    let (code, _, stderr) = crate::cli::run_berth(&[
        "up",
        component("testing-p3-parity")?.to_str().unwrap_or_default(),
        "--max-instance-reuse",
        "2",
        "--max-instance-concurrency",
        "4",
    ])?;
    assert_ne!(code, 0);
    ensure!(stderr.contains("max_concurrent"), "{stderr}");

    // berth.toml
    let config = berth_e2e::service(
        "svc",
        "testing-p3-parity",
        "/svc",
        "[service.reuse]\nmax_concurrent = 4",
    )?;
    let host = BerthProcess::serving(&config)?;
    let served = served_by_one_instance(&host, "/svc").await?;
    ensure!(served >= 4, "berth.toml: the instance served {served}");
    drop(host);
    let config = berth_e2e::service(
        "svc",
        "testing-p3-parity",
        "/svc",
        "[service.reuse]\nmax_concurrent = 0",
    )?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, config)?;
    let (code, _, stderr) =
        crate::cli::run_berth(&["serve", "--config", file.to_str().unwrap_or_default()])?;
    assert_ne!(code, 0);
    ensure!(stderr.contains("max_concurrent"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn each_request_in_a_shared_instance_has_its_own_outbound_budget() -> Result<()> {
    // One outgoing request (here a service call) per incoming request.
    let (host, acme) = shared_service(json!({"outbound_requests": 1})).await?;
    acme.deploy(
        "acme",
        "callee",
        "1",
        &component("testing-p3-parity")?,
        "/callee",
    )
    .await?;
    assert_eq!(get(&host, "/svc/count").await?.0, 200);
    // Four requests in one instance, each calling once while the others'
    // calls are in flight: each spends its own budget, not a shared one.
    let calls = (0..4).map(|_| get(&host, "/svc/call/callee/sleep/300"));
    for (status, body, _) in futures::future::try_join_all(calls).await? {
        assert_eq!((status, body.as_str()), (200, "slept"));
    }
    Ok(())
}

#[tokio::test]
async fn a_client_that_goes_retires_its_request_and_not_its_neighbours() -> Result<()> {
    let (host, _acme) = shared_service(json!({})).await?;
    // The warm instance, which served one request.
    assert_eq!(get(&host, "/svc/count").await?.1, "1");
    let neighbour = tokio::spawn({
        let url = host.url("/svc/sleep/600");
        async move {
            let r = client()
                .get(url)
                .header("host", "acme.localhost")
                .send()
                .await?;
            anyhow::Ok((r.status().as_u16(), r.text().await?))
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A client that gives up on a long wait in the same instance.
    let gave_up = client()
        .get(host.url("/svc/sleep/20000"))
        .header("host", "acme.localhost")
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    ensure!(gave_up.is_err(), "{gave_up:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Its instance takes no more requests: this one is served by a fresh
    // instance, not as the warm one's fourth.
    assert_eq!(get(&host, "/svc/count").await?.1, "1");
    // The neighbour in the instance it left finishes as if nothing happened.
    assert_eq!(neighbour.await??, (200, "slept".to_string()));
    Ok(())
}
