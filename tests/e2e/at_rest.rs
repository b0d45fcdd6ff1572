//! What a host leaves on disk: a data directory only its owner can read,
//! and secrets sealed even when the operator gave no key.

use anyhow::{Result, ensure};
use berth_e2e::{BerthProcess, Launch, client, component};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[tokio::test]
async fn data_files_are_private_and_secrets_are_sealed_without_a_key() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    acme.deploy("acme", "a", "1", &component("testing-capabilities")?, "/a")
        .await?;
    let secret = "s3cret-at-rest-7d41";
    let set = acme
        .put(
            "/v1/tenants/acme/services/a",
            json!({"secrets": {"api_key": secret}}),
        )
        .await?;
    ensure!(set.status == 200, "{set:?}");
    let got = client()
        .get(host.url("/a/config/api_key"))
        .header("host", "acme.localhost")
        .send()
        .await?;
    ensure!(got.status() == 200);
    ensure!(got.text().await? == secret);

    let data = host.data_dir()?;
    let mode = |path: &std::path::Path| -> Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    };
    ensure!(mode(&data)? == 0o700, "data dir {:o}", mode(&data)?);
    let key = data.join("secrets-key");
    ensure!(key.is_file(), "no generated secrets key");
    // Everything the host wrote, at any depth, is its owner's alone, and no
    // file holds the secret as it was given.
    let files = walk(&data)?;
    for path in &files {
        let m = mode(path)?;
        ensure!(m & 0o077 == 0, "{} is {m:o}", path.display());
    }
    let files = files.iter().filter(|p| p.is_file()).collect::<Vec<_>>();
    ensure!(files.len() > 3, "only {} files looked at", files.len());
    ensure_nowhere(&data, secret)
}

/// Every file and directory under `dir`, at any depth.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    Ok(found)
}

/// Fails if any file under `data` holds `secret` as it was given.
fn ensure_nowhere(data: &Path, secret: &str) -> Result<()> {
    for path in walk(data)?.iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(path)?;
        ensure!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret in plain text",
            path.display()
        );
    }
    Ok(())
}

/// The settings of `acme`'s service `a`, as the database holds them.
async fn stored_settings(db: &mut sqlx::SqliteConnection) -> Result<serde_json::Value> {
    let (settings,): (String,) =
        sqlx::query_as("SELECT settings FROM services WHERE tenant = 'acme' AND name = 'a'")
            .fetch_one(&mut *db)
            .await?;
    Ok(serde_json::from_str(&settings)?)
}

/// A store an older Berth wrote holds secrets in plain text and sealed
/// without their place: the host seals them again, bound, when it opens
/// the store, leaves no plain copy in its files, and the guest reads the
/// same values.
#[tokio::test]
async fn secrets_an_older_berth_stored_are_sealed_again_on_open() -> Result<()> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    use sqlx::Connection as _;
    // The test keeps the directory: a second host starts on it.
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let launch = || {
        BerthProcess::launch(Launch {
            args: Vec::new(),
            config: None,
            data_dir: data.clone(),
        })
    };
    let host = launch()?;
    let acme = host.admin_as(&host.operator()?.create_tenant("acme").await?)?;
    acme.deploy("acme", "a", "1", &component("testing-capabilities")?, "/a")
        .await?;
    let set = acme
        .put(
            "/v1/tenants/acme/services/a",
            json!({"secrets": {"plain_one": "x", "unbound_one": "x"}}),
        )
        .await?;
    ensure!(set.status == 200, "{set:?}");
    host.stop()?;

    // What an older Berth wrote: one secret as given, one sealed under the
    // same key with no associated data.
    let (plain, unbound) = ("legacy-plain-5b0e91", "legacy-unbound-c27a44");
    let key = hex::decode(std::fs::read_to_string(data.join("secrets-key"))?.trim())?;
    let cipher = chacha20poly1305::XChaCha20Poly1305::new_from_slice(&key)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let nonce = [7u8; 24];
    let sealed = cipher
        .encrypt(
            chacha20poly1305::XNonce::from_slice(&nonce),
            unbound.as_bytes(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let legacy = json!({
        "plain_one": format!("plain:{plain}"),
        "unbound_one": format!("xchacha20poly1305:{}{}", hex::encode(nonce), hex::encode(sealed)),
    });
    let url = format!("sqlite://{}", data.join("berth.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await?;
    let mut settings = stored_settings(&mut db).await?;
    settings["secrets"] = legacy;
    sqlx::query("UPDATE services SET settings = ? WHERE tenant = 'acme' AND name = 'a'")
        .bind(settings.to_string())
        .execute(&mut db)
        .await?;
    db.close().await?;

    let host = launch()?;
    ensure!(
        host.wait_for_log("sealed again", std::time::Duration::from_secs(5)),
        "no reseal logged:\n{}",
        host.log()
    );
    for (name, value) in [("plain_one", plain), ("unbound_one", unbound)] {
        let got = client()
            .get(host.url(&format!("/a/config/{name}")))
            .header("host", "acme.localhost")
            .send()
            .await?;
        ensure!(got.status() == 200, "{name}: {}", got.status());
        ensure!(got.text().await? == value, "{name}");
    }
    // Looked at before this test opens the database again: its connection
    // closing could move the pages itself.
    ensure_nowhere(&data, plain)?;
    let mut db = sqlx::SqliteConnection::connect(&url).await?;
    let stored = stored_settings(&mut db).await?;
    db.close().await?;
    for name in ["plain_one", "unbound_one"] {
        let value = stored["secrets"][name].as_str().unwrap_or_default();
        ensure!(
            value.starts_with("xchacha20poly1305-bound:"),
            "{name} is stored as {value}"
        );
    }
    Ok(())
}

/// The blobs and compiled artifacts of a data directory, by file name.
fn stored_files(data: &std::path::Path) -> Result<(Vec<String>, Vec<String>)> {
    let names = |dir: std::path::PathBuf| -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    };
    Ok((
        names(data.join("blobs/sha256"))?,
        names(data.join("compiled"))?,
    ))
}

#[tokio::test]
async fn stored_bytes_no_version_names_are_deleted() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let data = host.data_dir()?;
    let op = host.operator()?;
    let acme = host.admin_as(&op.create_tenant("acme").await?)?;
    let hello = std::fs::read(component("hello")?)?;
    let echo = std::fs::read(component("echo")?)?;
    let hex = |bytes: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    for (service, label, bytes) in [("a", "1", &hello), ("a", "2", &echo), ("b", "1", &hello)] {
        let up = acme.upload("acme", service, label, bytes.clone()).await?;
        ensure!(up.status == 201, "{up:?}");
    }
    for service in ["a", "b"] {
        let set = acme
            .put(
                &format!("/v1/tenants/acme/services/{service}"),
                json!({"route": format!("/{service}"), "version": "1"}),
            )
            .await?;
        ensure!(set.status == 200, "{set:?}");
    }
    // Cranelift's builds are written in the background after Winch's serve.
    let both_compiled = |files: &[String]| {
        [hex(&hello), hex(&echo)]
            .iter()
            .all(|h| files.iter().any(|f| f.starts_with(h.as_str())))
    };
    for _ in 0..300 {
        if both_compiled(&stored_files(&data)?.1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (blobs, compiled) = stored_files(&data)?;
    ensure!(blobs.len() == 2, "{blobs:?}");
    ensure!(both_compiled(&compiled), "{compiled:?}");

    // echo's bytes are named only by a.2: they go with it.
    ensure!(
        acme.delete("/v1/tenants/acme/services/a/versions/2")
            .await?
            .status
            == 204
    );
    let (blobs, compiled) = stored_files(&data)?;
    ensure!(blobs == [format!("{}.wasm", hex(&hello))], "{blobs:?}");
    ensure!(
        !compiled.iter().any(|f| f.starts_with(&hex(&echo))),
        "{compiled:?}"
    );
    // hello's are named by b.1 still after a goes, and by nothing after b.
    ensure!(acme.delete("/v1/tenants/acme/services/a").await?.status == 204);
    ensure!(stored_files(&data)?.0.len() == 1);
    ensure!(acme.delete("/v1/tenants/acme/services/b").await?.status == 204);
    let (blobs, compiled) = stored_files(&data)?;
    ensure!(
        blobs.is_empty() && compiled.is_empty(),
        "{blobs:?} {compiled:?}"
    );
    Ok(())
}

/// The tenant's request count in its own metrics view.
async fn requests_counted(admin: &berth_e2e::Admin) -> Result<f64> {
    let view = admin.get("/v1/tenants/acme/metrics").await?;
    ensure!(view.status == 200, "{view:?}");
    let text = view.body.as_str().unwrap_or_default().to_string();
    ensure!(
        !text.contains("berth_incarnation"),
        "the incarnation label leaked: {text}"
    );
    Ok(text
        .lines()
        .filter(|l| l.starts_with("berth_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn a_tenant_made_again_under_its_name_sees_nothing_of_the_old_one() -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let op = host.operator()?;
    let request = |method: reqwest::Method, path: &str| {
        client()
            .request(method, host.url(path))
            .header("host", "acme.localhost")
    };
    for round in 0..2 {
        let acme = host.admin_as(&op.create_tenant("acme").await?)?;
        acme.deploy("acme", "a", "1", &component("testing-capabilities")?, "/a")
            .await?;
        // Nothing of round 0 is left for round 1 to see.
        ensure!(requests_counted(&acme).await? == 0.0, "round {round}");
        let logs = acme.get("/v1/tenants/acme/services/a/logs").await?;
        ensure!(
            !logs.body.to_string().contains("the old owner's line"),
            "round {round}: {logs:?}"
        );
        let kept = request(reqwest::Method::GET, "/a/kv/default/k")
            .send()
            .await?;
        ensure!(kept.status() == 404, "round {round}: {}", kept.status());

        let logged = request(reqwest::Method::POST, "/a/log")
            .body("the old owner's line")
            .send()
            .await?;
        ensure!(logged.status().is_success());
        let put = request(reqwest::Method::PUT, "/a/kv/default/k")
            .body("kept")
            .send()
            .await?;
        ensure!(put.status().is_success());
        ensure!(requests_counted(&acme).await? >= 2.0, "round {round}");
        ensure!(op.delete("/v1/tenants/acme").await?.status == 204);
        // A deleted tenant's series leave the host's exposition too.
        let all = host.metrics_text().await?;
        ensure!(!all.contains("tenant=\"acme\""), "round {round}");
    }
    Ok(())
}
