//! Scale-out: three `berth serve` processes sharing one real PostgreSQL
//! server, as pods of one Deployment would. A change through any host
//! reaches the others; key-value data is one store; a host killed and
//! restarted catches up; a database outage leaves every host serving.

use anyhow::{Context, Result, bail, ensure};
use berth_e2e::postgres::Postgres;
use berth_e2e::{Admin, BerthProcess, Launch, client, component};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// How soon every host must serve a change made through one of them: the
/// issue's target. The other hosts serve a synced version from Winch's
/// quick build, as the uploading host does, and optimise it behind.
const CONVERGED_WITHIN: Duration = Duration::from_secs(2);

/// A host of the fleet sharing `pg`, with its own data directory.
pub(crate) fn fleet_host(dir: &Path, name: &str, pg: &Postgres) -> Result<BerthProcess> {
    BerthProcess::launch(Launch {
        args: vec![
            "--store".into(),
            pg.url(),
            "--sync-interval".into(),
            "1s".into(),
        ],
        config: None,
        data_dir: dir.join(name),
    })
}

/// The version label that answers `GET path` on `host` for `acme`, if any
/// does. Whatever the guest answers counts; the host failing does not.
async fn version_at(host: &BerthProcess, path: &str) -> Result<Option<String>> {
    let response = host.tenant_get("acme", path).send().await?;
    let status = response.status();
    let version = response
        .headers()
        .get("x-berth-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    ensure!(
        status.as_u16() < 500 && (version.is_some() || status == 404),
        "{} {path}: {status} {}",
        host.base,
        response.text().await?
    );
    Ok(version)
}

/// Waits until every host serves `label` at `path`; how long that took.
/// A probe endpoint of `host`'s admin listener: its status and body.
async fn admin_probe(host: &BerthProcess, path: &str) -> Result<(u16, String)> {
    let admin = host.admin.as_deref().context("no admin address")?;
    let response = client().get(format!("{admin}{path}")).send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

async fn until_served(hosts: &[&BerthProcess], path: &str, label: &str) -> Result<Duration> {
    let started = Instant::now();
    for host in hosts {
        loop {
            if version_at(host, path).await?.as_deref() == Some(label) {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{} never served {label} at {path}", host.base);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(started.elapsed())
}

async fn send(
    host: &BerthProcess,
    method: reqwest::Method,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    let response = client()
        .request(method, host.url(path))
        .header("host", "acme.localhost")
        .body(body.to_string())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// Uploads `component` as `label` of `web` and activates it.
async fn deploy(admin: &Admin, label: &str, component: &Path) -> Result<()> {
    admin.deploy("acme", "web", label, component, "/web").await
}

#[tokio::test]
async fn hosts_sharing_postgres_converge_and_share_key_value_data() -> Result<()> {
    let pg = Postgres::start()?;
    let dir = tempfile::tempdir()?;
    let a = fleet_host(dir.path(), "a", &pg)?;
    let b = fleet_host(dir.path(), "b", &pg)?;
    let c = fleet_host(dir.path(), "c", &pg)?;
    let acme = a.admin_as(&a.operator()?.create_tenant("acme").await?)?;

    // A deploy through A is served by B and C within two seconds.
    let probe = component("testing-capabilities")?;
    deploy(&acme, "1", &probe).await?;
    let took = until_served(&[&a, &b, &c], "/web/whoami", "1").await?;
    ensure!(took <= CONVERGED_WITHIN, "converged in {took:?}");
    // B served it from Winch's build and then swaps in Cranelift's, which
    // it compiled itself.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !b.log().contains("serving the optimised build") {
        ensure!(Instant::now() < deadline, "B never optimised:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        b.log().matches("component compiled").count() == 1,
        "{}",
        b.log()
    );
    // The tenant's token, created through A, works on C.
    let on_c = c.admin_as(&acme.token)?;
    ensure!(on_c.get("/v1/tenants/acme/services/web").await?.status == 200);

    // A key-value write through A is read through C.
    ensure!(
        send(&a, reqwest::Method::PUT, "/web/kv/default/k", "from-a")
            .await?
            .0
            == 204
    );
    ensure!(
        send(&c, reqwest::Method::GET, "/web/kv/default/k", "").await? == (200, "from-a".into())
    );

    // 1,000 increments from 30 clients spread over the three hosts add up:
    // every sum from 1 to 1,000 is seen exactly once.
    let hosts = [&a, &b, &c];
    let mut tasks = Vec::new();
    for i in 0..30 {
        let url = hosts[i % 3].url("/web/incr/n");
        let each = if i < 10 { 34 } else { 33 };
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut sums = Vec::new();
            for _ in 0..each {
                let response = http
                    .post(&url)
                    .header("host", "acme.localhost")
                    .send()
                    .await?;
                ensure!(response.status() == 200, "status {}", response.status());
                sums.push(response.text().await?.parse::<u64>()?);
            }
            anyhow::Ok(sums)
        }));
    }
    let mut sums = Vec::new();
    for task in tasks {
        sums.extend(task.await??);
    }
    sums.sort_unstable();
    assert_eq!(sums, (1..=1000).collect::<Vec<u64>>());
    assert_eq!(
        send(&b, reqwest::Method::GET, "/web/kv/default/n", "").await?,
        (200, "1000".into())
    );

    // B is killed; a deploy happens without it; B restarted catches up.
    b.kill()?;
    deploy(&acme, "2", &component("hello")?).await?;
    until_served(&[&a, &c], "/web/whoami", "2").await?;
    // The same data directory, with its compile cache and components.
    let b = fleet_host(dir.path(), "b", &pg)?;
    ensure!(
        version_at(&b, "/web/whoami").await?.as_deref() == Some("2"),
        "B restarted on an old state"
    );
    // A rollback through the restarted B reaches A and C.
    let on_b = b.admin_as(&acme.token)?;
    let back = on_b
        .post("/v1/tenants/acme/services/web/rollback", json!({}))
        .await?;
    ensure!(back.status == 200, "rollback through B: {back:?}");
    let took = until_served(&[&a, &c], "/web/whoami", "1").await?;
    ensure!(took <= CONVERGED_WITHIN, "rollback converged in {took:?}");
    Ok(())
}

#[tokio::test]
async fn hosts_serve_through_a_postgres_outage_and_converge_after_it() -> Result<()> {
    let mut pg = Postgres::start()?;
    let dir = tempfile::tempdir()?;
    let a = fleet_host(dir.path(), "a", &pg)?;
    let b = fleet_host(dir.path(), "b", &pg)?;
    let c = fleet_host(dir.path(), "c", &pg)?;
    let acme = a.admin_as(&a.operator()?.create_tenant("acme").await?)?;
    let probe = component("testing-capabilities")?;
    deploy(&acme, "1", &probe).await?;
    until_served(&[&a, &b, &c], "/web/whoami", "1").await?;

    pg.halt()?;
    // Every host serves on from the state it synced.
    for host in [&a, &b, &c] {
        for _ in 0..20 {
            ensure!(version_at(host, "/web/whoami").await?.as_deref() == Some("1"));
        }
    }
    // Changes fail cleanly: a 503 that says why, soon, through any host.
    let on_b = b.admin_as(&acme.token)?;
    let started = Instant::now();
    let refused = on_b
        .put(
            "/v1/tenants/acme/services/web",
            json!({ "route": "/other" }),
        )
        .await?;
    ensure!(
        refused.status == 503,
        "write during the outage: {refused:?}"
    );
    ensure!(
        refused.body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("state-store-unavailable")),
        "{refused:?}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "refusal took {:?}",
        started.elapsed()
    );
    let refused = acme
        .upload("acme", "web", "2", std::fs::read(component("hello")?)?)
        .await?;
    ensure!(
        refused.status == 503,
        "upload during the outage: {refused:?}"
    );
    // Ready for traffic, and saying that changes are refused; not ready for
    // admin writes, which a load balancer in front of the admin API reads.
    let (status, text) = admin_probe(&c, "/readyz").await?;
    ensure!(
        status == 200 && text.contains("state store unreachable"),
        "readyz during the outage: {status} {text}"
    );
    let (status, _) = admin_probe(&c, "/readyz/admin").await?;
    ensure!(status == 503, "readyz/admin during the outage: {status}");

    pg.resume()?;
    // Once it is back, a change through C reaches A and B, without restarts.
    let on_c = c.admin_as(&acme.token)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = on_c
            .upload("acme", "web", "2", std::fs::read(component("hello")?)?)
            .await?;
        if up.status == 201 {
            break;
        }
        ensure!(
            up.status == 503 && Instant::now() < deadline,
            "upload after the outage: {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let set = on_c
        .put("/v1/tenants/acme/services/web", json!({ "version": "2" }))
        .await?;
    ensure!(set.status == 200, "{set:?}");
    until_served(&[&a, &b, &c], "/web/whoami", "2").await?;
    let (_, ready) = admin_probe(&a, "/readyz").await?;
    ensure!(ready == "ready\n", "readyz after the outage: {ready}");
    let (status, _) = admin_probe(&a, "/readyz/admin").await?;
    ensure!(status == 200, "readyz/admin after the outage: {status}");
    Ok(())
}

/// The digests of the component bytes in the shared database, sorted.
async fn shared_blobs(pg: &Postgres) -> Result<Vec<String>> {
    use sqlx::Connection as _;
    let mut db = sqlx::PgConnection::connect(&pg.url()).await?;
    let digests: Vec<(String,)> = sqlx::query_as("SELECT digest FROM blobs ORDER BY digest")
        .fetch_all(&mut db)
        .await?;
    db.close().await?;
    Ok(digests.into_iter().map(|(d,)| d).collect())
}

#[tokio::test]
async fn shared_component_bytes_no_version_names_are_deleted() -> Result<()> {
    let pg = Postgres::start()?;
    let dir = tempfile::tempdir()?;
    // The grace time keeps another host's upload in progress from losing
    // its bytes; a millisecond lets this test see the collection at once.
    let host = |name: &str| {
        BerthProcess::launch(Launch {
            args: [
                "--store",
                &pg.url(),
                "--sync-interval",
                "1s",
                "--shared-blob-grace",
                "1ms",
            ]
            .map(String::from)
            .to_vec(),
            config: None,
            data_dir: dir.path().join(name),
        })
    };
    let a = host("a")?;
    let b = host("b")?;
    let acme = a.admin_as(&a.operator()?.create_tenant("acme").await?)?;
    let hello = component("hello")?;
    deploy(&acme, "1", &hello).await?;
    let echo = std::fs::read(component("echo")?)?;
    let up = acme.upload("acme", "web", "2", echo.clone()).await?;
    ensure!(up.status == 201, "{up:?}");
    let sha = |bytes: &[u8]| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let (hello_sha, echo_sha) = (sha(&std::fs::read(&hello)?), sha(&echo));
    let stored = shared_blobs(&pg).await?;
    ensure!(stored.len() == 2, "{stored:?}");

    // Version 2 deleted through B takes echo's bytes with it; hello's stay,
    // and a host that never saw them serves from them.
    let on_b = b.admin_as(&acme.token)?;
    let gone = on_b
        .delete("/v1/tenants/acme/services/web/versions/2")
        .await?;
    ensure!(gone.status == 204, "{gone:?}");
    let stored = shared_blobs(&pg).await?;
    ensure!(
        stored.len() == 1 && stored[0].contains(&hello_sha) && !stored[0].contains(&echo_sha),
        "{stored:?}"
    );
    let c = host("c")?;
    ensure!(version_at(&c, "/web/").await?.as_deref() == Some("1"));

    // The service deleted through A leaves nothing behind.
    ensure!(acme.delete("/v1/tenants/acme/services/web").await?.status == 204);
    let stored = shared_blobs(&pg).await?;
    ensure!(stored.is_empty(), "{stored:?}");
    Ok(())
}
