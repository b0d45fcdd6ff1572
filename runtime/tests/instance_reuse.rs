//! Instance reuse as a service's policy, through `invoke` on a real
//! component (`testing-serve-parity`, which counts the requests its instance
//! served): when an instance is kept, when it is discarded, and that kept
//! instances never stand between another service's request and a slot.

mod common;

use anyhow::{Context, Result, ensure};
use berth_e2e::component;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::config::ServiceSpec;
use berth_runtime::host::{Host, HostSettings};
use berth_runtime::limits::Limits;
use berth_runtime::reuse::ReusePolicy;

fn spec(route: &str, reuse: ReusePolicy, limits: Limits) -> Result<ServiceSpec> {
    Ok(ServiceSpec {
        limits,
        env: [("GREETING".to_string(), "hej".to_string())].into(),
        reuse,
        ..ServiceSpec::new(
            route.trim_start_matches('/'),
            component("testing-serve-parity")?,
            route,
        )
    })
}

fn reusing(max_requests: u32, idle: Duration) -> ReusePolicy {
    ReusePolicy {
        max_requests,
        max_concurrent: 1,
        idle_timeout: idle,
    }
}

fn host(settings: HostSettings, specs: &[ServiceSpec]) -> Result<Arc<Host>> {
    let host = Host::new(&settings)?;
    host.load_services(specs)?;
    Ok(host)
}

/// The status and body of one request, or the kind of failure.
async fn get(host: &Host, path: &str) -> Result<Result<(u16, String), &'static str>> {
    common::request(host, path, 0).await
}

/// The guest's task parks its instance just after the response's last
/// byte: waits (boundedly) until `n` instances are kept, so the next
/// request finds the one this request left.
async fn settle(host: &Host, n: usize) {
    for _ in 0..200 {
        if host.kept_instances() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What `/count` answers, once its instance is kept (when it will be): the
/// instance it used was taken from the park, and comes back to it.
async fn count(host: &Host, path: &str) -> Result<u64> {
    let kept_before = host.kept_instances();
    let n = match get(host, path).await? {
        Ok((200, text)) => text.parse()?,
        other => anyhow::bail!("{path}: {other:?}"),
    };
    if common::version(host, path)?.reuse.reuses()
        && n < u64::from(common::version(host, path)?.reuse.max_requests)
    {
        // A fresh instance (n = 1) adds one to the park; a kept one was
        // taken from it and comes back.
        settle(host, kept_before + usize::from(n == 1)).await;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_serves_its_count_then_a_fresh_one_follows() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let long = Duration::from_secs(60);
    let host = host(
        HostSettings::small(dir.path().into()),
        &[
            spec("/fresh", ReusePolicy::FRESH, Limits::default())?,
            spec("/kept", reusing(3, long), Limits::default())?,
            spec("/other", reusing(3, long), Limits::default())?,
        ],
    )?;
    let mut fresh = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..7 {
        fresh.push(count(&host, "/fresh/count").await?);
        kept.push(count(&host, "/kept/count").await?);
    }
    assert_eq!(fresh, [1; 7], "the default is a fresh instance per request");
    assert_eq!(
        kept,
        [1, 2, 3, 1, 2, 3, 1],
        "three requests, then a new one"
    );
    // Another service of the same component never gets /kept's instance.
    assert_eq!(count(&host, "/other/count").await?, 1);
    // The environment reaches the guest, and only what was set.
    assert_eq!(
        get(&host, "/kept/env/GREETING").await?,
        Ok((200, "hej".into()))
    );
    assert_eq!(
        get(&host, "/kept/env/HOME").await?,
        Ok((404, "unset".into()))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_traps_or_idles_is_not_kept() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host(
        HostSettings::small(dir.path().into()),
        &[
            spec(
                "/kept",
                reusing(100, Duration::from_secs(60)),
                Limits::default(),
            )?,
            spec(
                "/brief",
                reusing(100, Duration::from_millis(100)),
                Limits::default(),
            )?,
        ],
    )?;
    assert_eq!(count(&host, "/kept/count").await?, 1);
    assert_eq!(count(&host, "/kept/count").await?, 2);
    let trapped = get(&host, "/kept/trap-before-set").await?;
    ensure!(trapped == Err("guest-trap"), "{trapped:?}");
    assert_eq!(
        count(&host, "/kept/count").await?,
        1,
        "after a trap, a fresh one"
    );

    assert_eq!(count(&host, "/brief/count").await?, 1);
    assert_eq!(count(&host, "/brief/count").await?, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&host, "/brief/count").await?,
        1,
        "idle past its timeout"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_holds_over_an_instance_life() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let limits = Limits {
        memory_bytes: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let host = host(
        HostSettings::small(dir.path().into()),
        &[spec(
            "/leaky",
            reusing(1000, Duration::from_secs(60)),
            limits,
        )?],
    )?;
    // Each request leaks 1 MiB and stays far under the limit alone; the
    // instance's total reaches it within a few requests.
    let mut totals = Vec::new();
    let mut failed_at = None;
    for i in 0..20 {
        match get(&host, "/leaky/leak/1024").await? {
            Ok((200, total)) => {
                totals.push(total.parse::<u64>()?);
                settle(&host, 1).await;
            }
            Err("memory-limit") => {
                failed_at = Some(i);
                break;
            }
            other => anyhow::bail!("request {i}: {other:?}"),
        }
    }
    let failed_at = failed_at.context("the instance's memory grew past its limit unchecked")?;
    ensure!(
        failed_at >= 2,
        "failed too early, at {failed_at}: {totals:?}"
    );
    assert!(totals.windows(2).all(|w| w[1] == w[0] + 1024), "{totals:?}");
    // The instance that hit its limit is gone; the next starts from nothing.
    assert_eq!(
        get(&host, "/leaky/leak/1024").await?,
        Ok((200, "1024".into()))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_instances_give_their_slots_to_other_services() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = HostSettings::small(dir.path().into());
    settings.max_instances = 2;
    let host = host(
        settings,
        &[
            spec(
                "/kept",
                reusing(100, Duration::from_secs(600)),
                Limits::default(),
            )?,
            spec("/other", ReusePolicy::FRESH, Limits::default())?,
        ],
    )?;
    // Two requests at once leave two instances kept: the whole pool.
    let (a, b) = tokio::join!(get(&host, "/kept/sleep/100"), get(&host, "/kept/sleep/100"));
    assert_eq!(a?, Ok((200, "slept".into())));
    assert_eq!(b?, Ok((200, "slept".into())));
    assert_eq!(host.instance_pool().0, 2, "both instances are kept");
    // Another service still gets a slot at once, twice over.
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert_eq!(
            get(&host, "/other").await?,
            Ok((200, "Hello, WASI!".into()))
        );
        ensure!(
            started.elapsed() < Duration::from_secs(2),
            "waited for a slot"
        );
    }
    Ok(())
}
