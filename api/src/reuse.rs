//! Instance reuse and environment: how a service's instances live, as
//! people write it in `berth.toml`, the admin API and on the command line.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::units::DurationSpec;

/// Most requests one instance may serve over its life.
pub const MAX_REUSE_REQUESTS: u32 = 100_000;
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
            idle_timeout: Some(DurationSpec(std::time::Duration::from_secs(5))),
        };
        assert_eq!(ok.check(), Ok(()));
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
