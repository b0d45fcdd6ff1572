//! `berth config SERVICE`: show or change a service's configuration values,
//! secrets and key-value buckets.

use anyhow::{Context, bail};
use berth_api::ServiceName;
use berth_api::services::{ServiceChange, ServiceView};
use std::collections::BTreeMap;
use std::io::BufRead;

use super::client::Client;

/// Show or change a service's config, secrets and buckets.
#[derive(clap::Args)]
pub struct ConfigArgs {
    service: ServiceName,
    /// Values to set, as `KEY=VALUE`; other keys keep theirs.
    #[arg(value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A secret to set, as `KEY=VALUE`, or `KEY=-` to read the value from
    /// standard input (so it stays out of the shell history).
    #[arg(long = "secret", value_name = "KEY=VALUE")]
    secrets: Vec<String>,
    /// A value or secret to remove.
    #[arg(long = "unset", value_name = "KEY")]
    unset: Vec<String>,
    /// The service's key-value buckets besides `default`, comma-separated;
    /// replaces the list.
    #[arg(long, value_name = "NAME,...")]
    buckets: Option<String>,
}

fn split(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => bail!("`{pair}` is not KEY=VALUE"),
    }
}

impl Client {
    pub async fn config(&self, args: ConfigArgs) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let path = format!("/v1/tenants/{tenant}/services/{}", args.service);
        let current: ServiceView = self.send(self.request(reqwest::Method::GET, &path)).await?;
        let changing = !args.set.is_empty()
            || !args.secrets.is_empty()
            || !args.unset.is_empty()
            || args.buckets.is_some();
        let shown = if changing {
            let mut config = current.config.clone();
            let mut secrets = BTreeMap::new();
            for pair in &args.set {
                let (key, value) = split(pair)?;
                config.insert(key, value);
            }
            for pair in &args.secrets {
                let (key, mut value) = split(pair)?;
                if value == "-" {
                    value = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut value)
                        .context("cannot read the secret from standard input")?;
                    value = value.trim_end_matches(['\r', '\n']).to_string();
                }
                secrets.insert(key, Some(value));
            }
            for key in &args.unset {
                config.remove(key);
                if current.secrets.contains(key) {
                    secrets.insert(key.clone(), None);
                }
            }
            let change = ServiceChange {
                config: Some(config),
                secrets: Some(secrets),
                buckets: args.buckets.as_ref().map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|b| !b.is_empty())
                        .map(str::to_string)
                        .collect()
                }),
                ..ServiceChange::default()
            };
            self.send(self.request(reqwest::Method::PUT, &path).json(&change))
                .await?
        } else {
            current
        };
        self.print(&shown, |v| {
            let mut out = String::new();
            for (key, value) in &v.config {
                out.push_str(&format!("{key}={value}\n"));
            }
            for name in &v.secrets {
                out.push_str(&format!("{name}=<secret>\n"));
            }
            out.push_str("buckets: default");
            for bucket in &v.buckets {
                out.push_str(&format!(", {bucket}"));
            }
            out.push_str(&format!(" (service {})", v.name));
            out
        });
        Ok(())
    }
}
