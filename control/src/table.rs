//! Making the stored state live: link what is missing, build the routing
//! table with each version's limits, gate and capabilities, swap it in.

use std::collections::HashMap;
use std::sync::Arc;

use super::compile::Tier;
use super::rules::resolve_settings;
use super::{ControlError, ControlPlane, lock};
use crate::store::{Deployment, ServiceRecord, Snapshot};
use berth_runtime::admission::{TenantGate, default_cpu_slots};
use berth_runtime::capabilities::ServiceCapabilities;
use berth_runtime::host::DEFAULT_TENANT;
use berth_runtime::invoke::ServiceVersion;
use berth_runtime::quotas::TenantQuotas;
use berth_runtime::reuse::{ReuseKey, ReusePolicy};
use berth_runtime::router::{Backends, Route, RoutingTableBuilder};

impl ControlPlane {
    /// Rebuilds the routing table from the store and swaps it in. Versions
    /// not yet linked in this process are loaded from their blobs (and the
    /// compile cache).
    pub async fn apply(&self) -> Result<(), ControlError> {
        self.make_live(false).await
    }

    /// Rebuilds the routing table even if the stored state is unchanged:
    /// for when the code of a version changed (an optimised build).
    pub(super) async fn rebuild(&self) -> Result<(), ControlError> {
        self.make_live(true).await
    }

    async fn make_live(&self, always: bool) -> Result<(), ControlError> {
        let mut applied = self.applied.lock().await;
        let snapshot = self.store.snapshot().await?;
        if !always && snapshot.generation <= *applied && *applied >= 0 {
            return Ok(());
        }
        self.link_missing(&snapshot).await?;
        let table = self.build_table(&snapshot);
        self.host.registry().replace(table);
        self.events.set_plan(self.event_plan(&snapshot));
        *applied = snapshot.generation;
        Ok(())
    }

    /// The schedules and subscriptions of every service that serves.
    fn event_plan(&self, snapshot: &Snapshot) -> crate::events::plan::EventPlan {
        use crate::events::plan::{EventPlan, ServiceEvents};
        let stored = snapshot
            .services
            .iter()
            .filter(|s| s.deployment.is_some())
            .map(|s| ServiceEvents {
                tenant: &s.tenant,
                service: &s.name,
                schedules: &s.settings.schedules,
                subscriptions: &s.settings.subscriptions,
            });
        let declared = self.declared.iter().map(|d| ServiceEvents {
            tenant: DEFAULT_TENANT,
            service: &d.spec().name,
            schedules: &d.spec().schedules,
            subscriptions: &d.spec().subscriptions,
        });
        let quotas = snapshot
            .tenants
            .iter()
            .map(|t| {
                let quotas = TenantQuotas::from_limits(&t.limits).unwrap_or_default();
                (t.name.clone(), quotas.events)
            })
            .collect();
        EventPlan::build(declared.chain(stored), quotas)
    }

    async fn link_missing(&self, snapshot: &Snapshot) -> Result<(), ControlError> {
        let mut missing: Vec<String> = Vec::new();
        for service in &snapshot.services {
            for label in service.deployment.iter().flat_map(Deployment::labels) {
                if let Some(v) = service.version(label)
                    && !missing.contains(&v.digest)
                    && self.compiler.linked(&v.digest).is_none()
                {
                    missing.push(v.digest.clone());
                }
            }
        }
        for digest in missing {
            let bytes = match self.component_bytes(&digest).await {
                Ok(bytes) => bytes,
                Err(ControlError::Store(error)) if error.is_unavailable() => {
                    return Err(error.into());
                }
                Err(error) => {
                    tracing::error!(%digest, %error, "cannot load a deployed version");
                    continue;
                }
            };
            match self.compiler.tiered("", bytes).await {
                Ok(Tier::Full(pre)) => self.compiler.keep(digest, pre),
                Ok(Tier::Quick(pre, bytes)) => {
                    self.compiler.keep(digest.clone(), pre);
                    self.optimise_in_background("", digest, bytes);
                }
                // One broken blob must not keep every other service down.
                Err(error) => {
                    tracing::error!(%digest, %error, "cannot load a deployed version")
                }
            }
        }
        Ok(())
    }

    fn build_table(&self, snapshot: &Snapshot) -> berth_runtime::router::RoutingTable {
        let mut builder = RoutingTableBuilder::new(&self.settings.base_domain, DEFAULT_TENANT);
        let mut tenants: HashMap<&str, (TenantQuotas, Arc<TenantGate>)> = HashMap::new();
        for tenant in &snapshot.tenants {
            builder.tenant(&tenant.name, &tenant.domains);
            let quotas = TenantQuotas::from_limits(&tenant.limits).unwrap_or_else(|error| {
                tracing::error!(tenant = %tenant.name, %error, "stored quotas are invalid; using defaults");
                TenantQuotas::default()
            });
            let gate = self.gate(&tenant.name, &quotas);
            tenants.insert(&tenant.name, (quotas, gate));
        }
        self.forget_gates(&tenants);
        let default = tenants.get(DEFAULT_TENANT).cloned().unwrap_or_else(|| {
            (
                TenantQuotas::default(),
                self.gate(DEFAULT_TENANT, &TenantQuotas::default()),
            )
        });
        for route in &self.static_routes {
            let backends = route.backends.map_versions(|v| {
                let mut limited = v.with_gate(Arc::clone(&default.1));
                limited.limits = v.limits.within(&default.0.instance);
                // Its guest logs go to the logbook, as a stored service's do.
                let log = self.logbook.service(DEFAULT_TENANT, &v.service);
                limited.log_rate = log.rate();
                limited.log = Some(log);
                limited.capabilities = Arc::new(ServiceCapabilities {
                    kv_quota: default.0.kv,
                    ..(*v.capabilities).clone()
                });
                limited
            });
            builder.route(
                DEFAULT_TENANT,
                Route {
                    prefix: route.prefix.clone(),
                    backends,
                },
            );
        }
        for service in &snapshot.services {
            let (Some(route), Some(deployment)) = (&service.route, &service.deployment) else {
                continue;
            };
            let Some((quotas, gate)) = tenants.get(service.tenant.as_str()) else {
                continue;
            };
            let Ok((limits, outbound)) = resolve_settings(&service.settings, quotas) else {
                tracing::error!(tenant = %service.tenant, service = %service.name, "stored settings are invalid; not serving");
                continue;
            };
            let outbound = Arc::new(outbound);
            let tenant: Arc<str> = Arc::from(service.tenant.as_str());
            let name: Arc<str> = Arc::from(service.name.as_str());
            let log = self.logbook.service(&service.tenant, &service.name);
            let capabilities = Arc::new(ServiceCapabilities {
                tenant: Arc::clone(&tenant),
                service: Arc::clone(&name),
                kv: Arc::clone(self.host.kv()),
                buckets: ServiceCapabilities::buckets(&service.settings.buckets),
                kv_quota: quotas.kv,
                config: self.guest_config(service),
                env: service
                    .settings
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                kv_ops: self.host.telemetry().kv(&service.tenant, &service.name),
            });
            let mut versions = Vec::new();
            for (label, weight) in &deployment.0 {
                let Some(pre) = service
                    .version(label)
                    .and_then(|v| self.compiler.linked(&v.digest).map(|pre| (v, pre)))
                else {
                    continue;
                };
                versions.push((
                    *weight,
                    Arc::new(ServiceVersion {
                        tenant: Arc::clone(&tenant),
                        service: Arc::clone(&name),
                        version: Arc::from(label.as_str()),
                        digest: pre.0.digest.clone(),
                        limits,
                        outbound: Arc::clone(&outbound),
                        log_rate: log.rate(),
                        log: Some(Arc::clone(&log)),
                        metrics: self.host.telemetry().version(
                            &service.tenant,
                            &service.name,
                            label,
                        ),
                        gate: Arc::clone(gate),
                        capabilities: Arc::clone(&capabilities),
                        pre: pre.1.clone(),
                        reuse: ReusePolicy::from_spec(&service.settings.reuse),
                        reuse_key: ReuseKey::next(),
                    }),
                ));
            }
            if let Some(backends) = Backends::weighted(versions) {
                builder.route(
                    &service.tenant,
                    Route {
                        prefix: route.clone(),
                        backends,
                    },
                );
            }
        }
        builder.build()
    }
}

impl ControlPlane {
    /// What a service's guests read through `wasi:config`: its values and
    /// its secrets, opened. A secret that cannot be opened is left out (and
    /// logged without its value), so the guest sees it as unset.
    fn guest_config(&self, service: &ServiceRecord) -> std::collections::BTreeMap<String, String> {
        let mut config = service.settings.config.clone();
        for (key, sealed) in &service.settings.secrets {
            let scope = crate::secrets::SecretScope {
                tenant: &service.tenant,
                service: &service.name,
                key,
            };
            match sealed.open(self.settings.secrets_key.as_ref(), scope) {
                Ok(value) => {
                    config.insert(key.clone(), value);
                }
                Err(error) => tracing::error!(
                    tenant = %service.tenant, service = %service.name, key, %error,
                    "secret left out of the service's configuration"
                ),
            }
        }
        config
    }

    /// The tenant's gate: the current one while it enforces these quotas, so
    /// requests in flight stay counted, else a new one.
    fn gate(&self, tenant: &str, quotas: &TenantQuotas) -> Arc<TenantGate> {
        let slots = default_cpu_slots();
        let share = self.host.max_instances_per_tenant();
        let mut gates = lock(&self.gates);
        match gates.get(tenant) {
            Some(gate) if gate.enforces(quotas, slots, share) => Arc::clone(gate),
            _ => {
                let gate = Arc::new(TenantGate::new(quotas, slots, share));
                gates.insert(tenant.to_string(), Arc::clone(&gate));
                gate
            }
        }
    }

    fn forget_gates<V>(&self, live: &HashMap<&str, V>) {
        lock(&self.gates).retain(|tenant, _| live.contains_key(tenant.as_str()));
    }
}
