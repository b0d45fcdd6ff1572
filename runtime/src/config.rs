//! `berth.toml`: the declarative way to run services on one host.
//!
//! ```toml
//! [[service]]
//! name = "hello"
//! component = "components/target/wasm32-wasip2/release/hello.wasm"
//! route = "/hello"
//! allowed_outbound_hosts = ["api.example.com", "127.0.0.1:9000"]
//! private_outbound = true   # 127.0.0.1 is a loopback address
//!
//! buckets = ["sessions"]  # key-value buckets besides `default`
//!
//! [service.limits]
//! memory = "64MiB"
//! cpu_time = "500ms"
//!
//! [service.config]            # read through wasi:config/store
//! greeting = "Hello"
//!
//! [service.env]               # read through wasi:cli/environment
//! RUST_LOG = "info"
//!
//! [service.reuse]             # a fresh instance per request if left out
//! max_requests = 128
//! idle_timeout = "10s"
//!
//! [[service.schedule]]        # POST /tick every 2 seconds
//! cron = "*/2 * * * * *"
//! path = "/tick"
//! time_zone = "UTC"
//!
//! [[service.subscription]]    # events of the topic `orders`, as requests
//! topic = "orders"
//! path = "/on-order"
//! type = "order.placed"       # only this ce-type
//! ```
//!
//! Every problem is reported with the file and line at fault, before the host
//! binds any socket.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

use crate::limits::Limits;
use crate::outbound::{AllowedHost, OutboundPolicy};
use crate::reuse::ReusePolicy;
use berth_api::events::{ScheduleSpec, SubscriptionSpec, check_events};
use berth_api::limits::ServiceLimits;
use berth_api::names::check_name;
use berth_api::reuse::{InstanceReuse, check_env};

/// A config file that could not be used, with the place at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One service, ready to load: names checked, limits resolved, the component
/// path made absolute.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub component: PathBuf,
    pub route: String,
    pub limits: Limits,
    pub outbound: OutboundPolicy,
    /// Key-value buckets besides `default`.
    pub buckets: Vec<String>,
    /// Configuration values the guest reads through `wasi:config/store`.
    pub config: BTreeMap<String, String>,
    /// Environment variables the guest reads through `wasi:cli/environment`.
    pub env: BTreeMap<String, String>,
    /// How the service's instances are reused between requests.
    pub reuse: ReusePolicy,
    /// Paths called on a clock.
    pub schedules: Vec<ScheduleSpec>,
    /// Topics of the default tenant whose events the service receives.
    pub subscriptions: Vec<SubscriptionSpec>,
    /// Where this service is declared (`file:line`), for errors found later,
    /// such as a component that fails to compile.
    pub declared_at: String,
    /// The settings as the file writes them, for the admin API to show.
    pub written: WrittenSettings,
}

/// A declared service's limits, outbound hosts and reuse as written, before
/// they are resolved against the defaults.
#[derive(Debug, Clone, Default)]
pub struct WrittenSettings {
    pub limits: ServiceLimits,
    pub allowed_outbound_hosts: Vec<String>,
    pub reuse: InstanceReuse,
}

impl ServiceSpec {
    /// A service with every setting at its default: no outbound hosts, no
    /// buckets beyond `default`, no config or env, a fresh instance per
    /// request.
    pub fn new(name: &str, component: impl Into<PathBuf>, route: &str) -> Self {
        Self {
            name: name.to_string(),
            component: component.into(),
            route: route.to_string(),
            limits: Limits::default(),
            outbound: OutboundPolicy::default(),
            buckets: Vec::new(),
            config: BTreeMap::new(),
            env: BTreeMap::new(),
            reuse: ReusePolicy::FRESH,
            schedules: Vec::new(),
            subscriptions: Vec::new(),
            declared_at: name.to_string(),
            written: WrittenSettings::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    component: Spanned<String>,
    #[serde(default)]
    route: Option<Spanned<String>>,
    #[serde(default)]
    limits: ServiceLimits,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    /// Lets the allowed hosts resolve to loopback, private and link-local
    /// addresses; off by default.
    #[serde(default)]
    private_outbound: bool,
    #[serde(default)]
    buckets: Vec<Spanned<String>>,
    #[serde(default)]
    config: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    env: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    reuse: Option<Spanned<InstanceReuse>>,
    #[serde(default)]
    schedule: Vec<Spanned<ScheduleSpec>>,
    #[serde(default)]
    subscription: Vec<Spanned<SubscriptionSpec>>,
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Vec<ServiceSpec>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, path, base)
}

/// Parses config text; `path` names it in errors and `base` anchors relative
/// component paths.
pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Vec<ServiceSpec>, ConfigError> {
    let invalid = |offset: usize, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: line_of(text, offset),
        message,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        invalid(offset, e.message().to_string())
    })?;
    if raw.service.is_empty() {
        return Err(invalid(
            0,
            "no services declared: add at least one [[service]] table".into(),
        ));
    }

    let mut specs: Vec<ServiceSpec> = Vec::with_capacity(raw.service.len());
    for entry in raw.service {
        let at = entry.span().start;
        let raw = entry.into_inner();

        let name = raw.name.get_ref();
        check_name(name).map_err(|m| invalid(raw.name.span().start, m.to_string()))?;
        if specs.iter().any(|s| &s.name == name) {
            return Err(invalid(
                raw.name.span().start,
                format!("service `{name}` is declared twice"),
            ));
        }

        let route = match &raw.route {
            Some(r) => normalize_route(r.get_ref()).map_err(|m| invalid(r.span().start, m))?,
            None => format!("/{name}"),
        };
        if let Some(other) = specs.iter().find(|s| s.route == route) {
            let offset = raw.route.as_ref().map_or(at, |r| r.span().start);
            return Err(invalid(
                offset,
                format!(
                    "route `{route}` is already taken by service `{}`",
                    other.name
                ),
            ));
        }

        let component = base.join(raw.component.get_ref());
        if !component.is_file() {
            return Err(invalid(
                raw.component.span().start,
                format!(
                    "component file {} does not exist (build the examples with `make components`)",
                    component.display()
                ),
            ));
        }

        let mut allowed = Vec::with_capacity(raw.allowed_outbound_hosts.len());
        for host in &raw.allowed_outbound_hosts {
            let parsed = host
                .get_ref()
                .parse::<AllowedHost>()
                .map_err(|e| invalid(host.span().start, e.to_string()))?;
            allowed.push(parsed);
        }

        for bucket in &raw.buckets {
            check_name(bucket.get_ref())
                .map_err(|m| invalid(bucket.span().start, format!("bucket: {m}")))?;
        }
        if let Some(config) = &raw.config {
            validate_config(config.get_ref()).map_err(|m| invalid(config.span().start, m))?;
        }

        if let Some(env) = &raw.env {
            check_env(env.get_ref()).map_err(|m| invalid(env.span().start, m))?;
        }
        let reuse = match &raw.reuse {
            Some(reuse) => {
                reuse
                    .get_ref()
                    .check()
                    .map_err(|m| invalid(reuse.span().start, m))?;
                ReusePolicy::from_spec(reuse.get_ref())
            }
            None => ReusePolicy::FRESH,
        };
        for schedule in &raw.schedule {
            check_events(std::slice::from_ref(schedule.get_ref()), &[])
                .map_err(|m| invalid(schedule.span().start, m))?;
        }
        for subscription in &raw.subscription {
            check_events(&[], std::slice::from_ref(subscription.get_ref()))
                .map_err(|m| invalid(subscription.span().start, m))?;
        }
        let schedules: Vec<ScheduleSpec> =
            raw.schedule.into_iter().map(Spanned::into_inner).collect();
        let subscriptions: Vec<SubscriptionSpec> = raw
            .subscription
            .into_iter()
            .map(Spanned::into_inner)
            .collect();
        check_events(&schedules, &subscriptions).map_err(|m| invalid(at, m))?;

        specs.push(ServiceSpec {
            name: name.clone(),
            component,
            route,
            limits: Limits::default().overridden_by(&raw.limits),
            outbound: OutboundPolicy::new(allowed).allowing_private(raw.private_outbound),
            buckets: raw.buckets.iter().map(|b| b.get_ref().clone()).collect(),
            config: raw.config.map(Spanned::into_inner).unwrap_or_default(),
            env: raw.env.map(Spanned::into_inner).unwrap_or_default(),
            reuse,
            schedules,
            subscriptions,
            declared_at: format!("{}:{}", path.display(), line_of(text, at)),
            written: WrittenSettings {
                limits: raw.limits,
                allowed_outbound_hosts: raw
                    .allowed_outbound_hosts
                    .iter()
                    .map(|h| h.get_ref().clone())
                    .collect(),
                reuse: raw.reuse.map(Spanned::into_inner).unwrap_or_default(),
            },
        });
    }
    Ok(specs)
}

/// Longest configuration value, in bytes.
pub const MAX_CONFIG_VALUE_BYTES: usize = 64 * 1024;

/// Configuration keys are 1 to 128 letters, digits, `_`, `-` and `.`; values
/// are at most [`MAX_CONFIG_VALUE_BYTES`].
pub fn validate_config(config: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, value) in config {
        let key_ok = !key.is_empty()
            && key.len() <= 128
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !key_ok {
            return Err(format!(
                "invalid config key `{}`: use 1 to 128 letters, digits, `_`, `-` and `.`",
                key.chars().take(80).collect::<String>()
            ));
        }
        if value.len() > MAX_CONFIG_VALUE_BYTES {
            return Err(format!(
                "config value of `{key}` is {} bytes; the limit is {MAX_CONFIG_VALUE_BYTES}",
                value.len()
            ));
        }
    }
    Ok(())
}

/// Routes are path prefixes: they start with `/` and carry no trailing `/`
/// (except the root route itself), no query and no empty segments.
pub fn normalize_route(route: &str) -> Result<String, String> {
    if !route.starts_with('/') {
        return Err(format!("route `{route}` must start with `/`"));
    }
    if route.contains(['?', '#', ' ']) || route.contains("//") {
        return Err(format!(
            "route `{route}` must be a plain path prefix, without `?`, `#`, spaces or empty segments"
        ));
    }
    let trimmed = route.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<Vec<ServiceSpec>, ConfigError> {
        parse(text, Path::new("berth.toml"), dir)
    }

    fn error_line(r: Result<Vec<ServiceSpec>, ConfigError>) -> (usize, String) {
        match r {
            Err(ConfigError::Invalid { line, message, .. }) => (line, message),
            other => (
                0,
                format!("expected an invalid-config error, got {other:?}"),
            ),
        }
    }

    #[test]
    fn reports_the_line_of_a_bad_value() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::write(dir.path().join("a.wasm"), b"").unwrap_or_default();
        let text = "[[service]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[service.limits]\nmemory = \"lots\"\n";
        let (line, message) = error_line(parse_in(dir.path(), text));
        assert_eq!(line, 5, "{message}");
        assert!(message.contains("lots"), "{message}");
    }

    #[test]
    fn rejects_duplicate_routes_and_missing_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::write(dir.path().join("a.wasm"), b"").unwrap_or_default();
        let text = "[[service]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroute = \"/x\"\n\n[[service]]\nname = \"b\"\ncomponent = \"a.wasm\"\nroute = \"/x/\"\n";
        let (line, message) = error_line(parse_in(dir.path(), text));
        assert_eq!(line, 9, "{message}");
        assert!(message.contains("already taken"), "{message}");

        let (line, message) = error_line(parse_in(
            dir.path(),
            "[[service]]\nname = \"a\"\ncomponent = \"missing.wasm\"\n",
        ));
        assert_eq!(line, 3, "{message}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_names() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let (line, message) = error_line(parse_in(
            dir.path(),
            "[[service]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = \"/\"\n",
        ));
        assert_eq!(line, 4, "{message}");
        let (line, _) = error_line(parse_in(
            dir.path(),
            "[[service]]\nname = \"Bad_Name\"\ncomponent = \"a.wasm\"\n",
        ));
        assert_eq!(line, 2);
    }

    #[test]
    fn routes_are_normalized() {
        assert_eq!(normalize_route("/api/"), Ok("/api".to_string()));
        assert_eq!(normalize_route("/"), Ok("/".to_string()));
        assert!(normalize_route("api").is_err());
        assert!(normalize_route("/a//b").is_err());
    }
}
