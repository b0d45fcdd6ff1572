//! Bodies stream through guests in both directions without being buffered.

use anyhow::Result;
use berth_e2e::{BerthProcess, client, service};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// Deterministic, incompressible-looking chunks, generated as they are sent.
fn chunk(i: usize) -> bytes::Bytes {
    let mut seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(64 * 1024);
    while out.len() < 64 * 1024 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    bytes::Bytes::from(out)
}

#[tokio::test]
async fn fifty_mebibytes_stream_through_echo_in_bounded_memory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::serve(
        &service(
            "echo",
            "echo",
            "/echo",
            "[service.limits]\nrequest_body = \"100MiB\"",
        )?,
        dir.path(),
    )?;
    let http = client();
    // Warm up, then measure only what the transfer adds.
    assert_eq!(
        http.post(host.url("/echo"))
            .body("warm")
            .send()
            .await?
            .text()
            .await?,
        "warm"
    );
    let before = host.rss_kib()?;
    host.reset_peak_rss()?;

    let chunks = 50 * MIB / (64 * 1024);
    let mut sent = Sha256::new();
    for i in 0..chunks {
        sent.update(chunk(i));
    }
    let body = futures::stream::iter((0..chunks).map(|i| Ok::<_, std::io::Error>(chunk(i))));
    let response = http
        .post(host.url("/echo"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let mut received = Sha256::new();
    let mut length = 0usize;
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        length += piece.len();
        received.update(&piece);
    }
    assert_eq!(length, 50 * MIB);
    assert_eq!(received.finalize(), sent.finalize(), "echoed bytes differ");

    let peak = host.peak_rss_kib()?;
    let grew_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grew_mib < 20,
        "host memory grew by {grew_mib} MiB while streaming 50 MiB (peak {peak} KiB, before {before} KiB)"
    );
    Ok(())
}

#[tokio::test]
async fn a_slow_body_reaches_the_client_as_it_is_written() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::serve(
        &service("slow", "testing-slow-body", "/slow", "")?,
        dir.path(),
    )?;
    let http = client();
    let started = Instant::now();
    let response = http
        .get(host.url("/slow?chunks=4&interval_ms=300"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let first = stream.next().await.transpose()?.unwrap_or_default();
    let first_at = started.elapsed();
    assert!(first.starts_with(b"chunk 0"), "{first:?}");
    let mut rest = Vec::new();
    while let Some(piece) = stream.next().await {
        rest.extend_from_slice(&piece?);
    }
    let all_at = started.elapsed();
    let text = String::from_utf8(rest)?;
    assert!(text.ends_with("chunk 3\n"), "{text:?}");
    // The whole body takes at least 4 × 300 ms; the first chunk came early.
    assert!(all_at >= Duration::from_millis(1200), "{all_at:?}");
    assert!(
        first_at + Duration::from_millis(600) < all_at,
        "first chunk at {first_at:?}, whole body at {all_at:?}: the response was buffered"
    );
    Ok(())
}
