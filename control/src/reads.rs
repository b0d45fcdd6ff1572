//! What the admin API reads, and the token records it keeps: one method per
//! question, so the admin handlers never reach into the store.

use super::{ControlError, ControlPlane};
use crate::store::{ServiceRecord, TenantRecord, TokenRecord};

impl ControlPlane {
    pub async fn tenant(&self, tenant: &str) -> Result<TenantRecord, ControlError> {
        Ok(self.store.tenant(tenant).await?)
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRecord>, ControlError> {
        Ok(self.store.list_tenants().await?)
    }

    /// A tenant's services, those declared in the config file first; a
    /// 404 when the tenant does not exist.
    pub async fn services(&self, tenant: &str) -> Result<Vec<ServiceRecord>, ControlError> {
        self.store.tenant(tenant).await?;
        let mut services = self.declared_records(tenant);
        let stored = self.store.list_services(tenant).await?;
        services.extend(
            stored
                .into_iter()
                .filter(|s| !self.is_declared(tenant, &s.name)),
        );
        Ok(services)
    }

    /// One service, declared or stored; the config file's wins a name both
    /// have, as it does for the route.
    pub async fn service(
        &self,
        tenant: &str,
        service: &str,
    ) -> Result<ServiceRecord, ControlError> {
        match self.declared_record(tenant, service) {
            Some(record) => Ok(record),
            None => Ok(self.store.service(tenant, service).await?),
        }
    }

    /// What the tenant stores (services, versions, component bytes) and
    /// the quotas it runs under; a 404 when the tenant does not exist.
    pub async fn usage_and_quotas(
        &self,
        tenant: &str,
    ) -> Result<(crate::store::Usage, berth_runtime::quotas::TenantQuotas), ControlError> {
        let quotas = self.quotas(tenant).await?;
        Ok((self.store.usage(tenant).await?, quotas))
    }

    /// The tenant's requests running now on this host.
    pub fn in_flight(&self, tenant: &str) -> usize {
        super::lock(&self.gates)
            .get(tenant)
            .map_or(0, |gate| gate.in_flight())
    }

    /// A tenant's tokens, without their secrets; a 404 when the tenant does
    /// not exist.
    pub async fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>, ControlError> {
        self.store.tenant(tenant).await?;
        Ok(self.store.list_tokens(tenant).await?)
    }

    /// Stores a new token of an existing tenant, by the hash of its secret.
    pub async fn add_token(&self, token: &TokenRecord, hash: &str) -> Result<(), ControlError> {
        Ok(self.store.create_token(token, hash).await?)
    }

    pub async fn revoke_token(&self, tenant: &str, id: &str) -> Result<(), ControlError> {
        Ok(self.store.revoke_token(tenant, id).await?)
    }

    /// The token whose secret hashes to `hash`, with the stored hash (for a
    /// constant-time comparison by the caller).
    pub async fn token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(TokenRecord, String)>, ControlError> {
        Ok(self.store.token_by_hash(hash).await?)
    }
}
