//! A restart serves from the compile cache without recompiling.

use anyhow::Result;
use berth_e2e::{BerthProcess, Launch, client, component, service};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_restart_serves_from_the_compile_cache() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = [
        service("hello", "hello", "/hello", "")?,
        service("echo", "echo", "/echo", "")?,
    ]
    .concat();

    let first = BerthProcess::serve(&config, dir.path())?;
    assert_eq!(
        first.log().matches("component compiled").count(),
        2,
        "{}",
        first.log()
    );
    assert!(!first.log().contains("component loaded from compile cache"));
    first.stop()?;

    let second = BerthProcess::serve(&config, dir.path())?;
    let log = second.log();
    assert_eq!(
        log.matches("component loaded from compile cache").count(),
        2,
        "{log}"
    );
    assert!(
        !log.contains("component compiled"),
        "recompiled on restart:\n{log}"
    );
    let r = client().get(second.url("/hello")).send().await?;
    assert_eq!(r.text().await?, "Hello from Berth!\n");

    // A corrupt cache entry is not trusted: the component is compiled again.
    second.stop()?;
    for entry in std::fs::read_dir(dir.path().join("compiled"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            std::fs::write(&path, b"garbage")?;
        }
    }
    let third = BerthProcess::serve(&config, dir.path())?;
    assert_eq!(
        third.log().matches("component compiled").count(),
        2,
        "{}",
        third.log()
    );
    let r = client().get(third.url("/hello")).send().await?;
    assert_eq!(r.status(), 200);
    Ok(())
}

/// An upload serves from Winch's quick build as soon as it is stored;
/// Cranelift's build, compiled behind it into the cache, then takes over
/// without a request failing, and a restart needs neither compiler.
#[tokio::test]
async fn an_upload_serves_at_once_and_its_optimised_build_takes_over() -> Result<()> {
    // The test keeps the directory: a second host starts on it.
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::launch(Launch {
        args: vec![],
        config: None,
        data_dir: dir.path().join("data"),
    })?;
    let op = host.operator()?;
    op.create_tenant("acme").await?;
    op.deploy("acme", "web", "1", &component("hello")?, "/")
        .await?;
    let get = || host.tenant_get("acme", "/").send();
    assert_eq!(get().await?.text().await?, "Hello from Berth!\n");
    // Until the optimised build is in, and a little after, every request
    // is answered.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.log().contains("serving the optimised build") {
        assert!(
            Instant::now() < deadline,
            "never optimised:\n{}",
            host.log()
        );
        assert_eq!(get().await?.status(), 200);
    }
    for _ in 0..20 {
        assert_eq!(get().await?.text().await?, "Hello from Berth!\n");
    }
    // Only an upload first served from Winch's build is optimised later.
    assert_eq!(host.log().matches("component compiled").count(), 1);
    host.stop()?;

    let again = BerthProcess::launch(Launch {
        args: vec![],
        config: None,
        data_dir: dir.path().join("data"),
    })?;
    assert!(
        !again.log().contains("component compiled"),
        "{}",
        again.log()
    );
    assert_eq!(
        again.tenant_get("acme", "/").send().await?.text().await?,
        "Hello from Berth!\n"
    );
    Ok(())
}
