//! The client verbs: `berth tenant|token|deploy|services|service|rollback|
//! delete|logs`, talking to the admin API named by `BERTH_ADMIN_URL` with the
//! token in `BERTH_TOKEN`.

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach the admin API; every client verb takes these.
#[derive(clap::Args, Clone)]
pub struct ClientFlags {
    /// The admin API of the host.
    #[arg(
        long,
        global = true,
        env = "BERTH_ADMIN_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    admin_url: String,
    /// An operator or tenant token.
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The tenant to act on; by default the token's own tenant (or `default`
    /// for the operator).
    #[arg(long, global = true, env = "BERTH_TENANT")]
    tenant: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "text")]
    output: Output,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its first token (operator).
    Create { name: String },
    /// List tenants (operator).
    List,
    /// Delete a tenant with everything it owns (operator).
    Delete { name: String },
    /// Bind extra domains to a tenant (operator).
    Domains { name: String, domains: Vec<String> },
    /// Show a tenant's limits, or change them: `memory=64MiB concurrency=8`
    /// (operator to change). Unnamed limits keep their values.
    Limits {
        name: String,
        #[arg(value_name = "LIMIT=VALUE")]
        settings: Vec<String>,
        /// Drop every limit set before, back to the defaults.
        #[arg(long)]
        reset: bool,
    },
}

/// `memory=64MiB` → ("memory", "64MiB"); plain numbers and booleans are
/// sent as JSON numbers and booleans.
fn parse_setting(setting: &str) -> anyhow::Result<(String, serde_json::Value)> {
    let Some((key, value)) = setting.split_once('=') else {
        anyhow::bail!("`{setting}` is not LIMIT=VALUE (for example memory=64MiB)");
    };
    let value = match value {
        "true" => json!(true),
        "false" => json!(false),
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
            .parse::<u64>()
            .map_or_else(|_| json!(digits), |n| json!(n)),
        text => json!(text),
    };
    Ok((key.trim().to_string(), value))
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token for the tenant; prints the secret once.
    Create {
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the tenant's tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

/// Upload a component as a new version and activate it.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// The component (`.wasm`, built for wasm32-wasip2).
    file: PathBuf,
    #[arg(long)]
    service: String,
    /// The version label, e.g. `1.4.2`.
    #[arg(long = "version", value_name = "LABEL")]
    label: String,
    /// Path prefix to serve under (default `/SERVICE` on first deploy).
    #[arg(long)]
    route: Option<String>,
    /// Split traffic instead of activating: `LABEL=WEIGHT,...`.
    #[arg(long, value_name = "LABEL=WEIGHT,...")]
    split: Option<String>,
    /// Only upload; leave what serves unchanged.
    #[arg(long)]
    no_activate: bool,
}

pub struct Client {
    http: reqwest::Client,
    flags: ClientFlags,
}

impl Client {
    pub fn new(flags: ClientFlags) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, flags })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.flags.admin_url.trim_end_matches('/'))
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match &self.flags.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends, and turns any failure into one line naming what went wrong.
    pub(super) async fn send(&self, builder: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = self.dispatch(builder).await?;
        let text = response.text().await.unwrap_or_default();
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the admin API answered with invalid JSON")
    }

    /// Sends; a request that cannot be sent or is refused is one line.
    async fn dispatch(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let response = builder.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the admin API at {}: {}",
                self.flags.admin_url,
                root_cause(&e)
            )
        })?;
        failure(response).await
    }

    pub(super) async fn tenant(&self) -> anyhow::Result<String> {
        if let Some(tenant) = &self.flags.tenant {
            return Ok(tenant.clone());
        }
        let me = self
            .send(self.request(reqwest::Method::GET, "/v1/whoami"))
            .await?;
        Ok(me
            .get("tenant")
            .and_then(Value::as_str)
            .unwrap_or(berth::host::DEFAULT_TENANT)
            .to_string())
    }

    pub(super) fn print(&self, value: &Value, text: impl FnOnce(&Value) -> String) {
        match self.flags.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Text => {
                let out = text(value);
                if !out.is_empty() {
                    println!("{}", out.trim_end());
                }
            }
        }
    }

    pub async fn tenant_command(&self, command: TenantCommand) -> anyhow::Result<()> {
        use reqwest::Method;
        match command {
            TenantCommand::Create { name } => {
                let v = self
                    .send(
                        self.request(Method::POST, "/v1/tenants")
                            .json(&json!({"name": name})),
                    )
                    .await?;
                self.print(&v, |v| {
                    format!(
                        "tenant {} created\ntoken: {}\n(the token is shown only now; keep it secret)",
                        s(v, "name"),
                        s(v, "token")
                    )
                });
            }
            TenantCommand::List => {
                let v = self.send(self.request(Method::GET, "/v1/tenants")).await?;
                self.print(&v, |v| {
                    rows(v, &["NAME", "HOST", "DOMAINS"], |t| {
                        vec![s(t, "name"), s(t, "host"), list(t, "domains")]
                    })
                });
            }
            TenantCommand::Delete { name } => {
                let v = self
                    .send(self.request(Method::DELETE, &format!("/v1/tenants/{name}")))
                    .await?;
                self.print(&v, |_| format!("tenant {name} deleted"));
            }
            TenantCommand::Domains { name, domains } => {
                let v = self
                    .send(
                        self.request(Method::PUT, &format!("/v1/tenants/{name}"))
                            .json(&json!({"domains": domains})),
                    )
                    .await?;
                self.print(&v, |v| {
                    format!(
                        "tenant {} answers at {} and {}",
                        s(v, "name"),
                        s(v, "host"),
                        list(v, "domains")
                    )
                });
            }
            TenantCommand::Limits {
                name,
                settings,
                reset,
            } => {
                let path = format!("/v1/tenants/{name}");
                let mut v = self.send(self.request(Method::GET, &path)).await?;
                if reset || !settings.is_empty() {
                    let mut limits = match (&v["limits"], reset) {
                        (serde_json::Value::Object(set), false) => set.clone(),
                        _ => serde_json::Map::new(),
                    };
                    for setting in &settings {
                        let (key, value) = parse_setting(setting)?;
                        limits.insert(key, value);
                    }
                    v = self
                        .send(
                            self.request(Method::PUT, &path)
                                .json(&json!({"limits": limits})),
                        )
                        .await?;
                }
                self.print(&v, |v| {
                    let effective = v["effective_limits"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    let set = v["limits"].as_object().cloned().unwrap_or_default();
                    let mut out = format!("{:<20} {:<14} SET\n", "LIMIT", "VALUE");
                    for (key, value) in &effective {
                        let shown = value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_string);
                        let marker = if set.contains_key(key) { "yes" } else { "" };
                        out.push_str(&format!("{key:<20} {shown:<14} {marker}\n"));
                    }
                    out
                });
            }
        }
        Ok(())
    }

    pub async fn token_command(&self, command: TokenCommand) -> anyhow::Result<()> {
        use reqwest::Method;
        let tenant = self.tenant().await?;
        match command {
            TokenCommand::Create { description } => {
                let v = self
                    .send(
                        self.request(Method::POST, &format!("/v1/tenants/{tenant}/tokens"))
                            .json(&json!({"description": description})),
                    )
                    .await?;
                self.print(&v, |v| {
                    format!(
                        "token {} created for {tenant}\ntoken: {}",
                        s(v, "id"),
                        s(v, "token")
                    )
                });
            }
            TokenCommand::List => {
                let v = self
                    .send(self.request(Method::GET, &format!("/v1/tenants/{tenant}/tokens")))
                    .await?;
                self.print(&v, |v| {
                    rows(v, &["ID", "DESCRIPTION", "CREATED"], |t| {
                        vec![s(t, "id"), s(t, "description"), s(t, "created_at")]
                    })
                });
            }
            TokenCommand::Revoke { id } => {
                let v = self
                    .send(
                        self.request(Method::DELETE, &format!("/v1/tenants/{tenant}/tokens/{id}")),
                    )
                    .await?;
                self.print(&v, |_| format!("token {id} revoked"));
            }
        }
        Ok(())
    }

    pub async fn deploy(&self, args: DeployArgs) -> anyhow::Result<()> {
        use reqwest::Method;
        let tenant = self.tenant().await?;
        let split = args.split.as_deref().map(parse_split).transpose()?;
        let file = tokio::fs::File::open(&args.file)
            .await
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().await?.len();
        let progress = Progress::new(size);
        let bar = progress.bar.clone();
        let stream = tokio_util_stream(file).map(move |chunk| {
            if let Ok(bytes) = &chunk {
                bar.inc(bytes.len() as u64);
                if bar.position() >= size {
                    bar.set_style(spinner_style());
                    bar.set_message("compiling");
                }
            }
            chunk
        });
        let path = format!(
            "/v1/tenants/{tenant}/services/{}/versions/{}",
            args.service, args.label
        );
        let uploaded = self
            .send(
                self.request(Method::PUT, &path)
                    .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                    .header(reqwest::header::CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(stream)),
            )
            .await;
        progress.bar.finish_and_clear();
        let uploaded = uploaded?;
        if args.no_activate {
            self.print(&uploaded, |v| {
                format!(
                    "uploaded {} {} ({})",
                    args.service,
                    s(v, "label"),
                    s(v, "digest")
                )
            });
            return Ok(());
        }
        let mut change = serde_json::Map::new();
        if let Some(route) = &args.route {
            change.insert("route".into(), json!(route));
        }
        match split {
            Some(split) => change.insert("split".into(), json!(split)),
            None => change.insert("version".into(), json!(args.label)),
        };
        let service = self
            .send(
                self.request(
                    Method::PUT,
                    &format!("/v1/tenants/{tenant}/services/{}", args.service),
                )
                .json(&Value::Object(change)),
            )
            .await?;
        let out = json!({"version": uploaded, "service": service});
        self.print(&out, |v| {
            format!(
                "deployed {} {} ({}) at {}",
                args.service,
                args.label,
                s(&v["version"], "digest"),
                s(&v["service"], "url")
            )
        });
        Ok(())
    }

    pub async fn services(&self) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let v = self
            .send(self.request(
                reqwest::Method::GET,
                &format!("/v1/tenants/{tenant}/services"),
            ))
            .await?;
        self.print(&v, |v| {
            rows(v, &["SERVICE", "ROUTE", "SERVING", "URL"], |svc| {
                vec![s(svc, "name"), s(svc, "route"), serving(svc), s(svc, "url")]
            })
        });
        Ok(())
    }

    pub async fn service(&self, name: &str) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let v = self
            .send(self.request(
                reqwest::Method::GET,
                &format!("/v1/tenants/{tenant}/services/{name}"),
            ))
            .await?;
        self.print(&v, |v| {
            let mut out = format!(
                "service {}\nroute    {}\nserving  {}\nurl      {}\n\n",
                s(v, "name"),
                s(v, "route"),
                serving(v),
                s(v, "url")
            );
            out.push_str(&rows(
                &v["versions"],
                &["VERSION", "DIGEST", "SIZE"],
                |ver| vec![s(ver, "label"), s(ver, "digest"), s(ver, "size")],
            ));
            out
        });
        Ok(())
    }

    pub async fn rollback(&self, name: &str, to: Option<String>) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let v = self
            .send(
                self.request(
                    reqwest::Method::POST,
                    &format!("/v1/tenants/{tenant}/services/{name}/rollback"),
                )
                .json(&json!({"to": to})),
            )
            .await?;
        self.print(&v, |v| {
            format!("{} now serves {}", s(v, "name"), serving(v))
        });
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let v = self
            .send(self.request(
                reqwest::Method::DELETE,
                &format!("/v1/tenants/{tenant}/services/{name}"),
            ))
            .await?;
        self.print(&v, |_| format!("service {name} deleted"));
        Ok(())
    }

    pub async fn logs(&self, name: &str, follow: bool) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let request = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/tenants/{tenant}/services/{name}/logs"),
            )
            .query(&[("follow", follow)]);
        let response = self.dispatch(request).await?;
        let mut body = response.bytes_stream();
        let mut pending = Vec::new();
        while let Some(chunk) = body.next().await {
            pending.extend_from_slice(&chunk.context("the log stream broke off")?);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                match self.flags.output {
                    Output::Json => println!("{v}"),
                    Output::Text => println!(
                        "{} {} {} {}",
                        s(&v, "version"),
                        s(&v, "request_id"),
                        s(&v, "stream"),
                        s(&v, "message")
                    ),
                }
            }
        }
        Ok(())
    }
}

/// A response, or its failure as one line: status and the problem's detail.
async fn failure(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string());
    bail!(
        "{} {}: {detail}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

fn parse_split(text: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut split = serde_json::Map::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((label, weight)) = part.split_once('=') else {
            bail!("--split `{part}`: write LABEL=WEIGHT, e.g. 1.0.0=90,1.1.0=10");
        };
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("--split `{part}`: the weight must be a whole number"))?;
        split.insert(label.trim().to_string(), json!(weight));
    }
    if split.is_empty() {
        bail!("--split needs at least one LABEL=WEIGHT");
    }
    Ok(split)
}

/// A progress bar on a terminal, nothing otherwise.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(size: u64) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(size);
            if let Ok(style) = ProgressStyle::with_template(
                "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { bar }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A file as a stream of chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A field as text, `-` when absent.
pub(super) fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

fn list(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

fn serving(svc: &Value) -> String {
    if let Some(active) = svc.get("active").and_then(Value::as_str) {
        return active.to_string();
    }
    match svc.get("split").and_then(Value::as_object) {
        Some(split) => split
            .iter()
            .map(|(label, weight)| format!("{label}={weight}"))
            .collect::<Vec<_>>()
            .join(","),
        None => "-".into(),
    }
}

/// A text table: a header and one row per item, columns aligned.
pub(super) fn rows(v: &Value, header: &[&str], row: impl Fn(&Value) -> Vec<String>) -> String {
    let items = v.as_array().cloned().unwrap_or_default();
    table(header, items.iter().map(row).collect())
}

/// Left-aligned columns, two spaces apart, under a header.
pub(super) fn table(header: &[&str], body: Vec<Vec<String>>) -> String {
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    table.extend(body);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &table {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
