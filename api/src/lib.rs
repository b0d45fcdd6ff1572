//! Berth's admin API as types: what each request carries and each response
//! holds, the names and limits they are made of, and the units limits are
//! written in.
//!
//! One definition serves everyone who speaks the API: the host's handlers
//! (which also generate the OpenAPI document from these types), the `berth`
//! CLI, and the end-to-end tests. Names ([`names`]) and limits ([`limits`])
//! are checked when they are parsed, so a value of their type is valid
//! wherever it goes.
//!
//! This crate sits at the bottom of the workspace: it depends on no other
//! Berth crate.

pub mod events;
pub mod limits;
pub mod names;
pub mod observe;
pub mod problem;
pub mod reuse;
pub mod services;
pub mod tenants;
pub mod units;

pub use limits::{ServiceLimits, TenantLimits};
pub use names::{Digest, NameError, ServiceName, TenantName, VersionLabel};
pub use problem::Problem;
pub use reuse::InstanceReuse;
