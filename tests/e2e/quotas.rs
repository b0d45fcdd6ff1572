//! Tenant quotas through the admin API and the CLI: validated when set,
//! shown with their defaults, and enforced on deploys, service limits and
//! requests.

use anyhow::Result;
use berth_api::TenantLimits;
use berth_api::units::{ByteSize, DurationSpec};
use berth_e2e::{BerthProcess, client, component};
use serde_json::json;
use std::time::Duration;

use crate::control::cli;

async fn set_limits(host: &BerthProcess, tenant: &str, limits: serde_json::Value) -> Result<u16> {
    let answer = host
        .operator()?
        .put(
            &format!("/v1/tenants/{tenant}"),
            json!({ "limits": limits }),
        )
        .await?;
    Ok(answer.status)
}

#[tokio::test]
async fn tenant_limits_are_checked_shown_and_enforced_on_deploys() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let token = op.create_tenant("acme").await?;
    let acme = host.admin_as(&token)?;

    let shown = acme.tenant("acme").await?;
    assert_eq!(shown.effective_limits.memory, Some(ByteSize(128 << 20)));
    assert_eq!(shown.effective_limits.private_outbound, Some(false));
    assert_eq!(shown.limits, TenantLimits::default());

    // Nonsense is refused with the reason, and nothing changes.
    for bad in [
        json!({"memroy": "1MiB"}),
        json!({"memory": "lots"}),
        json!({"concurrency": 0}),
    ] {
        let answer = op.put("/v1/tenants/acme", json!({ "limits": bad })).await?;
        assert_eq!(answer.status, 400, "{answer:?}");
        assert!(
            answer.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("limits")),
            "{answer:?}"
        );
    }
    // Tenants cannot raise their own limits.
    let own = acme
        .put("/v1/tenants/acme", json!({"limits": {"memory": "1GiB"}}))
        .await?;
    assert_eq!(own.status, 403);

    let hello = std::fs::read(component("hello")?)?;
    let size = hello.len() as u64;
    let status = set_limits(
        &host,
        "acme",
        json!({"memory": "32MiB", "services": 2, "versions": 3, "storage": size * 7 / 2}),
    )
    .await?;
    assert_eq!(status, 200);
    acme.deploy("acme", "a", "1", &component("hello")?, "/a")
        .await?;

    // A service may tighten its tenant's limits, never loosen them.
    let looser = acme
        .put(
            "/v1/tenants/acme/services/a",
            json!({"limits": {"memory": "64MiB"}}),
        )
        .await?;
    assert_eq!(looser.status, 422, "{looser:?}");
    assert!(
        looser.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("memory") && d.contains("tenant")),
        "{looser:?}"
    );
    let tighter = acme
        .put(
            "/v1/tenants/acme/services/a",
            json!({"limits": {"memory": "16MiB"}}),
        )
        .await?;
    assert_eq!(tighter.status, 200, "{tighter:?}");
    let r = host.tenant_get("acme", "/a").send().await?;
    assert_eq!(r.status(), 200);

    // Services: two allowed.
    let b = acme.upload("acme", "b", "1", hello.clone()).await?;
    assert_eq!(b.status, 201, "{b:?}");
    let c = acme.upload("acme", "c", "1", hello.clone()).await?;
    assert_eq!(c.status, 409, "{c:?}");
    assert_eq!(
        c.body["type"], "https://berth.dev/problems/quota-exceeded",
        "{c:?}"
    );
    assert!(
        c.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("services"))
    );

    // Storage: three copies fit in 3.5; a fourth would not (the version
    // quota of 3 is reached at the same time, so lift it first).
    assert_eq!(
        set_limits(
            &host,
            "acme",
            json!({"memory": "32MiB", "services": 2, "versions": 10, "storage": size * 7 / 2}),
        )
        .await?,
        200
    );
    let third = acme.upload("acme", "a", "2", hello.clone()).await?;
    assert_eq!(third.status, 201, "{third:?}");
    let fourth = acme.upload("acme", "a", "3", hello.clone()).await?;
    assert_eq!(fourth.status, 413, "{fourth:?}");
    assert_eq!(
        fourth.body["type"],
        "https://berth.dev/problems/storage-quota-exceeded"
    );

    // Versions: three stored, and the limit set to three.
    assert_eq!(
        set_limits(&host, "acme", json!({"versions": 3})).await?,
        200
    );
    let over = acme.upload("acme", "b", "2", hello.clone()).await?;
    assert_eq!(over.status, 409, "{over:?}");
    assert!(
        over.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("versions"))
    );
    // Deleting one makes room.
    let deleted = acme
        .delete("/v1/tenants/acme/services/a/versions/2")
        .await?;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    let again = acme.upload("acme", "b", "2", hello).await?;
    assert_eq!(again.status, 201, "{again:?}");

    // The CLI shows and changes limits, keeping the ones already set.
    let op_token = berth_e2e::OPERATOR_TOKEN;
    let (code, out, err) = cli(
        &host,
        op_token,
        &["tenant", "limits", "acme", "concurrency=7", "wall_time=20s"],
    )?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("concurrency") && out.contains('7'), "{out}");
    let shown = acme.tenant("acme").await?;
    assert_eq!(shown.limits.versions, Some(3), "{shown:?}");
    assert_eq!(shown.effective_limits.concurrency, Some(7));
    assert_eq!(
        shown.effective_limits.wall_time,
        Some(DurationSpec(std::time::Duration::from_secs(20)))
    );
    // On the wire a duration is written with its unit.
    let raw = acme.get("/v1/tenants/acme").await?;
    assert_eq!(raw.body["effective_limits"]["wall_time"], "20000ms");
    let (code, _, err) = cli(&host, op_token, &["tenant", "limits", "acme", "memory"])?;
    assert_ne!(code, 0);
    assert!(err.contains("LIMIT=VALUE"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_tenant_past_its_concurrency_and_queue_gets_503_while_others_are_served() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let busy = host.admin_as(&op.create_tenant("busy").await?)?;
    let calm = host.admin_as(&op.create_tenant("calm").await?)?;
    busy.deploy("busy", "slow", "1", &component("testing-hostile")?, "/")
        .await?;
    calm.deploy("calm", "hello", "1", &component("hello")?, "/hello")
        .await?;
    let status = set_limits(
        &host,
        "busy",
        json!({"concurrency": 2, "queue": 2, "queue_timeout": "300ms"}),
    )
    .await?;
    assert_eq!(status, 200);

    let http = client();
    let mut flood = Vec::new();
    for _ in 0..10 {
        let request = host.tenant_get("busy", "/sleep?ms=1500");
        flood.push(tokio::spawn(async move { request.send().await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The other tenant is answered at once while the flood waits.
    let started = std::time::Instant::now();
    let calm_answer = http
        .get(host.url("/hello"))
        .header("host", "calm.localhost")
        .send()
        .await?;
    assert_eq!(calm_answer.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(500));

    let (mut served, mut refused) = (0, 0);
    for request in flood {
        let response = request.await??;
        match response.status().as_u16() {
            200 => served += 1,
            503 => {
                assert_eq!(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("1")
                );
                let body: serde_json::Value = response.json().await?;
                assert_eq!(body["type"], "https://berth.dev/problems/tenant-busy");
                refused += 1;
            }
            other => anyhow::bail!("unexpected status {other}"),
        }
    }
    // Two ran; two waited 300 ms in the queue and gave up; six were turned
    // away at once.
    assert_eq!((served, refused), (2, 8));
    // Each refusal is counted by its cause, for the refused tenant only.
    let metrics = host.metrics_text().await?;
    let rejected: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("berth_rejected_requests_total{"))
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].contains("tenant=\"busy\""), "{rejected:?}");
    assert!(
        rejected[0].contains("cause=\"tenant-busy\""),
        "{rejected:?}"
    );
    assert!(rejected[0].ends_with(" 8"), "{rejected:?}");
    Ok(())
}
