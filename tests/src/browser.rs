//! A headless Chromium driven over the DevTools protocol: just enough to
//! load a page, run script in it and wait for what it shows.

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running browser with one page, closed when dropped.
pub struct Browser {
    child: Child,
    socket: Socket,
    next_id: u64,
    _profile: tempfile::TempDir,
}

fn chromium_binary() -> Result<&'static str> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return Ok(name);
        }
    }
    bail!(
        "no chromium on PATH: the dashboard test needs Debian's `chromium` (`make test` installs it)"
    )
}

impl Browser {
    pub async fn launch() -> Result<Self> {
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(chromium_binary()?)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start chromium")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .context("chromium did not print its DevTools address")?;
        // The page target's socket, from the browser's HTTP endpoint.
        let port = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .context("odd DevTools address")?
            .to_string();
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await?
            .json()
            .await?;
        let page_ws = targets
            .as_array()
            .and_then(|all| all.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .context("chromium has no page")?
            .to_string();
        let (socket, _) = tokio_tungstenite::connect_async(page_ws).await?;
        let mut browser = Self {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        };
        browser.call("Page.enable", json!({})).await?;
        browser.call("Runtime.enable", json!({})).await?;
        Ok(browser)
    }

    /// Sends one DevTools command and waits for its result, skipping events.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params});
        self.socket.send(Message::text(command.to_string())).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .with_context(|| format!("no answer to {method}"))?
                .context("DevTools socket closed")??;
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text)?;
            if value["id"] == id {
                if let Some(error) = value.get("error") {
                    bail!("{method} failed: {error}");
                }
                return Ok(value["result"].clone());
            }
        }
    }

    pub async fn goto(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", json!({"url": url})).await?;
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .await
        .map(|_| ())
    }

    /// Evaluates an expression in the page (awaiting a promise) and
    /// returns its value.
    pub async fn eval(&mut self, expression: &str) -> Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("script failed: {expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls an expression until it is truthy; returns its value.
    pub async fn wait_for(&mut self, expression: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.eval(expression).await?;
            let truthy = match &last {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("timed out after {timeout:?} waiting for `{expression}` (last value {last})")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
