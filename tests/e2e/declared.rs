//! Services declared in `berth.toml` are visible to every tool as stored
//! services are, marked as declared, and the admin API refuses to change
//! them (the file is their source of truth).

use anyhow::Result;
use berth_api::services::ServiceView;
use berth_e2e::{BerthProcess, Launch, OPERATOR_TOKEN, client, component, service};
use serde_json::json;

use crate::control::cli;

fn declared_host(dir: &std::path::Path) -> Result<BerthProcess> {
    let config = format!(
        "{}{}",
        service("hello", "hello", "/hello", "")?,
        service(
            "caps",
            "testing-capabilities",
            "/caps",
            "[service.config]\ngreeting = \"hi\"\n\n[[service.schedule]]\ncron = \"0 0 2 * * *\"\npath = \"/nightly\"\n"
        )?
    );
    BerthProcess::launch(Launch {
        args: vec![],
        config: Some(config),
        data_dir: dir.to_path_buf(),
    })
}

#[tokio::test]
async fn declared_services_show_everywhere_and_refuse_admin_changes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = declared_host(dir.path())?;
    let admin = host.operator()?;
    let http = client();

    assert_eq!(http.get(host.url("/hello")).send().await?.status(), 200);
    let logged = http
        .post(host.url("/caps/log"))
        .body("a line from a declared service")
        .send()
        .await?;
    assert_eq!(logged.status(), 204);

    // The admin API lists and shows them, marked declared, as they serve.
    let listed: Vec<ServiceView> = admin.get("/v1/tenants/default/services").await?.parse()?;
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["caps", "hello"], "{listed:?}");
    assert!(listed.iter().all(|s| s.declared), "{listed:?}");
    let caps: ServiceView = admin
        .get("/v1/tenants/default/services/caps")
        .await?
        .parse()?;
    let digest = {
        use sha2::Digest;
        let bytes = std::fs::read(component("testing-capabilities")?)?;
        format!("sha256:{:x}", sha2::Sha256::digest(&bytes))
    };
    assert_eq!(caps.versions.len(), 1);
    assert_eq!(caps.versions[0].digest.to_string(), digest);
    assert_eq!(
        caps.active.as_ref().map(ToString::to_string),
        Some(caps.versions[0].label.to_string())
    );
    assert_eq!(caps.route.as_deref(), Some("/caps"));
    assert_eq!(caps.config.get("greeting").map(String::as_str), Some("hi"));
    assert_eq!(caps.schedules.len(), 1);
    assert!(caps.url.as_deref().is_some_and(|u| u.ends_with("/caps")));

    // Their logs and figures.
    let logs = admin
        .request(
            reqwest::Method::GET,
            "/v1/tenants/default/services/caps/logs",
        )
        .send()
        .await?;
    assert_eq!(logs.status(), 200);
    let logs = logs.text().await?;
    assert!(logs.contains("a line from a declared service"), "{logs}");
    let stats = admin
        .get("/v1/tenants/default/services/hello/stats")
        .await?;
    assert_eq!(stats.status, 200, "{stats:?}");
    let stats: serde_json::Value = stats.parse()?;
    assert!(
        stats["windows"]["15m"]["requests"].as_u64() >= Some(1),
        "{stats}"
    );

    // The CLI, through the same API.
    let (code, out, err) = cli(&host, OPERATOR_TOKEN, &["services"])?;
    assert_eq!(code, 0, "{err}");
    let hello_line = out.lines().find(|l| l.starts_with("hello")).unwrap_or("");
    assert!(hello_line.contains("config file"), "{out}");
    let (code, out, err) = cli(&host, OPERATOR_TOKEN, &["logs", "caps"])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a line from a declared service"), "{out}");
    let (code, out, err) = cli(&host, OPERATOR_TOKEN, &["service", "hello", "-o", "json"])?;
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(shown["declared"], json!(true));

    // Every change through the admin API is refused with the reason and
    // the place to change it instead; the service serves on unchanged.
    let path = "/v1/tenants/default/services/hello";
    let changes = [
        admin
            .send(
                admin
                    .request(reqwest::Method::PUT, path)
                    .json(&json!({"config": {"greeting": "changed"}})),
            )
            .await?,
        admin
            .send(
                admin
                    .request(reqwest::Method::PUT, &format!("{path}/versions/2"))
                    .header("content-type", "application/wasm")
                    .body(std::fs::read(component("hello")?)?),
            )
            .await?,
        admin
            .send(
                admin
                    .request(reqwest::Method::POST, &format!("{path}/rollback"))
                    .json(&json!({})),
            )
            .await?,
        admin
            .send(admin.request(reqwest::Method::DELETE, path))
            .await?,
    ];
    for refused in &changes {
        assert_eq!(refused.status, 409, "{refused:?}");
        let detail = refused.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("declared in the config file") && detail.contains("berth.toml"),
            "{refused:?}"
        );
    }
    let (code, _, err) = cli(&host, OPERATOR_TOKEN, &["delete", "hello"])?;
    assert_ne!(code, 0);
    assert!(err.contains("declared in the config file"), "{err}");
    assert_eq!(http.get(host.url("/hello")).send().await?.status(), 200);
    let history = admin.get(&format!("{path}/history")).await?;
    assert_eq!(history.status, 200, "{history:?}");
    Ok(())
}
