//! The request path without a network: a service's limits as `invoke`
//! enforces them, in this process, on real components (`make components`
//! builds them; `make test` does so first).

mod common;

use anyhow::{Result, ensure};
use berth_e2e::component;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::config::ServiceSpec;
use berth_runtime::error::RequestError;
use berth_runtime::host::{Host, HostSettings};
use berth_runtime::limits::Limits;

/// A host serving each `(route, component, limits)` at its route.
fn host_with(dir: &std::path::Path, services: &[(&str, &str, Limits)]) -> Result<Arc<Host>> {
    let host = Host::new(&HostSettings::small(dir.to_path_buf()))?;
    let specs = services
        .iter()
        .map(|(route, name, limits)| {
            Ok(ServiceSpec {
                limits: *limits,
                ..ServiceSpec::new(route.trim_start_matches('/'), component(name)?, route)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    host.load_services(&specs)?;
    Ok(host)
}

/// What one request through `invoke` comes to: the guest's status, or the
/// kind of failure the host answered with (`memory-limit`, ...).
async fn outcome(host: &Host, path: &str, headers: usize) -> Result<Result<u16, &'static str>> {
    Ok(common::request(host, path, headers)
        .await?
        .map(|(status, _)| status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_holds_each_service_to_its_limits() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tight = |f: fn(&mut Limits)| {
        let mut limits = Limits::default();
        f(&mut limits);
        limits
    };
    let host = host_with(
        dir.path(),
        &[
            ("/hello", "hello", Limits::default()),
            ("/few-headers", "hello", tight(|l| l.max_headers = 4)),
            (
                "/membomb",
                "testing_membomb",
                tight(|l| l.memory_bytes = 16 << 20),
            ),
            (
                "/spin",
                "testing_spin",
                tight(|l| l.cpu_time = Duration::from_millis(100)),
            ),
        ],
    )?;
    ensure!(outcome(&host, "/hello", 0).await? == Ok(200));
    // Each limit is the failure it names (not a trap or a timeout of some
    // other kind), and the next request is served as if nothing happened.
    let kind = |e: RequestError| Err(e.kind());
    let too_many = kind(RequestError::TooManyHeaders { count: 0, limit: 0 });
    ensure!(outcome(&host, "/few-headers", 8).await? == too_many);
    ensure!(outcome(&host, "/few-headers", 1).await? == Ok(200));
    let memory = kind(RequestError::MemoryLimit { limit_bytes: 0 });
    ensure!(outcome(&host, "/membomb", 0).await? == memory);
    let cpu = kind(RequestError::CpuDeadline {
        limit: Duration::ZERO,
    });
    let started = std::time::Instant::now();
    ensure!(outcome(&host, "/spin", 0).await? == cpu);
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    ensure!(outcome(&host, "/hello", 0).await? == Ok(200));
    Ok(())
}

/// A WASI 0.3 guest makes stream and future handles without the host in the
/// loop; wasmtime keeps them in host memory, so the store caps how many
/// one instance holds at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_guest_cannot_hoard_component_handles() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with(
        dir.path(),
        &[("/p3", "testing-p3-parity", Limits::default())],
    )?;
    // A few thousand (two handles each) are served; twenty thousand pairs
    // pass the cap (wasmtime's default, 100,000 handles, would let them
    // take some 15 MiB of host memory).
    ensure!(outcome(&host, "/p3/hoard/4000", 0).await? == Ok(200));
    let trapped = outcome(&host, "/p3/hoard/20000", 0).await?;
    ensure!(trapped == Err("guest-trap"), "{trapped:?}");
    ensure!(outcome(&host, "/p3", 0).await? == Ok(200));
    Ok(())
}
