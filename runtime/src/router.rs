//! Which service version answers a request: the `Host` header picks the
//! tenant, the longest route prefix (on a segment boundary) picks the
//! service, and the service's split weights pick the version.

use std::collections::HashMap;
use std::sync::Arc;

use crate::invoke::ServiceVersion;

/// The tenant that services declared in `berth.toml` belong to, and that
/// a host name naming no tenant reaches.
pub const DEFAULT_TENANT: &str = "default";

/// The versions behind one route: one, or several with weights.
#[derive(Clone)]
pub struct Backends {
    /// Each version with the running total of weights up to and including it.
    versions: Vec<(u64, Arc<ServiceVersion>)>,
}

impl Backends {
    pub fn single(version: Arc<ServiceVersion>) -> Self {
        Self {
            versions: vec![(1, version)],
        }
    }

    /// Versions with weights; those weighted zero never serve. `None` when
    /// no version has a weight.
    pub fn weighted(versions: Vec<(u32, Arc<ServiceVersion>)>) -> Option<Self> {
        let mut total = 0u64;
        let mut out = Vec::with_capacity(versions.len());
        for (weight, version) in versions {
            if weight > 0 {
                total += u64::from(weight);
                out.push((total, version));
            }
        }
        (!out.is_empty()).then_some(Self { versions: out })
    }

    /// The same split over versions changed by `f`.
    pub fn map_versions(&self, f: impl Fn(&ServiceVersion) -> ServiceVersion) -> Self {
        Self {
            versions: self
                .versions
                .iter()
                .map(|(upto, v)| (*upto, Arc::new(f(v))))
                .collect(),
        }
    }

    /// The service these versions belong to.
    pub fn service(&self) -> Option<&str> {
        self.versions.first().map(|(_, v)| &*v.service)
    }

    /// The version for one request; `roll` is a uniformly random number.
    pub fn pick(&self, roll: u64) -> &Arc<ServiceVersion> {
        let total = self.versions.last().map_or(1, |(t, _)| *t);
        let point = roll % total;
        let index = self.versions.partition_point(|(upto, _)| *upto <= point);
        &self.versions[index.min(self.versions.len() - 1)].1
    }
}

/// One route: a path prefix and what serves it.
#[derive(Clone)]
pub struct Route {
    pub prefix: String,
    pub backends: Backends,
}

/// A tenant's routes, longest prefix first so the first match is the best.
#[derive(Clone, Default)]
struct TenantRoutes {
    routes: Vec<Route>,
}

/// An immutable routing table for the whole host; the registry swaps whole
/// tables.
#[derive(Clone, Default)]
pub struct RoutingTable {
    tenants: HashMap<String, TenantRoutes>,
    /// Extra domains the operator bound to tenants.
    domains: HashMap<String, String>,
    base_domain: String,
    default_tenant: String,
}

/// Builds a [`RoutingTable`].
pub struct RoutingTableBuilder {
    table: RoutingTable,
}

impl RoutingTableBuilder {
    pub fn new(base_domain: &str, default_tenant: &str) -> Self {
        Self {
            table: RoutingTable {
                base_domain: base_domain.to_ascii_lowercase(),
                default_tenant: default_tenant.to_string(),
                ..RoutingTable::default()
            },
        }
    }

    pub fn tenant(&mut self, name: &str, domains: &[String]) -> &mut Self {
        self.table.tenants.entry(name.to_string()).or_default();
        for domain in domains {
            self.table
                .domains
                .insert(domain.to_ascii_lowercase(), name.to_string());
        }
        self
    }

    pub fn route(&mut self, tenant: &str, route: Route) -> &mut Self {
        self.table
            .tenants
            .entry(tenant.to_string())
            .or_default()
            .routes
            .push(route);
        self
    }

    pub fn build(mut self) -> RoutingTable {
        for tenant in self.table.tenants.values_mut() {
            tenant
                .routes
                .sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        }
        self.table
    }
}

impl RoutingTable {
    /// A table of the default tenant's routes alone.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut builder = RoutingTableBuilder::new("localhost", DEFAULT_TENANT);
        for route in routes {
            builder.route(DEFAULT_TENANT, route);
        }
        builder.build()
    }

    /// The tenant a `Host` header names: a bound domain, then
    /// `{tenant}.{base-domain}`, else the default tenant.
    pub fn tenant_for_host<'a>(&'a self, host: Option<&str>) -> &'a str {
        let Some(host) = host else {
            return &self.default_tenant;
        };
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        if let Some(tenant) = self.domains.get(&name) {
            return tenant;
        }
        if let Some(label) = name
            .strip_suffix(&self.base_domain)
            .and_then(|rest| rest.strip_suffix('.'))
            && let Some((tenant, _)) = self.tenants.get_key_value(label)
        {
            return tenant;
        }
        &self.default_tenant
    }

    /// The route for a request, if any.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let tenant = self.tenant_for_host(host);
        self.tenants
            .get(tenant)?
            .routes
            .iter()
            .find(|r| prefix_matches(&r.prefix, path))
    }
}

impl RoutingTable {
    /// The route of a tenant's service, by the service's name.
    pub fn service_route(&self, tenant: &str, service: &str) -> Option<&Route> {
        self.tenants
            .get(tenant)?
            .routes
            .iter()
            .find(|r| r.backends.service() == Some(service))
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `/api` matches `/api`, `/api/` and `/api/x`, but not `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The part of the path after the route prefix, always starting with `/`:
/// what a service mounted at a prefix routes on.
pub fn path_info<'a>(prefix: &str, path: &'a str) -> &'a str {
    if prefix == "/" {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") | None => "/",
        Some(rest) => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn path_info_strips_the_prefix() {
        assert_eq!(path_info("/api", "/api"), "/");
        assert_eq!(path_info("/api", "/api/items/3"), "/items/3");
        assert_eq!(path_info("/", "/x"), "/x");
    }

    #[test]
    fn hosts_name_tenants() {
        let mut builder = RoutingTableBuilder::new("berth.test", "default");
        builder
            .tenant("default", &[])
            .tenant("acme", &["shop.example.com".to_string()]);
        let table = builder.build();
        assert_eq!(table.tenant_for_host(Some("acme.berth.test:8080")), "acme");
        assert_eq!(table.tenant_for_host(Some("ACME.berth.test")), "acme");
        assert_eq!(table.tenant_for_host(Some("shop.example.com")), "acme");
        assert_eq!(table.tenant_for_host(Some("other.berth.test")), "default");
        assert_eq!(table.tenant_for_host(Some("127.0.0.1:80")), "default");
        assert_eq!(table.tenant_for_host(Some("[::1]:80")), "default");
        assert_eq!(table.tenant_for_host(None), "default");
    }
}
