//! Request-shape limits at the front door and per service.

use anyhow::Result;
use berth_e2e::{BerthProcess, Launch, client, service};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn bodies_over_the_limit_are_413() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let limits = "[service.limits]\nrequest_body = \"1MiB\"";
    let host = BerthProcess::serve(
        &[
            service("echo", "echo", "/echo", limits)?,
            service("json-api", "json-api", "/api", limits)?,
        ]
        .concat(),
        dir.path(),
    )?;
    let http = client();

    // Declared too large: refused before the guest runs.
    let r = http
        .post(host.url("/echo"))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await?;
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["type"], "https://berth.dev/problems/body-too-large");

    // Streamed without a length: cut off at the limit. The guest had not
    // answered, so the answer is 413; it may reach the client only as a
    // closed connection, since the client is still sending when it comes.
    let chunks =
        (0..32).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024])));
    let streamed = http
        .post(host.url("/api/quotes"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    match streamed {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
    }

    // Within the limit is fine.
    let r = http
        .post(host.url("/echo"))
        .body(vec![b'y'; 1000 * 1024])
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await?.len(), 1000 * 1024);
    Ok(())
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::serve(
        &service(
            "hello",
            "hello",
            "/",
            "[service.limits]\nmax_headers = 10\nheader_bytes = \"2KiB\"",
        )?,
        dir.path(),
    )?;
    let http = client();

    let mut many = http.get(host.url("/"));
    for i in 0..20 {
        many = many.header(format!("x-extra-{i}"), "1");
    }
    assert_eq!(many.send().await?.status(), 431);

    let r = http
        .get(host.url("/"))
        .header("x-big", "v".repeat(4096))
        .send()
        .await?;
    assert_eq!(r.status(), 431);

    // Past the front door's own limit hyper answers 431 before routing.
    let r = http
        .get(host.url("/"))
        .header("x-huge", "v".repeat(100 * 1024))
        .send()
        .await?;
    assert_eq!(r.status(), 431);

    assert_eq!(http.get(host.url("/")).send().await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::launch(Launch {
        args: vec!["--header-read-timeout".into(), "1s".into()],
        config: Some(service("hello", "hello", "/", "")?),
        data_dir: dir.path().to_path_buf(),
    })?;
    let addr = host.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await?;
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    // The server gives up on us: it answers 408 and/or closes.
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut total = Vec::new();
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total.extend_from_slice(&buf[..n]),
            }
        }
        total
    })
    .await;
    let took = started.elapsed();
    let Ok(answer) = read else {
        panic!("connection still open after {took:?}");
    };
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // Well-behaved clients are still served.
    assert_eq!(client().get(host.url("/")).send().await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn one_client_address_gets_a_bounded_number_of_connections() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = BerthProcess::launch(Launch {
        args: vec!["--max-connections-per-client".into(), "4".into()],
        config: Some(service("hello", "hello", "/", "")?),
        data_dir: dir.path().to_path_buf(),
    })?;
    let addr = host.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await?;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await?;
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    // The fifth is answered 429 and closed.
    let mut fifth = tokio::net::TcpStream::connect(&addr).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), fifth.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    // Closing one makes room again.
    drop(held.pop());
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = client().get(host.url("/")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            ok = true;
            break;
        }
    }
    assert!(ok, "no room after a connection closed");
    Ok(())
}

#[tokio::test]
async fn an_overlong_uri_is_414() -> Result<()> {
    let host = BerthProcess::serving(&service("hello", "hello", "/", "")?)?;
    let long = format!("/?q={}", "a".repeat(9000));
    let r = client().get(host.url(&long)).send().await?;
    assert_eq!(r.status(), 414);
    let r = client().get(host.url("/?q=short")).send().await?;
    assert_eq!(r.status(), 200);
    Ok(())
}
