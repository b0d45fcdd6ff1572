//! Who receives what: each host's view of the subscriptions and schedules
//! of the services that serve, rebuilt with the routing table.

use berth_api::events::{CronSchedule, ScheduleSpec, SubscriptionSpec};
use std::collections::HashMap;

use crate::store::events::NewDelivery;
use berth_runtime::quotas::EventQuota;

/// One service's event settings, as the plan is built from them.
pub struct ServiceEvents<'a> {
    pub tenant: &'a str,
    pub service: &'a str,
    pub schedules: &'a [ScheduleSpec],
    pub subscriptions: &'a [SubscriptionSpec],
}

/// A subscription of a serving service.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub service: String,
    pub spec: SubscriptionSpec,
}

/// A schedule of a serving service, parsed.
#[derive(Debug, Clone)]
pub struct PlannedSchedule {
    pub tenant: String,
    pub service: String,
    pub spec: ScheduleSpec,
    pub cron: CronSchedule,
    /// Names the schedule in the tick records: a changed expression, zone
    /// or path is a new schedule.
    pub key: String,
}

#[derive(Debug, Default)]
pub struct EventPlan {
    subscribers: HashMap<(String, String), Vec<Subscriber>>,
    schedules: Vec<PlannedSchedule>,
    /// Each tenant's event quotas; a tenant not here has the defaults.
    quotas: HashMap<String, EventQuota>,
}

impl EventPlan {
    pub fn build<'a>(
        services: impl IntoIterator<Item = ServiceEvents<'a>>,
        quotas: HashMap<String, EventQuota>,
    ) -> Self {
        let mut plan = Self {
            quotas,
            ..Self::default()
        };
        for service in services {
            for spec in service.subscriptions {
                plan.subscribers
                    .entry((service.tenant.to_string(), spec.topic.clone()))
                    .or_default()
                    .push(Subscriber {
                        service: service.service.to_string(),
                        spec: spec.clone(),
                    });
            }
            for spec in service.schedules {
                // Settings are checked before they are stored; one that no
                // longer parses (a zone a newer database dropped) is left
                // out rather than stopping the others.
                match spec.parse() {
                    Ok(cron) => plan.schedules.push(PlannedSchedule {
                        tenant: service.tenant.to_string(),
                        service: service.service.to_string(),
                        key: format!("{} {} {}", spec.cron, spec.time_zone, spec.path),
                        spec: spec.clone(),
                        cron,
                    }),
                    Err(error) => tracing::error!(
                        tenant = service.tenant, service = service.service, %error,
                        "schedule left out"
                    ),
                }
            }
        }
        plan
    }

    /// Where an event of `event_type` on the tenant's `topic` goes.
    pub fn deliveries(&self, tenant: &str, topic: &str, event_type: &str) -> Vec<NewDelivery> {
        let key = (tenant.to_string(), topic.to_string());
        self.subscribers
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|s| s.spec.event_type.as_deref().is_none_or(|t| t == event_type))
            .map(|s| NewDelivery {
                service: s.service.clone(),
                path: s.spec.path.clone(),
                max_attempts: s.spec.attempts(),
                backoff_ms: millis(s.spec.first_backoff()),
            })
            .collect()
    }

    /// The tenant's subscriptions, by service.
    pub fn subscriptions(&self, tenant: &str) -> Vec<Subscriber> {
        let mut found: Vec<Subscriber> = self
            .subscribers
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .flat_map(|(_, subs)| subs.iter().cloned())
            .collect();
        found.sort_by(|a, b| (&a.service, &a.spec.topic).cmp(&(&b.service, &b.spec.topic)));
        found
    }

    pub fn quota(&self, tenant: &str) -> EventQuota {
        self.quotas.get(tenant).copied().unwrap_or_default()
    }

    pub fn schedules(&self) -> &[PlannedSchedule] {
        &self.schedules
    }
}

pub(super) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
