//! What `berth --version` says, and `berth completions`.

use clap::CommandFactory;

/// The `--version` text: Berth's version, then what it runs. The wasmtime
/// release is the one the workspace pins exactly; a test checks it against
/// `Cargo.lock`.
pub fn long_version() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        "\nwasmtime 48.0.8",
        "\nWASI 0.2 (wasi:http/proxy@0.2.x, up to 0.2.12) and WASI 0.3 (wasi:http/handler@0.3.0)",
        "\ncapabilities: wasi:keyvalue (0.2.0-draft, 0.2.0-draft2), ",
        "wasi:config (0.2.0-rc.1, 0.2.0-draft-2024-09-27), wasi:logging, wasi:messaging@0.2.0-draft"
    )
}

/// Prints the completion script for `shell` to stdout. It is made in
/// memory first: clap_complete panics on a failed write (a closed pipe).
pub fn completions<C: CommandFactory>(shell: clap_complete::Shell) -> std::io::Result<()> {
    use std::io::Write;
    let mut command = C::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "berth", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_wasmtime_the_lock_file_pins() {
        let lock = include_str!("../../../Cargo.lock");
        let pinned = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find(|l| l.starts_with("version = ")))
            .map(|l| l.trim_start_matches("version = ").trim_matches('"'));
        let pinned = pinned.unwrap_or("not in Cargo.lock");
        assert!(
            long_version().contains(&format!("\nwasmtime {pinned}\n")),
            "{pinned}"
        );
    }
}
