//! Instance reuse and environment: how a service's instances live, as
//! people write it in `berth.toml`, the admin API and on the command line.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::units::DurationSpec;

/// Most requests one instance may serve over its life.
pub const MAX_REUSE_REQUESTS: u32 = 100_000;
/// Most requests one WASI 0.3 instance may serve at once.
pub const MAX_CONCURRENT_REQUESTS: u32 = 128;
/// Requests one instance serves over its life when only `max_concurrent`
/// is set: what `wasmtime serve` takes for a 0.3 instance.
pub const DEFAULT_SHARED_MAX_REQUESTS: u32 = 128;
/// Longest an idle instance may be kept.
pub const MAX_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// How a service's instances are reused between requests. Every field is
/// optional; left out, a service gets a fresh instance per request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is discarded; `1` (the
    /// default) is a fresh instance for every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Requests one WASI 0.3 instance serves at once (`1`, the default, is
    /// one after another); a WASI 0.2 instance always serves one at a
    /// time. Set alone, instances serve up to 128 requests in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// How long an instance with no request is kept (`"10s"` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<DurationSpec>,
}

impl InstanceReuse {
    /// Checks the bounds; the message names the field at fault.
    pub fn check(&self) -> Result<(), String> {
        if let Some(n) = self.max_requests
            && !(1..=MAX_REUSE_REQUESTS).contains(&n)
        {
            return Err(format!(
                "reuse.max_requests is {n}; use 1 to {MAX_REUSE_REQUESTS}"
            ));
        }
        if let Some(n) = self.max_concurrent {
            if !(1..=MAX_CONCURRENT_REQUESTS).contains(&n) {
                return Err(format!(
                    "reuse.max_concurrent is {n}; use 1 to {MAX_CONCURRENT_REQUESTS}"
                ));
            }
            if let Some(total) = self.max_requests
                && n > total
            {
                return Err(format!(
                    "reuse.max_concurrent is {n} but reuse.max_requests is {total}: \
                     an instance cannot serve more at once than in all"
                ));
            }
        }
        if let Some(idle) = self.idle_timeout
            && (idle.0.is_zero() || idle.0 > MAX_IDLE_TIMEOUT)
        {
            return Err(format!(
                "reuse.idle_timeout is {:?}; use more than 0 and at most {}s",
                idle.0,
                MAX_IDLE_TIMEOUT.as_secs()
            ));
        }
        Ok(())
    }

    /// Requests one instance serves over its life.
    pub fn requests(&self) -> u32 {
        match (self.max_requests, self.max_concurrent) {
            (Some(n), _) => n.max(1),
            (None, Some(c)) if c > 1 => DEFAULT_SHARED_MAX_REQUESTS,
            _ => 1,
        }
    }

    /// Requests one WASI 0.3 instance serves at once.
    pub fn concurrent(&self) -> u32 {
        self.max_concurrent.unwrap_or(1).max(1)
    }

    /// Whether anything is set.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Most environment variables one service may set.
pub const MAX_ENV_VARS: usize = 256;
/// Most bytes of names and values together.
pub const MAX_ENV_BYTES: usize = 64 * 1024;

/// Checks a service's environment variables: names of letters, digits and
/// `_` not starting with a digit, values without NUL, bounded in count and
/// size.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<(), String> {
    if env.len() > MAX_ENV_VARS {
        return Err(format!(
            "env has {} variables; the limit is {MAX_ENV_VARS}",
            env.len()
        ));
    }
    let mut bytes = 0;
    for (name, value) in env {
        let name_ok = !name.is_empty()
            && name.len() <= 256
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(format!(
                "invalid environment variable name `{}`: use letters, digits and `_`, not starting with a digit",
                name.chars().take(80).collect::<String>()
            ));
        }
        if value.contains('\0') {
            return Err(format!("environment variable `{name}` contains a NUL byte"));
        }
        bytes += name.len() + value.len();
    }
    if bytes > MAX_ENV_BYTES {
        return Err(format!(
            "env holds {bytes} bytes; the limit is {MAX_ENV_BYTES}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let ok = InstanceReuse {
            max_requests: Some(128),
            max_concurrent: Some(16),
            idle_timeout: Some(DurationSpec(std::time::Duration::from_secs(5))),
        };
        assert_eq!(ok.check(), Ok(()));
        let alone = InstanceReuse {
            max_concurrent: Some(16),
            ..Default::default()
        };
        assert_eq!((alone.requests(), alone.concurrent()), (128, 16));
        assert_eq!(InstanceReuse::default().requests(), 1);
        let more_at_once = InstanceReuse {
            max_requests: Some(4),
            max_concurrent: Some(8),
            ..Default::default()
        };
        assert!(
            more_at_once
                .check()
                .is_err_and(|m| m.contains("max_concurrent"))
        );
        let too_many = InstanceReuse {
            max_concurrent: Some(1000),
            ..Default::default()
        };
        assert!(
            too_many
                .check()
                .is_err_and(|m| m.contains("max_concurrent"))
        );
        let zero = InstanceReuse {
            max_requests: Some(0),
            ..Default::default()
        };
        assert!(zero.check().is_err_and(|m| m.contains("max_requests")));
        let idle = InstanceReuse {
            idle_timeout: Some(DurationSpec(std::time::Duration::from_secs(3600))),
            ..Default::default()
        };
        assert!(idle.check().is_err_and(|m| m.contains("idle_timeout")));
    }

    #[test]
    fn env_names_are_checked() {
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(check_env(&env("GREETING", "hi")), Ok(()));
        assert!(check_env(&env("A=B", "x")).is_err());
        assert!(check_env(&env("1A", "x")).is_err());
        assert!(check_env(&env("", "x")).is_err());
        assert!(check_env(&env("A", "x\0y")).is_err());
    }
}
