//! Bad uploads: each gets a clear 4xx, nothing is stored, and the host keeps
//! serving.

use anyhow::Result;
use berth_e2e::component;
use serde_json::json;

use crate::control::empty_host;

fn stored_blobs(data: &std::path::Path) -> Result<usize> {
    Ok(std::fs::read_dir(data.join("blobs/sha256"))?.count())
}

#[tokio::test]
async fn bad_uploads_are_refused_and_nothing_is_stored() -> Result<()> {
    let (dir, host) = empty_host(&["--max-upload", "1MiB"])?;
    let data = dir.path().join("data");
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
    let (dir, host) = empty_host(&["--compile-timeout", "1ms"])?;
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
    assert_eq!(stored_blobs(&dir.path().join("data"))?, 0);
    // The admin API and the data plane answer throughout.
    assert_eq!(host.operator()?.get("/healthz").await?.status, 200);
    let r = berth_e2e::client().get(host.url("/")).send().await?;
    assert_eq!(r.status(), 404);
    Ok(())
}
