//! Berth: a multi-tenant WebAssembly microservice host.
//!
//! # Layout
//!
//! A request travels `server` → `router` (via `registry`) → `invoke`; a
//! service gets there through `config` → `host` → `engine`.
//!
//! - [`admin`]: the admin API (axum): routes, auth, problem+json errors, OpenAPI.
//! - [`control`]: the control plane's core API: upload, activate, split, roll back, delete;
//!   its `table` module makes stored state live, its `rules` module checks changes,
//!   its `sync` module follows a store other hosts write to.
//! - [`store`]: durable state (SQLite or Postgres via sqlx) and content-addressed
//!   component blobs.
//! - [`logbook`]: each service's recent guest output, for the logs route.
//! - [`config`]: `berth.toml`, checked with file and line before anything starts.
//! - [`host`]: the core API (load services, route to them) that the CLI and tests call.
//! - [`engine`]: the wasmtime `Engine`, pooling allocator, epoch ticker, compile cache.
//! - [`registry`]: the live routing table, swapped atomically.
//! - [`router`]: longest-prefix matching of paths to service versions.
//! - [`server`]: the front door: connections, protocol limits, timeouts.
//! - [`body_rate`]: the minimum upload rate of request bodies (slow POST).
//! - [`invoke`]: one request in one fresh instance, deadlines and failure mapping.
//! - [`limits`]: per-service limits and the memory limiter.
//! - [`quotas`]: per-tenant quotas: instance ceilings, concurrency, storage.
//! - [`admission`]: per-tenant admission queue and CPU slots (fairness).
//! - [`capabilities`]: what guests may reach: outbound HTTP, service calls,
//!   key-value, config, logging, stdout/stderr capture.
//! - [`kv`]: key-value storage behind a backend trait (SQLite by default, Postgres
//!   for a fleet).
//! - [`secrets`]: secret config values, sealed at rest.
//! - [`files`]: the data directory's permissions (owner only).
//! - [`error`]: request failures and the one mapping to HTTP status.
//! - [`telemetry`]: logging set-up, request ids, Prometheus metrics, the
//!   usage stats behind `berth stats`, and OTLP span export.
//! - [`units`]: sizes and durations as people write them.
//! - [`body`], [`lingering_body`]: response bodies every layer shares, and
//!   bodies a guest writes that outlive hyper's interest in them.
//! - [`random`]: fast, non-cryptographic random numbers (splits, trace ids).
//! - [`service_dispatch`]: how the host runs a service call the capability
//!   layer hands it through `ServiceDispatch`.
//!
//! Imports between these modules run one way (`tools/module_cycles.py`,
//! run by `make test`); `docs/architecture.md` lists the layers.

pub mod admin;
pub mod admission;
pub mod body;
pub mod body_rate;
pub mod capabilities;
pub mod config;
pub mod control;
pub mod engine;
pub mod error;
pub mod files;
pub mod forwarding;
pub mod hop_trace;
pub mod host;
pub mod invoke;
pub mod kv;
pub mod limits;
pub mod lingering_body;
pub mod logbook;
pub mod quotas;
pub mod random;
pub mod registry;
pub mod router;
pub mod secrets;
pub mod server;
pub mod service_dispatch;
pub mod store;
pub mod telemetry;
pub use berth_api::units;

pub use capabilities::outbound;
