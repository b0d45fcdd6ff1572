//! A restart serves from the compile cache without recompiling.

use anyhow::Result;
use berth_e2e::{BerthProcess, client, service};

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
