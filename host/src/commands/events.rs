//! `berth publish`, `berth topics`, `berth subscriptions`, `berth schedules`
//! and `berth dead-letters`: a tenant's events through the admin API.

use anyhow::Context;
use berth_api::events::{
    DeadLetterList, PublishedEvent, Redriven, ScheduleList, ScheduleSpec, SubscriptionList,
    SubscriptionSpec, TopicList,
};
use reqwest::Method;
use std::io::Read;

use super::client::Client;
use super::client::table::{or_dash, table};

/// `berth publish`'s arguments.
#[derive(clap::Args)]
pub struct PublishArgs {
    pub topic: String,
    /// The event's type (`ce-type`), e.g. `order.placed`.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,
    /// The payload: text, `@FILE`, or `-` for standard input; empty when
    /// left out.
    #[arg(long, value_name = "DATA")]
    pub data: Option<String>,
    /// Events with the same key are delivered in order.
    #[arg(long, value_name = "PARTITION-KEY")]
    pub key: Option<String>,
    /// The event's id (`ce-id`); a new one when left out.
    #[arg(long)]
    pub id: Option<String>,
    /// The payload's media type.
    #[arg(long, value_name = "MEDIA-TYPE", default_value = "application/json")]
    pub content_type: String,
}

fn payload(data: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match data {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the payload from standard input")?;
            Ok(bytes)
        }
        Some(text) => match text.strip_prefix('@') {
            Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}")),
            None => Ok(text.as_bytes().to_vec()),
        },
    }
}

/// `PATH=CRON[@ZONE]`, as `berth deploy --schedule` takes it.
pub fn parse_schedule(text: &str) -> Result<ScheduleSpec, String> {
    let (path, rest) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write PATH=CRON[@ZONE], e.g. /tick=*/5 * * * * *"))?;
    let (cron, zone) = match rest.rsplit_once('@') {
        Some((cron, zone)) => (cron, zone),
        None => (rest, "UTC"),
    };
    let spec = ScheduleSpec {
        cron: cron.trim().to_string(),
        path: path.trim().to_string(),
        time_zone: zone.trim().to_string(),
        missed: Default::default(),
    };
    spec.check()?;
    Ok(spec)
}

/// `TOPIC=PATH[:TYPE]`, as `berth deploy --subscribe` takes it.
pub fn parse_subscription(text: &str) -> Result<SubscriptionSpec, String> {
    let (topic, rest) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write TOPIC=PATH[:TYPE], e.g. orders=/on-order"))?;
    let (path, event_type) = match rest.split_once(':') {
        Some((path, kind)) => (path, Some(kind.to_string())),
        None => (rest, None),
    };
    let spec = SubscriptionSpec {
        topic: topic.trim().to_string(),
        path: path.trim().to_string(),
        event_type,
        max_attempts: None,
        backoff: None,
    };
    spec.check()?;
    Ok(spec)
}

/// A time in milliseconds since the epoch, as RFC 3339.
fn when(ms: Option<i64>) -> String {
    or_dash(ms.map(berth_control::events::cloudevents::time_text))
}

impl Client {
    pub async fn publish(&self, args: PublishArgs) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let mut request = self
            .request(
                Method::POST,
                &format!("/v1/tenants/{tenant}/topics/{}/events", args.topic),
            )
            .header("ce-type", &args.event_type)
            .header("content-type", &args.content_type)
            .body(payload(args.data.as_deref())?);
        if let Some(key) = &args.key {
            request = request.header("partition-key", key);
        }
        if let Some(id) = &args.id {
            request = request.header("ce-id", id);
        }
        let published: PublishedEvent = self.send(request).await?;
        self.print(&published, |p| {
            format!("published {} to {} subscription(s)", p.id, p.deliveries)
        });
        Ok(())
    }

    pub async fn topics(&self) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let list: TopicList = self
            .send(self.request(Method::GET, &format!("/v1/tenants/{tenant}/topics")))
            .await?;
        self.print(&list, |l| {
            table(
                &[
                    "TOPIC",
                    "BACKLOG",
                    "OLDEST",
                    "DEAD",
                    "LAST DELIVERY",
                    "SUBSCRIBERS",
                ],
                l.topics
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.backlog.to_string(),
                            format!("{:.1}s", t.oldest_age_ms as f64 / 1000.0),
                            t.dead_letters.to_string(),
                            when(t.last_delivery_ms),
                            if t.subscriptions.is_empty() {
                                "-".into()
                            } else {
                                t.subscriptions.join(", ")
                            },
                        ]
                    })
                    .collect(),
            )
        });
        Ok(())
    }

    pub async fn subscriptions(&self) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let list: SubscriptionList = self
            .send(self.request(Method::GET, &format!("/v1/tenants/{tenant}/subscriptions")))
            .await?;
        self.print(&list, |l| {
            table(
                &["SERVICE", "TOPIC", "PATH", "TYPE", "ATTEMPTS"],
                l.subscriptions
                    .iter()
                    .map(|s| {
                        vec![
                            s.service.clone(),
                            s.spec.topic.clone(),
                            s.spec.path.clone(),
                            or_dash(s.spec.event_type.as_ref()),
                            s.spec.attempts().to_string(),
                        ]
                    })
                    .collect(),
            )
        });
        Ok(())
    }

    pub async fn schedules(&self) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let list: ScheduleList = self
            .send(self.request(Method::GET, &format!("/v1/tenants/{tenant}/schedules")))
            .await?;
        self.print(&list, |l| {
            table(
                &["SERVICE", "CRON", "ZONE", "PATH", "LAST TICK", "NEXT TICK"],
                l.schedules
                    .iter()
                    .map(|s| {
                        vec![
                            s.service.clone(),
                            s.cron.clone(),
                            s.time_zone.clone(),
                            s.path.clone(),
                            when(s.last_tick_ms),
                            when(s.next_tick_ms),
                        ]
                    })
                    .collect(),
            )
        });
        Ok(())
    }

    pub async fn dead_letters(&self, topic: &str, redrive: bool) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let base = format!("/v1/tenants/{tenant}/topics/{topic}/dead-letters");
        if redrive {
            let done: Redriven = self
                .send(self.request(Method::POST, &format!("{base}/redrive")))
                .await?;
            self.print(&done, |d| format!("redriven {} dead letter(s)", d.redriven));
            return Ok(());
        }
        let list: DeadLetterList = self.send(self.request(Method::GET, &base)).await?;
        self.print(&list, |l| {
            table(
                &[
                    "ID",
                    "TYPE",
                    "SERVICE",
                    "PATH",
                    "ATTEMPTS",
                    "PUBLISHED",
                    "LAST ERROR",
                ],
                l.dead_letters
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.event_type.clone(),
                            d.service.clone(),
                            d.path.clone(),
                            d.attempts.to_string(),
                            when(Some(d.published_ms)),
                            d.last_error.clone(),
                        ]
                    })
                    .collect(),
            )
        });
        Ok(())
    }
}
