//! Berth's runtime: everything that serves a request. The engine and its
//! pooling allocator, instances and their limits, tenants' admission, the
//! capabilities guests are linked with, key-value storage, routing, the
//! front door and telemetry.
//!
//! It knows nothing of where its services come from: the control plane
//! (`berth-control`) builds routing tables from stored state and swaps them
//! in, and `berth up` loads them from files.
//!
//! # Layout
//!
//! A request travels `server` → `router` (via `registry`) → `invoke`; a
//! service gets there through `config` → `host` → `engine`.
//!
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
//! Imports between these modules run one way, and this crate imports none
//! of the workspace's crates but `berth-api` (`tools/module_cycles.py` and
//! `tools/crate_layers.py`, run by `make test`); `docs/architecture.md`
//! lists the layers.

pub mod admission;
pub mod body;
pub mod body_rate;
pub mod capabilities;
pub mod config;
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
pub mod reuse;
pub mod router;
pub mod server;
pub mod service_dispatch;
pub mod telemetry;
pub use berth_api::units;

pub use capabilities::outbound;
