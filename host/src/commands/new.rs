//! `berth new NAME --lang rust|python|js`: a ready-to-build service from
//! templates carried in the binary.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

use berth_api::ServiceName;

/// The languages `berth new` writes a service in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust on berth-sdk (cargo and the wasm32-wasip2 target).
    Rust,
    /// Python on componentize-py.
    Python,
    /// JavaScript on componentize-js (Node.js and npm).
    Js,
}

/// Write a new service, ready to build, into a new directory.
#[derive(clap::Args)]
pub struct NewCommand {
    /// The service's name: lowercase letters, digits and dashes.
    name: ServiceName,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to write it (a new or empty directory); `./NAME` by default.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// berth-sdk's source, for Rust: by default the one this `berth` was
    /// built from.
    #[arg(long, value_name = "PATH", env = "BERTH_SDK")]
    sdk: Option<PathBuf>,
}

/// Berth's WIT, which the Python and JavaScript services bind to.
const WIT: &[(&str, &str)] = &[
    ("wit/world.wit", include_str!("../../../wit/world.wit")),
    (
        "wit/deps/cli.wit",
        include_str!("../../../wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/config-draft.wit",
        include_str!("../../../wit/deps/config-draft.wit"),
    ),
    (
        "wit/deps/config.wit",
        include_str!("../../../wit/deps/config.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../wit/deps/http.wit"),
    ),
    ("wit/deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "wit/deps/keyvalue.wit",
        include_str!("../../../wit/deps/keyvalue.wit"),
    ),
    (
        "wit/deps/logging.wit",
        include_str!("../../../wit/deps/logging.wit"),
    ),
    (
        "wit/deps/messaging.wit",
        include_str!("../../../wit/deps/messaging.wit"),
    ),
    (
        "wit/deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
    (
        "berth.toml",
        include_str!("../../templates/rust/berth.toml"),
    ),
    (".gitignore", include_str!("../../templates/rust/gitignore")),
];

const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../../templates/python/app.py")),
    (
        "berth.toml",
        include_str!("../../templates/python/berth.toml"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/python/gitignore"),
    ),
];

const JS: &[(&str, &str)] = &[
    ("app.js", include_str!("../../templates/js/app.js")),
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    ("berth.toml", include_str!("../../templates/js/berth.toml")),
    (".gitignore", include_str!("../../templates/js/gitignore")),
];

/// Where berth-sdk's source was when this binary was built.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

impl NewCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let name = self.name.to_string();
        let dir = self.dir.clone().unwrap_or_else(|| PathBuf::from(&name));
        if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
            bail!("{} exists and is not empty", dir.display());
        }
        let (files, wit) = match self.lang {
            Lang::Rust => (RUST, false),
            Lang::Python => (PYTHON, true),
            Lang::Js => (JS, true),
        };
        let sdk = if self.lang == Lang::Rust {
            sdk_path(self.sdk.as_deref())?
        } else {
            String::new()
        };
        let extra: &[(&str, &str)] = if wit { WIT } else { &[] };
        for (path, text) in files.iter().chain(extra) {
            let text = text.replace("{{name}}", &name).replace("{{sdk}}", &sdk);
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&target, text)
                .with_context(|| format!("cannot write {}", target.display()))?;
        }
        println!(
            "created {} service `{name}` in {}\n\nnext:\n  cd {}\n  berth build                # builds dist/{name}.wasm\n  berth up --watch           # serves it, rebuilt on every change\n  berth deploy dist/{name}.wasm --service {name} --version 0.1.0 --route /{name}",
            match self.lang {
                Lang::Rust => "a Rust",
                Lang::Python => "a Python",
                Lang::Js => "a JavaScript",
            },
            dir.display(),
            dir.display()
        );
        Ok(())
    }
}

/// berth-sdk's directory, as a TOML string's contents.
fn sdk_path(given: Option<&Path>) -> anyhow::Result<String> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(BUILT_SDK),
    };
    let found = path.join("Cargo.toml").is_file();
    match path.canonicalize() {
        // Written into a TOML basic string.
        Ok(path) if found => Ok(path
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")),
        _ if given.is_some() => bail!(
            "--sdk {}: no berth-sdk there (the `guest-sdk` directory of a Berth checkout)",
            path.display()
        ),
        _ => bail!(
            "berth-sdk's source is not at {} any more (this berth was built elsewhere): \
             pass --sdk PATH to the `guest-sdk` directory of a Berth checkout",
            path.display()
        ),
    }
}
