//! Which service version answers a path: the longest route prefix that
//! matches on a segment boundary.

use std::sync::Arc;

use crate::invoke::ServiceVersion;

/// One route: a path prefix and the version that serves it.
#[derive(Clone)]
pub struct Route {
    pub prefix: String,
    pub version: Arc<ServiceVersion>,
}

/// An immutable routing table; the registry swaps whole tables.
#[derive(Clone, Default)]
pub struct RoutingTable {
    /// Longest prefix first, so the first match is the best one.
    routes: Vec<Route>,
}

impl RoutingTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes }
    }

    /// The route for a request path, if any.
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }
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
}
