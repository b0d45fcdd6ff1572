//! Bad uploads: each gets a clear 4xx, nothing is stored, and the host keeps
//! serving.

use anyhow::Result;
use berth_e2e::{BerthProcess, component};
use serde_json::json;

fn stored_blobs(data: &std::path::Path) -> Result<usize> {
    Ok(std::fs::read_dir(data.join("blobs/sha256"))?.count())
}

#[tokio::test]
async fn bad_uploads_are_refused_and_nothing_is_stored() -> Result<()> {
    let host = BerthProcess::empty(&["--max-upload", "1MiB"])?;
    let data = host.data_dir()?;
    let op = host.operator()?;
    op.create_tenant("acme").await?;
    op.deploy("acme", "web", "1", &component("hello")?, "/web")
        .await?;
    let blobs_before = stored_blobs(&data)?;

    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "garbage",
            b"this is not wasm at all".to_vec(),
            422,
            "not a WebAssembly binary",
        ),
        ("core-module", core_module, 422, "core WebAssembly module"),
        ("wat-text", b"(component)".to_vec(), 422, "text"),
        (
            "bad-import",
            std::fs::read(component("testing-bad-import")?)?,
            422,
            "acme:inventory/stock",
        ),
        ("empty", Vec::new(), 400, "empty"),
        ("oversized", vec![0u8; 3 << 20], 413, "larger than"),
    ];
    for (name, bytes, status, needle) in cases {
        let answer = op.upload("acme", "bad", "1", bytes).await?;
        assert_eq!(answer.status, status, "{name}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json", "{name}");
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{name}: {detail}");
    }

    // A streamed body with no declared length is cut off at the limit too.
    let chunks = (0..48).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 64 * 1024])));
    let streamed = op
        .send(
            op.request(
                reqwest::Method::PUT,
                "/v1/tenants/acme/services/bad/versions/1",
            )
            .header("content-type", "application/wasm")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
        )
        .await;
    // The host may answer 413 and close before the client finishes sending.
    if let Ok(answer) = streamed {
        assert_eq!(answer.status, 413, "{answer:?}");
    }

    let hello = std::fs::read(component("hello")?)?;
    for (service, label, status) in [
        ("%2E%2E%2Fx", "1", 400),
        ("Hello", "1", 400),
        (&"x".repeat(300)[..], "1", 400),
        ("fine", "..x", 400),
        ("fine", "a%2Fb", 400),
        ("fine", &"1".repeat(300)[..], 400),
    ] {
        let answer = op.upload("acme", service, label, hello.clone()).await?;
        assert_eq!(answer.status, status, "{service} {label}: {answer:?}");
    }
    let wrong_type = op
        .send(
            op.request(
                reqwest::Method::PUT,
                "/v1/tenants/acme/services/fine/versions/1",
            )
            .header("content-type", "text/plain")
            .body(hello.clone()),
        )
        .await?;
    assert_eq!(wrong_type.status, 415);
    let unknown_version = op
        .put("/v1/tenants/acme/services/web", json!({"version": "9.9.9"}))
        .await?;
    assert_eq!(unknown_version.status, 422, "{unknown_version:?}");
    let bad_json = op
        .send(
            op.request(reqwest::Method::PUT, "/v1/tenants/acme/services/web")
                .header("content-type", "application/json")
                .body("{\"route\": "),
        )
        .await?;
    assert_eq!(bad_json.status, 400, "{bad_json:?}");
    let no_tenant = op.upload("nobody", "web", "1", hello.clone()).await?;
    assert_eq!(no_tenant.status, 404);

    // Nothing was stored, and the host serves on.
    let services = op.get("/v1/tenants/acme/services").await?;
    let names: Vec<&str> = services
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["web"], "{services:?}");
    assert_eq!(stored_blobs(&data)?, blobs_before);
    assert_eq!(
        std::fs::read_dir(data.join("blobs/tmp"))?.count(),
        0,
        "no temp files left"
    );
    let r = host.tenant_get("acme", "/web").send().await?;
    assert_eq!(r.status(), 200);
    Ok(())
}

#[tokio::test]
async fn a_compile_past_its_deadline_fails_the_deploy_and_serving_goes_on() -> Result<()> {
    // Every component is "slow to compile" against a 1 ms deadline.
    let host = BerthProcess::empty(&["--compile-timeout", "1ms"])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    let answer = acme
        .upload("acme", "web", "1", std::fs::read(component("hello")?)?)
        .await?;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(
        answer.body["type"],
        "https://berth.dev/problems/compile-timeout"
    );
    let service = acme.get("/v1/tenants/acme/services/web").await?;
    assert_eq!(service.status, 404, "nothing was stored: {service:?}");
    assert_eq!(stored_blobs(&host.data_dir()?)?, 0);
    // The admin API and the data plane answer throughout.
    assert_eq!(host.operator()?.get("/healthz").await?.status, 200);
    let r = berth_e2e::client().get(host.url("/")).send().await?;
    assert_eq!(r.status(), 404);
    Ok(())
}

/// An upload that sends its first bytes and then holds the request open
/// for `hold`, as a slow client would.
fn held_upload(
    admin: &berth_e2e::Admin,
    tenant: &str,
    label: &str,
    bytes: Vec<u8>,
    hold: std::time::Duration,
) -> reqwest::RequestBuilder {
    use futures::StreamExt as _;
    let (head, rest) = bytes.split_at(64);
    let (head, rest) = (head.to_vec(), rest.to_vec());
    let body = futures::stream::iter([Ok::<_, std::io::Error>(head)]).chain(futures::stream::once(
        async move {
            tokio::time::sleep(hold).await;
            Ok(rest)
        },
    ));
    admin
        .request(
            reqwest::Method::PUT,
            &format!("/v1/tenants/{tenant}/services/web/versions/{label}"),
        )
        .header("content-type", "application/wasm")
        .body(reqwest::Body::wrap_stream(body))
}

#[tokio::test]
async fn a_tenant_past_its_uploads_in_progress_gets_429_and_others_deploy() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let bulk = host.admin_as(&op.create_tenant("bulk").await?)?;
    let other = host.admin_as(&op.create_tenant("other").await?)?;
    let hello = std::fs::read(component("hello")?)?;
    let hold = std::time::Duration::from_secs(3);
    let held: Vec<_> = (0..8)
        .map(|n| {
            let request = held_upload(&bulk, "bulk", &format!("{n}"), hello.clone(), hold);
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The ninth is refused at once, with when to come back.
    let started = std::time::Instant::now();
    let ninth = held_upload(&bulk, "bulk", "8", hello.clone(), hold)
        .send()
        .await?;
    anyhow::ensure!(ninth.status() == 429, "{}", ninth.status());
    anyhow::ensure!(ninth.headers().contains_key("retry-after"));
    anyhow::ensure!(
        started.elapsed() < hold,
        "the refusal waited for the others"
    );
    // Another tenant deploys meanwhile.
    other
        .deploy("other", "web", "1", &component("hello")?, "/")
        .await?;
    for upload in held {
        let status = upload.await??;
        anyhow::ensure!(
            status == 201,
            "a held upload ended {status}: {}",
            host.log()
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // With the eight done, the tenant uploads again.
    let again = bulk.upload("bulk", "web", "8", hello).await?;
    anyhow::ensure!(again.status == 200 || again.status == 201, "{again:?}");
    Ok(())
}
