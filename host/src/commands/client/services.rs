//! `berth deploy|services|service|rollback|delete|logs`.

use anyhow::{Context, bail};
use berth_api::services::{LogLine, RollbackRequest, ServiceChange, ServiceView, UploadedVersion};
use berth_api::{InstanceReuse, ServiceName, VersionLabel};
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::progress::{Progress, file_chunks, spinner_style};
use super::table::{or_dash, serving, table};
use super::{Client, Output};

/// Upload a component as a new version and activate it.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// The component (`.wasm`, built for wasm32-wasip2).
    file: PathBuf,
    #[arg(long)]
    service: ServiceName,
    /// The version label, e.g. `1.4.2`.
    #[arg(long = "version", value_name = "LABEL")]
    label: VersionLabel,
    /// Path prefix to serve under (default `/SERVICE` on first deploy).
    #[arg(long)]
    route: Option<String>,
    /// Split traffic instead of activating: `LABEL=WEIGHT,...`.
    #[arg(long, value_name = "LABEL=WEIGHT,...")]
    split: Option<String>,
    /// Only upload; leave what serves unchanged.
    #[arg(long)]
    no_activate: bool,
    /// Set the service's environment variables (`wasi:cli/environment`),
    /// replacing the ones it had; repeat for more.
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE", value_parser = crate::commands::key_value)]
    env: Vec<(String, String)>,
    /// Set how the service's instances are reused: requests one instance
    /// serves (1 is a fresh instance per request).
    #[arg(long = "max-instance-reuse", value_name = "N")]
    max_instance_reuse: Option<u32>,
    /// Requests one WASI 0.3 instance serves at once (1 is one after
    /// another).
    #[arg(long = "max-instance-concurrency", value_name = "N")]
    max_instance_concurrency: Option<u32>,
    /// How long an idle instance is kept, when instances are reused.
    #[arg(long = "idle-instance-timeout", value_name = "DURATION")]
    idle_instance_timeout: Option<berth_api::units::DurationSpec>,
    /// Call PATH of the service on a clock: `PATH=CRON[@ZONE]`, six cron
    /// fields with seconds or five, e.g. `/nightly=0 0 2 * * *@Europe/Paris`.
    /// Replaces the service's schedules; repeat for more.
    #[arg(long = "schedule", value_name = "PATH=CRON[@ZONE]", value_parser = crate::commands::events::parse_schedule)]
    schedules: Vec<berth_api::events::ScheduleSpec>,
    /// Deliver the tenant's TOPIC events to PATH: `TOPIC=PATH[:TYPE]`, only
    /// events of TYPE when given. Replaces the service's subscriptions;
    /// repeat for more.
    #[arg(long = "subscribe", value_name = "TOPIC=PATH[:TYPE]", value_parser = crate::commands::events::parse_subscription)]
    subscriptions: Vec<berth_api::events::SubscriptionSpec>,
}

impl DeployArgs {
    /// The reuse policy the flags set, if any flag is given.
    fn reuse(&self) -> Option<InstanceReuse> {
        let reuse = InstanceReuse {
            max_requests: self.max_instance_reuse,
            max_concurrent: self.max_instance_concurrency,
            idle_timeout: self.idle_instance_timeout,
        };
        (!reuse.is_default()).then_some(reuse)
    }
}

/// What `berth deploy -o json` prints.
#[derive(serde::Serialize)]
struct Deployed {
    version: UploadedVersion,
    service: ServiceView,
}

/// A reuse policy in words, as `berth service` shows it.
fn reuse_text(reuse: &InstanceReuse) -> String {
    let requests = reuse.requests();
    if requests <= 1 {
        return "fresh instance per request".into();
    }
    let idle = reuse
        .idle_timeout
        .map_or(berth_runtime::reuse::DEFAULT_IDLE_TIMEOUT, |d| d.0);
    let at_once = match reuse.concurrent() {
        1 => "one at a time".to_string(),
        n => format!("{n} at once for WASI 0.3"),
    };
    format!(
        "up to {requests} requests per instance, {at_once}, kept idle {}s",
        idle.as_secs_f64()
    )
}

/// Items joined by `; `, `-` when there are none.
fn listed(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join("; ")
    }
}

fn parse_split(text: &str) -> anyhow::Result<BTreeMap<VersionLabel, u32>> {
    let mut split = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((label, weight)) = part.split_once('=') else {
            bail!("--split `{part}`: write LABEL=WEIGHT, e.g. 1.0.0=90,1.1.0=10");
        };
        let label: VersionLabel = label
            .trim()
            .parse()
            .with_context(|| format!("--split `{part}`"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("--split `{part}`: the weight must be a whole number"))?;
        split.insert(label, weight);
    }
    if split.is_empty() {
        bail!("--split needs at least one LABEL=WEIGHT");
    }
    Ok(split)
}

impl Client {
    pub async fn deploy(&self, args: DeployArgs) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let split = args.split.as_deref().map(parse_split).transpose()?;
        let reuse = args.reuse();
        if let Some(reuse) = &reuse {
            reuse.check().map_err(|m| anyhow::anyhow!("{m}"))?;
        }
        let env: BTreeMap<String, String> = args.env.iter().cloned().collect();
        berth_api::reuse::check_env(&env).map_err(|m| anyhow::anyhow!("--env: {m}"))?;
        let file = tokio::fs::File::open(&args.file)
            .await
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().await?.len();
        let progress = Progress::new(size);
        let (bar, plain) = (progress.bar.clone(), progress.plain);
        let stream = file_chunks(file).map(move |chunk| {
            if let Ok(bytes) = &chunk {
                bar.inc(bytes.len() as u64);
                if bar.position() >= size && bar.message().is_empty() {
                    bar.set_style(spinner_style());
                    bar.set_message("compiling");
                    if plain {
                        eprintln!("uploaded; the host is compiling");
                    }
                }
            }
            chunk
        });
        let path = format!(
            "/v1/tenants/{tenant}/services/{}/versions/{}",
            args.service, args.label
        );
        let uploaded = self
            .send::<UploadedVersion>(
                self.request(Method::PUT, &path)
                    .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                    .header(reqwest::header::CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(stream)),
            )
            .await;
        progress.bar.finish_and_clear();
        let uploaded = uploaded?;
        progress.step(&format!("compiled in {} ms", uploaded.compile_ms));
        if args.no_activate {
            self.print(&uploaded, |v| {
                format!("uploaded {} {} ({})", args.service, v.label, v.digest)
            });
            return Ok(());
        }
        let (version, split) = match split {
            Some(split) => (None, Some(split)),
            None => (Some(args.label.clone()), None),
        };
        let change = ServiceChange {
            route: args.route.clone(),
            version,
            split,
            env: (!env.is_empty()).then_some(env),
            reuse,
            schedules: (!args.schedules.is_empty()).then(|| args.schedules.clone()),
            subscriptions: (!args.subscriptions.is_empty()).then(|| args.subscriptions.clone()),
            ..ServiceChange::default()
        };
        let service: ServiceView = self
            .send(
                self.request(
                    Method::PUT,
                    &format!("/v1/tenants/{tenant}/services/{}", args.service),
                )
                .json(&change),
            )
            .await?;
        let deployed = Deployed {
            version: uploaded,
            service,
        };
        self.print(&deployed, |d| {
            format!(
                "deployed {} {} ({}) at {}",
                args.service,
                args.label,
                d.version.digest,
                or_dash(d.service.url.as_ref())
            )
        });
        Ok(())
    }

    pub async fn services(&self) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let services: Vec<ServiceView> = self
            .send(self.request(Method::GET, &format!("/v1/tenants/{tenant}/services")))
            .await?;
        self.print(&services, |all| {
            table(
                &["SERVICE", "ROUTE", "SERVING", "FROM", "URL"],
                all.iter()
                    .map(|s| {
                        vec![
                            s.name.to_string(),
                            or_dash(s.route.as_ref()),
                            serving(s),
                            source(s).to_string(),
                            or_dash(s.url.as_ref()),
                        ]
                    })
                    .collect(),
            )
        });
        Ok(())
    }

    pub async fn service(&self, name: &ServiceName) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let service: ServiceView = self
            .send(self.request(
                Method::GET,
                &format!("/v1/tenants/{tenant}/services/{name}"),
            ))
            .await?;
        self.print(&service, |s| {
            let mut out = format!(
                "service {}\nfrom     {}\nroute    {}\nserving  {}\nurl      {}\nreuse    {}\nenv      {}\nschedule {}\nsubscribe {}\n\n",
                s.name,
                source(s),
                or_dash(s.route.as_ref()),
                serving(s),
                or_dash(s.url.as_ref()),
                reuse_text(&s.reuse),
                if s.env.is_empty() {
                    "-".to_string()
                } else {
                    s.env.keys().cloned().collect::<Vec<_>>().join(", ")
                },
                listed(s.schedules.iter().map(|x| format!("{} {} ({})", x.path, x.cron, x.time_zone))),
                listed(s.subscriptions.iter().map(|x| format!(
                    "{} -> {}{}",
                    x.topic,
                    x.path,
                    x.event_type.as_ref().map_or(String::new(), |t| format!(" ({t})"))
                ))),
            );
            out.push_str(&table(
                &["VERSION", "DIGEST", "SIZE"],
                s.versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.label.to_string(),
                            v.digest.to_string(),
                            v.size.to_string(),
                        ]
                    })
                    .collect(),
            ));
            out
        });
        Ok(())
    }

    pub async fn rollback(
        &self,
        name: &ServiceName,
        to: Option<VersionLabel>,
    ) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let service: ServiceView = self
            .send(
                self.request(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/services/{name}/rollback"),
                )
                .json(&RollbackRequest { to }),
            )
            .await?;
        self.print(&service, |s| {
            format!("{} now serves {}", s.name, serving(s))
        });
        Ok(())
    }

    pub async fn delete(&self, name: &ServiceName) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        self.send_empty(self.request(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/services/{name}"),
        ))
        .await?;
        self.print(&Value::Null, |_| format!("service {name} deleted"));
        Ok(())
    }

    pub async fn logs(&self, name: &ServiceName, follow: bool) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let request = self
            .request(
                Method::GET,
                &format!("/v1/tenants/{tenant}/services/{name}/logs"),
            )
            .query(&[("follow", follow)]);
        let response = self.dispatch(request).await?;
        let mut body = response.bytes_stream();
        let mut pending = Vec::new();
        while let Some(chunk) = body.next().await {
            pending.extend_from_slice(&chunk.context("the log stream broke off")?);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = pending.drain(..=end).collect();
                let Ok(line) = serde_json::from_slice::<LogLine>(&raw) else {
                    continue;
                };
                match self.output() {
                    Output::Json => {
                        println!("{}", serde_json::to_string(&line).unwrap_or_default())
                    }
                    Output::Text => println!(
                        "{} {} {} {}",
                        line.version, line.request_id, line.stream, line.message
                    ),
                }
            }
        }
        Ok(())
    }
}

/// Where a service is defined: the host's config file, or the admin API.
fn source(s: &ServiceView) -> &'static str {
    if s.declared {
        "config file"
    } else {
        "admin API"
    }
}
