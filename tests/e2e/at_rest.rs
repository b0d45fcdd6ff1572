//! What a host leaves on disk: a data directory only its owner can read,
//! and secrets sealed even when the operator gave no key.

use anyhow::{Result, ensure};
use berth_e2e::{client, component};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

use crate::control::empty_host;

#[tokio::test]
async fn data_files_are_private_and_secrets_are_sealed_without_a_key() -> Result<()> {
    let (dir, host) = empty_host(&[])?;
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

    let data = dir.path().join("data");
    let mode = |path: &std::path::Path| -> Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    };
    ensure!(mode(&data)? == 0o700, "data dir {:o}", mode(&data)?);
    let key = data.join("secrets-key");
    ensure!(key.is_file(), "no generated secrets key");
    // Everything the host wrote, at any depth, is its owner's alone, and no
    // file holds the secret as it was given.
    let mut pending = vec![data.clone()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let m = mode(&path)?;
            ensure!(m & 0o077 == 0, "{} is {m:o}", path.display());
            if path.is_dir() {
                pending.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path)?;
                ensure!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} holds the secret in plain text",
                    path.display()
                );
            }
        }
    }
    ensure!(files > 3, "only {files} files looked at");
    Ok(())
}
