//! Write Berth services in a few lines.
//!
//! A service is an async function from a [`Request`] to anything that
//! implements [`IntoResponse`]; [`serve!`] exports it as the component's
//! `wasi:http/incoming-handler`. Requests and responses are the `http`
//! crate's types, re-exported here.
//!
//! ```no_run
//! use berth_sdk::{Request, serve};
//!
//! async fn hello(_request: Request) -> &'static str {
//!     "Hello from Berth!\n"
//! }
//!
//! serve!(hello);
//! # fn main() {}
//! ```
//!
//! Larger services use a [`Router`] with path parameters, and [`Json`] for
//! typed JSON in and out; an [`Error`] becomes a response with its status:
//!
//! ```no_run
#![doc = include_str!("../doc/items.rs")]
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release` and a crate type
//! of `cdylib`: the output is a component Berth (or `wasmtime serve`) runs.
//! By default it is a WASI 0.2 component (`wasi:http/incoming-handler`);
//! with `default-features = false, features = ["p3"]` the same source builds
//! a WASI 0.3 one (`wasi:http/handler@0.3`, the component-model async ABI).
//! A 0.3 build waits for a [`call`] by blocking its instance, which Berth
//! runs one request at a time.

#[cfg(all(feature = "p2", feature = "p3"))]
compile_error!(
    "berth-sdk: build for one world, WASI 0.2 (the default) or 0.3 \
     (`default-features = false, features = [\"p3\"]`)"
);

mod bindings;
mod call;
pub mod config;
mod error;
mod json;
pub mod kv;
pub mod log;
mod response;
mod router;

pub use call::call;
pub use error::Error;
/// Runs two futures at once and waits for both, e.g. two [`call`]s.
pub use futures_lite::future::zip as join;
pub use http;
pub use http::StatusCode;
pub use json::{Json, read_json};
pub use response::IntoResponse;
pub use router::{Params, Router};
#[cfg(all(feature = "p3", not(feature = "p2")))]
mod p3;
#[cfg(all(feature = "p3", not(feature = "p2")))]
pub use p3::Body;
#[cfg(feature = "p2")]
pub use wstd::http::Body;

/// An incoming request, as the `http` crate's type.
pub type Request = http::Request<Body>;
/// An outgoing response, as the `http` crate's type.
pub type Response = http::Response<Body>;

/// Something that can serve a request: an async function or a [`Router`].
pub trait Service {
    fn call(&self, request: Request) -> impl Future<Output = Response>;
}

impl<F, Fut, R> Service for F
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = R>,
    R: IntoResponse,
{
    async fn call(&self, request: Request) -> Response {
        (self)(request).await.into_response()
    }
}

/// Exports a [`Service`] as this component's HTTP handler.
///
/// The expression is evaluated for each request (each runs in a fresh
/// instance anyway), so building a [`Router`] inline is fine.
#[cfg(feature = "p2")]
#[macro_export]
macro_rules! serve {
    ($service:expr) => {
        struct __BerthService;

        impl $crate::__internal::Guest for __BerthService {
            fn handle(
                request: $crate::__internal::IncomingRequest,
                response_out: $crate::__internal::ResponseOutparam,
            ) {
                $crate::__internal::handle(&$service, request, response_out)
            }
        }

        $crate::__internal::wasip2::http::proxy::export!(
            __BerthService with_types_in $crate::__internal::wasip2
        );
    };
}

/// Exports a [`Service`] as this component's HTTP handler: for WASI 0.3,
/// `wasi:http/handler@0.3`.
#[cfg(all(feature = "p3", not(feature = "p2")))]
#[macro_export]
macro_rules! serve {
    ($service:expr) => {
        struct __BerthService;

        impl $crate::__internal::Guest for __BerthService {
            async fn handle(
                request: $crate::__internal::WasiRequest,
            ) -> Result<$crate::__internal::WasiResponse, $crate::__internal::ErrorCode> {
                $crate::__internal::handle(&$service, request).await
            }
        }

        $crate::__internal::wasip3::http::service::export!(
            __BerthService with_types_in $crate::__internal::wasip3
        );
    };
}

#[cfg(all(feature = "p3", not(feature = "p2")))]
#[doc(hidden)]
pub use p3::internal as __internal;

#[cfg(feature = "p2")]
#[doc(hidden)]
pub mod __internal {
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    use crate::Service;

    pub fn handle<S: Service>(service: &S, request: IncomingRequest, out: ResponseOutparam) {
        let responder = wstd::http::server::Responder::new(out);
        wstd::runtime::block_on(async move {
            match wstd::http::request::try_from_incoming(request) {
                Ok(request) => {
                    let response = service.call(request).await;
                    if let Err(error) = responder.respond(response).await {
                        eprintln!("berth-sdk: sending the response failed: {error}");
                    }
                }
                Err(error) => responder.fail(error),
            }
        })
    }
}
