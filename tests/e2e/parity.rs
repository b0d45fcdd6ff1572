//! What `wasmtime serve` users rely on, under Berth: the observable
//! assertions of wasmtime's `serve` tests (hello world, printing, a trap
//! before the response, a request past its deadline, environment
//! variables, `wasi:keyvalue@0.2.0-draft`'s store named `""`), on a
//! component built the way wasmtime's test programs are; and instance reuse
//! as a service's policy, set through each way a user sets it.

use anyhow::Result;
use berth_e2e::{BerthProcess, berth_bin, client, component};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// `berth up` serving the parity component with `args` added.
fn up(args: &[&str]) -> Result<(BerthProcess, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(berth_bin()?);
    cmd.arg("up")
        .arg(component("testing-serve-parity")?)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args);
    Ok((BerthProcess::spawn(cmd)?, dir))
}

async fn get(host: &BerthProcess, path: &str) -> Result<(u16, String)> {
    let r = client().get(host.url(path)).send().await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// What `/count` answers over `n` requests, a moment apart so the guest's
/// task has parked its instance before the next arrives.
async fn counts(host: &BerthProcess, path: &str, n: usize) -> Result<Vec<u64>> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, text) = get(host, path).await?;
        assert_eq!(status, 200, "{text}");
        seen.push(text.parse()?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(seen)
}

#[tokio::test]
async fn wasmtime_serve_test_programs_behave_the_same_under_berth_up() -> Result<()> {
    let (host, _dir) = up(&["--env", "GREETING=hej", "--env", "EMPTY="])?;
    // p2_cli_serve_hello_world: the body the guest wrote.
    assert_eq!(get(&host, "/").await?, (200, "Hello, WASI!".into()));
    // Environment variables given to the service, and only those.
    assert_eq!(get(&host, "/env/GREETING").await?, (200, "hej".into()));
    assert_eq!(get(&host, "/env/EMPTY").await?, (200, String::new()));
    assert_eq!(get(&host, "/env/PATH").await?.0, 404);
    // p2_cli_serve_with_print: both streams reach the host's log, tagged
    // with the request.
    let r = client().get(host.url("/print")).send().await?;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str()?.to_string();
    for line in ["serve-parity: to stdout", "serve-parity: to stderr"] {
        let found = host.wait_for_line(&[line, &id], Duration::from_secs(5));
        assert!(found.is_some(), "{line} not logged:\n{}", host.log());
    }
    // p2_cli_serve_trap_before_set: a 500, and the host goes on serving.
    assert_eq!(get(&host, "/trap-before-set").await?.0, 500);
    assert_eq!(get(&host, "/").await?, (200, "Hello, WASI!".into()));
    // p2_cli_serve_keyvalue: the store named "" holds what was set.
    let put = client()
        .put(host.url("/kv/hello"))
        .body("world")
        .send()
        .await?;
    assert_eq!(put.status(), 200, "{}", put.text().await?);
    assert_eq!(get(&host, "/kv/hello").await?, (200, "world".into()));
    // Listing pages through the draft's numeric cursor: more keys than one
    // page (1,000) holds, each listed once.
    assert_eq!(get(&host, "/fill/1500").await?, (200, "1500".into()));
    assert_eq!(get(&host, "/keys").await?, (200, "1501 1501".into()));
    // The default: a fresh instance for every request.
    assert_eq!(counts(&host, "/count", 3).await?, [1, 1, 1]);
    Ok(())
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_504() -> Result<()> {
    let config = berth_e2e::service(
        "parity",
        "testing-serve-parity",
        "/parity",
        "[service.limits]\nwall_time = \"500ms\"",
    )?;
    let host = BerthProcess::serving(&config)?;
    // p2_cli_serve_sleep: the guest sleeps past the host's deadline.
    let started = std::time::Instant::now();
    assert_eq!(get(&host, "/parity/sleep/5000").await?.0, 504);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(get(&host, "/parity/sleep/10").await?, (200, "slept".into()));
    Ok(())
}

#[tokio::test]
async fn instance_reuse_is_set_by_berth_up_berth_toml_and_the_admin_api() -> Result<()> {
    // berth up
    let (host, _dir) = up(&["--max-instance-reuse", "3"])?;
    assert_eq!(counts(&host, "/count", 4).await?, [1, 2, 3, 1]);
    drop(host);
    let parity = component("testing-serve-parity")?;
    let (code, _, stderr) = crate::cli::run_berth(&[
        "up",
        parity.to_str().unwrap_or_default(),
        "--max-instance-reuse",
        "0",
    ])?;
    assert_ne!(code, 0);
    assert!(stderr.contains("max_requests"), "{stderr}");

    // berth.toml
    let config = berth_e2e::service(
        "parity",
        "testing-serve-parity",
        "/parity",
        "[service.reuse]\nmax_requests = 2\nidle_timeout = \"30s\"\n[service.env]\nMODE = \"toml\"",
    )?;
    let host = BerthProcess::serving(&config)?;
    assert_eq!(counts(&host, "/parity/count", 3).await?, [1, 2, 1]);
    assert_eq!(get(&host, "/parity/env/MODE").await?, (200, "toml".into()));
    drop(host);
    let bad = berth_e2e::service(
        "parity",
        "testing-serve-parity",
        "/parity",
        "[service.reuse]\nmax_requests = 1000000",
    )?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("berth.toml"), &bad)?;
    let path = dir.path().join("berth.toml");
    let (code, _, stderr) = crate::cli::run_berth(&[
        "serve",
        "--config",
        path.to_str().unwrap_or_default(),
        "--data-dir",
        dir.path().to_str().unwrap_or_default(),
    ])?;
    assert_ne!(code, 0);
    assert!(stderr.contains("max_requests"), "{stderr}");

    // The admin API
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    acme.deploy(
        "acme",
        "parity",
        "1",
        &component("testing-serve-parity")?,
        "/parity",
    )
    .await?;
    let via_acme = |path: &str| {
        client()
            .get(host.url(path))
            .header("host", "acme.localhost")
            .send()
    };
    let fresh: Vec<String> = {
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.push(via_acme("/parity/count").await?.text().await?);
        }
        seen
    };
    assert_eq!(fresh, ["1", "1"]);
    let set = acme
        .put(
            "/v1/tenants/acme/services/parity",
            json!({"reuse": {"max_requests": 50}, "env": {"MODE": "api"}}),
        )
        .await?;
    assert_eq!(set.status, 200, "{set:?}");
    // The optimised build replaces the quick one with a new version of the
    // routing table, whose instances start afresh: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !host.log().contains("serving the optimised build") {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "never optimised:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let view = acme.service("acme", "parity").await?;
    assert_eq!(view.reuse.max_requests, Some(50));
    assert_eq!(view.env.get("MODE").map(String::as_str), Some("api"));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(via_acme("/parity/count").await?.text().await?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, ["1", "2", "3"]);
    assert_eq!(via_acme("/parity/env/MODE").await?.text().await?, "api");
    // Out of bounds, and an unknown field: refused, nothing changes.
    for body in [
        json!({"reuse": {"max_requests": 0}}),
        json!({"reuse": {"max_reqs": 5}}),
        json!({"env": {"A=B": "x"}}),
    ] {
        let refused = acme.put("/v1/tenants/acme/services/parity", body).await?;
        assert_eq!(refused.status, 400, "{refused:?}");
    }
    assert_eq!(
        acme.service("acme", "parity").await?.reuse.max_requests,
        Some(50)
    );
    Ok(())
}
