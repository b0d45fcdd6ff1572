//! Components from other toolchains run unchanged.

use anyhow::Result;
use berth_e2e::{BerthProcess, client, python_component};
use std::time::Duration;

#[tokio::test]
async fn a_python_component_runs_unchanged() -> Result<()> {
    let path = python_component("python_hello")?;
    let config = format!(
        "[[service]]\nname = \"py\"\ncomponent = \"{}\"\nroute = \"/py\"\n",
        path.display()
    );
    let host = BerthProcess::serving(&config)?;
    let r = client().get(host.url("/py/hello?x=1")).send().await?;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str()?.to_string();
    assert_eq!(r.text().await?, "Hello from Python at /py/hello?x=1\n");
    let line = host.wait_for_line(
        &["python guest handling /py/hello?x=1", &id],
        Duration::from_secs(5),
    );
    assert!(
        line.is_some_and(|l| l.contains("service=py")),
        "{}",
        host.log()
    );
    Ok(())
}

#[tokio::test]
async fn a_python_component_uses_key_value_config_and_logging() -> Result<()> {
    let path = python_component("python_kv")?;
    let config = format!(
        "[[service]]\nname = \"pykv\"\ncomponent = \"{}\"\nroute = \"/pykv\"\n\
         [service.config]\ngreeting = \"Hej\"\n",
        path.display()
    );
    let host = BerthProcess::serving(&config)?;
    for visit in 1..=3 {
        let r = client().get(host.url("/pykv")).send().await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await?, format!("Hej, visit {visit}\n"));
    }
    let line = host.wait_for_line(&["python-kv: visit 3"], Duration::from_secs(5));
    assert!(
        line.is_some_and(|l| l.contains("service=pykv")),
        "{}",
        host.log()
    );
    Ok(())
}

#[tokio::test]
async fn a_component_importing_spins_config_name_runs() -> Result<()> {
    let config = berth_e2e::service(
        "spin",
        "testing-spin-config",
        "/spin",
        "[service.config]\ngreeting = \"hello from config\"",
    )?;
    let host = BerthProcess::serving(&config)?;
    let r = client().get(host.url("/spin")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, "hello from config");
    Ok(())
}
