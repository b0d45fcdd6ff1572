//! The deploy path without a network or a child process: the control plane
//! over a real SQLite store and a real runtime, in this process. An upload
//! and an activation become a route; a second control plane opened over
//! the same store (a restart) rebuilds the same table from its snapshot;
//! two settings changes at once both land through the store's revision
//! retry; and the rules refuse what they should.

use anyhow::{Context, Result, ensure};
use berth_e2e::component;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_api::{ServiceName, TenantName, VersionLabel};
use berth_control::secrets::{SealedSecret, SecretScope, SecretsKey};
use berth_control::store::blobs::BlobStore;
use berth_control::store::sql::SqlStore;
use berth_control::store::{Deployment, ServiceUpdate, SettingsChange, TokenRecord};
use berth_control::{ControlError, ControlPlane, ControlSettings};
use berth_runtime::host::{Host, HostSettings};
use berth_runtime::logbook::Logbook;

fn key() -> Result<SecretsKey> {
    Ok(SecretsKey::from_hex(&"7".repeat(64))?)
}

/// A control plane over the SQLite store in `dir`, on a runtime of its own.
async fn open(dir: &Path) -> Result<Arc<ControlPlane>> {
    let host = Host::new(&HostSettings::small(dir.to_path_buf()))?;
    let store = Arc::new(SqlStore::open_sqlite(&dir.join("berth.db")).await?);
    let control = ControlPlane::open(
        host,
        store,
        BlobStore::open(dir.join("blobs"))?,
        ControlSettings {
            secrets_key: Some(key()?),
            ..ControlSettings::default()
        },
        Arc::new(Logbook::default()),
        &[],
    )
    .await?;
    Ok(control)
}

/// The version label serving `path` for tenant `acme`, if any.
fn serving(control: &ControlPlane, path: &str) -> Option<String> {
    let table = control.host().registry().snapshot();
    let route = table.route(Some("acme.localhost"), path)?;
    Some(route.backends.pick(0).version.to_string())
}

fn token() -> TokenRecord {
    TokenRecord {
        id: "t1".into(),
        tenant: "acme".into(),
        description: String::new(),
        created_at: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_becomes_a_route_and_a_restart_rebuilds_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let control = open(dir.path()).await?;
    let acme: TenantName = "acme".parse()?;
    control.create_tenant(&acme, &token(), "hash").await?;
    let (web, one): (ServiceName, VersionLabel) = ("web".parse()?, "1".parse()?);
    let bytes = Bytes::from(std::fs::read(component("hello")?)?);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    let uploaded = control.upload_version("acme", &web, &one, body).await?;
    ensure!(uploaded.created && uploaded.version.digest.starts_with("sha256:"));
    ensure!(
        serving(&control, "/web").is_none(),
        "served before activation"
    );
    control
        .configure(
            "acme",
            "web",
            ServiceUpdate {
                route: Some("/web".into()),
                deployment: Some(Deployment::single("1")),
                settings: None,
            },
        )
        .await?;
    ensure!(serving(&control, "/web").as_deref() == Some("1"));

    // A second control plane over the same store, as after a restart,
    // serves the same from the stored snapshot.
    drop(control);
    let again = open(dir.path()).await?;
    ensure!(serving(&again, "/web").as_deref() == Some("1"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_changed_at_once_both_land() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let control = open(dir.path()).await?;
    control
        .create_tenant(&"acme".parse()?, &token(), "hash")
        .await?;
    let web: ServiceName = "web".parse()?;
    let bytes = Bytes::from(std::fs::read(component("hello")?)?);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    control
        .upload_version("acme", &web, &"1".parse()?, body)
        .await?;
    let key = key()?;
    let change = |name: &'static str| -> Result<ServiceUpdate> {
        let scope = SecretScope {
            tenant: "acme",
            service: "web",
            key: name,
        };
        let sealed = SealedSecret::seal(Some(&key), scope, "value")?;
        Ok(ServiceUpdate {
            settings: Some(SettingsChange {
                secrets: BTreeMap::from([(name.to_string(), Some(sealed))]),
                ..SettingsChange::default()
            }),
            ..ServiceUpdate::default()
        })
    };
    // Twenty rounds of two secrets set at once: each round keeps both.
    for round in 0..20 {
        let (a, b) = tokio::join!(
            control.configure("acme", "web", change("first")?),
            control.configure("acme", "web", change("second")?),
        );
        a?;
        b?;
        let record = control.service("acme", "web").await?;
        let names: Vec<&String> = record.settings.secrets.keys().collect();
        ensure!(names == ["first", "second"], "round {round}: {names:?}");
        let mut clear = SettingsChange::default();
        clear.secrets.insert("first".into(), None);
        clear.secrets.insert("second".into(), None);
        control
            .configure(
                "acme",
                "web",
                ServiceUpdate {
                    settings: Some(clear),
                    ..ServiceUpdate::default()
                },
            )
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_refuse_what_they_should() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let control = open(dir.path()).await?;
    control
        .create_tenant(&"acme".parse()?, &token(), "hash")
        .await?;
    fn invalid<T>(result: Result<T, ControlError>) -> bool {
        matches!(
            result,
            Err(ControlError::InvalidInput(_)) | Err(ControlError::Conflict(_))
        )
    }
    // Activating a version that does not exist, a route that is not a
    // path, a split with no weight, a bucket that is not a name.
    let web = "web";
    let bytes = Bytes::from(std::fs::read(component("hello")?)?);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    control
        .upload_version("acme", &web.parse()?, &"1".parse()?, body)
        .await?;
    let update = |route: Option<&str>, deployment: Option<Deployment>| ServiceUpdate {
        route: route.map(str::to_string),
        deployment,
        settings: None,
    };
    let missing = control
        .configure("acme", web, update(None, Some(Deployment::single("9"))))
        .await;
    ensure!(missing.is_err(), "{missing:?}");
    ensure!(invalid(
        control
            .configure("acme", web, update(Some("no-slash"), None))
            .await
    ));
    let zero = Deployment(BTreeMap::from([("1".to_string(), 0)]));
    ensure!(invalid(
        control
            .configure("acme", web, update(None, Some(zero)))
            .await
    ));
    let buckets = ServiceUpdate {
        settings: Some(SettingsChange {
            buckets: Some(vec!["Not A Name".into()]),
            ..SettingsChange::default()
        }),
        ..ServiceUpdate::default()
    };
    ensure!(invalid(control.configure("acme", web, buckets).await));
    let domains = control
        .update_tenant("acme", Some(vec!["not a domain".into()]), None)
        .await;
    ensure!(invalid(domains), "a bad domain was bound");
    // Nothing of it changed what serves: no route yet.
    ensure!(
        control
            .service("acme", web)
            .await
            .context("service")?
            .deployment
            .is_none()
    );
    Ok(())
}
