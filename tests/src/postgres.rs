//! A real PostgreSQL server for a test: Debian's `postgresql` binaries, a
//! fresh cluster in a temporary directory, listening on a free loopback
//! port. `make test` installs the package; without it the test fails and
//! says so.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Runs the server's commands as `postgres` when the tests run as root,
    /// which PostgreSQL refuses.
    as_postgres: bool,
    running: bool,
}

/// The newest installed `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("postgres").is_file().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .context("PostgreSQL is not installed (no /usr/lib/postgresql/N/bin/postgres); `make test` installs Debian's `postgresql`")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Postgres {
    /// Creates a cluster and starts it.
    pub fn start() -> Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("berth-pg-").tempdir()?;
        let as_postgres = is_root();
        if as_postgres {
            let done = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()?;
            if !done.success() {
                bail!("cannot hand {} to the postgres user", dir.path().display());
            }
        }
        let mut pg = Self {
            dir,
            bin,
            port: free_port()?,
            as_postgres,
            running: false,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )?;
        pg.resume()?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://...` for the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&mut self) -> Result<()> {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=300",
            self.port,
            path_str(self.dir.path())?
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        self.running = true;
        Ok(())
    }

    /// Stops the server at once, dropping every connection.
    pub fn halt(&mut self) -> Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "immediate", "-w", "stop"],
        )?;
        self.running = false;
        Ok(())
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        let output = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        if !output.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            bail!(
                "{} {args:?} failed: {}{}\nserver log:\n{log}",
                program.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("temporary path is not UTF-8")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.halt();
        }
    }
}
