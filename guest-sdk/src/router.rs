use http::Method;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use crate::{Error, IntoResponse, Request, Response, Service};

type Handler = Box<dyn Fn(Request, Params) -> Pin<Box<dyn Future<Output = Response>>>>;

/// Routes requests by method and path to handlers.
///
/// Patterns are paths whose segments may be `{name}` (one segment, read with
/// [`Params::get`]) or, last, `{*name}` (the rest of the path). A path that
/// matches no pattern is a 404; one that matches with another method is a 405
/// with an `Allow` header. `HEAD` runs the `GET` route unless a `HEAD` route
/// is given.
///
/// When Berth mounts a service under a route prefix (say `/shop`), the router
/// matches the path after the prefix, so the same component works at any
/// prefix, and at `/` under `wasmtime serve`.
/// One builder method per HTTP method, each a [`Router::route`] call.
macro_rules! method_routes {
    ($($(#[$doc:meta])* $name:ident $method:ident,)*) => {
        $(
            $(#[$doc])*
            pub fn $name<F, Fut, R>(self, pattern: impl Into<Cow<'static, str>>, handler: F) -> Self
            where
                F: Fn(Request, Params) -> Fut + 'static,
                Fut: Future<Output = R> + 'static,
                R: IntoResponse,
            {
                self.route(Method::$method, pattern, handler)
            }
        )*
    };
}

#[derive(Default)]
pub struct Router {
    /// Patterns are kept as written and read only while matching: a router
    /// is built for every request (each runs in a fresh instance), so
    /// building one must cost next to nothing.
    /// A method of `None` takes every method ([`Router::any`]).
    routes: Vec<(Option<Method>, Cow<'static, str>, Handler)>,
}

enum Segment<'a> {
    Literal(&'a str),
    Param(&'a str),
    Rest(&'a str),
}

/// Values captured from the path by `{name}` segments.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of a parameter, percent-decoded (`/items/a%20b` gives
    /// `a b`; a segment that does not decode to UTF-8 is kept as sent).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter parsed into `T`; a 400 naming the parameter if it does not
    /// parse.
    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self
            .get(name)
            .ok_or_else(|| Error::internal(format!("route has no parameter `{name}`")))?;
        raw.parse()
            .map_err(|e| Error::bad_request(format!("invalid `{name}` in path (`{raw}`): {e}")))
    }
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler for `method` and `pattern`. A pattern is a string
    /// literal as a rule (a `String` works too); it is kept as written and
    /// read only when a request is matched, so building a router for each
    /// request costs next to nothing.
    pub fn route<F, Fut, R>(
        self,
        method: Method,
        pattern: impl Into<Cow<'static, str>>,
        handler: F,
    ) -> Self
    where
        F: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.add(Some(method), pattern, handler)
    }

    fn add<F, Fut, R>(
        mut self,
        method: Option<Method>,
        pattern: impl Into<Cow<'static, str>>,
        handler: F,
    ) -> Self
    where
        F: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        let handler: Handler = Box::new(move |request, params| {
            let future = handler(request, params);
            Box::pin(async move { future.await.into_response() })
        });
        self.routes.push((method, pattern.into(), handler));
        self
    }

    /// Adds a handler for `pattern` that takes every method, after the
    /// routes of a given method that match the same path.
    pub fn any<F, Fut, R>(self, pattern: impl Into<Cow<'static, str>>, handler: F) -> Self
    where
        F: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.add(None, pattern, handler)
    }

    method_routes! {
        /// Adds a `GET` handler (it answers `HEAD` too, unless a `HEAD` route is given).
        get GET,
        /// Adds a `POST` handler.
        post POST,
        /// Adds a `PUT` handler.
        put PUT,
        /// Adds a `PATCH` handler.
        patch PATCH,
        /// Adds a `DELETE` handler.
        delete DELETE,
        /// Adds a `HEAD` handler.
        head HEAD,
        /// Adds an `OPTIONS` handler.
        options OPTIONS,
    }

    async fn dispatch(&self, request: Request) -> Response {
        let path = routing_path(&request);
        let mut allowed: Vec<&str> = Vec::new();
        let mut get_route = None;
        let mut any_route = None;
        for (method, pattern, handler) in &self.routes {
            if let Some(params) = match_path(pattern, &path) {
                let Some(method) = method else {
                    any_route = any_route.or(Some((handler, params)));
                    continue;
                };
                if method == request.method() {
                    return handler(request, params).await;
                }
                if method == Method::GET && get_route.is_none() {
                    get_route = Some((handler, params));
                }
                allowed.push(method.as_str());
            }
        }
        // HEAD is GET without the body, as HTTP defines it: the host sends
        // the head only.
        if request.method() == Method::HEAD
            && let Some((handler, params)) = get_route
        {
            return handler(request, params).await;
        }
        if let Some((handler, params)) = any_route {
            return handler(request, params).await;
        }
        if allowed.is_empty() {
            return Error::not_found(format!("no route for {path}")).into_response();
        }
        let mut response = Error::new(
            http::StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", request.method()),
        )
        .into_response();
        if let Ok(allow) = http::HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(http::header::ALLOW, allow);
        }
        response
    }
}

impl Service for Router {
    async fn call(&self, request: Request) -> Response {
        self.dispatch(request).await
    }
}

/// The path to route on: after Berth's route prefix when there is one.
fn routing_path(request: &Request) -> String {
    request
        .headers()
        .get("x-berth-path-info")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request.uri().path().to_string())
}

fn segments(pattern: &str) -> impl Iterator<Item = Segment<'_>> {
    pattern.split('/').filter(|s| !s.is_empty()).map(|s| {
        match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => match name.strip_prefix('*') {
                Some(rest) => Segment::Rest(rest),
                None => Segment::Param(name),
            },
            None => Segment::Literal(s),
        }
    })
}

fn match_path(pattern: &str, path: &str) -> Option<Params> {
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    // Allocates only once a parameter is captured.
    let mut params = Vec::new();
    let mut segments = segments(pattern).peekable();
    while let Some(segment) = segments.next() {
        match segment {
            Segment::Rest(name) => {
                if segments.peek().is_some() {
                    return None;
                }
                let mut rest = String::new();
                for part in parts {
                    if !rest.is_empty() {
                        rest.push('/');
                    }
                    rest.push_str(&percent_decode(part));
                }
                params.push((name.to_string(), rest));
                return Some(Params(params));
            }
            Segment::Literal(literal) => {
                if percent_decode(parts.next()?) != literal {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.push((name.to_string(), percent_decode(parts.next()?).into_owned()))
            }
        }
    }
    parts.next().is_none().then_some(Params(params))
}

/// `%XX` escapes decoded; a segment whose bytes are not UTF-8 once decoded
/// (or with a broken escape) is kept as sent.
fn percent_decode(segment: &str) -> Cow<'_, str> {
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                None => return Cow::Borrowed(segment),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_or(Cow::Borrowed(segment), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StatusCode;

    #[test]
    fn matches_literals_params_and_rest() {
        let p = "/items/{id}";
        assert_eq!(
            match_path(p, "/items/42").and_then(|m| m.get("id").map(String::from)),
            Some("42".into())
        );
        assert!(match_path(p, "/items").is_none());
        assert!(match_path(p, "/items/42/x").is_none());
        let rest = "/files/{*path}";
        let m = match_path(rest, "/files/a/b.txt");
        assert_eq!(
            m.and_then(|m| m.get("path").map(String::from)),
            Some("a/b.txt".into())
        );
        assert!(match_path("/", "/").is_some());
        assert!(match_path("/{*path}/x", "/a/x").is_none());
    }

    #[test]
    fn params_are_percent_decoded() {
        let m = match_path("/items/{id}", "/items/a%20b%2Fc");
        assert_eq!(
            m.and_then(|m| m.get("id").map(String::from)),
            Some("a b/c".into())
        );
        let m = match_path("/files/{*path}", "/files/x%41/y");
        assert_eq!(
            m.and_then(|m| m.get("path").map(String::from)),
            Some("xA/y".into())
        );
        // A literal matches its encoded form; broken escapes stay as sent.
        assert!(match_path("/caf\u{e9}", "/caf%C3%A9").is_some());
        let m = match_path("/items/{id}", "/items/100%");
        assert_eq!(
            m.and_then(|m| m.get("id").map(String::from)),
            Some("100%".into())
        );
        let m = match_path("/items/{id}", "/items/%FF");
        assert_eq!(
            m.and_then(|m| m.get("id").map(String::from)),
            Some("%FF".into())
        );
    }

    fn status_of(router: &Router, method: &str, path: &str) -> u16 {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(crate::Body::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        futures_lite::future::block_on(router.dispatch(request))
            .status()
            .as_u16()
    }

    #[test]
    fn every_method_routes_and_any_takes_the_rest() {
        let router = Router::new()
            .patch("/items/{id}", |_, _| async { StatusCode::ACCEPTED })
            .get("/items/{id}", |_, p: Params| async move {
                p.parse::<u32>("id").map(|_| "item")
            })
            .any("/items/{id}", |_, _| async { StatusCode::IM_A_TEAPOT });
        assert_eq!(status_of(&router, "PATCH", "/items/1"), 202);
        assert_eq!(status_of(&router, "GET", "/items/1"), 200);
        assert_eq!(status_of(&router, "HEAD", "/items/1"), 200);
        // `Result<_, Error>` answers with the error's status.
        assert_eq!(status_of(&router, "GET", "/items/x"), 400);
        assert_eq!(status_of(&router, "DELETE", "/items/1"), 418);
        assert_eq!(status_of(&router, "GET", "/other"), 404);
        let strict = Router::new().get("/a", |_, _| async {
            Err::<&str, _>((StatusCode::CONFLICT, "taken"))
        });
        assert_eq!(status_of(&strict, "GET", "/a"), 409);
        assert_eq!(status_of(&strict, "POST", "/a"), 405);
    }

    #[test]
    fn params_parse_with_a_clear_error() {
        let params = Params(vec![("id".into(), "abc".into())]);
        let err = params.parse::<u32>("id").err();
        assert_eq!(err.map(|e| e.status()), Some(http::StatusCode::BAD_REQUEST));
    }
}
