//! Secrets an older Berth stored unsealed or unbound, sealed again when the
//! host opens its store.

use super::{ControlError, ControlPlane};
use crate::secrets::{SealedSecret, SecretScope};
use crate::store::{ServiceUpdate, SettingsChange};

impl ControlPlane {
    /// Seals again, bound to their place, the secrets an older Berth stored
    /// in plain text or unbound. Run when the host opens its store; a
    /// secret that cannot be opened is left as it is (and logged).
    pub async fn reseal_legacy_secrets(&self) -> Result<usize, ControlError> {
        let Some(key) = self.settings.secrets_key.as_ref() else {
            return Ok(0);
        };
        let mut resealed = 0;
        for tenant in self.store.list_tenants().await? {
            for service in self.store.list_services(&tenant.name).await? {
                let mut change = SettingsChange::default();
                for (name, sealed) in &service.settings.secrets {
                    if !sealed.needs_resealing() {
                        continue;
                    }
                    let scope = SecretScope {
                        tenant: &tenant.name,
                        service: &service.name,
                        key: name,
                    };
                    match sealed
                        .open(Some(key), scope)
                        .and_then(|value| SealedSecret::seal(Some(key), scope, &value))
                    {
                        Ok(again) => {
                            change.secrets.insert(name.clone(), Some(again));
                            resealed += 1;
                        }
                        Err(error) => tracing::error!(
                            tenant = %tenant.name, service = %service.name, key = %name, %error,
                            "cannot reseal a stored secret"
                        ),
                    }
                }
                if !change.secrets.is_empty() {
                    self.store
                        .update_service(
                            &tenant.name,
                            &service.name,
                            ServiceUpdate {
                                route: None,
                                deployment: None,
                                settings: Some(change),
                            },
                        )
                        .await?;
                }
            }
        }
        if resealed > 0 {
            self.store.purge_overwritten().await?;
        }
        Ok(resealed)
    }
}
