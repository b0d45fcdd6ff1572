//! Services declared in the config file (`berth.toml`). They belong to the
//! default tenant and serve as the file says for the life of the host.
//! Every tool sees them as it sees stored services (the admin API lists
//! them with `declared` set, so the CLI and the dashboard do too), and the
//! admin API refuses to change them: the file is their one source of
//! truth, and a change made over the API would quietly vanish at the next
//! start.

use berth_runtime::config::ServiceSpec;
use berth_runtime::host::{DEFAULT_TENANT, short_digest};

use super::{ControlError, ControlPlane};
use crate::store::{Deployment, ServiceRecord, ServiceSettings, VersionRecord};

/// A declared service as it was loaded.
pub(crate) struct DeclaredService {
    spec: ServiceSpec,
    digest: String,
    size: u64,
    /// Seconds since the Unix epoch.
    loaded_at: i64,
}

impl DeclaredService {
    pub(crate) fn new(spec: ServiceSpec, digest: String) -> Self {
        let size = std::fs::metadata(&spec.component).map_or(0, |m| m.len());
        Self {
            spec,
            digest,
            size,
            loaded_at: crate::store::now_millis() / 1000,
        }
    }

    pub(crate) fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    /// The service as the store would hold it: one version, the file's
    /// component, serving all traffic; its label is the digest's short form.
    fn record(&self) -> ServiceRecord {
        let spec = &self.spec;
        let label = short_digest(&self.digest);
        ServiceRecord {
            tenant: DEFAULT_TENANT.to_string(),
            name: spec.name.clone(),
            route: Some(spec.route.clone()),
            deployment: Some(Deployment::single(&label)),
            previous: None,
            settings: ServiceSettings {
                config: spec.config.clone(),
                limits: spec.written.limits.clone(),
                allowed_outbound_hosts: spec.written.allowed_outbound_hosts.clone(),
                buckets: spec.buckets.clone(),
                env: spec.env.clone(),
                reuse: spec.written.reuse.clone(),
                schedules: spec.schedules.clone(),
                subscriptions: spec.subscriptions.clone(),
                ..ServiceSettings::default()
            },
            versions: vec![VersionRecord {
                label,
                digest: self.digest.clone(),
                size: self.size,
                created_at: self.loaded_at,
            }],
            updated_at: self.loaded_at,
            revision: 0,
        }
    }
}

impl ControlPlane {
    /// Whether `service` of `tenant` is declared in the config file.
    pub fn is_declared(&self, tenant: &str, service: &str) -> bool {
        self.declared_service(tenant, service).is_some()
    }

    fn declared_service(&self, tenant: &str, service: &str) -> Option<&DeclaredService> {
        (tenant == DEFAULT_TENANT)
            .then(|| self.declared.iter().find(|d| d.spec.name == service))
            .flatten()
    }

    /// The declared service's record, if `service` is one.
    pub(crate) fn declared_record(&self, tenant: &str, service: &str) -> Option<ServiceRecord> {
        self.declared_service(tenant, service)
            .map(DeclaredService::record)
    }

    /// The tenant's declared services, by name.
    pub(crate) fn declared_records(&self, tenant: &str) -> Vec<ServiceRecord> {
        if tenant != DEFAULT_TENANT {
            return Vec::new();
        }
        let mut records: Vec<ServiceRecord> =
            self.declared.iter().map(DeclaredService::record).collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// Refuses any change to a declared service, saying where to make it.
    pub(crate) fn refuse_declared(&self, tenant: &str, service: &str) -> Result<(), ControlError> {
        match self.declared_service(tenant, service) {
            Some(declared) => Err(ControlError::Conflict(format!(
                "service `{service}` is declared in the config file ({}); change it there \
                 and restart the host: the admin API does not change declared services",
                declared.spec.declared_at
            ))),
            None => Ok(()),
        }
    }
}
