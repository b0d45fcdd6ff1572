//! `berth up`: serve one component at `/`, for development: a `.wasm`
//! file, or the service `berth new` wrote in the current directory, built
//! first; with `--watch`, rebuilt and swapped in on every change.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::reuse::{InstanceReuse, check_env};
use berth_api::units::DurationSpec;
use berth_runtime::config::{ServiceSpec, WrittenSettings, validate_config};
use berth_runtime::limits::Limits;
use berth_runtime::outbound::{AllowedHost, OutboundPolicy};
use berth_runtime::reuse::ReusePolicy;
use std::collections::BTreeMap;

use super::HostFlags;
use super::build::Project;
use berth_runtime::host::Host;

/// Serve one component at `/` (development mode): a `.wasm` file, or the
/// service in the current directory (built first).
#[derive(clap::Args)]
pub struct UpCommand {
    /// The component to serve; without it, the service `berth new` made in
    /// `--dir` is built and served.
    #[arg(value_name = "COMPONENT.wasm")]
    component: Option<PathBuf>,
    /// The service's directory, when no component is given.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Rebuild (or reload the component) when a file changes, and swap the
    /// new version in without dropping a request; a failed build is shown
    /// and the last good version keeps serving.
    #[arg(long)]
    watch: bool,
    /// Address to listen on; port 0 picks a free port and prints it.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "BERTH_LISTEN"
    )]
    listen: SocketAddr,
    /// A destination the component may call (host, host:port or *.domain);
    /// repeat for more. Outbound HTTP is denied otherwise.
    #[arg(long = "allow-outbound", value_name = "HOST")]
    allow_outbound: Vec<AllowedHost>,
    /// An environment variable for the component (`wasi:cli/environment`);
    /// repeat for more.
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE", value_parser = super::key_value)]
    env: Vec<(String, String)>,
    /// A configuration value for the component (`wasi:config/store`);
    /// repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::key_value)]
    config: Vec<(String, String)>,
    /// Requests one instance serves before it is discarded; 1 (the default)
    /// is a fresh instance per request.
    #[arg(long = "max-instance-reuse", value_name = "N")]
    max_instance_reuse: Option<u32>,
    /// Requests one WASI 0.3 instance serves at once (1, the default, is one
    /// after another); alone, it lets an instance serve 128 requests in all.
    #[arg(long = "max-instance-concurrency", value_name = "N")]
    max_instance_concurrency: Option<u32>,
    /// How long an idle instance is kept, when instances are reused.
    #[arg(
        long = "idle-instance-timeout",
        value_name = "DURATION",
        default_value = "10s"
    )]
    idle_instance_timeout: DurationSpec,
    #[command(flatten)]
    host: HostFlags,
}

impl UpCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let project = match &self.component {
            Some(_) => None,
            None => Some(Project::open(&self.dir)?),
        };
        // What the files are before the first build: an edit made while it
        // runs, or before the watcher starts, is a change it still sees.
        let seen = self.watch.then(|| {
            let root = self.watch_root(project.as_ref());
            super::watch::snapshot(&root, &|path| watched(project.as_ref(), path))
        });
        if let Some(project) = &project {
            project.build(false)?;
        }
        let spec = self.spec(project.as_ref())?;
        let host = self.host.host()?;
        let loaded = host.load_services(&[spec])?;
        let me = Arc::new(self);
        if let Some(seen) = seen {
            let (watcher, served) = (Arc::clone(&me), Arc::clone(&host));
            std::thread::Builder::new()
                .name("berth-watch".into())
                .spawn(move || watcher.watch(project, seen, &served))
                .context("cannot start the file watcher")?;
        }
        super::run_data_plane(host, me.listen, &me.host, &loaded)
    }

    /// The project's directory, or the component file.
    fn watch_root(&self, project: Option<&Project>) -> PathBuf {
        match (project, &self.component) {
            (Some(project), _) => project.dir.clone(),
            (None, Some(component)) => component.clone(),
            (None, None) => self.dir.clone(),
        }
    }

    /// Rebuilds (a project) or rereads (a component) on every change from
    /// `seen`, and serves the result; a failure leaves the last good
    /// version serving.
    fn watch(&self, project: Option<Project>, seen: super::watch::Snapshot, host: &Host) {
        let root = self.watch_root(project.as_ref());
        let what = if project.is_some() {
            "sources"
        } else {
            "component"
        };
        println!("watching the {what} in {}", root.display());
        let sources = |path: &Path| watched(project.as_ref(), path);
        super::watch::watch(root, sources, seen, || {
            if let Some(project) = &project {
                println!("change seen: building {}", project.name);
                if let Err(error) = project.build(false) {
                    eprintln!("berth: {error:#}\nberth: still serving the last good build");
                    return;
                }
            }
            let reloaded = self
                .spec(project.as_ref())
                .and_then(|spec| Ok(host.load_services(&[spec])?));
            match reloaded {
                Ok(loaded) => {
                    for service in loaded {
                        println!("reloaded {} ({})", service.name, service.digest);
                    }
                }
                Err(error) => {
                    eprintln!("berth: {error:#}\nberth: still serving the last good version");
                }
            }
        });
    }

    /// The service to serve: the component file, or the project's build
    /// with its `berth.toml` settings, at `/`, with the flags over them.
    fn spec(&self, project: Option<&Project>) -> anyhow::Result<ServiceSpec> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut config: BTreeMap<String, String> = BTreeMap::new();
        let (name, component, declared_at) = match (project, &self.component) {
            (Some(project), _) => {
                let declared = berth_runtime::config::load(&project.dir.join("berth.toml"))?;
                if let Some(first) = declared.into_iter().next() {
                    env = first.env;
                    config = first.config;
                }
                (
                    project.name.clone(),
                    project.output(),
                    project.dir.join("berth.toml").display().to_string(),
                )
            }
            (None, Some(component)) => {
                if !component.is_file() {
                    anyhow::bail!("{} is not a file", component.display());
                }
                let name = component
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(service_name)
                    .context("the component's file name is not valid UTF-8")?;
                (name, component.clone(), component.display().to_string())
            }
            (None, None) => anyhow::bail!("no component to serve"),
        };
        env.extend(self.env.iter().cloned());
        check_env(&env).map_err(|m| anyhow::anyhow!("--env: {m}"))?;
        config.extend(self.config.iter().cloned());
        validate_config(&config).map_err(|m| anyhow::anyhow!("--config: {m}"))?;
        let reuse = InstanceReuse {
            max_requests: self.max_instance_reuse,
            max_concurrent: self.max_instance_concurrency,
            idle_timeout: Some(self.idle_instance_timeout),
        };
        reuse.check().map_err(|m| anyhow::anyhow!("{m}"))?;
        Ok(ServiceSpec {
            name,
            component,
            route: "/".into(),
            limits: Limits::default(),
            // Development mode: whoever runs `berth up` owns the machine, so the
            // hosts they allow may be local ones.
            outbound: OutboundPolicy::new(self.allow_outbound.clone()).allowing_private(true),
            buckets: Vec::new(),
            config,
            env,
            reuse: ReusePolicy::from_spec(&reuse),
            schedules: Vec::new(),
            subscriptions: Vec::new(),
            declared_at,
            written: WrittenSettings {
                reuse,
                ..WrittenSettings::default()
            },
        })
    }
}

/// Whether a change to `path` counts: a project's sources, or anything
/// (the watched component file itself).
fn watched(project: Option<&Project>, path: &Path) -> bool {
    project.is_none_or(|project| project.is_source(path))
}

/// A service name from a file name: lowercase, other characters as dashes.
fn service_name(stem: &str) -> String {
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() { "app".into() } else { name }
}
