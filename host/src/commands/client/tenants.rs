//! `berth tenant ...` and `berth token ...`.

use berth_api::TenantName;
use berth_api::limits::TenantLimits;
use berth_api::tenants::{
    CreatedTenant, CreatedToken, NewTenant, NewToken, TenantUpdate, TenantView, TokenView,
};
use reqwest::Method;
use serde_json::{Value, json};

use super::Client;
use super::table::{list, table};

#[derive(clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its first token (operator).
    Create { name: TenantName },
    /// List tenants (operator).
    List,
    /// Delete a tenant with everything it owns (operator).
    Delete { name: TenantName },
    /// Bind extra domains to a tenant (operator).
    Domains {
        name: TenantName,
        domains: Vec<String>,
    },
    /// Show a tenant's limits, or change them: `memory=64MiB concurrency=8`
    /// (operator to change). Unnamed limits keep their values.
    Limits {
        name: TenantName,
        #[arg(value_name = "LIMIT=VALUE")]
        settings: Vec<String>,
        /// Drop every limit set before, back to the defaults.
        #[arg(long)]
        reset: bool,
    },
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

/// `memory=64MiB` → ("memory", "64MiB"); plain numbers and booleans are
/// read as numbers and booleans.
fn parse_setting(setting: &str) -> anyhow::Result<(String, Value)> {
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

/// `limits` with `settings` applied; an unknown limit or a value that is
/// not one is refused here, before anything is sent.
fn with_settings(limits: &TenantLimits, settings: &[String]) -> anyhow::Result<TenantLimits> {
    let mut fields = match serde_json::to_value(limits)? {
        Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    };
    for setting in settings {
        let (key, value) = parse_setting(setting)?;
        fields.insert(key, value);
    }
    serde_json::from_value(Value::Object(fields)).map_err(|e| anyhow::anyhow!("limits: {e}"))
}

/// One row per limit: its value in force, and whether the operator set it.
fn limits_table(tenant: &TenantView) -> String {
    let as_map = |limits: &TenantLimits| match serde_json::to_value(limits) {
        Ok(Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    let set = as_map(&tenant.limits);
    let mut out = format!("{:<20} {:<14} SET\n", "LIMIT", "VALUE");
    for (key, value) in &as_map(&tenant.effective_limits) {
        let shown = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        let marker = if set.contains_key(key) { "yes" } else { "" };
        out.push_str(&format!("{key:<20} {shown:<14} {marker}\n"));
    }
    out
}

impl Client {
    pub async fn tenant_command(&self, command: TenantCommand) -> anyhow::Result<()> {
        match command {
            TenantCommand::Create { name } => {
                let created: CreatedTenant = self
                    .send(
                        self.request(Method::POST, "/v1/tenants")
                            .json(&NewTenant { name }),
                    )
                    .await?;
                self.print(&created, |c| {
                    format!(
                        "tenant {} created\ntoken: {}\n(the token is shown only now; keep it secret)",
                        c.name, c.token
                    )
                });
            }
            TenantCommand::List => {
                let tenants: Vec<TenantView> =
                    self.send(self.request(Method::GET, "/v1/tenants")).await?;
                self.print(&tenants, |all| {
                    table(
                        &["NAME", "HOST", "DOMAINS"],
                        all.iter()
                            .map(|t| vec![t.name.to_string(), t.host.clone(), list(&t.domains)])
                            .collect(),
                    )
                });
            }
            TenantCommand::Delete { name } => {
                self.send_empty(self.request(Method::DELETE, &format!("/v1/tenants/{name}")))
                    .await?;
                self.print(&Value::Null, |_| format!("tenant {name} deleted"));
            }
            TenantCommand::Domains { name, domains } => {
                let update = TenantUpdate {
                    domains: Some(domains),
                    limits: None,
                };
                let tenant: TenantView = self
                    .send(
                        self.request(Method::PUT, &format!("/v1/tenants/{name}"))
                            .json(&update),
                    )
                    .await?;
                self.print(&tenant, |t| {
                    format!(
                        "tenant {} answers at {} and {}",
                        t.name,
                        t.host,
                        list(&t.domains)
                    )
                });
            }
            TenantCommand::Limits {
                name,
                settings,
                reset,
            } => {
                let path = format!("/v1/tenants/{name}");
                let mut tenant: TenantView = self.send(self.request(Method::GET, &path)).await?;
                if reset || !settings.is_empty() {
                    let base = if reset {
                        TenantLimits::default()
                    } else {
                        tenant.limits.clone()
                    };
                    let update = TenantUpdate {
                        domains: None,
                        limits: Some(with_settings(&base, &settings)?),
                    };
                    tenant = self
                        .send(self.request(Method::PUT, &path).json(&update))
                        .await?;
                }
                self.print(&tenant, limits_table);
            }
        }
        Ok(())
    }

    pub async fn token_command(&self, command: TokenCommand) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        match command {
            TokenCommand::Create { description } => {
                let created: CreatedToken = self
                    .send(
                        self.request(Method::POST, &format!("/v1/tenants/{tenant}/tokens"))
                            .json(&NewToken { description }),
                    )
                    .await?;
                self.print(&created, |t| {
                    format!("token {} created for {tenant}\ntoken: {}", t.id, t.token)
                });
            }
            TokenCommand::List => {
                let tokens: Vec<TokenView> = self
                    .send(self.request(Method::GET, &format!("/v1/tenants/{tenant}/tokens")))
                    .await?;
                self.print(&tokens, |all| {
                    table(
                        &["ID", "DESCRIPTION", "CREATED"],
                        all.iter()
                            .map(|t| {
                                vec![
                                    t.id.clone(),
                                    t.description.clone(),
                                    t.created_at.to_string(),
                                ]
                            })
                            .collect(),
                    )
                });
            }
            TokenCommand::Revoke { id } => {
                self.send_empty(
                    self.request(Method::DELETE, &format!("/v1/tenants/{tenant}/tokens/{id}")),
                )
                .await?;
                self.print(&Value::Null, |_| format!("token {id} revoked"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_what_was_set_and_refuse_unknown_limits() -> anyhow::Result<()> {
        let set = with_settings(&TenantLimits::default(), &["versions=3".into()])?;
        let both = with_settings(&set, &["concurrency=7".into(), "wall_time=20s".into()])?;
        assert_eq!(both.versions, Some(3));
        assert_eq!(both.concurrency, Some(7));
        assert!(both.wall_time.is_some());
        assert!(with_settings(&set, &["memroy=1MiB".into()]).is_err());
        assert!(with_settings(&set, &["memory".into()]).is_err());
        Ok(())
    }
}
