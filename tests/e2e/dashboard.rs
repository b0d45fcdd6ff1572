//! The operator's view in a real browser (Debian's Chromium): a service's
//! live charts (checked on a screenshot of the rendered page, not only in
//! the DOM), its split drawn, its history with who made each change, a
//! rollback from the versions list, quota use against the limits, and
//! declared services listed beside deployed ones.

use anyhow::{Context, Result, ensure};
use berth_e2e::browser::Browser;
use berth_e2e::{BerthProcess, Launch, client, component, service};
use serde_json::{Value, json};
use std::time::Duration;

/// How many pixels of the chart `id` are drawn in `rgb`, counted on a
/// screenshot the browser takes of that part of the page.
async fn inked_pixels(browser: &mut Browser, id: &str, rgb: [u8; 3]) -> Result<u64> {
    let rect = browser
        .eval(&format!(
            "(() => {{ const e = document.getElementById('{id}'); e.scrollIntoView(); \
             const r = e.getBoundingClientRect(); \
             return JSON.stringify({{x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}}); }})()"
        ))
        .await?;
    let rect: Value = serde_json::from_str(rect.as_str().unwrap_or("{}"))?;
    ensure!(
        rect["width"].as_f64() > Some(10.0),
        "{id} is not shown: {rect}"
    );
    let shot = browser
        .call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": false, "clip": {
                "x": rect["x"], "y": rect["y"], "width": rect["width"],
                "height": rect["height"], "scale": 1}}),
        )
        .await?;
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().context("no screenshot")?)?;
    let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels)?;
    let channels = frame.color_type.samples();
    ensure!(
        frame.bit_depth == png::BitDepth::Eight && channels >= 3,
        "unexpected screenshot format {:?} {:?}",
        frame.color_type,
        frame.bit_depth
    );
    let near = |a: u8, b: u8| a.abs_diff(b) < 40;
    Ok(pixels[..frame.buffer_size()]
        .chunks(channels)
        .filter(|p| near(p[0], rgb[0]) && near(p[1], rgb[1]) && near(p[2], rgb[2]))
        .count() as u64)
}

async fn text(browser: &mut Browser, id: &str) -> Result<String> {
    Ok(browser
        .eval(&format!("document.getElementById('{id}').textContent"))
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn the_dashboard_draws_live_figures_split_history_rollback_and_quotas() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::launch(Launch {
        args: vec![],
        config: Some(service("hello", "hello", "/hello", "")?),
        data_dir: dir.path().to_path_buf(),
    })?;
    let op = host.operator()?;
    let token = op.create_tenant("acme").await?;
    let acme = host.admin_as(&token)?;
    let caps = component("testing-capabilities")?;
    acme.deploy("acme", "p", "1", &caps, "/p").await?;
    let v2 = acme
        .upload("acme", "p", "2", std::fs::read(component("json-api")?)?)
        .await?;
    ensure!(v2.status == 201, "{v2:?}");
    let split = acme
        .put(
            "/v1/tenants/acme/services/p",
            json!({"split": {"1": 50, "2": 50}}),
        )
        .await?;
    ensure!(split.status == 200, "{split:?}");
    let http = client();
    for _ in 0..40 {
        let r = http
            .get(host.url("/p/whoami"))
            .header("host", "acme.localhost")
            .send()
            .await?;
        r.bytes().await?;
    }

    let admin_url = host.admin.clone().context("no admin")?;
    let mut browser = Browser::launch().await?;
    browser.goto(&format!("{admin_url}/ui/")).await?;
    browser
        .eval(&format!(
            "document.getElementById('token').value = {}; document.getElementById('sign-in').click(); true",
            json!(token)
        ))
        .await?;

    // A tenant's token sees its own tenant only: no list of tenants.
    browser
        .wait_for(
            "document.getElementById('who').textContent === 'tenant acme'",
            Duration::from_secs(10),
        )
        .await?;
    assert_eq!(
        browser
            .eval("document.getElementById('tenants-panel').hidden")
            .await?,
        json!(true)
    );

    // Quota use against the limits: two versions of one service.
    let quotas = "document.getElementById('quotas').textContent";
    let quota_text = browser
        .wait_for(
            &format!("{quotas}.includes('Versions') && {quotas}"),
            Duration::from_secs(10),
        )
        .await?;
    let quota_text = quota_text.as_str().unwrap_or_default();
    assert!(quota_text.contains("Versions2 of 1000"), "{quota_text}");
    assert!(quota_text.contains("Services1 of 100"), "{quota_text}");
    let stored = browser
        .eval("document.querySelector('.bar[data-quota=\"storage_bytes\"] span').style.width")
        .await?;
    assert!(stored.as_str().is_some_and(|w| w != "0.0%"), "{stored}");

    // The service's detail: the split drawn, live charts with data.
    let row = "document.querySelector('#services tr[data-service=\"p\"]')";
    browser
        .wait_for(&format!("!!{row}"), Duration::from_secs(10))
        .await?;
    browser.eval(&format!("{row}.click(); true")).await?;
    browser
        .wait_for(
            "document.querySelectorAll('#split-bar span').length === 2",
            Duration::from_secs(10),
        )
        .await?;
    assert_eq!(text(&mut browser, "split-bar").await?, "1 50%2 50%");
    browser
        .wait_for(
            "document.getElementById('requests-15m').textContent === '40'",
            Duration::from_secs(10),
        )
        .await?;
    for (chart, rgb) in [
        ("chart-rate", [0x2f, 0x6d, 0xb5]),
        ("chart-latency", [0xd9, 0x8a, 0x1c]),
        ("chart-cpu", [0x3c, 0x8d, 0x5a]),
        ("chart-memory", [0x8a, 0x4f, 0xb5]),
    ] {
        let inked = inked_pixels(&mut browser, chart, rgb).await?;
        assert!(inked > 20, "{chart} drew {inked} pixels of its line");
    }
    // A chart with no data draws nothing: no errors, so no error line.
    let errors = inked_pixels(&mut browser, "chart-errors", [0xb3, 0x26, 0x1e]).await?;
    assert!(
        errors < 5,
        "the error chart drew {errors} pixels with no errors"
    );

    // History says who deployed what; a rollback from the versions list.
    let history = text(&mut browser, "history").await?;
    assert!(history.contains("token "), "{history}");
    assert!(history.contains("1=50, 2=50 (from 1)"), "{history}");
    browser
        .eval("document.querySelector('#versions tr[data-version=\"2\"] button').click(); true")
        .await?;
    browser
        .wait_for(
            "document.getElementById('split-bar').textContent === '2 100%'",
            Duration::from_secs(10),
        )
        .await?;
    let served = acme.get("/v1/tenants/acme/services/p").await?;
    assert_eq!(served.body["active"], "2", "{served:?}");
    browser
        .wait_for(
            "document.getElementById('history').textContent.includes('rollback')",
            Duration::from_secs(10),
        )
        .await?;
    // And from the history: version 1's upload serves it again.
    browser
        .eval("document.querySelector('#history tr[data-version=\"1\"] button').click(); true")
        .await?;
    browser
        .wait_for(
            "document.getElementById('split-bar').textContent === '1 100%'",
            Duration::from_secs(10),
        )
        .await?;

    // The operator sees the declared service in the default tenant.
    let mut operator = Browser::launch().await?;
    operator.goto(&format!("{admin_url}/ui/")).await?;
    operator
        .eval(&format!(
            "document.getElementById('token').value = {}; document.getElementById('sign-in').click(); true",
            json!(berth_e2e::OPERATOR_TOKEN)
        ))
        .await?;
    let default_row = "document.querySelector('#tenants tbody tr')";
    operator
        .wait_for(&format!("!!{default_row}"), Duration::from_secs(10))
        .await?;
    operator
        .eval(
            "[...document.querySelectorAll('#tenants tbody tr')]\
             .find(r => r.textContent.startsWith('default')).click(); true",
        )
        .await?;
    let hello = "document.querySelector('#services tr[data-service=\"hello\"]')";
    let shown = operator
        .wait_for(
            &format!("{hello} && {hello}.textContent"),
            Duration::from_secs(10),
        )
        .await?;
    assert!(
        shown.as_str().is_some_and(|t| t.contains("config file")),
        "{shown}"
    );
    Ok(())
}
