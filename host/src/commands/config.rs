//! `berth config SERVICE`: show or change a service's configuration values,
//! secrets and key-value buckets.

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use std::io::BufRead;

use super::client::{Client, s};

/// Show or change a service's config, secrets and buckets.
#[derive(clap::Args)]
pub struct ConfigArgs {
    service: String,
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
        let current = self.send(self.request(reqwest::Method::GET, &path)).await?;
        let changing = !args.set.is_empty()
            || !args.secrets.is_empty()
            || !args.unset.is_empty()
            || args.buckets.is_some();
        let shown = if changing {
            let mut config: Map<String, Value> =
                current["config"].as_object().cloned().unwrap_or_default();
            let mut secrets = Map::new();
            for pair in &args.set {
                let (key, value) = split(pair)?;
                config.insert(key, json!(value));
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
                secrets.insert(key, json!(value));
            }
            for key in &args.unset {
                config.remove(key);
                let is_secret = current["secrets"]
                    .as_array()
                    .is_some_and(|names| names.iter().any(|n| n == key.as_str()));
                if is_secret {
                    secrets.insert(key.clone(), Value::Null);
                }
            }
            let mut change = json!({"config": config, "secrets": secrets});
            if let Some(buckets) = &args.buckets {
                let list: Vec<&str> = buckets
                    .split(',')
                    .map(str::trim)
                    .filter(|b| !b.is_empty())
                    .collect();
                change["buckets"] = json!(list);
            }
            self.send(self.request(reqwest::Method::PUT, &path).json(&change))
                .await?
        } else {
            current
        };
        self.print(&shown, |v| {
            let mut out = String::new();
            if let Some(config) = v["config"].as_object() {
                for (key, value) in config {
                    out.push_str(&format!("{key}={}\n", value.as_str().unwrap_or_default()));
                }
            }
            for name in v["secrets"].as_array().into_iter().flatten() {
                out.push_str(&format!("{}=<secret>\n", name.as_str().unwrap_or_default()));
            }
            out.push_str("buckets: default");
            for bucket in v["buckets"].as_array().into_iter().flatten() {
                out.push_str(&format!(", {}", bucket.as_str().unwrap_or_default()));
            }
            out.push_str(&format!(" (service {})", s(v, "name")));
            out
        });
        Ok(())
    }
}
