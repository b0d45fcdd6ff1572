//! End-to-end tests: real `berth` processes on `127.0.0.1:0`, real
//! components, real HTTP clients. Run `make components` first (`make test`
//! does).

mod at_rest;
mod auth;
mod author;
mod cache;
mod capabilities;
mod cli;
mod compat;
mod control;
mod dashboard;
mod declared;
mod deploys;
mod durability;
mod events;
mod faults;
mod fleet;
mod hostile;
mod limits;
mod observability;
mod outbound;
mod packaging;
mod parity;
mod quotas;
mod routing;
mod shared_instances;
mod shop;
mod streaming;
mod uploads;
mod wasi_p3;
