//! The client verbs: `berth tenant|token|deploy|services|service|rollback|
//! delete|logs|config|stats`, talking to the admin API named by
//! `BERTH_ADMIN_URL` with the token in `BERTH_TOKEN`. Requests and answers
//! are the types of `berth-api`, the same ones the host's handlers use.

mod progress;
mod services;
pub mod table;
mod tenants;

pub use services::DeployArgs;
pub use tenants::{TenantCommand, TokenCommand};

use anyhow::{Context, bail};
use berth_api::tenants::WhoAmI;
use berth_api::{Problem, TenantName};
use serde::Serialize;
use serde::de::DeserializeOwned;
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
    tenant: Option<TenantName>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "text")]
    output: Output,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
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

    pub(super) fn output(&self) -> Output {
        self.flags.output
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match &self.flags.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends, and reads the answer as `T`; any failure is one line naming
    /// what went wrong.
    pub(super) async fn send<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.dispatch(builder).await?;
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str(&text).context("the admin API answered with unexpected JSON")
    }

    /// Sends a request whose answer has no body (`204`).
    pub(super) async fn send_empty(&self, builder: reqwest::RequestBuilder) -> anyhow::Result<()> {
        self.dispatch(builder).await.map(drop)
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

    /// The tenant to act on: `--tenant`, else the token's own.
    pub(super) async fn tenant(&self) -> anyhow::Result<TenantName> {
        if let Some(tenant) = &self.flags.tenant {
            return Ok(tenant.clone());
        }
        let me: WhoAmI = self
            .send(self.request(reqwest::Method::GET, "/v1/whoami"))
            .await?;
        match me.tenant {
            Some(tenant) => Ok(tenant),
            None => Ok(berth_runtime::host::DEFAULT_TENANT.parse()?),
        }
    }

    /// Prints `value` as JSON with `-o json`, else as `text` makes it.
    pub(super) fn print<T: Serialize>(&self, value: &T, text: impl FnOnce(&T) -> String) {
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
}

/// A response, or its failure as one line: status and the problem's detail.
async fn failure(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Problem>(&text)
        .map(|p| p.detail)
        .unwrap_or_else(|_| text.trim().to_string());
    bail!(
        "{} {}: {detail}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
