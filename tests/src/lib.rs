//! Test harness: start the real `berth` binary on `127.0.0.1:0`, find the
//! components `make components` built, read the host's log and memory use.

pub mod browser;
pub mod collector;
pub mod nats;
pub mod postgres;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A component built by `make components`, by crate name (`hello`,
/// `testing-trap`). Fails with a hint when it has not been built.
pub fn component(name: &str) -> Result<PathBuf> {
    built_component("components/target/wasm32-wasip2/release", name)
}

/// An example service built for WASI 0.3 from the same source, with
/// berth-sdk's `p3` feature (`make components` builds them), by crate name.
pub fn component_p3(name: &str) -> Result<PathBuf> {
    built_component("components/target/p3/wasm32-wasip2/release", name)
}

fn built_component(dir: &str, name: &str) -> Result<PathBuf> {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let path = repo_root().join(dir).join(file);
    if !path.is_file() {
        bail!(
            "component {} is missing: run `make components` first",
            path.display()
        );
    }
    Ok(path)
}

/// A component built by componentize-py (`make components`), by file stem.
pub fn python_component(name: &str) -> Result<PathBuf> {
    let path = repo_root()
        .join("components/target/python")
        .join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!(
            "component {} is missing: run `make components` first",
            path.display()
        );
    }
    Ok(path)
}

/// The `berth` binary of the same build profile as this test.
pub fn berth_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-<hash> → target/<profile>/berth
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("unexpected test binary location")?;
    let bin = profile_dir.join("berth");
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo build -p berth` (make test does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The operator token every test host is started with.
pub const OPERATOR_TOKEN: &str = "berth_op_test_0123456789abcdef";

/// A running `berth` process, killed when dropped.
pub struct BerthProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` of the data plane.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the admin API, for `berth serve`.
    pub admin: Option<String>,
    log: Arc<Mutex<String>>,
    /// Every line the host printed on stdout before it was ready.
    pub banner: String,
    /// A temporary directory the process owns, and its data directory in
    /// it: removed after the process is stopped.
    scratch: Option<(tempfile::TempDir, PathBuf)>,
}

/// How to start a host.
pub struct Launch {
    pub args: Vec<String>,
    pub config: Option<String>,
    pub data_dir: PathBuf,
}

impl BerthProcess {
    /// `berth serve --config <config> --listen 127.0.0.1:0` in `data_dir`.
    pub fn serve(config: &str, data_dir: &Path) -> Result<Self> {
        Self::launch(Launch {
            args: vec![],
            config: Some(config.to_string()),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// `berth serve --config <config>` in a temporary data directory of its
    /// own, removed with the process.
    pub fn serving(config: &str) -> Result<Self> {
        let scratch = tempfile::Builder::new().prefix("berth-e2e-").tempdir()?;
        let data = scratch.path().to_path_buf();
        let mut process = Self::serve(config, &data)?;
        process.scratch = Some((scratch, data));
        Ok(process)
    }

    /// `berth serve` with `extra` flags and no services, in a temporary
    /// data directory of its own (`data_dir`), removed with the process.
    pub fn empty(extra: &[&str]) -> Result<Self> {
        let scratch = tempfile::Builder::new().prefix("berth-e2e-").tempdir()?;
        let data = scratch.path().join("data");
        let mut process = Self::launch(Launch {
            args: extra.iter().map(|a| a.to_string()).collect(),
            config: None,
            data_dir: data.clone(),
        })?;
        process.scratch = Some((scratch, data));
        Ok(process)
    }

    /// The data directory of a host that owns it ([`BerthProcess::empty`],
    /// [`BerthProcess::serving`]).
    pub fn data_dir(&self) -> Result<PathBuf> {
        self.scratch
            .as_ref()
            .map(|(_, data)| data.clone())
            .context("this host's data directory belongs to its test")
    }

    pub fn launch(launch: Launch) -> Result<Self> {
        std::fs::create_dir_all(&launch.data_dir)?;
        let mut cmd = Command::new(berth_bin()?);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&launch.data_dir)
            .env("BERTH_OPERATOR_TOKEN", OPERATOR_TOKEN);
        if let Some(config) = &launch.config {
            let path = launch.data_dir.join("berth.toml");
            std::fs::write(&path, config)?;
            cmd.arg("--config").arg(path);
        }
        cmd.args(&launch.args);
        Self::spawn(cmd)
    }

    /// Starts any berth command that serves, and waits for its address.
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env("BERTH_LOG", "info");
        let mut child = cmd.spawn().context("cannot start berth")?;
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                banner.push_str(&line);
                banner.push('\n');
                // The data plane's line comes last, after the services.
                if !sent && line.contains("data plane listening on http://") {
                    sent = true;
                    let _ = tx.send(banner.clone());
                }
            }
        });
        let banner = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                bail!("berth did not start listening; its log:\n{log}");
            }
        };
        let address = |what: &str| {
            banner
                .lines()
                .find(|l| l.contains(what))
                .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
                .map(|a| a.trim_end_matches('/').to_string())
        };
        let base = address("data plane listening on").context("no address in banner")?;
        let admin = address("admin API listening on");
        let process = Self {
            child,
            base,
            admin,
            log,
            banner,
            scratch: None,
        };
        // stderr is read by another thread: once the log has caught up with
        // the banner, everything logged during start-up is in it.
        if !process.wait_for_log("data plane listening", Duration::from_secs(10)) {
            bail!(
                "berth's log never said it was listening:\n{}",
                process.log()
            );
        }
        Ok(process)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client for this host's admin API with the operator token.
    pub fn operator(&self) -> Result<Admin> {
        self.admin_as(OPERATOR_TOKEN)
    }

    /// A client for this host's admin API with `token`.
    pub fn admin_as(&self, token: &str) -> Result<Admin> {
        Ok(Admin {
            base: self.admin.clone().context("this host has no admin API")?,
            token: token.to_string(),
            http: client(),
        })
    }

    /// A request to the data plane as tenant `tenant` (by `Host` header).
    pub fn tenant_get(&self, tenant: &str, path: &str) -> reqwest::RequestBuilder {
        client()
            .get(self.url(path))
            .header("host", format!("{tenant}.localhost"))
    }

    /// Kills the host with SIGKILL, as a crash would, and waits for it.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits (bounded) for a log line containing every one of `needles`.
    pub fn wait_for_line(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
            {
                return Some(line.to_string());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// The admin listener's `/metrics` text, as a scraper sees it.
    pub async fn metrics_text(&self) -> Result<String> {
        let admin = self
            .admin
            .clone()
            .context("the host has no admin listener")?;
        Ok(client()
            .get(format!("{admin}/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Virtual size (address space reserved) now, in KiB.
    pub fn vsz_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid(), "VmSize:")
    }

    /// Peak resident memory since start or the last [`reset_peak_rss`], KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Resets the peak-RSS counter (Linux `clear_refs` 5).
    pub fn reset_peak_rss(&self) -> Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .context("cannot reset peak RSS")
    }

    /// Stops the host with SIGTERM and waits for it (bounded).
    pub fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("berth did not exit after SIGTERM")
    }
}

impl Drop for BerthProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    line.split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()
        .context("malformed number")
}

/// A `[[service]]` table for a config file.
pub fn service(name: &str, component_crate: &str, route: &str, extra: &str) -> Result<String> {
    let path = component(component_crate)?;
    Ok(format!(
        "[[service]]\nname = \"{name}\"\ncomponent = \"{}\"\nroute = \"{route}\"\n{extra}\n",
        path.display()
    ))
}

/// An HTTP client for tests: no proxy, modest timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The admin API, as one caller.
#[derive(Clone)]
pub struct Admin {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

/// An admin API answer: status and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub content_type: String,
}

impl Answer {
    /// The body as the API type `T`: what a client built on `berth-api`
    /// would read, so a host answering in another shape fails here.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.body.clone())
            .with_context(|| format!("answer is not a {}: {self:?}", std::any::type_name::<T>()))
    }
}

impl Admin {
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        if self.token.is_empty() {
            builder
        } else {
            builder.bearer_auth(&self.token)
        }
    }

    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Answer> {
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response.text().await?;
        let body = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        Ok(Answer {
            status,
            body,
            content_type,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Result<Answer> {
        self.send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> Result<Answer> {
        self.send(self.request(reqwest::Method::PUT, path).json(&body))
            .await
    }

    /// Creates a tenant; returns its token.
    pub async fn create_tenant(&self, name: &str) -> Result<String> {
        let new = berth_api::tenants::NewTenant {
            name: name.parse()?,
        };
        let answer = self
            .send(
                self.request(reqwest::Method::POST, "/v1/tenants")
                    .json(&new),
            )
            .await?;
        if answer.status != 201 {
            bail!("creating tenant {name}: {answer:?}");
        }
        Ok(answer.parse::<berth_api::tenants::CreatedTenant>()?.token)
    }

    /// A tenant as the API shows it; fails unless it is found.
    pub async fn tenant(&self, name: &str) -> Result<berth_api::tenants::TenantView> {
        let answer = self.get(&format!("/v1/tenants/{name}")).await?;
        if answer.status != 200 {
            bail!("tenant {name}: {answer:?}");
        }
        answer.parse()
    }

    /// A service as the API shows it; fails unless it is found.
    pub async fn service(
        &self,
        tenant: &str,
        service: &str,
    ) -> Result<berth_api::services::ServiceView> {
        let answer = self
            .get(&format!("/v1/tenants/{tenant}/services/{service}"))
            .await?;
        if answer.status != 200 {
            bail!("service {service} of {tenant}: {answer:?}");
        }
        answer.parse()
    }

    /// Uploads bytes as a version.
    pub async fn upload(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
        bytes: Vec<u8>,
    ) -> Result<Answer> {
        self.send(
            self.request(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{tenant}/services/{service}/versions/{label}"),
            )
            .header("content-type", "application/wasm")
            .body(bytes),
        )
        .await
    }

    /// Uploads a component and activates it at `route`; fails unless both work.
    pub async fn deploy(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
        component: &Path,
        route: &str,
    ) -> Result<()> {
        let up = self
            .upload(tenant, service, label, std::fs::read(component)?)
            .await?;
        if up.status != 201 && up.status != 200 {
            bail!("upload of {service} {label}: {up:?}");
        }
        let change = berth_api::services::ServiceChange {
            route: Some(route.to_string()),
            version: Some(label.parse()?),
            ..Default::default()
        };
        let set = self
            .send(
                self.request(
                    reqwest::Method::PUT,
                    &format!("/v1/tenants/{tenant}/services/{service}"),
                )
                .json(&change),
            )
            .await?;
        if set.status != 200 {
            bail!("activating {service} {label}: {set:?}");
        }
        set.parse::<berth_api::services::ServiceView>().map(drop)
    }
}
