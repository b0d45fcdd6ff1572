//! `wasi:config/store`: a service's configuration values and secrets, read
//! only, under both names guests import it by.

use super::bindings::{config_draft_store, config_store};
use super::state::HostState;

/// The two versions are the same interface; one implementation serves both.
macro_rules! config_host {
    ($store:ident) => {
        impl $store::Host for HostState {
            async fn get(
                &mut self,
                key: String,
            ) -> wasmtime::Result<Result<Option<String>, $store::Error>> {
                Ok(Ok(self.capabilities.config.get(&key).cloned()))
            }

            async fn get_all(
                &mut self,
            ) -> wasmtime::Result<Result<Vec<(String, String)>, $store::Error>> {
                Ok(Ok(self
                    .capabilities
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()))
            }
        }
    };
}

config_host!(config_store);
config_host!(config_draft_store);
