//! The author's loop, end to end, in each language: `berth new` writes a
//! service, `berth build` builds it, `berth up --watch` serves it and
//! swaps each good rebuild in without dropping a request (a failed build
//! is shown and the last good one keeps serving), and `berth deploy`
//! puts the build on a real host.

use anyhow::{Context, Result, bail, ensure};
use berth_e2e::{BerthProcess, OPERATOR_TOKEN, berth_bin, client};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::control::cli;

/// The repository's root (the e2e crate is `tests/`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// `berth` in `dir` with the toolchains `make test` installs on the PATH,
/// and Rust builds sharing one target directory built in this run.
fn berth(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(berth_bin().unwrap_or_else(|_| PathBuf::from("berth")));
    let tools = repo().join(".tools/py/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools];
    paths.extend(std::env::split_paths(&path));
    cmd.args(args)
        .current_dir(dir)
        .env("PATH", std::env::join_paths(paths).unwrap_or(path))
        .env(
            "CARGO_TARGET_DIR",
            repo().join("components/target/authored"),
        )
        .env("BERTH_LOG", "warn");
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Result<String> {
    let out = berth(dir, args).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "berth {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// `berth new` then `berth build`: the project's directory.
fn new_and_build(root: &Path, name: &str, lang: &str) -> Result<PathBuf> {
    let out = run(root, &["new", name, "--lang", lang])?;
    ensure!(out.contains("berth build"), "{out}");
    let dir = root.join(name);
    let out = run(&dir, &["build"])?;
    let wasm = dir.join("dist").join(format!("{name}.wasm"));
    ensure!(out.contains(&wasm.display().to_string()), "{out}");
    ensure!(wasm.is_file(), "no {}", wasm.display());
    Ok(dir)
}

/// `berth up` in the project, on a port of its own.
fn up(dir: &Path, data: &Path, watch: bool) -> Result<BerthProcess> {
    let mut cmd = berth(dir, &["up", "--listen", "127.0.0.1:0", "--data-dir"]);
    cmd.arg(data);
    if watch {
        cmd.arg("--watch");
    }
    BerthProcess::spawn(cmd)
}

async fn get(host: &BerthProcess, path: &str) -> Result<(u16, String)> {
    let response = client().get(host.url(path)).send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// Deploys the build to a fresh `berth serve` and checks that it answers.
async fn deploy_and_call(dir: &Path, name: &str, expect: &str) -> Result<()> {
    let host = BerthProcess::empty(&[])?;
    let wasm = dir.join("dist").join(format!("{name}.wasm"));
    let route = format!("/{name}");
    let wasm_arg = wasm.display().to_string();
    let args = [
        "deploy",
        &wasm_arg,
        "--service",
        name,
        "--version",
        "0.1.0",
        "--route",
        &route,
    ];
    let (code, out, err) = cli(&host, OPERATOR_TOKEN, &args)?;
    ensure!(code == 0, "deploy: {out}{err}");
    let (status, body) = get(&host, &route).await?;
    ensure!(status == 200 && body.contains(expect), "{status} {body}");
    Ok(())
}

/// Polls `path` until its body contains `want`, failing on any non-200.
async fn until_body(
    host: &BerthProcess,
    path: &str,
    want: &str,
    within: Duration,
) -> Result<String> {
    let started = Instant::now();
    loop {
        let (status, body) = get(host, path).await?;
        ensure!(status == 200, "{status} {body}\n{}", host.log());
        if body.contains(want) {
            return Ok(body);
        }
        if started.elapsed() > within {
            bail!("no `{want}` within {within:?}: last {body}\n{}", host.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_rust_service_from_new_through_watch_to_deploy() -> Result<()> {
    let root = tempfile::tempdir()?;
    let dir = new_and_build(root.path(), "storefront", "rust")?;
    let host = up(&dir, &root.path().join("data"), true)?;
    let (status, body) = get(&host, "/").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "Hello from storefront! Visit 1.\n");
    let (status, body) = get(&host, "/hello/ada").await?;
    assert_eq!((status, body.as_str()), (200, r#"{"hello":"ada"}"#));

    // Requests run all through the swaps; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
        let url = host.url("/hello/load");
        tokio::spawn(async move {
            let http = client();
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => served.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let source = dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&source)?;
    std::fs::write(&source, text.replace("\"hello\": who", "\"hi\": who"))?;
    let body = until_body(&host, "/hello/ada", "\"hi\"", Duration::from_secs(180)).await?;
    assert_eq!(body, r#"{"hi":"ada"}"#);

    // A broken edit: the build fails, the error is shown, and the last
    // good build answers on.
    std::fs::write(&source, "this is not Rust")?;
    ensure!(
        host.wait_for_log(
            "still serving the last good build",
            Duration::from_secs(120)
        ),
        "{}",
        host.log()
    );
    assert!(host.log().contains("error"), "{}", host.log());
    assert_eq!(get(&host, "/hello/ada").await?.1, r#"{"hi":"ada"}"#);

    stop.store(true, Ordering::Relaxed);
    load.await.context("load")?;
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during swaps"
    );
    assert!(served.load(Ordering::Relaxed) > 10);
    drop(host);

    std::fs::write(&source, text)?;
    run(&dir, &["build"])?;
    deploy_and_call(&dir, "storefront", "from storefront").await?;

    // The same source for WASI 0.3: a component exporting the 0.3 handler,
    // deployed and served like the other.
    run(&dir, &["build", "--p3"])?;
    let wasm = std::fs::read(dir.join("dist/storefront.wasm"))?;
    let exports_p3 = wasm
        .windows(b"wasi:http/handler@0.3".len())
        .any(|w| w == b"wasi:http/handler@0.3");
    assert!(
        exports_p3,
        "the --p3 build does not export wasi:http/handler@0.3"
    );
    deploy_and_call(&dir, "storefront", "from storefront").await
}

/// `berth new`, `build`, `up --watch` (an edit swapped in), `deploy`, for a
/// template built by a toolchain other than cargo.
async fn loop_without_cargo(lang: &str, name: &str, source: &str) -> Result<()> {
    let root = tempfile::tempdir()?;
    let dir = new_and_build(root.path(), name, lang)?;
    let host = up(&dir, &root.path().join("data"), true)?;
    let greeting = format!("Hello from {name}! Visit 1.\n");
    assert_eq!(get(&host, "/").await?, (200, greeting));
    assert_eq!(
        get(&host, "/").await?.1,
        format!("Hello from {name}! Visit 2.\n")
    );
    assert_eq!(get(&host, "/elsewhere").await?.0, 404);

    let file = dir.join(source);
    let text = std::fs::read_to_string(&file)?;
    std::fs::write(&file, text.replace("! Visit ", "! Call "))?;
    let body = until_body(&host, "/", "! Call ", Duration::from_secs(180)).await?;
    assert!(
        body.starts_with(&format!("Hello from {name}! Call ")),
        "{body}"
    );
    drop(host);
    deploy_and_call(&dir, name, &format!("from {name}! Call 1.")).await
}

#[tokio::test]
async fn a_python_service_from_new_through_watch_to_deploy() -> Result<()> {
    loop_without_cargo("python", "pyshop", "app.py").await
}

#[tokio::test]
async fn a_javascript_service_from_new_through_watch_to_deploy() -> Result<()> {
    loop_without_cargo("js", "jsshop", "app.js").await
}

#[test]
fn build_says_what_is_missing() -> Result<()> {
    let root = tempfile::tempdir()?;
    // Not a project.
    let out = berth(root.path(), &["build"]).output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no berth.toml"), "{err}");

    // A Python project where componentize-py is not installed.
    run(root.path(), &["new", "nopy", "--lang", "python"])?;
    let out = berth(&root.path().join("nopy"), &["build"])
        .env("PATH", "/nonexistent")
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pip install componentize-py"), "{err}");

    // A name `berth new` refuses, and a directory that is not empty.
    let out = berth(root.path(), &["new", "Bad_Name"]).output()?;
    assert!(!out.status.success());
    let out = berth(root.path(), &["new", "nopy", "--lang", "js"]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    Ok(())
}
