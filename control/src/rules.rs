//! The rules a change must pass: names, labels, domains, settings and
//! quotas, and how a refused component is explained.

use super::{ControlError, Usage};
use berth_api::names::check_name;

use crate::store::ServiceSettings;
use berth_runtime::config::validate_config;
use berth_runtime::engine::EngineError;
use berth_runtime::host::HostError;
use berth_runtime::limits::Limits;
use berth_runtime::outbound::{AllowedHost, OutboundPolicy};
use berth_runtime::quotas::TenantQuotas;

pub(super) fn check_counts(
    tenant: &str,
    service: &str,
    quotas: &TenantQuotas,
    usage: &Usage,
    service_exists: bool,
) -> Result<(), ControlError> {
    if !service_exists && usage.services >= quotas.services {
        return Err(ControlError::QuotaExceeded(format!(
            "tenant `{tenant}` has {} services, its limit; delete one before creating `{service}`",
            usage.services
        )));
    }
    if usage.versions >= quotas.versions {
        return Err(ControlError::QuotaExceeded(format!(
            "tenant `{tenant}` has {} versions, its limit; delete old versions before uploading",
            usage.versions
        )));
    }
    Ok(())
}

pub(super) fn storage_exceeded(tenant: &str, quotas: &TenantQuotas, usage: &Usage) -> ControlError {
    ControlError::StorageQuotaExceeded(format!(
        "tenant `{tenant}` stores {} of its {} bytes of components; this upload does not fit (delete old versions)",
        usage.bytes, quotas.storage_bytes
    ))
}

/// Checks bucket names, configuration keys and values, and secret names.
pub(super) fn check_capabilities(settings: &ServiceSettings) -> Result<(), ControlError> {
    for bucket in &settings.buckets {
        check_name(bucket).map_err(|m| ControlError::InvalidInput(format!("buckets: {m}")))?;
    }
    validate_config(&settings.config).map_err(ControlError::InvalidInput)?;
    berth_api::reuse::check_env(&settings.env).map_err(ControlError::InvalidInput)?;
    settings.reuse.check().map_err(ControlError::InvalidInput)?;
    berth_api::events::check_events(&settings.schedules, &settings.subscriptions)
        .map_err(ControlError::InvalidInput)?;
    let names: std::collections::BTreeMap<String, String> = settings
        .secrets
        .keys()
        .map(|k| (k.clone(), String::new()))
        .collect();
    validate_config(&names).map_err(|m| ControlError::InvalidInput(format!("secrets: {m}")))?;
    if let Some(both) = settings
        .secrets
        .keys()
        .find(|k| settings.config.contains_key(*k))
    {
        return Err(ControlError::InvalidInput(format!(
            "`{both}` is set both as config and as a secret; keep one"
        )));
    }
    Ok(())
}

/// Turns stored settings into what an instance runs under: the service's own
/// limits over its tenant's, and never above them (the tenant's may have been
/// lowered since the service set its own).
pub(super) fn resolve_settings(
    settings: &ServiceSettings,
    quotas: &TenantQuotas,
) -> Result<(Limits, OutboundPolicy), ControlError> {
    let allowed = settings
        .allowed_outbound_hosts
        .iter()
        .map(|h| {
            h.parse::<AllowedHost>()
                .map_err(|e| ControlError::InvalidInput(format!("allowed_outbound_hosts: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        quotas
            .instance
            .overridden_by(&settings.limits)
            .within(&quotas.instance),
        OutboundPolicy::new(allowed).allowing_private(quotas.private_outbound),
    ))
}

pub(super) fn validate_domain(domain: &str) -> Result<String, ControlError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(domain)
    } else {
        Err(ControlError::InvalidInput(format!(
            "invalid domain `{}`",
            domain.chars().take(80).collect::<String>()
        )))
    }
}

/// Why a component was refused: what the author must change.
pub(super) fn compile_error(error: HostError) -> ControlError {
    match error {
        HostError::Engine(EngineError::NotAComponent(why)) => {
            ControlError::Unprocessable(why.to_string())
        }
        HostError::Engine(EngineError::Compile(why)) => {
            ControlError::Unprocessable(format!("component failed to compile: {why}"))
        }
        HostError::Engine(EngineError::OverPoolLimit(why)) => ControlError::Unprocessable(why),
        HostError::Link(link) => ControlError::Unprocessable(link.to_string()),
        other => ControlError::Internal(other.to_string()),
    }
}
