//! `berth build`: builds the service `berth new` wrote, in the current
//! directory, into `dist/NAME.wasm`, telling the user exactly what to
//! install when a toolchain is missing.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build the service in the current directory into `dist/NAME.wasm`.
#[derive(clap::Args)]
pub struct BuildCommand {
    /// The service's directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Build for WASI 0.3 (Rust services; berth-sdk's `p3` feature).
    #[arg(long)]
    p3: bool,
}

impl BuildCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let project = Project::open(&self.dir)?;
        let built = project.build(self.p3)?;
        println!("built {}", built.display());
        Ok(())
    }
}

/// What a project is written in, from the files `berth new` puts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rust,
    Python,
    Js,
}

/// A service's source directory.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub name: String,
    pub kind: Kind,
}

impl Project {
    /// The project in `dir`: its name from its `berth.toml`, its language
    /// from its files.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("{} is not a directory", dir.display()))?;
        let config = dir.join("berth.toml");
        let text = std::fs::read_to_string(&config).with_context(|| {
            format!(
                "{} has no berth.toml: run `berth build` in a directory `berth new` made",
                dir.display()
            )
        })?;
        let value: toml::Value =
            toml::from_str(&text).with_context(|| format!("{}", config.display()))?;
        let name = value
            .get("service")
            .and_then(|s| s.as_array())
            .and_then(|s| s.first())
            .and_then(|s| s.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("{}: no [[service]] with a name", config.display()))?
            .to_string();
        berth_api::names::check_name(&name)
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
        let kind = if dir.join("Cargo.toml").is_file() {
            Kind::Rust
        } else if dir.join("app.py").is_file() {
            Kind::Python
        } else if dir.join("package.json").is_file() {
            Kind::Js
        } else {
            bail!(
                "{}: no Cargo.toml, app.py or package.json to build",
                dir.display()
            )
        };
        Ok(Self { dir, name, kind })
    }

    /// Where the built component goes.
    pub fn output(&self) -> PathBuf {
        self.dir.join("dist").join(format!("{}.wasm", self.name))
    }

    /// Whether `path`, a file under the project, is a source `build` reads.
    pub fn is_source(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.dir) else {
            return false;
        };
        if relative.components().any(|c| {
            super::watch::SKIPPED_DIRS
                .iter()
                .any(|s| c.as_os_str() == *s)
        }) {
            return false;
        }
        if path.file_name().is_some_and(|n| n == "package-lock.json") {
            return false; // written by the build's `npm install`
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        // `berth.toml` and the WIT count for every language: a changed
        // config value is served as a rebuild is.
        matches!(ext, "toml" | "wit")
            || match self.kind {
                Kind::Rust => ext == "rs",
                Kind::Python => ext == "py",
                Kind::Js => matches!(ext, "js" | "mjs" | "json"),
            }
    }

    /// Builds the component into `dist/NAME.wasm` and returns its path.
    pub fn build(&self, p3: bool) -> anyhow::Result<PathBuf> {
        if p3 && self.kind != Kind::Rust {
            bail!("--p3: only Rust services build for WASI 0.3 so far");
        }
        let out = self.output();
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match self.kind {
            Kind::Rust => self.build_rust(p3, &out),
            Kind::Python => self.build_python(&out),
            Kind::Js => self.build_js(&out),
        }?;
        Ok(out)
    }

    fn build_rust(&self, p3: bool, out: &Path) -> anyhow::Result<()> {
        require("cargo", "install Rust from https://rustup.rs")?;
        if which("rustup").is_some() {
            let installed = Command::new("rustup")
                .args(["target", "list", "--installed"])
                .current_dir(&self.dir)
                .output()
                .context("cannot run rustup")?;
            if !String::from_utf8_lossy(&installed.stdout)
                .lines()
                .any(|t| t.trim() == "wasm32-wasip2")
            {
                bail!(
                    "the wasm32-wasip2 target is not installed: run `rustup target add wasm32-wasip2`"
                );
            }
        }
        let mut cargo = Command::new("cargo");
        cargo
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&self.dir);
        if p3 {
            cargo.args(["--no-default-features", "--features", "p3"]);
        }
        run(&mut cargo, "cargo build")?;
        // Cargo's own output directory, wherever CARGO_TARGET_DIR puts it.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| self.dir.join("target"), |dir| self.dir.join(dir));
        let built = target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", self.name.replace('-', "_")));
        std::fs::copy(&built, out)
            .with_context(|| format!("cannot copy {} to {}", built.display(), out.display()))?;
        Ok(())
    }

    fn build_python(&self, out: &Path) -> anyhow::Result<()> {
        require(
            "componentize-py",
            "install it with `pip install componentize-py==0.25.1` (in a virtualenv, or with pipx)",
        )?;
        let mut build = Command::new("componentize-py");
        build
            .args([
                "-d",
                "wit",
                "-w",
                "berth:service/service",
                "componentize",
                "app",
                "-o",
            ])
            .arg(out)
            .current_dir(&self.dir);
        run(&mut build, "componentize-py")
    }

    fn build_js(&self, out: &Path) -> anyhow::Result<()> {
        require(
            "node",
            "install Node.js 18 or later (Debian: `apt-get install nodejs npm`)",
        )?;
        require("npm", "install npm (Debian: `apt-get install npm`)")?;
        let componentize = self.dir.join("node_modules/.bin/componentize-js");
        if !componentize.is_file() {
            // The first build fetches componentize-js, as the project's
            // package.json pins it.
            let mut install = Command::new("npm");
            install
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(&self.dir);
            run(&mut install, "npm install")?;
        }
        let mut build = Command::new(&componentize);
        build
            .args([
                "app.js",
                "--wit",
                "wit",
                "--world-name",
                "berth:service/service",
                "--out",
            ])
            .arg(out)
            .current_dir(&self.dir);
        run(&mut build, "componentize-js")
    }
}

/// Fails with `how` to install `tool` when it is not on the PATH.
fn require(tool: &str, how: &str) -> anyhow::Result<()> {
    match which(tool) {
        Some(_) => Ok(()),
        None => bail!("`{tool}` is not installed: {how}"),
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Runs a build step with its output on the terminal; fails when it does.
fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(kind: Kind) -> Project {
        Project {
            dir: PathBuf::from("/work/p"),
            name: "p".into(),
            kind,
        }
    }

    #[test]
    fn the_watched_sources_are_the_languages_and_the_config() {
        let python = project(Kind::Python);
        let source = |p: &Project, path: &str| p.is_source(Path::new(path));
        assert!(source(&python, "/work/p/app.py"));
        assert!(source(&python, "/work/p/berth.toml"));
        assert!(source(&python, "/work/p/wit/deps/http.wit"));
        assert!(!source(&python, "/work/p/__pycache__/app.py"));
        assert!(!source(&python, "/work/p/dist/p.wasm"));
        assert!(!source(&python, "/elsewhere/app.py"));
        assert!(!source(&python, "/work/p/app.js"));

        let js = project(Kind::Js);
        assert!(source(&js, "/work/p/app.js"));
        assert!(source(&js, "/work/p/package.json"));
        assert!(!source(&js, "/work/p/package-lock.json"));
        assert!(!source(&js, "/work/p/node_modules/x/index.js"));

        let rust = project(Kind::Rust);
        assert!(source(&rust, "/work/p/src/lib.rs"));
        assert!(source(&rust, "/work/p/Cargo.toml"));
        assert!(!source(&rust, "/work/p/target/release/build/x.rs"));
    }
}
