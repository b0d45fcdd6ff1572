//! A whole host started in this process, as a program embedding Berth (or a
//! test that wants no child process) would: a tenant is created and a
//! service deployed over the admin API with `berth-api`'s types, the data
//! plane answers, and shutdown closes both listeners.

use anyhow::{Context, Result, ensure};
use berth_api::services::{ServiceChange, ServiceView, UploadedVersion};
use berth_api::tenants::{CreatedTenant, NewTenant};
use berth_e2e::component;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_started_in_process_deploys_serves_and_stops() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut options = berth::Options::local(dir.path().join("data"));
    options.operator_token = Some("in-process-operator".into());
    let running = berth::start(options).await?;
    let (admin, data) = (format!("http://{}", running.admin_addr), running.data_addr);
    let http = reqwest::Client::builder().no_proxy().build()?;

    let created: CreatedTenant = http
        .post(format!("{admin}/v1/tenants"))
        .bearer_auth("in-process-operator")
        .json(&NewTenant {
            name: "acme".parse()?,
        })
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let uploaded: UploadedVersion = http
        .put(format!(
            "{admin}/v1/tenants/acme/services/web/versions/1.0.0"
        ))
        .bearer_auth(&created.token)
        .header("content-type", "application/wasm")
        .body(std::fs::read(component("hello")?)?)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(uploaded.digest.starts_with("sha256:"));
    let change = ServiceChange {
        route: Some("/web".into()),
        version: Some("1.0.0".parse()?),
        ..ServiceChange::default()
    };
    let service: ServiceView = http
        .put(format!("{admin}/v1/tenants/acme/services/web"))
        .bearer_auth(&created.token)
        .json(&change)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(service.active.as_deref() == Some("1.0.0"), "{service:?}");

    let answer = http
        .get(format!("http://{data}/web"))
        .header("host", "acme.localhost")
        .send()
        .await?;
    ensure!(answer.status() == 200, "{}", answer.status());
    let version = answer
        .headers()
        .get("x-berth-version")
        .context("no version header")?
        .clone();
    ensure!(version == "1.0.0");

    running.shutdown().await;
    ensure!(
        tokio::net::TcpStream::connect(data).await.is_err(),
        "the data plane still accepts connections"
    );
    Ok(())
}
