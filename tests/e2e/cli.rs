//! The command line: bad input is refused before any socket is bound, with
//! the file and line at fault; `berth up` serves one component.

use anyhow::Result;
use berth_e2e::{BerthProcess, berth_bin, client, component};
use std::process::Command;

pub(crate) fn run_berth(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(berth_bin()?)
        .args(args)
        .env("BERTH_LOG", "warn")
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn a_bad_config_names_its_file_and_line_and_binds_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hello = component("hello")?;
    let config = dir.path().join("berth.toml");
    let data = dir.path().join("data");
    let cases = [
        (
            format!(
                "[[service]]\nname = \"hello\"\ncomponent = \"{}\"\n\n[service.limits]\nmemory = \"a lot\"\n",
                hello.display()
            ),
            6,
            "a lot",
        ),
        (
            format!(
                "[[service]]\nname = \"a\"\ncomponent = \"{0}\"\nroute = \"/x\"\n[[service]]\nname = \"b\"\ncomponent = \"{0}\"\nroute = \"/x\"\n",
                hello.display()
            ),
            8,
            "already taken",
        ),
        (
            "[[service]]\nname = \"a\"\ncomponent = \"nope.wasm\"\n".to_string(),
            3,
            "does not exist",
        ),
        ("[[service]\n".to_string(), 1, ""),
    ];
    for (text, line, needle) in cases {
        std::fs::write(&config, &text)?;
        let (code, stdout, stderr) = run_berth(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap_or_default(),
            "--config",
            config.to_str().unwrap_or_default(),
        ])?;
        assert_ne!(code, 0, "{text}");
        assert!(
            !stdout.contains("listening"),
            "bound a socket for a bad config: {stdout}"
        );
        let at = format!("berth.toml:{line}");
        assert!(stderr.contains(&at), "want {at} in: {stderr}");
        assert!(stderr.contains(needle), "want {needle:?} in: {stderr}");
    }
    Ok(())
}

#[test]
fn bad_flags_are_refused_with_a_reason() -> Result<()> {
    let (code, _, stderr) = run_berth(&["serve", "--listen", "not-an-address"])?;
    assert_eq!(code, 2);
    assert!(stderr.contains("--listen"), "{stderr}");
    let (code, _, stderr) = run_berth(&["serve", "--header-read-timeout", "10"])?;
    assert_eq!(code, 2);
    assert!(stderr.contains("needs a unit"), "{stderr}");
    let (code, _, stderr) = run_berth(&["up", "/nonexistent.wasm"])?;
    assert_ne!(code, 0);
    assert!(stderr.contains("is not a file"), "{stderr}");
    Ok(())
}

#[test]
fn a_core_module_is_refused_with_a_clear_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0")?;
    let (code, stdout, stderr) = run_berth(&[
        "up",
        core.to_str().unwrap_or_default(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("data").to_str().unwrap_or_default(),
    ])?;
    assert_ne!(code, 0);
    assert!(!stdout.contains("listening"));
    assert!(stderr.contains("core WebAssembly module"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn berth_up_serves_one_component_at_the_root() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(berth_bin()?);
    cmd.arg("up")
        .arg(component("json-api")?)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path());
    let host = BerthProcess::spawn(cmd)?;
    assert!(host.banner.contains("json-api"), "{}", host.banner);
    let r = client().get(host.url("/greet/up")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, r#"{"greeting":"Hello, up!"}"#);
    Ok(())
}

#[test]
fn the_version_names_what_berth_runs_and_completions_load_in_bash() -> Result<()> {
    let (code, out, err) = run_berth(&["--version"])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("berth "), "{out}");
    assert!(out.contains("\nwasmtime 48."), "{out}");
    assert!(
        out.contains("WASI 0.2") && out.contains("wasi:http/handler@0.3.0"),
        "{out}"
    );

    // The bash script loads and completes `berth dep` to `deploy`.
    let (code, script, err) = run_berth(&["completions", "bash"])?;
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("berth.bash");
    std::fs::write(&file, &script)?;
    let probe = format!(
        "source {}; COMP_WORDS=(berth dep); COMP_CWORD=1; COMP_LINE='berth dep'; \
         COMP_POINT=9; _berth berth dep berth; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output()?;
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(words.lines().any(|w| w == "deploy"), "{words}");

    for (shell, marker) in [("zsh", "#compdef berth"), ("fish", "complete -c berth")] {
        let (code, script, err) = run_berth(&["completions", shell])?;
        assert_eq!(code, 0, "{err}");
        assert!(script.contains(marker), "{shell}: {script}");
    }
    let (code, _, err) = run_berth(&["completions", "tcsh"])?;
    assert_eq!(code, 2);
    assert!(err.contains("possible values"), "{err}");
    Ok(())
}
